//! The object space: the façade the bridge talks to. It activates objects
//! (actor + load from the image), routes each request through the
//! receiver's actor, and runs the commit pipeline.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::dev::channel;
use actix::prelude::*;
use prometheus::Registry;

use crate::committer::{CommitError, Committer, CommitterConfig, Counters, EventSink};
use crate::exec;
use crate::lookup;
use crate::method;
use crate::metrics::Metrics;
use crate::object::{ObjectActor, ObjectOp, Op, Retire};
use crate::pool::Pool;
use crate::primitives;
use crate::stats::{MethodOutcomes, MethodStats};
use crate::table::{Checkout, InUse, ObjectTable};
use crate::writer::MethodWriter;
use batos_object::changes::Changes;
use batos_object::error::ActorError;
use batos_object::genesis::genesis;
use batos_object::image::{Image, ImageError};
use batos_object::roots::Roots;
use batos_object::rules::{check_slot_write, missing_parent, prepare_slot_value};
use batos_object::slot::{MethodRecord, Primitive, Provenance, Slot};
use batos_object::txn::Transaction;
use batos_object::value::{make_ref, Oid, Value, PARENT_SLOT};
use batos_sandbox::audit::{self, AuditLimits};
use batos_sandbox::{module_hash, Sandbox, SandboxLimits};

/// Messages an object's mailbox holds before senders wait; large, because
/// the bridge bounds in-flight work and waiting senders could reorder.
const MAILBOX_CAPACITY: usize = 1 << 20;

/// Threads reading the image (object loads, existence checks, history).
const IO_THREADS: usize = 4;

/// Settings of the object space.
#[derive(Clone, Debug)]
pub struct SpaceConfig {
    /// Arbiters (threads) hosting object actors.
    pub arbiters: usize,
    /// An object idle this long is passivated.
    pub passivate_after_ms: u64,
    /// How often each actor checks whether it is idle.
    pub passivate_check_ms: u64,
    /// fsync every group commit.
    pub sync: bool,
    /// Most transactions per group commit.
    pub max_group: usize,
    /// Limits of every method call.
    pub sandbox: SandboxLimits,
    /// What the audit accepts.
    pub audit: AuditLimits,
    /// Threads running methods.
    pub sandbox_threads: usize,
}

/// Shared state of the space, reachable from every actor.
pub struct SpaceInner {
    pub(crate) config: SpaceConfig,
    pub(crate) table: Arc<ObjectTable>,
    pub(crate) image: Arc<dyn Image>,
    pub(crate) committer: Committer,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Metrics,
    pub(crate) roots: Roots,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) pool: Pool,
    pub(crate) io: Pool,
    pub(crate) method_stats: MethodStats,
    pub(crate) hooks: Arc<dyn SystemHooks>,
    pub(crate) audit_limits: AuditLimits,
    pub(crate) writer: std::sync::OnceLock<Arc<dyn MethodWriter>>,
    next_oid: AtomicU64,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
}

/// The result of `send`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    /// What the method (or data slot) answered.
    pub value: Value,
    /// Whether the method was generated for this message.
    pub generated: bool,
}

/// What the object space asks of the system around it.
pub trait SystemHooks: Send + Sync + 'static {
    /// Checks an upgrade instruction (`requestUpgrade_`'s argument) and
    /// returns its id; nothing is written yet.
    fn check_upgrade(&self, instruction: &Value) -> Result<String, String>;
    /// Submits a checked instruction to the upgrade channel. Called once the
    /// message that asked for it has committed.
    fn request_upgrade(&self, instruction: &Value) -> Result<String, String>;
}

/// Hooks for a space with no steward around it: upgrade requests are refused.
pub struct NoHooks;

impl SystemHooks for NoHooks {
    fn check_upgrade(&self, _instruction: &Value) -> Result<String, String> {
        Err("no upgrade channel is configured".into())
    }
    fn request_upgrade(&self, _instruction: &Value) -> Result<String, String> {
        Err("no upgrade channel is configured".into())
    }
}

/// An object's slots and method history, as `get_full_state` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct FullState {
    /// Slots by name, in name order.
    pub slots: Vec<(String, Value)>,
    /// Method versions ever installed, by selector then version.
    pub methods: Vec<(String, MethodRecord)>,
}

/// A method's code as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodCode {
    /// WebAssembly text.
    Wat(String),
    /// A WebAssembly binary.
    Wasm(Vec<u8>),
}

/// Handle to the object space; cheap to clone.
#[derive(Clone)]
pub struct ObjectSpace {
    inner: Arc<SpaceInner>,
}

impl ObjectSpace {
    /// Opens the space over `image`: starts the committer and the object
    /// arbiters, and creates the roots on a fresh image (one transaction).
    pub async fn open(
        image: Arc<dyn Image>,
        config: SpaceConfig,
        events: Arc<dyn EventSink>,
        hooks: Arc<dyn SystemHooks>,
        registry: &Registry,
    ) -> Result<ObjectSpace, ActorError> {
        let metrics = Metrics::new(registry).map_err(ActorError::internal)?;
        let meta = {
            let image = image.clone();
            tokio::task::spawn_blocking(move || image.meta())
                .await
                .map_err(ActorError::internal)??
        };
        let table = Arc::new(ObjectTable::default());
        let counters = Arc::new(Counters::default());
        let committer = Committer::start(
            image.clone(),
            table.clone(),
            counters.clone(),
            &meta,
            CommitterConfig {
                sync: config.sync,
                max_group: config.max_group,
            },
            events,
            metrics.clone(),
        )
        .map_err(ActorError::internal)?;
        let mut next_oid = meta.next_oid.max(1);
        let (roots, genesis) = match &meta.roots {
            Some(entries) => (Roots::new(entries.clone()), None),
            None => {
                let oids = std::array::from_fn(|i| next_oid + i as Oid);
                next_oid += oids.len() as Oid;
                let (roots, tx) = genesis(oids);
                (roots, Some(tx))
            }
        };
        if !roots.is_complete() {
            return Err(ImageError::Corrupt("the image's root table is incomplete".into()).into());
        }
        let arbiters = (0..config.arbiters.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        let sandbox = Sandbox::new(image.clone(), config.sandbox.clone(), registry)
            .map_err(|e| ActorError::internal(e.0))?;
        let pool = Pool::new(
            "sandbox",
            config.sandbox_threads,
            crate::pool::SANDBOX_STACK_BYTES,
        )
        .map_err(ActorError::internal)?;
        let io = Pool::new("io", IO_THREADS, crate::pool::IO_STACK_BYTES)
            .map_err(ActorError::internal)?;
        let audit_limits = config.audit.clone();
        let inner = Arc::new(SpaceInner {
            sandbox: Arc::new(sandbox),
            pool,
            io,
            method_stats: MethodStats::default(),
            hooks,
            audit_limits,
            writer: std::sync::OnceLock::new(),
            config,
            table,
            image,
            committer,
            counters,
            metrics,
            roots,
            next_oid: AtomicU64::new(next_oid),
            arbiters,
            next_arbiter: AtomicUsize::new(0),
        });
        if let Some(tx) = genesis {
            inner.commit(tx).await?;
            tracing::info!(roots = ?inner.roots.entries(), "created the roots of a fresh image");
        }
        Ok(ObjectSpace { inner })
    }

    /// The root table.
    pub fn roots(&self) -> &Roots {
        &self.inner.roots
    }

    /// The oid of a root the kernel needs (an image without it is corrupt).
    pub fn root(&self, name: &str) -> Result<Oid, ActorError> {
        self.inner
            .roots
            .oid(name)
            .ok_or_else(|| ActorError::internal(format!("the image has no {name}")))
    }

    /// Objects in the image, roots included.
    pub fn object_count(&self) -> u64 {
        self.inner.counters.objects.load(Ordering::Acquire)
    }

    /// Per-method call and trap counts since the last call (for the heartbeat).
    pub fn take_method_stats(&self) -> Vec<MethodOutcomes> {
        self.inner.method_stats.take()
    }

    /// Live object actors.
    pub fn live_objects(&self) -> usize {
        self.inner.table.len()
    }

    /// The value of `slot` held by the object itself (no delegation).
    pub async fn get_slot(&self, oid: Oid, slot: String) -> Result<Value, ActorError> {
        self.inner.call(oid, GetSlot { slot }).await
    }

    /// All slots of the object (methods in their `$method` shape) and the
    /// history of every method version installed on it.
    pub async fn full_state(&self, oid: Oid) -> Result<FullState, ActorError> {
        self.inner.call(oid, GetState).await
    }

    /// Installs a method (WAT text or a WASM binary) on `oid` after the
    /// audit; returns its version and hash.
    pub async fn create_method(
        &self,
        oid: Oid,
        selector: String,
        code: MethodCode,
    ) -> Result<MethodRecord, ActorError> {
        self.inner.call(oid, CreateMethod { selector, code }).await
    }

    /// Writes one slot; returns once durable.
    pub async fn set_slot(&self, oid: Oid, slot: String, value: Value) -> Result<(), ActorError> {
        self.inner.call(oid, SetSlot { slot, value }).await
    }

    /// Removes one slot; returns once durable.
    pub async fn remove_slot(&self, oid: Oid, slot: String) -> Result<(), ActorError> {
        self.inner.call(oid, RemoveSlot { slot }).await
    }

    /// Creates an object; its parent is `traits_obj` unless `slots` says otherwise.
    pub async fn create_object(&self, slots: Vec<(String, Value)>) -> Result<Oid, ActorError> {
        let inner = &self.inner;
        let mut prepared = Vec::with_capacity(slots.len() + 1);
        for (name, value) in slots {
            let value = inner.prepare_slot_value(&name, value).await?;
            prepared.push((name, Slot::Data(value)));
        }
        if !prepared.iter().any(|(n, _)| n == PARENT_SLOT) {
            prepared.push((
                PARENT_SLOT.to_string(),
                Slot::Data(Value::Array(vec![make_ref(inner.roots.traits())])),
            ));
        }
        let oid = inner.allocate_oid();
        let mut tx = Transaction::new();
        tx.create(oid, prepared);
        inner.commit(tx).await?;
        Ok(oid)
    }

    /// A new object with a shallow copy of `oid`'s slots.
    pub async fn clone_object(&self, oid: Oid) -> Result<Oid, ActorError> {
        self.inner.call(oid, CloneObject).await
    }

    /// Sends `selector` with `args` to `oid`.
    pub async fn send(
        &self,
        oid: Oid,
        selector: String,
        args: Vec<Value>,
    ) -> Result<SendOutcome, ActorError> {
        self.inner.call(oid, SendMessage { selector, args }).await
    }

    /// Adds a last tier to doesNotUnderstand (once): `writer` is asked for
    /// a method when lookup and synthesis find nothing.
    pub fn enable_generation(&self, writer: Arc<dyn MethodWriter>) {
        let _ = self.inner.writer.set(writer);
    }

    /// The space's handle from its shared state (for the runtime's own
    /// callers of the façade).
    pub(crate) fn from_inner(inner: Arc<SpaceInner>) -> Self {
        ObjectSpace { inner }
    }

    /// Checks a method written as WAT exactly as an installed one is checked
    /// (WAT → binary, the audit, compilation), on the sandbox threads.
    /// `Ok(Err(why))` when it is refused.
    pub async fn check_wat(&self, wat: String) -> Result<Result<Vec<u8>, String>, ActorError> {
        let inner = self.inner.clone();
        self.inner
            .pool
            .run(move || {
                let wasm = audit::wat_to_wasm(&wat).map_err(|v| v.to_string())?;
                audit::audit(&wasm, &inner.audit_limits).map_err(|v| v.to_string())?;
                inner
                    .sandbox
                    .prepare(&module_hash(&wasm), &wasm)
                    .map_err(|e| format!("compile: {e}"))?;
                Ok(wasm)
            })
            .await
    }

    /// Runs blocking read work (a search, a bulk read) on the space's I/O
    /// threads rather than on an async thread.
    pub async fn run_io<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ActorError> {
        self.inner.io.run(work).await
    }

    /// A fresh oid for an object a kernel service will create.
    pub fn allocate_oid(&self) -> Oid {
        self.inner.allocate_oid()
    }

    /// Commits a kernel service's changes atomically; returns the
    /// transaction number once durable. Live objects see the changes.
    pub async fn apply(&self, changes: Changes) -> Result<u64, ActorError> {
        self.inner.commit(changes.into_transaction()).await
    }

    /// An object's data slots as last committed to the image, without
    /// activating it (bulk reads: rebuilding the memory index). Method and
    /// primitive slots are left out. `None` if the object does not exist.
    pub async fn read_committed(
        &self,
        oid: Oid,
    ) -> Result<Option<Vec<(String, Value)>>, ActorError> {
        Ok(self.read_committed_slots(oid).await?.map(|slots| {
            slots
                .into_iter()
                .filter_map(|(name, slot)| match slot {
                    Slot::Data(value) => Some((name, value)),
                    _ => None,
                })
                .collect()
        }))
    }

    /// Every slot of an object as last committed to the image, methods and
    /// primitives included, without activating it. `None` if the object
    /// does not exist.
    pub async fn read_committed_slots(
        &self,
        oid: Oid,
    ) -> Result<Option<Vec<(String, Slot)>>, ActorError> {
        let image = self.inner.image.clone();
        let stored = self.inner.io.run(move || image.load_object(oid)).await??;
        Ok(stored.map(|object| object.slots))
    }

    /// A blob stored with [`Changes::store_blob`], by its hash.
    pub async fn load_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, ActorError> {
        let image = self.inner.image.clone();
        let hash = hash.to_string();
        Ok(self
            .inner
            .io
            .run(move || image.load_module(&hash))
            .await??)
    }

    /// Makes a consistent checkpoint of the image.
    pub async fn snapshot(&self) -> Result<String, ActorError> {
        let image = self.inner.image.clone();
        Ok(tokio::task::spawn_blocking(move || image.checkpoint())
            .await
            .map_err(ActorError::internal)??)
    }

    /// Lets queued commits finish, stops the committer and flushes the image.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner.committer.shutdown();
            if let Err(err) = inner.image.flush() {
                tracing::error!(error = %err, "flushing the image at shutdown failed");
            }
        })
        .await;
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }
}

impl SpaceInner {
    pub(crate) fn allocate_oid(&self) -> Oid {
        self.next_oid.fetch_add(1, Ordering::AcqRel)
    }

    pub(crate) async fn commit(&self, tx: Transaction) -> Result<u64, ActorError> {
        if tx.is_empty() {
            return Ok(self.counters.applied_tx.load(Ordering::Acquire));
        }
        Ok(self.committer.commit(tx).await?)
    }

    /// Commits a transaction built by `build`, re-running it when an object
    /// it read changed before it could commit.
    pub(crate) async fn commit_with_retry<F, Fut>(&self, mut build: F) -> Result<(), ActorError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Transaction, ActorError>>,
    {
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let tx = build().await?;
            match self.committer.commit(tx).await {
                Ok(_) => return Ok(()),
                Err(CommitError::Conflict) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ActorError::Overloaded(format!(
            "transaction conflicted {ATTEMPTS} times; retry"
        )))
    }

    /// Marks the object in use, activating it (actor + load) if needed, and
    /// waits until it is loaded.
    pub(crate) async fn activate(self: &Arc<Self>, oid: Oid) -> Result<InUse, ActorError> {
        let in_use = self.checkout(oid);
        in_use.ready().await?;
        Ok(in_use)
    }

    fn spawn_load(self: &Arc<Self>, live: &InUse) {
        let live = Arc::clone(live);
        let space = self.clone();
        let load = move || {
            // Every commit after this point is replayed onto the loaded state.
            let version = space.counters.applied_tx.load(Ordering::Acquire);
            let loaded = space.image.load_object(live.oid).map_err(|e| e.to_string());
            let exists = matches!(loaded, Ok(Some(_)));
            live.finish_load(loaded, version);
            if !exists {
                space.table.remove(&live);
                if let Some(addr) = live.addr() {
                    addr.do_send(Retire);
                }
            }
        };
        self.io.spawn(load);
    }

    /// Marks the object in use and waits for it to load, blocking the
    /// calling thread (a sandbox thread, never an arbiter).
    pub(crate) fn checkout_blocking(self: &Arc<Self>, oid: Oid) -> Result<InUse, ActorError> {
        let in_use = self.checkout(oid);
        futures::executor::block_on(in_use.ready())?;
        Ok(in_use)
    }

    fn pick_arbiter(&self) -> &ArbiterHandle {
        let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed);
        &self.arbiters[i % self.arbiters.len()]
    }

    /// Routes `op` through the receiver's actor.
    async fn call<T: ObjectOp + Clone>(
        self: &Arc<Self>,
        oid: Oid,
        op: T,
    ) -> Result<T::Output, ActorError> {
        // A mailbox that closed before taking the message (the actor retired
        // a missing object, or passivated) never ran it: checking out again
        // either finds the object afresh or reports it missing.
        const ATTEMPTS: usize = 4;
        for _ in 0..ATTEMPTS {
            let receiver = self.checkout(oid);
            let addr = receiver
                .addr()
                .cloned()
                .ok_or_else(|| ActorError::internal("live object without an actor"))?;
            match addr
                .send(Op {
                    op: op.clone(),
                    receiver,
                    span: tracing::Span::current(),
                })
                .await
            {
                Ok(result) => return result,
                Err(MailboxError::Closed) => {
                    if !self.exists(oid).await? {
                        return Err(ActorError::NoSuchObject(oid.to_string()));
                    }
                }
                Err(err) => return Err(ActorError::internal(format!("object actor: {err}"))),
            }
        }
        Err(ActorError::Overloaded(format!(
            "object {oid} kept passivating under this request; retry"
        )))
    }

    /// Marks the object in use, activating it if needed, without waiting
    /// for the load: a message can be queued on its actor in arrival order
    /// right away (the actor waits for the load).
    fn checkout(self: &Arc<Self>, oid: Oid) -> InUse {
        let space = self.clone();
        match self.table.checkout(oid, move |live| {
            let (tx, rx) = channel::channel(MAILBOX_CAPACITY);
            live.set_addr(Addr::new(tx));
            let actor = ObjectActor::new(live.clone(), space.clone());
            space.pick_arbiter().spawn_fn(move || {
                let ctx = Context::with_receiver(rx);
                actix::spawn(ctx.into_future(actor));
            });
        }) {
            Checkout::Live(in_use) => in_use,
            Checkout::Inserted(in_use) => {
                self.metrics.activations.inc();
                self.spawn_load(&in_use);
                in_use
            }
        }
    }

    /// Whether an object exists (live or in the image).
    pub(crate) async fn exists(self: &Arc<Self>, oid: Oid) -> Result<bool, ActorError> {
        if let Some(live) = self.table.get(oid) {
            if live.read(|_| ()).is_ok() {
                return Ok(true);
            }
        }
        let image = self.image.clone();
        Ok(
            tokio::task::spawn_blocking(move || image.object_exists(oid))
                .await
                .map_err(ActorError::internal)??,
        )
    }

    /// Validates a value for slot `name` (and `parent*`'s refs) of a new
    /// object.
    pub(crate) async fn prepare_slot_value(
        self: &Arc<Self>,
        name: &str,
        value: Value,
    ) -> Result<Value, ActorError> {
        let (value, parents) =
            prepare_slot_value(name, value, &self.roots).map_err(ActorError::BadRequest)?;
        self.check_parents(parents).await?;
        Ok(value)
    }

    /// Checks a write to slot `name` of an existing object by the rules
    /// every slot write follows (`batos_object::rules::check_slot_write`).
    pub(crate) async fn check_slot_write(
        self: &Arc<Self>,
        name: &str,
        value: Value,
    ) -> Result<Value, ActorError> {
        let (value, parents) =
            check_slot_write(name, value, &self.roots).map_err(ActorError::BadRequest)?;
        self.check_parents(parents).await?;
        Ok(value)
    }

    async fn check_parents(self: &Arc<Self>, parents: Vec<Oid>) -> Result<(), ActorError> {
        for parent in parents {
            if !self.exists(parent).await? {
                return Err(ActorError::NoSuchObject(missing_parent(parent)));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct GetSlot {
    slot: String,
}

impl ObjectOp for GetSlot {
    type Output = Value;
    fn run(self, _space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<Value> {
        Box::pin(async move {
            receiver.ready().await?;
            receiver
                .read(|s| s.slots.get(&self.slot).map(|slot| slot.to_wire(&self.slot)))?
                .ok_or(ActorError::NoSuchSlot {
                    oid: receiver.oid,
                    slot: self.slot,
                })
        })
    }
}

#[derive(Clone)]
struct GetState;

impl ObjectOp for GetState {
    type Output = FullState;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<Self::Output> {
        Box::pin(async move {
            receiver.ready().await?;
            let slots = receiver.read(|s| {
                let mut slots: Vec<_> = s
                    .slots
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_wire(k)))
                    .collect();
                slots.sort_by(|a, b| a.0.cmp(&b.0));
                slots
            })?;
            let oid = receiver.oid;
            let space2 = space.clone();
            let methods = space
                .io
                .run(move || method::history(&space2, oid))
                .await??;
            Ok(FullState { slots, methods })
        })
    }
}

#[derive(Clone)]
struct CreateMethod {
    selector: String,
    code: MethodCode,
}

impl ObjectOp for CreateMethod {
    type Output = MethodRecord;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<MethodRecord> {
        Box::pin(async move {
            receiver.ready().await?;
            let oid = receiver.oid;
            let wasm = match self.code {
                MethodCode::Wasm(bytes) => bytes,
                MethodCode::Wat(text) => audit::wat_to_wasm(&text)
                    .map_err(|v| ActorError::CovenantViolation(v.to_string()))?,
            };
            let space2 = space.clone();
            let selector = self.selector;
            let install = space
                .pool
                .run(move || {
                    method::prepare_install(
                        &space2,
                        oid,
                        &selector,
                        wasm,
                        Provenance::Client,
                        &Transaction::new(),
                    )
                })
                .await??;
            let record = MethodRecord {
                version: install.method.version,
                hash: install.method.hash.clone(),
                provenance: install.provenance.clone(),
                tx: 0,
            };
            let selector = install.selector.clone();
            let mut tx = Transaction::new();
            tx.install(install);
            let tx_id = space.commit(tx).await?;
            tracing::info!(oid, selector = %selector, version = record.version, hash = %record.hash, "method installed");
            Ok(MethodRecord {
                tx: tx_id,
                ..record
            })
        })
    }
}

#[derive(Clone)]
struct SetSlot {
    slot: String,
    value: Value,
}

impl ObjectOp for SetSlot {
    type Output = ();
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<()> {
        Box::pin(async move {
            receiver.ready().await?;
            primitives::set_slot(&space, receiver.oid, self.slot, self.value).await
        })
    }
}

#[derive(Clone)]
struct RemoveSlot {
    slot: String,
}

impl ObjectOp for RemoveSlot {
    type Output = ();
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<()> {
        Box::pin(async move {
            receiver.ready().await?;
            if !receiver.read(|s| s.slots.contains_key(&self.slot))? {
                return Err(ActorError::NoSuchSlot {
                    oid: receiver.oid,
                    slot: self.slot,
                });
            }
            let mut tx = Transaction::new();
            tx.remove(receiver.oid, self.slot);
            space.commit(tx).await.map(drop)
        })
    }
}

#[derive(Clone)]
struct CloneObject;

impl ObjectOp for CloneObject {
    type Output = Oid;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<Oid> {
        Box::pin(async move {
            receiver.ready().await?;
            primitives::clone(&space, &receiver).await
        })
    }
}

#[derive(Clone)]
struct SendMessage {
    selector: String,
    args: Vec<Value>,
}

impl ObjectOp for SendMessage {
    type Output = SendOutcome;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> crate::object::OpFuture<SendOutcome> {
        Box::pin(async move {
            receiver.ready().await?;
            let found = lookup::lookup(&space, &receiver, &self.selector).await?;
            let value = match found {
                Some(Slot::Data(value)) if self.args.is_empty() => value,
                Some(Slot::Data(_)) => {
                    return Err(ActorError::BadRequest(format!(
                        "{:?} is a data slot; it takes no arguments (got {})",
                        self.selector,
                        self.args.len()
                    )))
                }
                Some(Slot::Primitive(p @ (Primitive::Clone | Primitive::SetSlotValue))) => {
                    primitives::run(&space, &receiver, p, self.args).await?
                }
                // Methods, other primitives and doesNotUnderstand run in a transaction.
                Some(
                    Slot::Primitive(Primitive::RollbackMethod | Primitive::RequestUpgrade)
                    | Slot::Method(_),
                )
                | None => {
                    return exec::send_in_transaction(
                        &space,
                        receiver.oid,
                        self.selector,
                        self.args,
                    )
                    .await
                }
            };
            Ok(SendOutcome {
                value,
                generated: false,
            })
        })
    }
}
