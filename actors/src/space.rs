//! The object space's façade: what the bridge and the kernel's services
//! call. Each request becomes an operation routed through its receiver's
//! actor (`runtime.rs`) or a transaction for the committer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::exec;
use crate::lookup;
use crate::method;
use crate::object::OpFuture;
use crate::primitives;
use crate::runtime::{require_write, SpaceInner, SpaceOp};
use crate::stats::MethodOutcomes;
use crate::table::InUse;
use batos_object::access::{Change, Role};
use batos_object::changes::Changes;
use batos_object::error::ActorError;
use batos_object::roots::Roots;
use batos_object::slot::{MethodRecord, MethodSource, Primitive, Provenance, Slot};
use batos_object::txn::Transaction;
use batos_object::value::{make_ref, Oid, Value, PARENT_SLOT};
use batos_sandbox::audit;

/// An object's slots and method history, as `get_full_state` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct FullState {
    /// Slots by name, in name order.
    pub slots: Vec<(String, Value)>,
    /// Method versions ever installed, by selector then version.
    pub methods: Vec<(String, MethodRecord)>,
    /// The text of each kept source, by its hash.
    pub sources: HashMap<String, String>,
}

/// A method's code as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodCode {
    /// WebAssembly text.
    Wat(String),
    /// A WebAssembly binary.
    Wasm(Vec<u8>),
    /// A method in Python, compiled by `batos-python`.
    Python(String),
}

pub use crate::exec::SendOutcome;
pub use crate::runtime::{MethodWriter, NoHooks, ObjectSpace, SpaceConfig, SystemHooks};

impl ObjectSpace {
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
        let role = self.role;
        self.inner
            .call(
                oid,
                CreateMethod {
                    selector,
                    code,
                    role,
                },
            )
            .await
    }

    /// Writes one slot; returns once durable.
    pub async fn set_slot(&self, oid: Oid, slot: String, value: Value) -> Result<(), ActorError> {
        let role = self.role;
        self.inner.call(oid, SetSlot { slot, value, role }).await
    }

    /// Removes one slot; returns once durable.
    pub async fn remove_slot(&self, oid: Oid, slot: String) -> Result<(), ActorError> {
        let role = self.role;
        self.inner.call(oid, RemoveSlot { slot, role }).await
    }

    /// Creates an object; its parent is `traits_obj` unless `slots` says otherwise.
    pub async fn create_object(&self, slots: Vec<(String, Value)>) -> Result<Oid, ActorError> {
        require_write(self.role, "create_object")?;
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
        require_write(self.role, "clone")?;
        self.inner
            .call(
                oid,
                CloneObject {
                    role: self.role,
                    client: self.client,
                },
            )
            .await
    }

    /// Sends `selector` with `args` to `oid`.
    pub async fn send(
        &self,
        oid: Oid,
        selector: String,
        args: Vec<Value>,
    ) -> Result<SendOutcome, ActorError> {
        let role = self.role;
        self.inner
            .call(
                oid,
                SendMessage {
                    selector,
                    args,
                    role,
                    client: self.client,
                },
            )
            .await
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
                method::check_module(&inner, &wasm)?;
                Ok(wasm)
            })
            .await
    }

    /// Compiles, audits and compiles to native code a method written in
    /// Python for `selector`, as `create_method` would: the binary, or why
    /// it is refused (for a model's retry).
    pub async fn check_python(
        &self,
        selector: String,
        source: String,
    ) -> Result<Result<Vec<u8>, String>, ActorError> {
        let inner = self.inner.clone();
        self.inner
            .pool
            .run(move || {
                let wasm = method::compile_python(&selector, &source).map_err(|e| e.to_string())?;
                method::check_module(&inner, &wasm)?;
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
}

#[derive(Clone)]
struct GetSlot {
    slot: String,
}

impl SpaceOp for GetSlot {
    type Output = Value;
    fn run(self, _space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<Value> {
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

impl SpaceOp for GetState {
    type Output = FullState;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<Self::Output> {
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
            let (methods, sources) = space
                .io
                .run(move || {
                    let methods = method::history(&space2, oid)?;
                    let sources = method::source_texts(&space2, &methods)?;
                    Ok::<_, ActorError>((methods, sources))
                })
                .await??;
            Ok(FullState {
                slots,
                methods,
                sources,
            })
        })
    }
}

#[derive(Clone)]
struct CreateMethod {
    selector: String,
    code: MethodCode,
    role: Role,
}

impl SpaceOp for CreateMethod {
    type Output = MethodRecord;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<MethodRecord> {
        Box::pin(async move {
            receiver.ready().await?;
            space.authorize_live(self.role, &receiver, Change::Install(&self.selector))?;
            let oid = receiver.oid;
            let (wasm, source) = match self.code {
                MethodCode::Wasm(bytes) => (bytes, None),
                MethodCode::Wat(text) => (
                    audit::wat_to_wasm(&text)
                        .map_err(|v| ActorError::CovenantViolation(v.to_string()))?,
                    Some(MethodSource::wat(text)),
                ),
                MethodCode::Python(text) => {
                    let wasm = method::compile_python(&self.selector, &text)?;
                    (wasm, Some(MethodSource::python(text)))
                }
            };
            let space2 = space.clone();
            let selector = self.selector;
            let prepared = space
                .pool
                .run(move || {
                    method::prepare_install(
                        &space2,
                        oid,
                        &selector,
                        wasm,
                        Provenance::Client,
                        source,
                        &Transaction::new(),
                    )
                })
                .await??;
            let install = &prepared.install;
            let record = MethodRecord {
                version: install.method.version,
                hash: install.method.hash.clone(),
                provenance: install.provenance.clone(),
                tx: 0,
                source: install.source.clone(),
            };
            let selector = install.selector.clone();
            let mut tx = Transaction::new();
            prepared.stage(&mut tx);
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
    role: Role,
}

impl SpaceOp for SetSlot {
    type Output = ();
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<()> {
        Box::pin(async move {
            receiver.ready().await?;
            primitives::set_slot(&space, &receiver, self.role, self.slot, self.value).await
        })
    }
}

#[derive(Clone)]
struct RemoveSlot {
    slot: String,
    role: Role,
}

impl SpaceOp for RemoveSlot {
    type Output = ();
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<()> {
        Box::pin(async move {
            receiver.ready().await?;
            if !receiver.read(|s| s.slots.contains_key(&self.slot))? {
                return Err(ActorError::NoSuchSlot {
                    oid: receiver.oid,
                    slot: self.slot,
                });
            }
            space.authorize_live(self.role, &receiver, Change::Remove(&self.slot))?;
            let mut tx = Transaction::new();
            tx.remove(receiver.oid, self.slot);
            space.commit(tx).await.map(drop)
        })
    }
}

#[derive(Clone)]
struct CloneObject {
    role: Role,
    client: crate::pool::Client,
}

impl SpaceOp for CloneObject {
    type Output = Oid;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<Oid> {
        Box::pin(async move {
            receiver.ready().await?;
            let copy = exec::run_in_transaction(
                &space,
                receiver.oid,
                exec::Caller {
                    role: self.role,
                    client: self.client,
                },
                exec::Entry::Primitive(Primitive::Clone),
                Vec::new(),
            )
            .await?;
            batos_object::value::as_ref(&copy.value)
                .ok_or_else(|| ActorError::internal("clone answered no reference"))
        })
    }
}

#[derive(Clone)]
struct SendMessage {
    selector: String,
    args: Vec<Value>,
    role: Role,
    client: crate::pool::Client,
}

impl SpaceOp for SendMessage {
    type Output = SendOutcome;
    fn run(self, space: Arc<SpaceInner>, receiver: InUse) -> OpFuture<SendOutcome> {
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
                Some(Slot::Primitive(Primitive::SetSlotValue)) => {
                    primitives::set_slot_value(&space, &receiver, self.role, self.args).await?
                }
                // Methods, the other primitives and doesNotUnderstand run in
                // a transaction.
                Some(Slot::Primitive(_) | Slot::Method(_)) | None => {
                    return exec::run_in_transaction(
                        &space,
                        receiver.oid,
                        exec::Caller {
                            role: self.role,
                            client: self.client,
                        },
                        exec::Entry::Send(self.selector),
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
