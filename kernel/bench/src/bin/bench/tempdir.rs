//! Temporary data directories, removed unless asked to keep them.

use super::*;

/// A directory under `std::env::temp_dir()`, removed on drop unless kept.
pub(crate) struct TempRoot {
    pub(crate) path: PathBuf,
    pub(crate) keep: bool,
}

impl TempRoot {
    pub(crate) fn new(keep: bool) -> Result<TempRoot> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("batos-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempRoot { path, keep })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "batos-bench: kept temporary files in {}",
                self.path.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("batos-bench: could not remove {}: {e}", self.path.display());
        }
    }
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
