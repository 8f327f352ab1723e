//! The key that seals compiled modules in the image's cache
//! (`batos_sandbox::CacheKey`): 32 random bytes in
//! `DATA/compiled-cache.key`, mode 0600, beside the image and not in it,
//! so snapshots and copied images do not carry it.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use batos_sandbox::CacheKey;

use crate::error::KernelError;

/// The key file's name in the data directory.
pub const FILE: &str = "compiled-cache.key";

/// Reads the key in `data_dir`, creating it on first start.
pub fn load_or_create(data_dir: &Path) -> Result<CacheKey, KernelError> {
    let path = data_dir.join(FILE);
    let fail = |what: &str, e: std::io::Error| {
        KernelError::Config(format!("{what} {}: {e}", path.display()))
    };
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    match created {
        Ok(mut file) => {
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut key))
                .map_err(|e| fail("reading randomness for", e))?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .map_err(|e| fail("writing", e))?;
            Ok(CacheKey::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(fail("creating", e)),
    }
}

fn read(path: &Path) -> Result<CacheKey, KernelError> {
    let refuse = |why: String| KernelError::Config(format!("{}: {why}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| refuse(e.to_string()))?;
    let meta = file.metadata().map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() || meta.len() != 32 {
        return Err(refuse("not a 32-byte key file".into()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "mode {:o}: others may read the key that seals compiled modules (chmod 600)",
            meta.mode() & 0o777
        )));
    }
    let mut key = [0u8; 32];
    file.read_exact(&mut key)
        .map_err(|e| refuse(e.to_string()))?;
    Ok(CacheKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let path = dir.path().join(FILE);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        load_or_create(dir.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "not made again");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
