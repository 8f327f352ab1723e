//! An image held in memory: what the RocksDB image stores, with the same
//! ordering and visibility, and nothing durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::image::{CommitGroup, Image, ImageError, ImageMeta, StoredObject};
use crate::slot::{MethodRecord, Slot};
use crate::value::Oid;

#[derive(Default)]
struct State {
    meta: ImageMeta,
    /// Objects by oid; slots by name (byte order, as the store keys them).
    objects: BTreeMap<Oid, BTreeMap<String, Slot>>,
    /// Slots written to an oid no transaction created: kept, never loaded.
    orphans: BTreeMap<Oid, BTreeMap<String, Slot>>,
    /// Method versions keyed as the store keys them: oid, selector length,
    /// selector, version.
    methods: BTreeMap<(Oid, usize, String, u32), MethodRecord>,
    modules: HashMap<String, Vec<u8>>,
    compiled: HashMap<Vec<u8>, Vec<u8>>,
    snapshots: BTreeMap<String, ImageMeta>,
    flushed: bool,
}

/// An [`Image`] in memory. Commits are atomic (one lock) and visible at
/// once; `sync` is accepted and means nothing. Counts its commits, so tests
/// can see group commit at work.
#[derive(Default)]
pub struct MemoryImage {
    state: Mutex<State>,
    commits: AtomicU64,
    snapshot_seq: AtomicU64,
}

impl MemoryImage {
    /// An empty image.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times [`Image::commit`] has written a group.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, ImageError> {
        let state = self
            .state
            .lock()
            .map_err(|_| ImageError::Storage("a writer panicked".into()))?;
        if state.flushed {
            return Err(ImageError::Storage("the image was flushed for exit".into()));
        }
        Ok(state)
    }
}

impl Image for MemoryImage {
    fn meta(&self) -> Result<ImageMeta, ImageError> {
        Ok(self.state()?.meta.clone())
    }

    fn load_object(&self, oid: Oid) -> Result<Option<StoredObject>, ImageError> {
        Ok(self.state()?.objects.get(&oid).map(|slots| StoredObject {
            slots: slots
                .iter()
                .map(|(name, slot)| (name.clone(), slot.clone()))
                .collect(),
        }))
    }

    fn object_exists(&self, oid: Oid) -> Result<bool, ImageError> {
        Ok(self.state()?.objects.contains_key(&oid))
    }

    fn commit(&self, group: &CommitGroup<'_>, _sync: bool) -> Result<(), ImageError> {
        let mut state = self.state()?;
        let state = &mut *state;
        for (id, tx) in &group.transactions {
            state.meta.last_tx = *id;
            for (oid, changes) in tx.writes() {
                if changes.created && !state.objects.contains_key(oid) {
                    let early = state.orphans.remove(oid).unwrap_or_default();
                    state.objects.insert(*oid, early);
                }
                let slots = match state.objects.get_mut(oid) {
                    Some(slots) => slots,
                    None => state.orphans.entry(*oid).or_default(),
                };
                for (name, slot) in &changes.slots {
                    match slot {
                        Some(slot) => slots.insert(name.clone(), slot.clone()),
                        None => slots.remove(name),
                    };
                }
            }
            for install in tx.installs() {
                let record = MethodRecord {
                    version: install.method.version,
                    hash: install.method.hash.clone(),
                    provenance: install.provenance.clone(),
                    tx: *id,
                    source: install.source.clone(),
                };
                let key = (
                    install.oid,
                    install.selector.len(),
                    install.selector.clone(),
                    install.method.version,
                );
                state.methods.insert(key, record);
                state
                    .modules
                    .insert(install.method.hash.clone(), install.wasm.clone());
            }
            for (hash, bytes) in tx.blobs() {
                state.modules.insert(hash.clone(), bytes.clone());
            }
            if let Some(roots) = tx.roots() {
                state.meta.roots = Some(roots.to_vec());
            }
        }
        state.meta.next_oid = group.next_oid;
        state.meta.objects = group.objects;
        self.commits.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn checkpoint(&self) -> Result<String, ImageError> {
        let mut state = self.state()?;
        let id = format!(
            "memory-{}",
            self.snapshot_seq.fetch_add(1, Ordering::Relaxed)
        );
        let meta = state.meta.clone();
        state.snapshots.insert(id.clone(), meta);
        Ok(id)
    }

    fn flush(&self) -> Result<(), ImageError> {
        self.state()?.flushed = true;
        Ok(())
    }

    fn method_history(&self, oid: Oid) -> Result<Vec<(String, MethodRecord)>, ImageError> {
        let state = self.state()?;
        Ok(state
            .methods
            .range((oid, 0, String::new(), 0)..)
            .take_while(|((o, ..), _)| *o == oid)
            .map(|((_, _, selector, _), record)| (selector.clone(), record.clone()))
            .collect())
    }

    fn load_module(&self, hash: &str) -> Result<Option<Vec<u8>>, ImageError> {
        Ok(self.state()?.modules.get(hash).cloned())
    }

    fn load_compiled(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
        Ok(self.state()?.compiled.get(key).cloned())
    }

    fn store_compiled(&self, key: &[u8], bytes: &[u8]) -> Result<(), ImageError> {
        self.state()?.compiled.insert(key.to_vec(), bytes.to_vec());
        Ok(())
    }

    fn retain_compiled(&self, prefix: &[u8]) -> Result<usize, ImageError> {
        let compiled = &mut self.state()?.compiled;
        let before = compiled.len();
        compiled.retain(|key, _| key.starts_with(prefix));
        Ok(before - compiled.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_image_conforms() {
        crate::testing::conformance::run(|| Box::new(MemoryImage::new()));
    }
}
