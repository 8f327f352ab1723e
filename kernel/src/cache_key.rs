//! The key that seals compiled modules in the image's cache
//! (`batos_sandbox::CacheKey`): 32 random bytes in
//! `DATA/compiled-cache.key`, mode 0600, beside the image and not in it,
//! so snapshots and copied images do not carry it.

use std::io::Read;
use std::path::Path;

use batos_client::keys::{read_secret, write_secret};
use batos_sandbox::CacheKey;

use crate::error::KernelError;

/// The key file's name in the data directory.
pub const FILE: &str = "compiled-cache.key";

/// Reads the key in `data_dir`, creating it on first start (the image is
/// open by then, so no other kernel shares the directory).
pub fn load_or_create(data_dir: &Path) -> Result<CacheKey, KernelError> {
    let path = data_dir.join(FILE);
    let config = |e: batos_client::KeyError| KernelError::Config(e.0);
    if std::fs::symlink_metadata(&path).is_err() {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .map_err(|e| KernelError::Config(format!("randomness for {}: {e}", path.display())))?;
        write_secret(&path, &key).map_err(config)?;
        return Ok(CacheKey::new(key));
    }
    let bytes = read_secret(&path, 32).map_err(config)?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KernelError::Config(format!("{}: not a 32-byte key file", path.display())))?;
    Ok(CacheKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

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
