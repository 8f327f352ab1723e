//! CURVE keys for the bridge: generating a key pair, writing it (the
//! secret half readable by its owner alone), and reading key files back.
//!
//! A key pair file (`NAME.key`, mode 0600) holds both halves, a public key
//! file (`NAME.pub`) the public half only, each a line `public = "..."` or
//! `secret = "..."` with the key in Z85 (40 characters); `#` starts a
//! comment. The kernel reads its own pair and a directory of clients'
//! public keys; a client reads its pair and the kernel's public key.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Key files are small; anything larger is not one.
const MAX_KEY_FILE: u64 = 4096;

/// Why a key could not be made, written or read (the message says which file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// A CURVE key pair, Z85-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public key: given to peers.
    pub public: String,
    /// The secret key: never leaves its file.
    pub secret: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Whether this build's libzmq can do CURVE (it needs libsodium).
pub fn curve_available() -> bool {
    zmq::has("curve").unwrap_or(false)
}

impl KeyPair {
    /// A fresh key pair from libzmq.
    pub fn generate() -> Result<KeyPair, KeyError> {
        if !curve_available() {
            return Err(KeyError(
                "this build's libzmq has no CURVE support (it needs libsodium)".into(),
            ));
        }
        let pair = zmq::CurveKeyPair::new()
            .map_err(|e| KeyError(format!("generating a key pair: {e}")))?;
        Ok(KeyPair {
            public: z85(&pair.public_key)?,
            secret: z85(&pair.secret_key)?,
        })
    }

    /// Writes `dir/NAME.key` (both halves, mode 0600) and `dir/NAME.pub`
    /// (the public half, mode 0644), creating `dir` (mode 0700) if need be;
    /// refuses to replace either file.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), KeyError> {
        if name.is_empty() || name.contains(['/', '\0']) || name.starts_with('.') {
            return Err(KeyError(format!(
                "{name:?} is not a key name (no '/', not starting with '.')"
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyError(format!("creating {}: {e}", dir.display())))?;
        let secret_path = dir.join(format!("{name}.key"));
        let public_path = dir.join(format!("{name}.pub"));
        write_secret(
            &secret_path,
            format!(
                "# BAT OS CURVE key pair {name:?}: keep this file secret\npublic = \"{}\"\nsecret = \"{}\"\n",
                self.public, self.secret
            )
            .as_bytes(),
        )?;
        write_new(
            &public_path,
            0o644,
            format!(
                "# BAT OS CURVE public key {name:?}\npublic = \"{}\"\n",
                self.public
            )
            .as_bytes(),
        )?;
        Ok((secret_path, public_path))
    }

    /// Reads a key pair file, refusing one that others may read or that is
    /// a symbolic link.
    pub fn read(path: &Path) -> Result<KeyPair, KeyError> {
        let text = read_key_file(path, true)?;
        Ok(KeyPair {
            public: field(&text, "public", path)?,
            secret: field(&text, "secret", path)?,
        })
    }
}

/// The public key in a `.pub` (or `.key`) file.
pub fn read_public(path: &Path) -> Result<String, KeyError> {
    let text = read_key_file(path, false)?;
    field(&text, "public", path)
}

/// A Z85 key as its 32 bytes.
pub fn decode(key: &str) -> Result<[u8; 32], KeyError> {
    let bytes = if key.len() == 40 {
        zmq::z85_decode(key).ok()
    } else {
        None
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| KeyError(format!("{key:?} is not a Z85 CURVE key (40 characters)")))
}

fn z85(bytes: &[u8; 32]) -> Result<String, KeyError> {
    zmq::z85_encode(bytes).map_err(|e| KeyError(format!("encoding a key: {e}")))
}

/// Creates a file holding a secret: mode 0600, never replacing a file and
/// never through a link.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    write_new(path, 0o600, bytes)
}

/// Reads a file holding a secret, at most `max` bytes: opened without
/// following a link (what is checked is what is read), a regular file, and
/// readable by its owner alone.
pub fn read_secret(path: &Path, max: u64) -> Result<Vec<u8>, KeyError> {
    read_checked(path, true, max)
}

fn write_new(path: &Path, mode: u32, bytes: &[u8]) -> Result<(), KeyError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| KeyError(format!("creating {}: {e}", path.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| KeyError(format!("writing {}: {e}", path.display())))
}

fn read_key_file(path: &Path, secret: bool) -> Result<String, KeyError> {
    let bytes = read_checked(path, secret, MAX_KEY_FILE)?;
    String::from_utf8(bytes)
        .map_err(|_| KeyError(format!("key file {}: not UTF-8 text", path.display())))
}

fn read_checked(path: &Path, secret: bool, max: u64) -> Result<Vec<u8>, KeyError> {
    let what = |e: String| KeyError(format!("{}: {e}", path.display()));
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| what(e.to_string()))?;
    let meta = file.metadata().map_err(|e| what(e.to_string()))?;
    if !meta.is_file() {
        return Err(what("not a regular file".into()));
    }
    if secret && meta.mode() & 0o077 != 0 {
        return Err(what(format!(
            "holds a secret but its mode is {:o}; make it readable by its owner alone (chmod 600)",
            meta.mode() & 0o777
        )));
    }
    if meta.len() > max {
        return Err(what(format!(
            "{} bytes is over the {max} expected",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    File::take(file, max)
        .read_to_end(&mut bytes)
        .map_err(|e| what(e.to_string()))?;
    Ok(bytes)
}

/// The value of `name = "..."` in a key file, checked to be a key.
fn field(text: &str, name: &str, path: &Path) -> Result<String, KeyError> {
    let value = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| KeyError(format!("key file {} has no {name} key", path.display())))?;
    decode(&value).map_err(|e| KeyError(format!("key file {}: {}", path.display(), e.0)))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_pair_written_reads_back_with_modes_that_keep_the_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = &tmp.path().join("keys");
        let pair = KeyPair::generate().expect("libzmq with CURVE");
        let (key, public) = pair.write(dir, "alice").unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        assert_eq!(KeyPair::read(&key).unwrap(), pair);
        assert_eq!(read_public(&public).unwrap(), pair.public);
        assert!(!std::fs::read_to_string(&public)
            .unwrap()
            .contains(&pair.secret));
        let again = pair.write(dir, "alice").unwrap_err();
        assert!(again.0.contains("exists"), "{again}");
        assert!(
            !format!("{pair:?}").contains(&pair.secret),
            "Debug hides the secret"
        );
    }

    #[test]
    fn loose_modes_links_and_bad_keys_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let pair = KeyPair::generate().unwrap();
        let (key, _) = pair.write(dir, "k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyPair::read(&key).unwrap_err();
        assert!(err.0.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        assert!(KeyPair::read(&link).is_err(), "a link is not followed");
        let bad = dir.join("bad.pub");
        std::fs::write(&bad, "public = \"short\"\n").unwrap();
        let err = read_public(&bad).unwrap_err();
        assert!(err.0.contains("not a Z85 CURVE key"), "{err}");
        assert!(KeyPair::generate().unwrap().write(dir, "../x").is_err());
    }
}
