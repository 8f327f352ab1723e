//! The commit pipeline against an image that can hold a commit open.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use batos_actors::committer::{
    CommitError, Committer, CommitterConfig, Counters, CycleEvent, EventSink, LiveSet, StateEvent,
};
use batos_actors::metrics::Metrics;
use batos_object::image::{CommitGroup, Image, ImageError, ImageMeta, StoredObject};
use batos_object::slot::{MethodRecord, Slot};
use batos_object::testing::MemoryImage;
use batos_object::txn::{ObjectChanges, Transaction};
use batos_object::value::{Oid, Value};
use futures::executor::block_on;

/// A `MemoryImage` whose commits can be held at a gate, and which records
/// the thread each commit ran on.
struct GatedImage {
    inner: MemoryImage,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    entered: Mutex<Option<mpsc::Sender<()>>>,
    threads: Mutex<Vec<String>>,
}

impl GatedImage {
    fn open() -> Arc<Self> {
        Arc::new(GatedImage {
            inner: MemoryImage::new(),
            gate: Mutex::new(None),
            entered: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Holds the next commit until the returned sender sends; the second
    /// receiver hears when that commit has started.
    fn hold_next(&self) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
        let (release, gate) = mpsc::channel();
        let (entered, started) = mpsc::channel();
        *self.gate.lock().unwrap() = Some(gate);
        *self.entered.lock().unwrap() = Some(entered);
        (release, started)
    }
}

impl Image for GatedImage {
    fn meta(&self) -> Result<ImageMeta, ImageError> {
        self.inner.meta()
    }
    fn load_object(&self, oid: Oid) -> Result<Option<StoredObject>, ImageError> {
        self.inner.load_object(oid)
    }
    fn object_exists(&self, oid: Oid) -> Result<bool, ImageError> {
        self.inner.object_exists(oid)
    }
    fn commit(&self, group: &CommitGroup<'_>, sync: bool) -> Result<(), ImageError> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.threads.lock().unwrap().push(name);
        if let Some(entered) = self.entered.lock().unwrap().take() {
            entered.send(()).unwrap();
        }
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.recv().unwrap();
        }
        self.inner.commit(group, sync)
    }
    fn checkpoint(&self) -> Result<String, ImageError> {
        self.inner.checkpoint()
    }
    fn flush(&self) -> Result<(), ImageError> {
        self.inner.flush()
    }
    fn method_history(&self, oid: Oid) -> Result<Vec<(String, MethodRecord)>, ImageError> {
        self.inner.method_history(oid)
    }
    fn load_module(&self, hash: &str) -> Result<Option<Vec<u8>>, ImageError> {
        self.inner.load_module(hash)
    }
    fn load_compiled(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
        self.inner.load_compiled(key)
    }
    fn store_compiled(&self, key: &[u8], bytes: &[u8]) -> Result<(), ImageError> {
        self.inner.store_compiled(key, bytes)
    }
    fn retain_compiled(&self, prefix: &[u8]) -> Result<usize, ImageError> {
        self.inner.retain_compiled(prefix)
    }
}

/// Live objects at fixed versions; records what the committer applies.
#[derive(Default)]
struct Live {
    versions: Mutex<HashMap<Oid, u64>>,
    applied: Mutex<Vec<(Oid, u64)>>,
}

impl LiveSet for Live {
    fn live_version(&self, oid: Oid) -> Option<u64> {
        self.versions.lock().unwrap().get(&oid).copied()
    }
    fn live_slot_version(&self, oid: Oid, _name: &str) -> Option<u64> {
        self.live_version(oid)
    }
    fn apply(&self, oid: Oid, _changes: &ObjectChanges, version: u64) {
        if let Some(v) = self.versions.lock().unwrap().get_mut(&oid) {
            *v = version;
        }
        self.applied.lock().unwrap().push((oid, version));
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<StateEvent>>);

impl EventSink for Events {
    fn publish(&self, event: StateEvent) {
        self.0.lock().unwrap().push(event);
    }
    fn publish_cycle(&self, _event: CycleEvent) {}
}

struct Pipeline {
    image: Arc<GatedImage>,
    live: Arc<Live>,
    events: Arc<Events>,
    committer: Arc<Committer>,
}

fn pipeline(sync: bool) -> Pipeline {
    let image = GatedImage::open();
    let live = Arc::new(Live::default());
    let events = Arc::new(Events::default());
    let committer = Committer::start(
        image.clone(),
        live.clone(),
        Arc::new(Counters::default()),
        &ImageMeta::default(),
        CommitterConfig {
            sync,
            max_group: 64,
        },
        events.clone(),
        Metrics::new(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    Pipeline {
        image,
        live,
        events,
        committer: Arc::new(committer),
    }
}

fn write(oid: Oid, slot: &str, value: i64) -> Transaction {
    let mut tx = Transaction::new();
    tx.set(oid, slot.into(), Slot::Data(Value::from(value)));
    tx
}

fn create(oid: Oid) -> Transaction {
    let mut tx = Transaction::new();
    tx.create(oid, vec![("n".into(), Slot::Data(Value::from(0)))]);
    tx
}

#[test]
fn transactions_queued_behind_a_commit_share_the_next_group() {
    let p = pipeline(true);
    block_on(p.committer.commit(create(1))).unwrap();
    let before = p.image.inner.commits();
    let (release, started) = p.image.hold_next();
    let first = {
        let c = p.committer.clone();
        std::thread::spawn(move || block_on(c.commit(write(1, "n", 1))))
    };
    started.recv().unwrap();
    // While the first group is held in the image, ten more queue up.
    let waiters: Vec<_> = (0..10)
        .map(|i| {
            let c = p.committer.clone();
            std::thread::spawn(move || block_on(c.commit(write(100 + i, "n", i as i64))))
        })
        .collect();
    while p.committer.queued() < 10 {
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    let first_id = first.join().unwrap().unwrap();
    let mut ids: Vec<u64> = waiters
        .into_iter()
        .map(|w| w.join().unwrap().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ((first_id + 1)..=(first_id + 10)).collect::<Vec<_>>());
    assert_eq!(
        p.image.inner.commits() - before,
        2,
        "one held group, then one group for the ten queued behind it"
    );
    assert_eq!(p.image.inner.meta().unwrap().last_tx, first_id + 10);
}

#[test]
fn a_read_of_a_changed_object_conflicts_and_nothing_is_written() {
    let p = pipeline(true);
    block_on(p.committer.commit(create(1))).unwrap();
    p.live.versions.lock().unwrap().insert(1, 5);
    let mut stale = write(2, "x", 1);
    stale.read(1, 4);
    assert!(matches!(
        block_on(p.committer.commit(stale)),
        Err(CommitError::Conflict)
    ));
    let mut fresh = create(2);
    fresh.read(1, 5);
    block_on(p.committer.commit(fresh)).unwrap();
    assert!(p.image.inner.object_exists(2).unwrap());
    // An object that is not live cannot prove its version: re-run.
    let mut unknown = write(2, "x", 2);
    unknown.read(77, 1);
    assert!(matches!(
        block_on(p.committer.commit(unknown)),
        Err(CommitError::Conflict)
    ));
    assert_eq!(
        p.image.inner.load_object(2).unwrap().unwrap().slots.len(),
        1,
        "the conflicted writes were not kept"
    );
}

/// Commits, in one group after a held commit: a write of slot `n` of
/// object 1 (at version 1), then each of `readers`; their outcomes.
fn after_a_write_in_the_same_group(readers: Vec<Transaction>) -> Vec<Result<u64, CommitError>> {
    let p = pipeline(true);
    block_on(p.committer.commit(create(1))).unwrap();
    p.live.versions.lock().unwrap().insert(1, 1);
    let (release, started) = p.image.hold_next();
    let holder = {
        let c = p.committer.clone();
        std::thread::spawn(move || block_on(c.commit(write(9, "held", 1))))
    };
    started.recv().unwrap();
    let writer = {
        let c = p.committer.clone();
        std::thread::spawn(move || block_on(c.commit(write(1, "n", 1))))
    };
    while p.committer.queued() < 1 {
        std::thread::yield_now();
    }
    let mut waiting = Vec::new();
    for tx in readers {
        let queued = p.committer.queued();
        let c = p.committer.clone();
        waiting.push(std::thread::spawn(move || block_on(c.commit(tx))));
        while p.committer.queued() <= queued {
            std::thread::yield_now();
        }
    }
    release.send(()).unwrap();
    holder.join().unwrap().unwrap();
    writer.join().unwrap().unwrap();
    waiting.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_write_earlier_in_the_same_group_conflicts_with_a_later_read() {
    let mut tx = write(3, "saw", 1);
    tx.read(1, 1);
    let outcomes = after_a_write_in_the_same_group(vec![tx]);
    assert!(matches!(outcomes[0], Err(CommitError::Conflict)));
}

#[test]
fn a_slot_read_conflicts_only_with_a_write_of_that_slot() {
    let mut other = write(3, "saw", 1);
    other.read_slot(1, "m", 1);
    let mut same = write(4, "saw", 1);
    same.read_slot(1, "n", 1);
    let outcomes = after_a_write_in_the_same_group(vec![other, same]);
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], Err(CommitError::Conflict)));
}

#[test]
fn committed_changes_are_applied_and_published_before_the_reply() {
    let p = pipeline(true);
    p.live.versions.lock().unwrap().insert(4, 0);
    let mut tx = create(4);
    tx.remove(4, "gone".into());
    let id = block_on(p.committer.commit(tx)).unwrap();
    assert_eq!(*p.live.applied.lock().unwrap(), vec![(4, id)]);
    let events = p.events.0.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].oid, 4);
    assert_eq!(events[0].tx, id);
    assert_eq!(events[0].changed, vec![("n".to_string(), Value::from(0))]);
    assert_eq!(events[0].removed, vec!["gone".to_string()]);
}

#[test]
fn with_buffered_durability_an_idle_committer_is_led_by_the_writer() {
    let p = pipeline(false);
    block_on(p.committer.commit(create(1))).unwrap();
    let threads = p.image.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 1);
    assert_ne!(
        threads[0], "batos-committer",
        "the caller wrote its own group"
    );

    let p = pipeline(true);
    block_on(p.committer.commit(create(1))).unwrap();
    let threads = p.image.threads.lock().unwrap().clone();
    assert_eq!(
        threads,
        vec!["batos-committer".to_string()],
        "fsync is the commit thread's"
    );
}
