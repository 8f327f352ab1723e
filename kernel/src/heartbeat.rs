//! The autotelic heartbeat: a periodic loop doing the kernel's homeostatic
//! work. Each beat it reads its own health from the metrics (request error
//! rate, doesNotUnderstand rate, method trap rate, commit latency), applies
//! the configured rules, checkpoints the image on schedule, and records what
//! it found as objects a client can read: `genesis_obj`'s `findings` slot
//! lists them (newest last, at most [`MAX_FINDINGS`]).
//!
//! Rules:
//! - **trap-rate rollback**: a method version that ran at least
//!   `trap_rollback_min_calls` times since the last beat and trapped in at
//!   least `trap_rollback_threshold` of them is rolled back to the previous
//!   version on the object holding it (finding `trap_rate_rollback`; with no
//!   earlier version, finding `trap_rate` and no action).
//! - **error rate**: with at least `error_rate_min_requests` requests since
//!   the last beat and an error share at or above `error_rate_threshold`,
//!   finding `error_rate`.
//!
//! Idle objects passivate on their own timers (`[actors]`); the heartbeat
//! reports how many are live.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use batos_actors::{ObjectSpace, Oid, Value};
use batos_memory::Catalog;
use batos_object::value::make_ref;
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounterVec, Opts, Registry};
use tokio::sync::watch;

pub use crate::config::HeartbeatConfig;

/// Findings kept in `genesis_obj.findings`.
pub const MAX_FINDINGS: usize = 100;

#[derive(Clone)]
struct HeartbeatMetrics {
    beats: IntCounterVec,
    error_rate: Gauge,
    dnu_rate: Gauge,
    trap_rate: Gauge,
    commit_mean: Gauge,
}

impl HeartbeatMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = HeartbeatMetrics {
            beats: IntCounterVec::new(
                Opts::new(
                    "batos_heartbeat_actions_total",
                    "Heartbeat work done, by kind (beat, checkpoint, rollback, finding)",
                ),
                &["kind"],
            )?,
            error_rate: Gauge::new(
                "batos_heartbeat_error_ratio",
                "Share of requests answered with an error, last beat",
            )?,
            dnu_rate: Gauge::new(
                "batos_heartbeat_dnu_ratio",
                "Share of requests answered does_not_understand, last beat",
            )?,
            trap_rate: Gauge::new(
                "batos_heartbeat_trap_ratio",
                "Share of method calls that trapped, last beat",
            )?,
            commit_mean: Gauge::new(
                "batos_heartbeat_commit_mean_seconds",
                "Mean group-commit time, last beat",
            )?,
        };
        // Known label values start at zero, so dashboards have the series.
        for kind in ["beat", "checkpoint", "rollback", "finding"] {
            m.beats.with_label_values(&[kind]);
        }
        registry.register(Box::new(m.beats.clone()))?;
        registry.register(Box::new(m.error_rate.clone()))?;
        registry.register(Box::new(m.dnu_rate.clone()))?;
        registry.register(Box::new(m.trap_rate.clone()))?;
        registry.register(Box::new(m.commit_mean.clone()))?;
        Ok(m)
    }
}

/// Counter totals read from the registry at one beat.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: f64,
    errors: f64,
    dnu: f64,
    calls: f64,
    traps: f64,
    commit_seconds: f64,
    commits: f64,
}

impl Totals {
    fn read(registry: &Registry) -> Totals {
        let families = registry.gather();
        let mut t = Totals::default();
        for (status, value) in labelled(&families, "batos_bridge_requests_total", "status") {
            t.requests += value;
            if status != "ok" {
                t.errors += value;
            }
            if status == "does_not_understand" {
                t.dnu += value;
            }
        }
        for (outcome, value) in labelled(&families, "batos_sandbox_method_calls_total", "outcome") {
            t.calls += value;
            if outcome == "trap" {
                t.traps += value;
            }
        }
        if let Some(h) = families
            .iter()
            .find(|f| f.name() == "batos_store_commit_duration_seconds")
            .and_then(|f| f.get_metric().first())
        {
            t.commit_seconds = h.get_histogram().get_sample_sum();
            t.commits = h.get_histogram().get_sample_count() as f64;
        }
        t
    }
}

fn labelled(families: &[MetricFamily], name: &str, label: &str) -> Vec<(String, f64)> {
    families
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .map(|m| {
            let value = m.get_counter().get_value();
            let label = m
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_string());
            (label.unwrap_or_default(), value)
        })
        .collect()
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// Runs beats until `stop` turns true.
pub async fn run(
    space: ObjectSpace,
    catalog: Catalog,
    config: HeartbeatConfig,
    data_dir: PathBuf,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
) {
    if config.interval_ms == 0 {
        return;
    }
    let metrics = match HeartbeatMetrics::new(&registry) {
        Ok(m) => m,
        Err(err) => {
            tracing::error!(error = %err, "heartbeat metrics could not be registered; heartbeat off");
            return;
        }
    };
    let mut beat = Beat {
        space,
        catalog,
        config,
        data_dir,
        registry,
        metrics,
        last: Totals::default(),
        last_checkpoint: Instant::now(),
    };
    beat.last = Totals::read(&beat.registry);
    let mut ticker = tokio::time::interval(Duration::from_millis(beat.config.interval_ms));
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticker.tick() => beat.once().await,
        }
    }
}

struct Beat {
    space: ObjectSpace,
    catalog: Catalog,
    config: HeartbeatConfig,
    data_dir: PathBuf,
    registry: Registry,
    metrics: HeartbeatMetrics,
    last: Totals,
    last_checkpoint: Instant,
}

impl Beat {
    async fn once(&mut self) {
        self.metrics.beats.with_label_values(&["beat"]).inc();
        let now = Totals::read(&self.registry);
        let d = |f: fn(&Totals) -> f64| f(&now) - f(&self.last);
        let requests = d(|t| t.requests);
        let error_rate = ratio(d(|t| t.errors), requests);
        self.metrics.error_rate.set(error_rate);
        self.metrics.dnu_rate.set(ratio(d(|t| t.dnu), requests));
        self.metrics
            .trap_rate
            .set(ratio(d(|t| t.traps), d(|t| t.calls)));
        self.metrics
            .commit_mean
            .set(ratio(d(|t| t.commit_seconds), d(|t| t.commits)));
        self.last = now;
        if requests >= self.config.error_rate_min_requests as f64
            && error_rate >= self.config.error_rate_threshold
        {
            self.record(
                "error_rate",
                vec![
                    ("requests", Value::from(requests as u64)),
                    ("error_ratio", Value::F64(error_rate)),
                    ("action", Value::from("none")),
                ],
            )
            .await;
        }
        self.trap_rule().await;
        // Fractal memory: summarize sources ingested since the last beat,
        // unless the memory worker already does so between ingests.
        if !self.catalog.summarizes_in_background() {
            match self.catalog.summarize(Vec::new()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(summaries = n, "heartbeat summarized new memory"),
                Err(err) => tracing::warn!(error = %err, "heartbeat could not summarize memory"),
            }
        }
        if self.config.checkpoint_every_ms > 0
            && self.last_checkpoint.elapsed()
                >= Duration::from_millis(self.config.checkpoint_every_ms)
        {
            self.last_checkpoint = Instant::now();
            self.checkpoint().await;
        }
    }

    async fn trap_rule(&mut self) {
        for m in self.space.take_method_stats() {
            let share = ratio(m.traps as f64, m.calls as f64);
            if m.calls < self.config.trap_rollback_min_calls
                || share < self.config.trap_rollback_threshold
            {
                continue;
            }
            let mut details = vec![
                ("holder", make_ref(m.holder)),
                ("selector", Value::from(m.selector.as_str())),
                ("version", Value::from(m.version)),
                ("calls", Value::from(m.calls)),
                ("traps", Value::from(m.traps)),
                ("trap_ratio", Value::F64(share)),
            ];
            if m.version <= 1 {
                details.push(("action", Value::from("none: no earlier version")));
                self.record("trap_rate", details).await;
                continue;
            }
            let back = m.version - 1;
            let args = vec![Value::from(m.selector.as_str()), Value::from(back)];
            match self
                .space
                .send(m.holder, "rollbackMethod_toVersion_".into(), args)
                .await
            {
                Ok(_) => {
                    tracing::warn!(oid = m.holder, selector = %m.selector, from = m.version, to = back, share, "trap rate too high: method rolled back");
                    self.metrics.beats.with_label_values(&["rollback"]).inc();
                    details.push((
                        "action",
                        Value::from(format!("rolled back to version {back}")),
                    ));
                }
                Err(err) => {
                    details.push(("action", Value::from(format!("rollback failed: {err}"))))
                }
            }
            self.record("trap_rate_rollback", details).await;
        }
    }

    /// Records a finding object and lists it on `genesis_obj.findings`.
    async fn record(&self, kind: &str, details: Vec<(&str, Value)>) {
        self.metrics.beats.with_label_values(&["finding"]).inc();
        let at_ms = batos_object::clock::unix_ms();
        let mut slots = vec![
            ("kind".to_string(), Value::from(kind)),
            ("at_ms".to_string(), Value::from(at_ms)),
        ];
        slots.extend(details.into_iter().map(|(k, v)| (k.to_string(), v)));
        let result = async {
            let finding = self.space.create_object(slots).await?;
            let genesis: Oid = self
                .space
                .roots()
                .oid(batos_object::roots::GENESIS)
                .unwrap_or_default();
            let mut list = match self.space.get_slot(genesis, "findings".into()).await {
                Ok(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            list.push(make_ref(finding));
            let excess = list.len().saturating_sub(MAX_FINDINGS);
            list.drain(..excess);
            self.space
                .set_slot(genesis, "findings".into(), Value::Array(list))
                .await
        };
        if let Err(err) = result.await {
            tracing::error!(error = %err, kind, "recording a heartbeat finding failed");
        }
    }

    async fn checkpoint(&self) {
        match self.space.snapshot().await {
            Ok(id) => {
                self.metrics.beats.with_label_values(&["checkpoint"]).inc();
                tracing::info!(id = %id, "scheduled checkpoint");
                let dir = self.data_dir.join("snapshots");
                let keep = self.config.keep_checkpoints.max(1);
                let pruned = tokio::task::spawn_blocking(move || prune(&dir, keep)).await;
                if let Ok(Err(err)) = pruned {
                    tracing::warn!(error = %err, "pruning old checkpoints failed");
                }
            }
            Err(err) => tracing::error!(error = %err, "scheduled checkpoint failed"),
        }
    }
}

/// Deletes all but the newest `keep` checkpoints (ids sort by time).
fn prune(dir: &std::path::Path, keep: usize) -> std::io::Result<()> {
    let mut ids: Vec<(u128, u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (millis, seq) = name.split_once('-')?;
            Some((millis.parse().ok()?, seq.parse().ok()?, e.path()))
        })
        .collect();
    ids.sort();
    let excess = ids.len().saturating_sub(keep);
    for (_, _, path) in ids.into_iter().take(excess) {
        std::fs::remove_dir_all(path)?;
    }
    Ok(())
}
