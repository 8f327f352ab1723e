//! Running methods: the transaction context a method (and every method it
//! sends to) runs in, on a sandbox thread. Reads see the transaction's own
//! writes first, then committed state (recording the version read, which
//! the committer re-checks); writes stay in the transaction until the
//! outermost method returns, then commit once, or not at all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::committer::CommitError;
use crate::method;
use crate::runtime::{require_write, ObjectSpace, SpaceInner};
use crate::table::InUse;
use crate::writer::{Candidate, MethodRequest};
use batos_object::access::{Change, Current, Role};
use batos_object::delegation::{Visit, Walk};
use batos_object::error::ActorError;
use batos_object::rules::{check_slot_write, missing_parent};
use batos_object::slot::{MethodSource, Primitive, Provenance, Slot};
use batos_object::txn::Transaction;
use batos_object::value::{approx_size, make_ref, parse_parents, Oid, Value, PARENT_SLOT};
use batos_sandbox::abi::status;
use batos_sandbox::synthesis;
use batos_sandbox::{Invoke, LogBudget, MethodFault, MethodHost, Resolved};

/// The result of `send`.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    /// What the method (or data slot) answered.
    pub value: Value,
    /// Whether the method was generated for this message.
    pub generated: bool,
}

/// Times a message is re-run when a concurrent transaction changed what it read.
const ATTEMPTS: u32 = 64;

/// Waits a little before re-running a conflicted message: exponential with
/// jitter (up to about 13 ms), so a stream of short transactions on the same
/// object cannot starve a longer one for ever.
async fn backoff(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    let cap_us = 50u64 << attempt.min(8);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let jitter = hasher.finish() % cap_us.max(1);
    tokio::time::sleep(Duration::from_micros(cap_us / 2 + jitter / 2)).await;
}

/// Who sends a message: the rights it runs with, and whose turn it takes
/// on the sandbox threads.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) role: Role,
    pub(crate) client: crate::pool::Client,
}

/// What a message runs: a selector looked up along `parent*`, or one
/// primitive applied as a command (the `clone` command copies the object
/// whatever its `clone` slot says).
#[derive(Clone)]
pub(crate) enum Entry {
    Send(String),
    Primitive(Primitive),
}

impl Entry {
    fn selector(&self) -> &str {
        match self {
            Entry::Send(selector) => selector,
            Entry::Primitive(p) => p.selector(),
        }
    }
}

/// Runs `entry` on `receiver` inside a fresh transaction (methods,
/// synthesis, primitives: the one implementation of each, whether a
/// method, a send or a command asked for it), committing once; re-run when
/// what it read changed before it could commit. Called by the receiver's
/// actor.
pub(crate) async fn run_in_transaction(
    space: &Arc<SpaceInner>,
    receiver: Oid,
    Caller { role, client }: Caller,
    entry: Entry,
    args: Vec<Value>,
) -> Result<SendOutcome, ActorError> {
    let mut candidate: Option<Arc<Candidate>> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let (space2, entry2, args2) = (space.clone(), entry.clone(), args.clone());
        let offered = candidate.clone();
        let ran = space
            .pool
            .run_for(client, move || {
                run_top(space2, receiver, role, entry2, args2, offered.as_deref())
            })
            .await??;
        let (outcome, mut tx) = match ran {
            Some(done) => done,
            // Lookup and synthesis are exhausted (no candidate was offered,
            // or run_top would have installed it): the model writes the
            // method, then the message re-runs and installs it.
            None => {
                let Some(writer) = space.writer.get() else {
                    return Err(not_understood(receiver, entry.selector(), args.len()));
                };
                // What the model writes is installed: only for those who may.
                require_write(role, "having a method written")?;
                let request = MethodRequest {
                    receiver,
                    selector: entry.selector().to_string(),
                    args: args.clone(),
                };
                let handle = ObjectSpace::from_inner(space.clone());
                candidate = Some(writer.clone().write(handle, request).await?);
                continue;
            }
        };
        let upgrades = tx.take_upgrades();
        match space.committer.commit(tx).await {
            Ok(_) => {
                // Effects outside the image happen only once the message is
                // durable; one that fails is reported, never acknowledged.
                for instruction in upgrades {
                    match space.hooks.request_upgrade(&instruction) {
                        Ok(id) => {
                            tracing::info!(id = %id, "upgrade requested from inside the image")
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "submitting a requested upgrade failed");
                            return Err(ActorError::Unavailable(format!(
                                "the message committed, but its upgrade request was not \
                                 submitted: {err}"
                            )));
                        }
                    }
                }
                return Ok(outcome);
            }
            Err(CommitError::Conflict) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ActorError::Overloaded(format!(
        "message conflicted with concurrent ones {ATTEMPTS} times; retry"
    )))
}

fn not_understood(receiver: Oid, selector: &str, argc: usize) -> ActorError {
    ActorError::DoesNotUnderstand(format!(
        "object {receiver} does not understand {selector:?} ({argc} argument(s)): no slot along parent*, \
         no accessor pattern applies, and no language model is configured"
    ))
}

/// Runs the message once. `Ok(None)`: lookup and synthesis found nothing
/// and no generated `candidate` was offered.
fn run_top(
    space: Arc<SpaceInner>,
    receiver: Oid,
    role: Role,
    entry: Entry,
    args: Vec<Value>,
    candidate: Option<&Candidate>,
) -> Result<Option<(SendOutcome, Transaction)>, ActorError> {
    let selector = match entry {
        Entry::Send(selector) => selector,
        Entry::Primitive(p) => {
            if let Some(err) = p.check_arity(args.len()) {
                return Err(ActorError::BadRequest(err));
            }
            let mut c = ctx_for(&space, role, Instant::now() + wall_clock(&space));
            return match c.primitive(receiver, p, &args)? {
                Resolved::Value(value) => Ok(Some((
                    SendOutcome {
                        value,
                        generated: false,
                    },
                    c.tx,
                ))),
                Resolved::Status(code) => {
                    Err(ActorError::BadRequest(status_message(code, p.selector())))
                }
                Resolved::Method { .. } => Err(ActorError::internal("a primitive ran a method")),
            };
        }
    };
    let deadline = Instant::now() + wall_clock(&space);
    let ctx = Arc::new(Mutex::new(ctx_for(&space, role, deadline)));
    let mut generated = false;
    let mut method_at: Option<(Oid, u32)> = None;
    let resolved = {
        let mut c = ctx.lock();
        match c.lookup(receiver, &selector)? {
            Some((holder, slot)) => {
                match &slot {
                    Slot::Method(m) => method_at = Some((holder, m.version)),
                    Slot::Primitive(p) => {
                        if let Some(err) = p.check_arity(args.len()) {
                            return Err(ActorError::BadRequest(err));
                        }
                    }
                    Slot::Data(_) => {}
                }
                c.dispatch(receiver, slot, &args)?
            }
            None => match c.synthesize(receiver, &selector, args.len())? {
                Some(slot) => {
                    generated = true;
                    c.dispatch(receiver, slot, &args)?
                }
                None => match candidate {
                    Some(candidate) => {
                        let slot = c.install_candidate(receiver, &selector, candidate)?;
                        generated = true;
                        c.dispatch(receiver, slot, &args)?
                    }
                    None => return Ok(None),
                },
            },
        }
    };
    let value = match resolved {
        Resolved::Value(value) => value,
        Resolved::Status(code) => {
            return Err(ActorError::BadRequest(status_message(code, &selector)))
        }
        Resolved::Method { hash } => {
            let host: Arc<Mutex<dyn MethodHost>> = ctx.clone();
            let frame = batos_sandbox::frame(receiver, &selector, args, 0);
            let outcome = space.sandbox.invoke(&host, &hash, frame, deadline);
            if let Some((holder, version)) = method_at {
                space
                    .method_stats
                    .record(holder, &selector, version, outcome.is_err());
            }
            // A change the role may not make stops the message as
            // `forbidden` (one over the byte cap as `too_large`), however
            // deep in nested sends it was refused.
            outcome.map_err(|e| {
                ctx.lock()
                    .refused
                    .take()
                    .unwrap_or(ActorError::MethodTrap(e.0))
            })?
        }
    };
    let tx = std::mem::take(&mut ctx.lock().tx);
    Ok(Some((SendOutcome { value, generated }, tx)))
}

fn wall_clock(space: &SpaceInner) -> Duration {
    Duration::from_millis(space.sandbox.limits().wall_clock_ms)
}

/// A message's fresh transaction context.
fn ctx_for(space: &Arc<SpaceInner>, role: Role, deadline: Instant) -> TxCtx {
    TxCtx {
        space: space.clone(),
        tx: Transaction::new(),
        pinned: HashMap::new(),
        deadline,
        log_budget: LogBudget::default(),
        role,
        refused: None,
        written_bytes: 0,
    }
}

fn status_message(code: i32, selector: &str) -> String {
    match code {
        status::BAD_VALUE => format!("{selector:?}: a value was refused (see protocol.md, Values)"),
        status::SEND_FAILED => format!("{selector:?} is a data slot; it takes no arguments"),
        _ => format!("{selector:?} failed with status {code}"),
    }
}

/// The transaction of one message, shared by every method it runs.
pub(crate) struct TxCtx {
    space: Arc<SpaceInner>,
    tx: Transaction,
    pinned: HashMap<Oid, InUse>,
    deadline: Instant,
    log_budget: LogBudget,
    /// The rights of the client the message came from.
    role: Role,
    /// The first change refused inside a method (for `role`, or over the
    /// byte cap), reported as the message's error (the method itself only
    /// sees a fault).
    refused: Option<ActorError>,
    /// Bytes of slot values written so far (every write counts, so the
    /// copying a message does is bounded too).
    written_bytes: usize,
}

impl TxCtx {
    /// The live object (activated synchronously: this is a sandbox thread).
    fn object(&mut self, oid: Oid) -> Result<&InUse, ActorError> {
        if !self.pinned.contains_key(&oid) {
            let in_use = self.space.checkout_blocking(oid)?;
            self.pinned.insert(oid, in_use);
        }
        Ok(&self.pinned[&oid])
    }

    fn created(&self, oid: Oid) -> bool {
        self.tx.writes().get(&oid).is_some_and(|c| c.created)
    }

    fn exists(&mut self, oid: Oid) -> Result<bool, ActorError> {
        if self.created(oid) {
            return Ok(true);
        }
        match self.object(oid) {
            Ok(_) => Ok(true),
            Err(ActorError::NoSuchObject(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A slot's current contents in this transaction (no delegation).
    fn own_slot(&mut self, oid: Oid, name: &str) -> Result<Option<Slot>, ActorError> {
        if let Some(change) = self.tx.writes().get(&oid).and_then(|c| c.slots.get(name)) {
            return Ok(change.clone());
        }
        if self.created(oid) {
            return Ok(None);
        }
        let (slot, version) = self
            .object(oid)?
            .read(|s| (s.slots.get(name).cloned(), s.slot_version(name)))?;
        self.tx.read_slot(oid, name, version);
        Ok(slot)
    }

    /// All slots of an object as this transaction sees them.
    fn all_slots(&mut self, oid: Oid) -> Result<Vec<(String, Slot)>, ActorError> {
        let mut slots: HashMap<String, Slot> = HashMap::new();
        if !self.created(oid) {
            let (committed, version) = self.object(oid)?.read(|s| {
                (
                    s.slots
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>(),
                    s.version,
                )
            })?;
            self.tx.read(oid, version);
            slots.extend(committed);
        }
        if let Some(changes) = self.tx.writes().get(&oid) {
            for (name, slot) in &changes.slots {
                match slot {
                    Some(slot) => slots.insert(name.clone(), slot.clone()),
                    None => slots.remove(name),
                };
            }
        }
        Ok(slots.into_iter().collect())
    }

    fn parents(&mut self, oid: Oid) -> Result<Vec<Oid>, ActorError> {
        Ok(match self.own_slot(oid, PARENT_SLOT)? {
            Some(Slot::Data(v)) => parse_parents(&v).unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// The slot `selector` answers to and the object holding it, by the
    /// delegation walk over this transaction's view of the objects.
    pub(crate) fn lookup(
        &mut self,
        oid: Oid,
        selector: &str,
    ) -> Result<Option<(Oid, Slot)>, ActorError> {
        let mut walk = Walk::new(oid);
        while let Some(current) = walk.next_object() {
            if !walk.is_receiver(current) && !self.exists(current)? {
                continue;
            }
            let parents;
            let visit = match self.own_slot(current, selector)? {
                Some(slot) => Visit::Found(slot),
                None => {
                    parents = self.parents(current)?;
                    Visit::Parents(&parents)
                }
            };
            if let Some(found) = walk.visit(current, visit) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Checks that this message's role may make `change` to `oid`: the
    /// transaction's own changes first, then the live object. No read is
    /// recorded (a blind write stays blind) and no value is copied: what
    /// decides, a kernel object's parents and the primitives, no client can
    /// change, so a concurrent commit cannot change the answer.
    fn authorize(&mut self, oid: Oid, change: Change<'_>) -> Result<(), ActorError> {
        let role = self.role;
        if role == Role::Kernel {
            return Ok(());
        }
        let pending = self.tx.writes().get(&oid);
        let created = pending.is_some_and(|c| c.created);
        let own_parents = pending
            .and_then(|c| c.slots.get(PARENT_SLOT))
            .map(|slot| match slot {
                Some(Slot::Data(v)) => parse_parents(v).unwrap_or_default(),
                _ => Vec::new(),
            });
        let own_current = pending
            .and_then(|c| c.slots.get(change.slot()))
            .map(|slot| Current::of(slot.as_ref()));
        let space = self.space.clone();
        if created {
            let parents = own_parents.unwrap_or_default();
            let current = own_current.unwrap_or(Current::Absent);
            return space.authorize(role, oid, &parents, current, change);
        }
        self.object(oid)?.read(|s| {
            let parents = own_parents.as_deref().unwrap_or(s.parents());
            let current = own_current.unwrap_or_else(|| Current::of(s.slots.get(change.slot())));
            space.authorize(role, oid, parents, current, change)
        })?
    }

    /// A fault for the method running, remembering a refusal (see `refused`).
    fn fault(&mut self, err: ActorError) -> MethodFault {
        if matches!(err, ActorError::Forbidden(_) | ActorError::TooLarge(_))
            && self.refused.is_none()
        {
            self.refused = Some(err.clone());
        }
        fault(err)
    }

    /// Writes a data slot after the rules every slot write follows.
    fn write(
        &mut self,
        oid: Oid,
        name: &str,
        value: Value,
    ) -> Result<Result<(), String>, ActorError> {
        self.authorize(oid, Change::Write(name))?;
        self.written_bytes += name.len() + approx_size(&value);
        if self.written_bytes > self.space.max_transaction_bytes {
            return Err(ActorError::TooLarge(format!(
                "the message wrote more than {} bytes of slot values (the transaction cap)",
                self.space.max_transaction_bytes
            )));
        }
        let (value, parents) = match check_slot_write(name, value, &self.space.roots) {
            Ok(checked) => checked,
            Err(e) => return Ok(Err(e)),
        };
        for parent in parents {
            if !self.exists(parent)? {
                return Ok(Err(missing_parent(parent)));
            }
        }
        self.tx.set(oid, name.to_string(), Slot::Data(value));
        Ok(Ok(()))
    }

    /// Installs a model-written method in this transaction.
    fn install_candidate(
        &mut self,
        receiver: Oid,
        selector: &str,
        candidate: &Candidate,
    ) -> Result<Slot, ActorError> {
        self.install(
            receiver,
            selector,
            candidate.wasm.clone(),
            candidate.provenance.clone(),
            candidate.source.clone(),
        )
    }

    /// Audits and compiles `wasm` as `selector` on `receiver`, installs it in
    /// this transaction; returns the new method slot.
    fn install(
        &mut self,
        receiver: Oid,
        selector: &str,
        wasm: Vec<u8>,
        provenance: Provenance,
        source: Option<MethodSource>,
    ) -> Result<Slot, ActorError> {
        self.authorize(receiver, Change::Install(selector))?;
        let prepared = method::prepare_install(
            &self.space,
            receiver,
            selector,
            wasm,
            provenance,
            source,
            &self.tx,
        )?;
        let slot = Slot::Method(prepared.install.method.clone());
        prepared.stage(&mut self.tx);
        Ok(slot)
    }

    /// Tries the synthesis tier; installs the method in this transaction.
    fn synthesize(
        &mut self,
        receiver: Oid,
        selector: &str,
        argc: usize,
    ) -> Result<Option<Slot>, ActorError> {
        let Some(candidate) = synthesis::synthesize(selector, argc) else {
            return Ok(None);
        };
        // Getters, and setters without the `set` prefix (`deposit_` could
        // be any one-argument message), apply only when the slot exists
        // along parent* as data: synthesis never guesses.
        if matches!(candidate.pattern, "getFoo" | "foo_")
            && !matches!(
                self.lookup(receiver, &candidate.slot)?,
                Some((_, Slot::Data(_)))
            )
        {
            return Ok(None);
        }
        let wasm = batos_sandbox::audit::wat_to_wasm(&candidate.wat)
            .map_err(|v| ActorError::internal(format!("synthesis: {v}")))?;
        let provenance = Provenance::Synthesis {
            pattern: candidate.pattern.to_string(),
        };
        let slot = self.install(
            receiver,
            selector,
            wasm,
            provenance,
            Some(MethodSource::wat(candidate.wat)),
        )?;
        tracing::info!(
            oid = receiver,
            selector,
            pattern = candidate.pattern,
            "synthesized an accessor"
        );
        Ok(Some(slot))
    }

    /// What sending `selector` with `args` to `target` does, given the slot found.
    fn dispatch(
        &mut self,
        target: Oid,
        slot: Slot,
        args: &[Value],
    ) -> Result<Resolved, ActorError> {
        Ok(match slot {
            Slot::Data(value) if args.is_empty() => Resolved::Value(value),
            Slot::Data(_) => Resolved::Status(status::SEND_FAILED),
            Slot::Method(m) => Resolved::Method { hash: m.hash },
            Slot::Primitive(p) => self.primitive(target, p, args)?,
        })
    }

    fn primitive(
        &mut self,
        target: Oid,
        p: Primitive,
        args: &[Value],
    ) -> Result<Resolved, ActorError> {
        if args.len() != p.arity() {
            return Ok(Resolved::Status(status::SEND_FAILED));
        }
        Ok(match p {
            Primitive::Clone => {
                require_write(self.role, "clone")?;
                let slots = self.all_slots(target)?;
                let new = self.space.allocate_oid();
                self.tx.create(new, slots);
                Resolved::Value(make_ref(new))
            }
            Primitive::SetSlotValue => match args[0].as_str() {
                Some(name) => match self.write(target, name, args[1].clone())? {
                    Ok(()) => Resolved::Value(Value::Nil),
                    Err(_) => Resolved::Status(status::BAD_VALUE),
                },
                None => Resolved::Status(status::BAD_VALUE),
            },
            Primitive::RequestUpgrade => match self
                .role
                .require(Role::Admin, "requestUpgrade_")
                .map_err(ActorError::Forbidden)
                .and_then(|()| {
                    self.space
                        .hooks
                        .check_upgrade(&args[0])
                        .map_err(ActorError::BadRequest)
                }) {
                Ok(id) => {
                    self.tx.request_upgrade(args[0].clone());
                    Resolved::Value(Value::from(id))
                }
                Err(err @ ActorError::Forbidden(_)) => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, "requestUpgrade_ refused");
                    Resolved::Status(status::BAD_VALUE)
                }
            },
            Primitive::RollbackMethod => match (args[0].as_str(), args[1].as_u64()) {
                (Some(selector), Some(version)) => {
                    self.authorize(target, Change::Install(selector))?;
                    match method::find_version(&self.space, target, selector, version)? {
                        Some(m) => {
                            self.tx.set(target, selector.to_string(), Slot::Method(m));
                            Resolved::Value(Value::Nil)
                        }
                        None => Resolved::Status(status::BAD_VALUE),
                    }
                }
                _ => Resolved::Status(status::BAD_VALUE),
            },
        })
    }
}

fn fault(err: ActorError) -> MethodFault {
    MethodFault(err.to_string())
}

impl MethodHost for TxCtx {
    fn read_slot(&mut self, oid: Oid, name: &str) -> Result<Option<Value>, MethodFault> {
        match self.lookup(oid, name).map_err(fault)? {
            Some((_, Slot::Data(value))) => Ok(Some(value)),
            _ => Ok(None),
        }
    }

    fn write_slot(&mut self, oid: Oid, name: &str, value: Value) -> Result<i32, MethodFault> {
        let written = self.write(oid, name, value).map_err(|e| self.fault(e))?;
        Ok(match written {
            Ok(()) => status::OK,
            Err(_) => status::BAD_VALUE,
        })
    }

    fn resolve(
        &mut self,
        target: Oid,
        selector: &str,
        args: &[Value],
    ) -> Result<Resolved, MethodFault> {
        if !self.exists(target).map_err(fault)? {
            return Ok(Resolved::Status(status::NO_SUCH_OBJECT));
        }
        let slot = match self.lookup(target, selector).map_err(fault)? {
            Some((_, slot)) => slot,
            None => match self
                .synthesize(target, selector, args.len())
                .map_err(|e| self.fault(e))?
            {
                Some(slot) => slot,
                None => return Ok(Resolved::Status(status::SEND_FAILED)),
            },
        };
        self.dispatch(target, slot, args).map_err(|e| self.fault(e))
    }

    fn sandbox(&self) -> Arc<dyn Invoke> {
        self.space.sandbox.clone()
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn log_budget(&mut self) -> &mut LogBudget {
        &mut self.log_budget
    }
}
