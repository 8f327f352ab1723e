//! A transaction: every change one message makes, committed atomically once.

use std::collections::BTreeMap;

use crate::slot::{MethodRef, Provenance, Slot, SourceRef};
use crate::value::{Oid, Value};

/// Changes to one object within a transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectChanges {
    /// The object is created by this transaction.
    pub created: bool,
    /// Slot name → new contents (`None` = removed). Later writes win.
    pub slots: BTreeMap<String, Option<Slot>>,
}

/// The changes of one message, plus the versions of what it read (checked
/// at commit: optimistic concurrency across objects). A read is of a whole
/// object or of one slot; a slot read conflicts only with a change to that
/// slot, so writers of a widely inherited object do not conflict with every
/// message that looks something else up through it.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    writes: BTreeMap<Oid, ObjectChanges>,
    reads: BTreeMap<Oid, u64>,
    slot_reads: BTreeMap<(Oid, String), u64>,
    roots: Option<Vec<(String, Oid)>>,
    installs: Vec<Install>,
    /// Upgrade instructions to submit after the commit (not image state).
    upgrades: Vec<Value>,
    /// Content-addressed blobs written with the transaction (hex SHA-256 →
    /// bytes), kept beside the modules: large data (expert weights) that
    /// slots refer to by hash, so it never travels in slot values or events.
    blobs: Vec<(String, Vec<u8>)>,
}

/// A method version installed by a transaction: its history record and
/// module are written with it, and its slot points at it.
#[derive(Clone, Debug, PartialEq)]
pub struct Install {
    /// The object the method is installed on.
    pub oid: Oid,
    /// The selector.
    pub selector: String,
    /// Version and module hash.
    pub method: MethodRef,
    /// Who or what made it.
    pub provenance: Provenance,
    /// The module binary (stored once per hash).
    pub wasm: Vec<u8>,
    /// The source it was compiled from; its text is a blob of the same
    /// transaction.
    pub source: Option<SourceRef>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates object `oid` with these slots.
    pub fn create(&mut self, oid: Oid, slots: Vec<(String, Slot)>) {
        let changes = self.writes.entry(oid).or_default();
        changes.created = true;
        for (name, slot) in slots {
            changes.slots.insert(name, Some(slot));
        }
    }

    /// Sets one slot.
    pub fn set(&mut self, oid: Oid, name: String, slot: Slot) {
        self.writes
            .entry(oid)
            .or_default()
            .slots
            .insert(name, Some(slot));
    }

    /// Removes one slot.
    pub fn remove(&mut self, oid: Oid, name: String) {
        self.writes.entry(oid).or_default().slots.insert(name, None);
    }

    /// Records that this transaction's result depends on `oid` at `version`.
    pub fn read(&mut self, oid: Oid, version: u64) {
        self.reads.entry(oid).or_insert(version);
    }

    /// Records that this transaction's result depends on slot `name` of
    /// `oid` (its contents, or its absence) as it was at `version`, the
    /// version of the commit that last changed it.
    pub fn read_slot(&mut self, oid: Oid, name: &str, version: u64) {
        self.slot_reads
            .entry((oid, name.to_string()))
            .or_insert(version);
    }

    /// Installs a method version and points its slot at it.
    pub fn install(&mut self, install: Install) {
        self.set(
            install.oid,
            install.selector.clone(),
            Slot::Method(install.method.clone()),
        );
        self.installs.push(install);
    }

    /// Stores a blob under its hash.
    pub fn store_blob(&mut self, hash: String, bytes: Vec<u8>) {
        self.blobs.push((hash, bytes));
    }

    /// Blobs this transaction stores.
    pub fn blobs(&self) -> &[(String, Vec<u8>)] {
        &self.blobs
    }

    /// Method versions this transaction installs.
    pub fn installs(&self) -> &[Install] {
        &self.installs
    }

    /// Asks for an upgrade instruction to be submitted once this
    /// transaction has committed (it is not image state).
    pub fn request_upgrade(&mut self, instruction: Value) {
        self.upgrades.push(instruction);
    }

    /// Takes the upgrade instructions requested by this transaction.
    pub fn take_upgrades(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.upgrades)
    }

    /// The object versions this transaction read, checked at commit.
    pub fn reads(&self) -> &BTreeMap<Oid, u64> {
        &self.reads
    }

    /// The slot versions this transaction read, checked at commit.
    pub fn slot_reads(&self) -> &BTreeMap<(Oid, String), u64> {
        &self.slot_reads
    }

    /// Records the root table (genesis only).
    pub fn set_roots(&mut self, roots: Vec<(String, Oid)>) {
        self.roots = Some(roots);
    }

    /// Whether the transaction changes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.roots.is_none()
    }

    /// The per-object changes, in oid order.
    pub fn writes(&self) -> &BTreeMap<Oid, ObjectChanges> {
        &self.writes
    }

    /// The root table this transaction records, if any.
    pub fn roots(&self) -> Option<&[(String, Oid)]> {
        self.roots.as_deref()
    }

    /// Objects this transaction creates.
    pub fn created(&self) -> impl Iterator<Item = Oid> + '_ {
        self.writes
            .iter()
            .filter(|(_, c)| c.created)
            .map(|(oid, _)| *oid)
    }
}
