//! Opening files an instruction names: what is checked is what is read.

use std::fs::File;
use std::path::Path;

/// Opens an existing file for reading without following a symbolic link at
/// its last component, and checks what was opened is a regular file: what
/// is checked is what is read (no check-then-open race).
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}
