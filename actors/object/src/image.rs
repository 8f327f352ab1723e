//! The narrow trait the object model uses to reach the durable image.
//!
//! The kernel implements it over RocksDB; a distributed transactional KV
//! could implement it too without touching the object model.

use crate::slot::{MethodRecord, Slot};
use crate::txn::Transaction;
use crate::value::Oid;

/// A failure of the durable image.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    /// The storage engine reported an error.
    #[error("storage: {0}")]
    Storage(String),
    /// A record in the image could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The image was written by a newer, unknown format.
    #[error("{0}")]
    Version(String),
}

/// An object as stored: its slots.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoredObject {
    /// Slots in key order.
    pub slots: Vec<(String, Slot)>,
}

/// What the image remembers about itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// The next oid to allocate: every oid below it may have been used.
    pub next_oid: Oid,
    /// Objects in the image, roots included.
    pub objects: u64,
    /// The id of the last committed transaction.
    pub last_tx: u64,
    /// The root table, once genesis has run.
    pub roots: Option<Vec<(String, Oid)>>,
}

/// One group commit: transactions already validated, with their ids, and the
/// image counters after them. Written atomically, all or nothing.
pub struct CommitGroup<'a> {
    /// Transactions in commit order, each with its id.
    pub transactions: Vec<(u64, &'a Transaction)>,
    /// `next_oid` after this group.
    pub next_oid: Oid,
    /// Object count after this group.
    pub objects: u64,
}

/// The durable image the object model lives in.
pub trait Image: Send + Sync + 'static {
    /// Reads the image's counters and root table.
    fn meta(&self) -> Result<ImageMeta, ImageError>;
    /// Loads one object's slots; `None` if no such object.
    fn load_object(&self, oid: Oid) -> Result<Option<StoredObject>, ImageError>;
    /// Whether an object exists, without loading its slots.
    fn object_exists(&self, oid: Oid) -> Result<bool, ImageError>;
    /// Writes a group of transactions in one atomic batch, durable (fsync'd
    /// when `sync`, else in the write-ahead log) when this returns.
    fn commit(&self, group: &CommitGroup<'_>, sync: bool) -> Result<(), ImageError>;
    /// Makes a consistent checkpoint of the whole image; returns its id.
    fn checkpoint(&self) -> Result<String, ImageError>;
    /// Flushes memory buffers and stops background work: the last call
    /// before the process exits (nothing may be written after it).
    fn flush(&self) -> Result<(), ImageError>;
    /// Every method version ever installed on `oid`, by selector then version.
    fn method_history(&self, oid: Oid) -> Result<Vec<(String, MethodRecord)>, ImageError>;
    /// A module binary by hash.
    fn load_module(&self, hash: &str) -> Result<Option<Vec<u8>>, ImageError>;
    /// A compiled module from the cache.
    fn load_compiled(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ImageError>;
    /// Caches a compiled module (outside any transaction: it is derived data).
    fn store_compiled(&self, key: &[u8], bytes: &[u8]) -> Result<(), ImageError>;
    /// Drops every cached compiled module whose key does not start with
    /// `prefix` (those another engine compiled, an upgrade's leftovers), so
    /// the cache holds at most one entry per module; returns how many went.
    fn retain_compiled(&self, prefix: &[u8]) -> Result<usize, ImageError>;
}

/// The key the image stores a module or blob under: the SHA-256 of its
/// bytes, in hex.
pub fn module_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
