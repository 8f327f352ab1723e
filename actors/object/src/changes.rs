//! Changes a kernel service (the knowledge catalog, the orchestrator, the
//! memory manager) commits as one atomic transaction, outside any message.
//!
//! The service builds the values itself, so they are trusted: references
//! are made with [`crate::value::make_ref`] to objects the service created
//! or read. Writes are blind (no read set): each service is the only writer
//! of the objects it manages.

use crate::slot::Slot;
use crate::txn::Transaction;
use crate::value::{Oid, Value};

/// One atomic batch of object creations and slot writes.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    tx: Transaction,
}

impl Changes {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates object `oid` (from the object space's `allocate_oid`).
    pub fn create(&mut self, oid: Oid, slots: Vec<(String, Value)>) {
        self.tx.create(
            oid,
            slots.into_iter().map(|(n, v)| (n, Slot::Data(v))).collect(),
        );
    }

    /// Sets one data slot.
    pub fn set(&mut self, oid: Oid, name: impl Into<String>, value: Value) {
        self.tx.set(oid, name.into(), Slot::Data(value));
    }

    /// Removes one slot.
    pub fn remove(&mut self, oid: Oid, name: impl Into<String>) {
        self.tx.remove(oid, name.into());
    }

    /// Stores `bytes` in the image, content-addressed; returns the key
    /// (lowercase hex SHA-256) a slot can hold to refer to them.
    pub fn store_blob(&mut self, bytes: Vec<u8>) -> String {
        let hash = crate::image::module_hash(&bytes);
        self.tx.store_blob(hash.clone(), bytes);
        hash
    }

    /// The batch as the transaction the committer writes.
    pub fn into_transaction(self) -> Transaction {
        self.tx
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}
