//! The orchestrator (`orchestrator_obj`): persistent cognitive cycles whose
//! state is their `parent*`.
//!
//! Each state of a cycle kind is a prototype object holding that state's
//! behaviour as slots: `state_name`, `expert` (the persona it runs as),
//! `step` (which kernel step it runs), `next_state`, and any settings the
//! step reads (REASONING's `queries`, for one). A `CognitiveCycle` delegates
//! to its current state, so the cycle answers `state_name` or `expert` by
//! ordinary lookup. A transition is one committed transaction holding the
//! step's results, the new `parent*` and the history entry, so a crash
//! mid-cycle resumes, on restart, with the step of the last committed
//! state. Changing a state object's slots changes every cycle that later
//! passes through it, live.

mod display_yourself;
pub mod ui_code;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::inference::Cognition;
use batos_actors::committer::{CycleEvent, EventSink};
use batos_actors::space::ObjectSpace;
use batos_memory::{Catalog, Document};
use batos_object::changes::Changes;
use batos_object::clock::unix_ms;
use batos_object::error::ActorError;
use batos_object::roots;
use batos_object::value::{
    as_ref, find_slot as slot, make_ref, parse_parents, ref_array, ref_oids, Oid, Value,
    PARENT_SLOT,
};

/// The one cycle kind so far.
pub const DISPLAY_YOURSELF: &str = "display_yourself";

/// Slot of `orchestrator_obj` listing every cycle.
const CYCLES_SLOT: &str = "cycles";

/// Settings of the orchestrator.
#[derive(Clone, Debug, Default)]
pub struct OrchestratorConfig {
    /// A pause after each step, to watch a cycle go (0 in production).
    pub step_pause: Duration,
    /// Cycles running at once; starting one more is `overloaded`.
    pub max_running: usize,
    /// Cycles one client (connection) may have running at once.
    pub max_running_per_client: usize,
}

/// Who started a cycle: a client's connection key, or [`KERNEL`].
pub type Starter = u64;

/// The kernel's own cycles (the first conversation, resumed ones).
pub const KERNEL: Starter = 0;

/// Handle to the orchestrator; cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    space: ObjectSpace,
    catalog: Catalog,
    model: Option<Cognition>,
    events: Arc<dyn EventSink>,
    documents: Vec<Document>,
    config: OrchestratorConfig,
    orchestrator: Oid,
    genesis: Oid,
    traits: Oid,
    start_lock: tokio::sync::Mutex<()>,
    /// The cycles being driven, and who started each.
    running: Mutex<HashMap<Oid, Starter>>,
}

/// A cycle as `get_cycle` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleView {
    /// Its kind.
    pub kind: String,
    /// The current state's name.
    pub state: String,
    /// `running`, `complete` or `failed`.
    pub status: String,
    /// One entry per finished state.
    pub history: Value,
    /// The state prototype it delegates to.
    pub state_object: Oid,
    /// The slots the steps wrote (Table 3's cycle slots).
    pub results: Vec<(String, Value)>,
}

/// The slots of a state prototype the orchestrator relies on; its other
/// slots (`expert`, `action`, `queries`, ...) are settings an `admin`
/// client may change ("editing a state changes every later cycle").
const STATE_MACHINERY: &[&str] = &["state_name", "step", "next_state", "cycle_kind"];

/// The orchestrator's slot listing `kind`'s state prototypes.
fn states_slot(kind: &str) -> String {
    format!("{kind}_states")
}

fn str_slot(slots: &[(String, Value)], name: &str) -> String {
    slot(slots, name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Orchestrator {
    /// An orchestrator over the space; `documents` are what display_yourself
    /// ingests (the kernel's own design documents).
    pub fn new(
        space: ObjectSpace,
        catalog: Catalog,
        model: Option<Cognition>,
        events: Arc<dyn EventSink>,
        documents: Vec<Document>,
        config: OrchestratorConfig,
    ) -> Result<Orchestrator, ActorError> {
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                orchestrator: space.root(roots::ORCHESTRATOR)?,
                genesis: space.root(roots::GENESIS)?,
                traits: space.root(roots::TRAITS)?,
                space,
                catalog,
                model,
                events,
                documents,
                config,
                start_lock: tokio::sync::Mutex::new(()),
                running: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Starts a cycle of `kind` for `starter`; returns its oid once its
    /// first state is committed. The cycle then runs in the background.
    pub async fn start(&self, kind: &str, starter: Starter) -> Result<Oid, ActorError> {
        self.start_marked(kind, None, starter).await
    }

    /// [`Orchestrator::start`], also setting the orchestrator's slot `mark`
    /// to the new cycle in the same transaction.
    async fn start_marked(
        &self,
        kind: &str,
        mark: Option<&str>,
        starter: Starter,
    ) -> Result<Oid, ActorError> {
        if kind != DISPLAY_YOURSELF {
            return Err(ActorError::BadRequest(format!(
                "unknown cycle kind {kind:?} (known: {DISPLAY_YOURSELF})"
            )));
        }
        let inner = &self.inner;
        let _guard = inner.start_lock.lock().await;
        let (running, mine) = {
            let running = self.running();
            let mine = running.values().filter(|s| **s == starter).count();
            (running.len(), mine)
        };
        if running >= inner.config.max_running {
            return Err(ActorError::Overloaded(format!(
                "{running} cognitive cycles are running (the limit); retry when one completes"
            )));
        }
        if starter != KERNEL && mine >= inner.config.max_running_per_client {
            return Err(ActorError::Overloaded(format!(
                "this connection has {mine} cognitive cycles running (its limit); retry when \
                 one completes"
            )));
        }
        let states = self.states(kind).await?;
        let first = states[0].1;
        let cycle = inner.space.allocate_oid();
        let mut changes = Changes::new();
        changes.create(
            cycle,
            vec![
                (PARENT_SLOT.to_string(), ref_array(&[first])),
                ("kind".to_string(), Value::from(kind)),
                ("status".to_string(), Value::from("running")),
                ("history".to_string(), Value::Array(Vec::new())),
                ("started_ms".to_string(), Value::from(unix_ms())),
            ],
        );
        let orch = self.orchestrator_slots().await?;
        let mut cycles = match slot(&orch, CYCLES_SLOT) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        cycles.push(make_ref(cycle));
        changes.set(inner.orchestrator, CYCLES_SLOT, Value::Array(cycles));
        if let Some(mark) = mark {
            changes.set(inner.orchestrator, mark, make_ref(cycle));
        }
        inner.space.apply(changes).await?;
        inner.events.publish_cycle(CycleEvent {
            cycle,
            state: states[0].0.clone(),
        });
        self.spawn(cycle, starter);
        Ok(cycle)
    }

    /// Starts display_yourself once per image (the first conversation);
    /// the cycle and the mark that it ran commit together.
    pub async fn first_conversation(&self) -> Result<Option<Oid>, ActorError> {
        const MARK: &str = "first_conversation";
        let orch = self.orchestrator_slots().await?;
        if slot(&orch, MARK).is_some() {
            return Ok(None);
        }
        self.start_marked(DISPLAY_YOURSELF, Some(MARK), KERNEL)
            .await
            .map(Some)
    }

    /// Resumes every cycle still running in the image (after a restart).
    pub async fn resume(&self) -> Result<usize, ActorError> {
        let orch = self.orchestrator_slots().await?;
        let states = ref_oids(slot(&orch, &states_slot(DISPLAY_YOURSELF)));
        self.inner
            .space
            .protect_with_settings(&states, STATE_MACHINERY);
        let cycles = ref_oids(slot(&orch, CYCLES_SLOT));
        let mut resumed = 0;
        for cycle in cycles {
            let slots = self
                .inner
                .space
                .read_committed(cycle)
                .await?
                .unwrap_or_default();
            if str_slot(&slots, "status") == "running" {
                tracing::info!(cycle, "resuming a cognitive cycle");
                self.spawn(cycle, KERNEL);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// The cycle's state, history and results.
    pub async fn view(&self, cycle: Oid) -> Result<CycleView, ActorError> {
        let slots = self
            .inner
            .space
            .read_committed(cycle)
            .await?
            .ok_or_else(|| ActorError::NoSuchObject(cycle.to_string()))?;
        let kind = str_slot(&slots, "kind");
        if kind.is_empty() {
            return Err(ActorError::BadRequest(format!(
                "object {cycle} is not a CognitiveCycle"
            )));
        }
        let state_object = parent_of(&slots)?;
        let state = self
            .inner
            .space
            .read_committed(state_object)
            .await?
            .map(|s| str_slot(&s, "state_name"))
            .unwrap_or_default();
        let results = slots
            .iter()
            .filter(|(n, _)| display_yourself::RESULT_SLOTS.contains(&n.as_str()))
            .cloned()
            .collect();
        Ok(CycleView {
            kind,
            state,
            status: str_slot(&slots, "status"),
            history: slot(&slots, "history")
                .cloned()
                .unwrap_or(Value::Array(vec![])),
            state_object,
            results,
        })
    }

    /// `orchestrator_obj`'s data slots as committed.
    async fn orchestrator_slots(&self) -> Result<Vec<(String, Value)>, ActorError> {
        let inner = &self.inner;
        Ok(inner
            .space
            .read_committed(inner.orchestrator)
            .await?
            .unwrap_or_default())
    }

    /// The state prototypes of `kind`, in order, created on first use.
    async fn states(&self, kind: &str) -> Result<Vec<(String, Oid)>, ActorError> {
        let inner = &self.inner;
        let slot_name = states_slot(kind);
        let orch = self.orchestrator_slots().await?;
        let existing = ref_oids(slot(&orch, &slot_name));
        if !existing.is_empty() {
            inner
                .space
                .protect_with_settings(&existing, STATE_MACHINERY);
            let mut out = Vec::with_capacity(existing.len());
            for oid in existing {
                let s = inner.space.read_committed(oid).await?.unwrap_or_default();
                out.push((str_slot(&s, "state_name"), oid));
            }
            return Ok(out);
        }
        let specs = display_yourself::states();
        let oids: Vec<Oid> = specs.iter().map(|_| inner.space.allocate_oid()).collect();
        let mut changes = Changes::new();
        for (i, spec) in specs.iter().enumerate() {
            let mut slots = vec![
                (PARENT_SLOT.to_string(), ref_array(&[inner.traits])),
                ("state_name".to_string(), Value::from(spec.name)),
                ("expert".to_string(), Value::from(spec.expert)),
                ("step".to_string(), Value::from(spec.step)),
                ("action".to_string(), Value::from(spec.action)),
                ("cycle_kind".to_string(), Value::from(kind)),
            ];
            if let Some(next) = oids.get(i + 1) {
                slots.push(("next_state".to_string(), make_ref(*next)));
            }
            slots.extend(spec.settings.iter().cloned());
            changes.create(oids[i], slots);
        }
        changes.set(inner.orchestrator, slot_name, ref_array(&oids));
        inner.space.apply(changes).await?;
        // Every cycle (a child of a state) is the kernel's, and so is the
        // states' machinery; their other slots are settings.
        inner.space.protect_with_settings(&oids, STATE_MACHINERY);
        Ok(specs.iter().map(|s| s.name.to_string()).zip(oids).collect())
    }

    fn spawn(&self, cycle: Oid, starter: Starter) {
        let this = self.clone();
        this.running().insert(cycle, starter);
        actix::spawn(async move {
            let driven = this.drive(cycle).await;
            this.running().remove(&cycle);
            if let Err(err) = driven {
                tracing::error!(cycle, error = %err, "cognitive cycle failed");
                let mut changes = Changes::new();
                changes.set(cycle, "status", Value::from("failed"));
                changes.set(cycle, "error", Value::from(err.to_string()));
                if this.inner.space.apply(changes).await.is_ok() {
                    this.inner.events.publish_cycle(CycleEvent {
                        cycle,
                        state: "FAILED".into(),
                    });
                }
            }
        });
    }

    /// The cycles being driven now.
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<Oid, Starter>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the cycle's states until it completes.
    async fn drive(&self, cycle: Oid) -> Result<(), ActorError> {
        let inner = &self.inner;
        loop {
            let slots = inner
                .space
                .read_committed(cycle)
                .await?
                .ok_or_else(|| ActorError::NoSuchObject(cycle.to_string()))?;
            if str_slot(&slots, "status") != "running" {
                return Ok(());
            }
            let state_oid = parent_of(&slots)?;
            let state = inner
                .space
                .read_committed(state_oid)
                .await?
                .ok_or_else(|| ActorError::NoSuchObject(state_oid.to_string()))?;
            let name = str_slot(&state, "state_name");
            let expert = str_slot(&state, "expert");
            let step = str_slot(&state, "step");
            let started = unix_ms();
            let mut changes = Changes::new();
            let note = display_yourself::run_step(
                &step,
                &display_yourself::StepContext {
                    cycle,
                    cycle_slots: &slots,
                    state: &state,
                    expert: &expert,
                    catalog: &inner.catalog,
                    model: inner.model.as_ref(),
                    documents: &inner.documents,
                    genesis: inner.genesis,
                },
                &mut changes,
            )
            .await?;
            let mut history = match slot(&slots, "history") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            history.push(Value::Map(vec![
                ("state".into(), Value::from(name.as_str())),
                ("expert".into(), Value::from(expert.as_str())),
                ("step".into(), Value::from(step.as_str())),
                ("started_ms".into(), Value::from(started)),
                ("finished_ms".into(), Value::from(unix_ms())),
                ("note".into(), Value::from(note)),
            ]));
            changes.set(cycle, "history", Value::Array(history));
            let next = slot(&state, "next_state").and_then(as_ref);
            // `cycle_update` says which state the cycle is in. The final
            // state is announced once its step is done and the cycle is
            // complete, so a client that sees it can read the results.
            let announce = match next {
                Some(next) => {
                    changes.set(cycle, PARENT_SLOT, ref_array(&[next]));
                    let next_state = inner.space.read_committed(next).await?.unwrap_or_default();
                    slot(&next_state, "next_state")
                        .is_some()
                        .then(|| str_slot(&next_state, "state_name"))
                }
                None => {
                    changes.set(cycle, "status", Value::from("complete"));
                    changes.set(cycle, "finished_ms", Value::from(unix_ms()));
                    Some(name.clone())
                }
            };
            inner.space.apply(changes).await?;
            if next.is_none() {
                // No longer running once complete: a client told so by the
                // event below may start another at once.
                self.running().remove(&cycle);
            }
            if let Some(state) = announce {
                inner.events.publish_cycle(CycleEvent { cycle, state });
            }
            if next.is_none() {
                tracing::info!(cycle, "cognitive cycle complete");
                return Ok(());
            }
            if !inner.config.step_pause.is_zero() {
                tokio::time::sleep(inner.config.step_pause).await;
            }
        }
    }
}

fn parent_of(slots: &[(String, Value)]) -> Result<Oid, ActorError> {
    slot(slots, PARENT_SLOT)
        .and_then(|v| parse_parents(v).ok()?.first().copied())
        .ok_or_else(|| ActorError::internal("a cycle without a state in `parent*`"))
}
