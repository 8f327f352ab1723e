//! The runtime's shared state (`SpaceInner`) and its core services:
//! activation (an actor and a load per live object), routing an operation
//! through its receiver's mailbox, commits, oid allocation, and the slot
//! rules that need the image (`parent*` targets exist). The operations
//! themselves (`exec`, `lookup`, `primitives`, `method`, and the façade's
//! requests in `space`) build on it; it names none of them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::dev::channel;
use actix::prelude::*;
use futures::future::BoxFuture;
use parking_lot::RwLock;
use prometheus::Registry;

use crate::committer::{Committer, CommitterConfig, Counters, EventSink};
use crate::metrics::Metrics;
use crate::object::{mailbox, ObjectActor, ObjectOp, Op, OpFuture, Passivation, Retire};
use crate::pool::Pool;
use crate::stats::MethodStats;
use crate::table::{Checkout, InUse, ObjectTable};
use crate::writer::{Candidate, MethodRequest};
use batos_object::access::{self, Change, Current, Owner, Role, Target};
use batos_object::error::ActorError;
use batos_object::genesis::genesis;
use batos_object::image::{Image, ImageError};
use batos_object::roots::{Roots, KERNEL_ROOTS};
use batos_object::rules::{check_slot_write, missing_parent, prepare_slot_value};
use batos_object::txn::Transaction;
use batos_object::value::{Oid, Value};
use batos_sandbox::audit::AuditLimits;
use batos_sandbox::{CacheKey, Sandbox, SandboxLimits};

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
    /// Seals the compiled modules the sandbox caches in the image.
    pub cache_key: CacheKey,
    /// Bytes of slot values one message may write (every method it runs
    /// together); past this the message fails with `too_large`.
    pub max_transaction_bytes: usize,
}

/// Shared state of the space, reachable from every actor.
pub struct SpaceInner {
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
    pub(crate) passivation: Arc<Passivation>,
    pub(crate) max_transaction_bytes: usize,
    kernel_objects: RwLock<KernelObjects>,
    next_oid: AtomicU64,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
}

/// The objects the kernel keeps its own structures in (see
/// `batos_object::access`): the bookkeeping roots and what the kernel's
/// services register, directly or as prototypes whose children are theirs.
#[derive(Default)]
struct KernelObjects {
    /// Objects that are the kernel's, with the machinery slots of those
    /// that also carry settings (`None`: every slot is the kernel's).
    objects: HashMap<Oid, Option<&'static [&'static str]>>,
    /// Objects whose children are the kernel's.
    prototypes: HashSet<Oid>,
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

/// doesNotUnderstand's last tier as the runtime sees it: something that
/// writes a method nobody has (the cognitive core's model tier implements
/// it through the public [`ObjectSpace`] façade; see `writer.rs` for what
/// it is asked and answers).
pub trait MethodWriter: Send + Sync + 'static {
    /// A checked candidate for `request`, or why none could be written
    /// (`DoesNotUnderstand`, or `Overloaded` for the client to retry).
    fn write(
        self: Arc<Self>,
        space: ObjectSpace,
        request: MethodRequest,
    ) -> BoxFuture<'static, Result<Arc<Candidate>, ActorError>>;
}

/// Handle to the object space; cheap to clone. Every request through it
/// runs with its role: [`Role::Kernel`] for the handle [`ObjectSpace::open`]
/// gives, a client's role for one from [`ObjectSpace::for_client`].
#[derive(Clone)]
pub struct ObjectSpace {
    pub(crate) inner: Arc<SpaceInner>,
    pub(crate) role: Role,
    /// Whose turn this handle's methods take on the sandbox threads (the
    /// connection a request came from; the kernel's own work is 0).
    pub(crate) client: crate::pool::Client,
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
        let sandbox = Sandbox::new(
            image.clone(),
            config.sandbox.clone(),
            config.cache_key.clone(),
            registry,
        )
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
        let kernel_objects = RwLock::new(KernelObjects {
            objects: KERNEL_ROOTS
                .iter()
                .filter_map(|n| roots.oid(n))
                .map(|oid| (oid, None))
                .collect(),
            prototypes: HashSet::new(),
        });
        let passivation = Arc::new(Passivation {
            after_ms: config.passivate_after_ms,
            check_ms: config.passivate_check_ms,
            table: table.clone(),
            metrics: metrics.clone(),
        });
        let inner = Arc::new(SpaceInner {
            passivation,
            max_transaction_bytes: config.max_transaction_bytes,
            kernel_objects,
            sandbox: Arc::new(sandbox),
            pool,
            io,
            method_stats: MethodStats::default(),
            hooks,
            audit_limits,
            writer: std::sync::OnceLock::new(),
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
        Ok(ObjectSpace {
            inner,
            role: Role::Kernel,
            client: crate::pool::KERNEL,
        })
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

    /// Adds a last tier to doesNotUnderstand (once): `writer` is asked for
    /// a method when lookup and synthesis find nothing.
    pub fn enable_generation(&self, writer: Arc<dyn MethodWriter>) {
        let _ = self.inner.writer.set(writer);
    }

    /// The space's handle from its shared state (for the runtime's own
    /// callers of the façade).
    pub(crate) fn from_inner(inner: Arc<SpaceInner>) -> Self {
        ObjectSpace {
            inner,
            role: Role::Kernel,
            client: crate::pool::KERNEL,
        }
    }

    /// A handle whose requests run with a client's `role`: what the
    /// bridge uses for each request.
    pub fn for_client(&self, role: Role) -> ObjectSpace {
        ObjectSpace {
            inner: self.inner.clone(),
            role,
            client: self.client,
        }
    }

    /// This handle for the requests of one connection (`connection`, any
    /// key but 0): its methods take their own turns on the sandbox threads,
    /// so a connection with many long methods queued does not make the
    /// others wait behind all of them.
    pub fn for_connection(&self, connection: u64) -> ObjectSpace {
        ObjectSpace {
            inner: self.inner.clone(),
            role: self.role,
            client: connection,
        }
    }

    /// The role this handle's requests run with.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Marks `objects` as the kernel's own, and the children of
    /// `prototypes` too (a kernel service calls it for the structures it
    /// keeps in the image, at start and as it creates them): no client
    /// changes them.
    pub fn protect(&self, objects: &[Oid], prototypes: &[Oid]) {
        let mut kernel = self.inner.kernel_objects.write();
        for &oid in objects.iter().chain(prototypes) {
            kernel.objects.insert(oid, None);
        }
        kernel.prototypes.extend(prototypes);
    }

    /// Like [`ObjectSpace::protect`] for prototypes that also carry
    /// settings: their slots in `machinery` (and `parent*`) are the
    /// kernel's, the others settings an `admin` may change; their
    /// children are the kernel's.
    pub fn protect_with_settings(&self, prototypes: &[Oid], machinery: &'static [&'static str]) {
        let mut kernel = self.inner.kernel_objects.write();
        for &oid in prototypes {
            kernel.objects.insert(oid, Some(machinery));
        }
        kernel.prototypes.extend(prototypes);
    }
}

/// Refuses a client below `write` an action that creates objects.
pub(crate) fn require_write(role: Role, what: &str) -> Result<(), ActorError> {
    role.require(Role::Write, what)
        .map_err(ActorError::Forbidden)
}

/// An operation on one object, run by its actor with the runtime's state.
pub(crate) trait SpaceOp: Clone + Send + 'static {
    /// What the operation answers.
    type Output: Send + 'static;
    /// Runs the operation on `receiver`.
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<Self::Output>;
}

/// A [`SpaceOp`] with the state it runs against: what the actor runs.
pub(crate) struct Bound<T> {
    space: Arc<SpaceInner>,
    op: T,
}

impl<T: SpaceOp> ObjectOp for Bound<T> {
    type Output = T::Output;
    fn run(self, receiver: InUse) -> OpFuture<T::Output> {
        self.op.run(self.space, receiver)
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
                if let Some(addr) = mailbox(&live) {
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
    pub(crate) async fn call<T: SpaceOp>(
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
            let addr = mailbox(&receiver)
                .cloned()
                .ok_or_else(|| ActorError::internal("live object without an actor"))?;
            match addr
                .send(Op {
                    op: Bound {
                        space: self.clone(),
                        op: op.clone(),
                    },
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
            live.set_mailbox(Addr::<ObjectActor>::new(tx));
            let actor = ObjectActor::new(live.clone(), space.passivation.clone());
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

    /// Checks that `role` may make `change` to `oid`, whose own parents are
    /// `parents` and whose changed slot is `current` (`access::check`).
    pub(crate) fn authorize(
        &self,
        role: Role,
        oid: Oid,
        parents: &[Oid],
        current: Current,
        change: Change<'_>,
    ) -> Result<(), ActorError> {
        if role == Role::Kernel {
            return Ok(());
        }
        let kernel = self.kernel_objects.read();
        let owner = match kernel.objects.get(&oid) {
            Some(None) => Owner::Kernel,
            Some(Some(machinery)) => Owner::KernelSettings(machinery),
            None if parents.iter().any(|p| kernel.prototypes.contains(p)) => Owner::Kernel,
            None => Owner::User,
        };
        let target = Target {
            oid,
            root: self.roots.name_of(oid),
            owner,
            current,
        };
        access::check(role, target, change).map_err(ActorError::Forbidden)
    }

    /// [`SpaceInner::authorize`] for a change to a live object, read now.
    pub(crate) fn authorize_live(
        &self,
        role: Role,
        receiver: &InUse,
        change: Change<'_>,
    ) -> Result<(), ActorError> {
        if role == Role::Kernel {
            return Ok(());
        }
        // Decided under the object's read guard: nothing is copied out.
        receiver.read(|s| {
            self.authorize(
                role,
                receiver.oid,
                s.parents(),
                Current::of(s.slots.get(change.slot())),
                change,
            )
        })?
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
