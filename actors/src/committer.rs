//! The commit pipeline: one thread that validates transactions, writes each
//! group of them to the image in one atomic batch (group commit: concurrent
//! writers share one WAL write and one fsync), applies them to the live
//! objects, publishes events, and only then acknowledges.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::metrics::Metrics;
use batos_object::error::ActorError;
use batos_object::image::{CommitGroup, Image, ImageError, ImageMeta};
use batos_object::txn::{ObjectChanges, Transaction};
use batos_object::value::{Oid, Value};

/// The live objects a commit applies to: the committer sees them only
/// through this trait (the object table implements it), so it names
/// nothing of the actors around it.
pub trait LiveSet: Send + Sync + 'static {
    /// The committed version of `oid` if it is live and loaded.
    fn live_version(&self, oid: Oid) -> Option<u64>;
    /// The version of the commit that last changed slot `name` of `oid`
    /// (or an upper bound of it), if `oid` is live and loaded.
    fn live_slot_version(&self, oid: Oid, name: &str) -> Option<u64>;
    /// Applies committed `changes` to `oid` if it is live (a no-op
    /// otherwise: its next load reads them from the image).
    fn apply(&self, oid: Oid, changes: &ObjectChanges, version: u64);
}

/// A committed change to one object, as published on the events socket.
#[derive(Clone, Debug, PartialEq)]
pub struct StateEvent {
    /// The object changed.
    pub oid: Oid,
    /// Slots written, in wire form.
    pub changed: Vec<(String, Value)>,
    /// Slots removed.
    pub removed: Vec<String>,
    /// The transaction's id.
    pub tx: u64,
}

/// A cognitive cycle entered a state (published as `cycle_update`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleEvent {
    /// The `CognitiveCycle` object.
    pub cycle: Oid,
    /// The state it is now in.
    pub state: String,
}

/// Image-wide counters the committer advances and everyone may read.
#[derive(Debug, Default)]
pub struct Counters {
    /// Objects in the image, roots included.
    pub objects: AtomicU64,
    /// The id of the last transaction applied to the live objects.
    pub applied_tx: AtomicU64,
}

/// Where committed changes are announced (the bridge's PUB socket).
pub trait EventSink: Send + Sync + 'static {
    /// Publishes one event; must not block.
    fn publish(&self, event: StateEvent);
    /// Publishes a cycle's state change; must not block.
    fn publish_cycle(&self, event: CycleEvent);
}

/// A sink that drops every event: a space run without a bridge (tests,
/// benchmarks, tools).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _event: StateEvent) {}
    fn publish_cycle(&self, _event: CycleEvent) {}
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// An object the transaction read changed before it committed: re-run it.
    #[error("conflict with a concurrent transaction")]
    Conflict,
    /// The image refused the write; nothing was kept.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The committer has stopped.
    #[error("the commit pipeline is shut down")]
    Closed,
}

impl From<CommitError> for ActorError {
    /// A conflict that reaches a caller means its re-runs ran out.
    fn from(err: CommitError) -> ActorError {
        match err {
            CommitError::Image(e) => ActorError::Image(e),
            CommitError::Conflict => ActorError::Overloaded(
                "transaction kept conflicting with concurrent ones; retry".into(),
            ),
            CommitError::Closed => ActorError::Unavailable("the kernel is shutting down".into()),
        }
    }
}

struct Job {
    tx: Transaction,
    done: oneshot::Sender<Result<u64, CommitError>>,
    /// The span of the request that committed it: the commit thread's work
    /// for this job is logged in it.
    span: tracing::Span,
}

/// Handle to the commit thread.
pub struct Committer {
    sender: parking_lot::Mutex<Option<Sender<Job>>>,
    receiver: Receiver<Job>,
    worker: Arc<parking_lot::Mutex<Worker>>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Buffered durability: a writer that finds the committer idle writes
    /// its own group (a WAL append, microseconds) instead of waking the
    /// commit thread. With fsync the thread always writes.
    leader_writes: bool,
}

/// Settings of the commit thread.
pub struct CommitterConfig {
    /// fsync each group (`durability = "sync"`).
    pub sync: bool,
    /// Most transactions in one group.
    pub max_group: usize,
}

impl Committer {
    /// Starts the commit thread, continuing from the image's counters.
    pub fn start(
        image: Arc<dyn Image>,
        live: Arc<dyn LiveSet>,
        counters: Arc<Counters>,
        meta: &ImageMeta,
        config: CommitterConfig,
        events: Arc<dyn EventSink>,
        metrics: Metrics,
    ) -> std::io::Result<Committer> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        counters.objects.store(meta.objects, Ordering::Release);
        counters.applied_tx.store(meta.last_tx, Ordering::Release);
        metrics.image_objects.set(meta.objects as i64);
        let worker = Worker {
            image,
            live,
            counters,
            sync: config.sync,
            max_group: config.max_group.max(1),
            next_oid: meta.next_oid,
            objects: meta.objects,
            last_tx: meta.last_tx,
            events,
            metrics,
        };
        let leader_writes = !worker.sync;
        let worker = Arc::new(parking_lot::Mutex::new(worker));
        let thread = {
            let (worker, receiver) = (worker.clone(), receiver.clone());
            std::thread::Builder::new()
                .name("batos-committer".into())
                .spawn(move || {
                    while let Ok(first) = receiver.recv() {
                        let mut worker = worker.lock();
                        let jobs = worker.drain(first, &receiver);
                        worker.commit_group(jobs);
                    }
                })?
        };
        Ok(Committer {
            sender: parking_lot::Mutex::new(Some(sender)),
            receiver,
            worker,
            thread: parking_lot::Mutex::new(Some(thread)),
            leader_writes,
        })
    }

    /// Commits a transaction; resolves once it is durable and visible, with its id.
    pub async fn commit(&self, tx: Transaction) -> Result<u64, CommitError> {
        let (done, wait) = oneshot::channel();
        let job = Job {
            tx,
            done,
            span: tracing::Span::current(),
        };
        let sender = self.sender.lock().clone().ok_or(CommitError::Closed)?;
        match self.leader_writes.then(|| self.worker.try_lock()).flatten() {
            // Lead: this group is our job plus whatever is queued.
            Some(mut worker) => {
                let jobs = worker.drain(job, &self.receiver);
                worker.commit_group(jobs);
            }
            None => sender.send(job).map_err(|_| CommitError::Closed)?,
        }
        wait.await.map_err(|_| CommitError::Closed)?
    }

    /// Transactions waiting for the commit thread.
    pub fn queued(&self) -> usize {
        self.receiver.len()
    }

    /// Stops taking transactions, lets queued ones finish, joins the thread.
    pub fn shutdown(&self) {
        drop(self.sender.lock().take());
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    image: Arc<dyn Image>,
    live: Arc<dyn LiveSet>,
    counters: Arc<Counters>,
    sync: bool,
    max_group: usize,
    next_oid: Oid,
    objects: u64,
    last_tx: u64,
    events: Arc<dyn EventSink>,
    metrics: Metrics,
}

impl Worker {
    /// `first` and whatever else is queued, up to a group's size.
    fn drain(&self, first: Job, receiver: &Receiver<Job>) -> Vec<Job> {
        let mut jobs = vec![first];
        while jobs.len() < self.max_group {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        jobs
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let mut accepted: Vec<(u64, Job)> = Vec::with_capacity(jobs.len());
        let mut written = Written::default();
        let mut next_oid = self.next_oid;
        let mut objects = self.objects;
        let mut tx_id = self.last_tx;
        for job in jobs {
            if !self.still_valid(&job.tx, &written) {
                self.metrics.commit_conflicts.inc();
                tracing::debug!(
                    target: "batos::request",
                    parent: &job.span,
                    "conflict: an object it read changed; re-run"
                );
                let _ = job.done.send(Err(CommitError::Conflict));
                continue;
            }
            for oid in job.tx.created() {
                next_oid = next_oid.max(oid + 1);
                objects += 1;
            }
            written.add(&job.tx);
            tx_id += 1;
            accepted.push((tx_id, job));
        }
        if accepted.is_empty() {
            return;
        }
        let group = CommitGroup {
            transactions: accepted.iter().map(|(id, job)| (*id, &job.tx)).collect(),
            next_oid,
            objects,
        };
        if let Err(err) = self.image.commit(&group, self.sync) {
            tracing::error!(error = %err, transactions = accepted.len(), "group commit failed; nothing kept");
            for (_, job) in accepted {
                let _ = job.done.send(Err(CommitError::Image(ImageError::Storage(
                    err.to_string(),
                ))));
            }
            return;
        }
        drop(group);
        self.next_oid = next_oid;
        self.objects = objects;
        self.last_tx = tx_id;
        self.counters.objects.store(objects, Ordering::Release);
        self.metrics.image_objects.set(objects as i64);
        self.metrics
            .commit_group_size
            .observe(accepted.len() as f64);
        let mut replies = Vec::with_capacity(accepted.len());
        for (id, job) in accepted {
            let in_request = job.span.enter();
            for (oid, changes) in job.tx.writes() {
                self.live.apply(*oid, changes, id);
                let mut event = StateEvent {
                    oid: *oid,
                    changed: Vec::new(),
                    removed: Vec::new(),
                    tx: id,
                };
                for (name, slot) in &changes.slots {
                    match slot {
                        Some(slot) => event.changed.push((name.clone(), slot.to_wire(name))),
                        None => event.removed.push(name.clone()),
                    }
                }
                self.events.publish(event);
            }
            self.counters.applied_tx.store(id, Ordering::Release);
            tracing::debug!(target: "batos::request", tx = id, "committed");
            drop(in_request);
            replies.push((id, job.done));
        }
        // Metrics first, so a client that sees its reply sees them too.
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for (id, done) in replies {
            let _ = done.send(Ok(id));
        }
    }

    /// A transaction may commit if everything it read is still at the
    /// version it saw and no earlier transaction of this group wrote it:
    /// each object it read whole, and each slot it read.
    fn still_valid(&self, tx: &Transaction, written: &Written) -> bool {
        tx.reads()
            .iter()
            .all(|(oid, seen)| !written.object(*oid) && self.live.live_version(*oid) == Some(*seen))
            && tx.slot_reads().iter().all(|((oid, name), seen)| {
                !written.slot(*oid, name) && self.live.live_slot_version(*oid, name) == Some(*seen)
            })
    }
}

/// What the transactions accepted so far in a group write (not yet applied
/// to the live objects, so checked apart). Slot names are kept as hashes:
/// a collision can only add a conflict (a re-run), never hide one.
#[derive(Default)]
struct Written {
    objects: HashSet<Oid>,
    slots: HashSet<(Oid, u64)>,
}

impl Written {
    fn add(&mut self, tx: &Transaction) {
        for (oid, changes) in tx.writes() {
            self.objects.insert(*oid);
            self.slots
                .extend(changes.slots.keys().map(|name| (*oid, name_hash(name))));
        }
    }

    fn object(&self, oid: Oid) -> bool {
        self.objects.contains(&oid)
    }

    fn slot(&self, oid: Oid, name: &str) -> bool {
        self.slots.contains(&(oid, name_hash(name)))
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(name)
}
