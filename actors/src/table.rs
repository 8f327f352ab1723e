//! The registry of live objects: which objects are activated, their slots in
//! memory, and the bookkeeping that lets them passivate safely.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::committer::LiveSet;
use batos_object::error::ActorError;
use batos_object::image::StoredObject;
use batos_object::slot::Slot;
use batos_object::txn::ObjectChanges;
use batos_object::value::{parse_parents, Oid, PARENT_SLOT};

const SHARDS: usize = 64;

/// The committed slots of a live object.
#[derive(Debug)]
pub struct ObjectState {
    /// Slot name → contents.
    pub slots: HashMap<String, Slot>,
    /// Changes whenever a commit touches the object; compared at commit time
    /// to detect conflicting transactions.
    pub version: u64,
    /// `parent*` parsed once (lookup walks it on every send).
    parents: Vec<Oid>,
    /// Slot name → the commit that last changed it while live (set or
    /// removed); a slot not here is unchanged since the load.
    slot_versions: HashMap<String, u64>,
    /// The version the object was loaded at.
    loaded_at: u64,
}

impl ObjectState {
    fn new(slots: HashMap<String, Slot>, version: u64) -> Self {
        let mut state = ObjectState {
            slots,
            version,
            parents: Vec::new(),
            slot_versions: HashMap::new(),
            loaded_at: version,
        };
        state.reparse_parents();
        state
    }

    /// The commit that last changed slot `name` (its contents or its
    /// absence), or the load's version when it has not changed since: what
    /// a transaction that reads the slot records and the committer checks.
    pub fn slot_version(&self, name: &str) -> u64 {
        self.slot_versions
            .get(name)
            .copied()
            .unwrap_or(self.loaded_at)
    }

    /// The delegation chain (empty when `parent*` is absent).
    pub fn parents(&self) -> &[Oid] {
        &self.parents
    }

    fn reparse_parents(&mut self) {
        self.parents = match self.slots.get(PARENT_SLOT) {
            Some(Slot::Data(v)) => parse_parents(v).unwrap_or_default(),
            _ => Vec::new(),
        };
    }

    fn apply(&mut self, changes: &ObjectChanges, version: u64) {
        for name in changes.slots.keys() {
            let at = self.slot_versions.entry(name.clone()).or_insert(version);
            *at = (*at).max(version);
        }
        for (name, slot) in &changes.slots {
            match slot {
                Some(slot) => {
                    self.slots.insert(name.clone(), slot.clone());
                }
                None => {
                    self.slots.remove(name);
                }
            }
        }
        self.version = self.version.max(version);
        if changes.slots.contains_key(PARENT_SLOT) {
            self.reparse_parents();
        }
    }
}

enum Phase {
    /// Being read from the image; commits that land meanwhile are replayed
    /// (they are idempotent) once the load finishes.
    Loading(Vec<(ObjectChanges, u64)>),
    Ready(ObjectState),
    Missing,
    Failed(String),
}

/// One activated object: its state, its actor, and how busy it is.
pub struct LiveObject {
    /// The object's id.
    pub oid: Oid,
    phase: RwLock<Phase>,
    loaded: watch::Sender<bool>,
    inflight: AtomicUsize,
    last_used_ms: AtomicU64,
    /// The actor's mailbox (an `Addr` of the object actor; held as `Any`
    /// so the table names nothing of the actors).
    mailbox: OnceLock<Box<dyn Any + Send + Sync>>,
    epoch: Instant,
}

impl LiveObject {
    pub(crate) fn new(oid: Oid, epoch: Instant) -> Self {
        LiveObject {
            oid,
            phase: RwLock::new(Phase::Loading(Vec::new())),
            loaded: watch::channel(false).0,
            inflight: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            mailbox: OnceLock::new(),
            epoch,
        }
    }

    /// Waits until the object is loaded; `NoSuchObject` if the image has none.
    pub async fn ready(&self) -> Result<(), ActorError> {
        let mut rx = self.loaded.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = rx.wait_for(|loaded| *loaded).await;
        match &*self.phase.read() {
            Phase::Ready(_) => Ok(()),
            Phase::Missing => Err(ActorError::NoSuchObject(self.oid.to_string())),
            Phase::Failed(e) => Err(ActorError::internal(format!(
                "loading object {}: {e}",
                self.oid
            ))),
            Phase::Loading(_) => Err(ActorError::internal(
                "object still loading after load signal",
            )),
        }
    }

    /// Reads the committed state. Call after [`LiveObject::ready`] succeeded.
    pub fn read<R>(&self, f: impl FnOnce(&ObjectState) -> R) -> Result<R, ActorError> {
        match &*self.phase.read() {
            Phase::Ready(state) => Ok(f(state)),
            Phase::Missing => Err(ActorError::NoSuchObject(self.oid.to_string())),
            _ => Err(ActorError::internal(format!(
                "object {} is not loaded",
                self.oid
            ))),
        }
    }

    pub(crate) fn finish_load(&self, loaded: Result<Option<StoredObject>, String>, version: u64) {
        {
            let mut phase = self.phase.write();
            let pending = match std::mem::replace(&mut *phase, Phase::Missing) {
                Phase::Loading(pending) => pending,
                other => {
                    *phase = other;
                    return;
                }
            };
            *phase = match loaded {
                Ok(Some(stored)) => {
                    let mut state = ObjectState::new(stored.slots.into_iter().collect(), version);
                    for (changes, v) in &pending {
                        state.apply(changes, *v);
                    }
                    Phase::Ready(state)
                }
                Ok(None) => Phase::Missing,
                Err(e) => Phase::Failed(e),
            };
        }
        self.loaded.send_replace(true);
    }

    /// Applies a committed change (called by the committer only).
    pub(crate) fn apply(&self, changes: &ObjectChanges, version: u64) {
        match &mut *self.phase.write() {
            Phase::Ready(state) => state.apply(changes, version),
            Phase::Loading(pending) => pending.push((changes.clone(), version)),
            Phase::Missing | Phase::Failed(_) => {}
        }
    }

    /// The version the committer compares against (None when not loaded).
    pub(crate) fn version(&self) -> Option<u64> {
        match &*self.phase.read() {
            Phase::Ready(state) => Some(state.version),
            _ => None,
        }
    }

    pub(crate) fn set_mailbox<M: Any + Send + Sync>(&self, mailbox: M) {
        let _ = self.mailbox.set(Box::new(mailbox));
    }

    /// The object's mailbox, as set by its actor's start.
    pub(crate) fn mailbox<M: Any>(&self) -> Option<&M> {
        self.mailbox.get()?.downcast_ref()
    }

    pub(crate) fn touch(&self) {
        self.last_used_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn idle_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64)
            .saturating_sub(self.last_used_ms.load(Ordering::Relaxed))
    }

    fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

type Shard = RwLock<HashMap<Oid, Arc<LiveObject>>>;

/// All live objects, sharded by oid.
pub struct ObjectTable {
    shards: Box<[Shard]>,
    len: AtomicUsize,
    epoch: Instant,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }
}

/// A live object marked in use: it cannot passivate until this is dropped.
pub struct InUse(Arc<LiveObject>);

impl std::ops::Deref for InUse {
    type Target = Arc<LiveObject>;
    fn deref(&self) -> &Arc<LiveObject> {
        &self.0
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.release();
    }
}

/// What [`ObjectTable::checkout`] found.
pub(crate) enum Checkout {
    /// The object was live; it is now marked in use.
    Live(InUse),
    /// The object was not live; this new entry was inserted, marked in use,
    /// and must be loaded and given an actor by the caller.
    Inserted(InUse),
}

impl ObjectTable {
    fn shard(&self, oid: Oid) -> &Shard {
        // Fibonacci hashing spreads sequential oids across shards.
        let h = oid.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.shards[h as usize % SHARDS]
    }

    /// The live object, if activated.
    pub fn get(&self, oid: Oid) -> Option<Arc<LiveObject>> {
        self.shard(oid).read().get(&oid).cloned()
    }

    /// Marks the object in use (so it cannot passivate until released),
    /// inserting a loading entry if it is not live.
    pub(crate) fn checkout(&self, oid: Oid, start: impl FnOnce(&Arc<LiveObject>)) -> Checkout {
        let shard = self.shard(oid);
        if let Some(live) = shard.read().get(&oid) {
            live.inflight.fetch_add(1, Ordering::AcqRel);
            return Checkout::Live(InUse(live.clone()));
        }
        let mut map = shard.write();
        if let Some(live) = map.get(&oid) {
            live.inflight.fetch_add(1, Ordering::AcqRel);
            return Checkout::Live(InUse(live.clone()));
        }
        let live = Arc::new(LiveObject::new(oid, self.epoch));
        live.inflight.store(1, Ordering::Release);
        // The actor exists before anyone else can see the entry.
        start(&live);
        map.insert(oid, live.clone());
        self.len.fetch_add(1, Ordering::Relaxed);
        Checkout::Inserted(InUse(live))
    }

    /// Removes the entry if it is idle (no message in flight): passivation.
    pub(crate) fn remove_if_idle(&self, live: &Arc<LiveObject>) -> bool {
        let mut map = self.shard(live.oid).write();
        let idle = live.inflight.load(Ordering::Acquire) == 0;
        if idle && map.get(&live.oid).is_some_and(|cur| Arc::ptr_eq(cur, live)) {
            map.remove(&live.oid);
            self.len.fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Removes the entry whatever its state (missing or failed objects).
    pub(crate) fn remove(&self, live: &Arc<LiveObject>) {
        let mut map = self.shard(live.oid).write();
        if map.get(&live.oid).is_some_and(|cur| Arc::ptr_eq(cur, live)) {
            map.remove(&live.oid);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no object is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live object (for shutdown and passivation sweeps).
    pub fn all(&self) -> Vec<Arc<LiveObject>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

impl LiveSet for ObjectTable {
    fn live_version(&self, oid: Oid) -> Option<u64> {
        self.get(oid).and_then(|live| live.version())
    }

    fn live_slot_version(&self, oid: Oid, name: &str) -> Option<u64> {
        self.get(oid)
            .and_then(|live| live.read(|state| state.slot_version(name)).ok())
    }

    fn apply(&self, oid: Oid, changes: &ObjectChanges, version: u64) {
        if let Some(live) = self.get(oid) {
            live.apply(changes, version);
        }
    }
}
