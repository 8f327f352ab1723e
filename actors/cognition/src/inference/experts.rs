//! Persona experts and their tiers (`memory_manager_obj`, the seed's
//! Synaptic Memory Manager).
//!
//! - **cold**: in the image. Each adapter folder found in the adapters
//!   directory (PEFT layout: `adapter_config.json` +
//!   `adapter_model.safetensors`) is absorbed on start: content-hashed, and
//!   stored as an `ExpertVersion` object once per hash (a changed file
//!   becomes a new version; an unchanged one is not stored again). The
//!   files themselves go to the image's content-addressed blob store; the
//!   version object holds their hashes, so reading it (or its events)
//!   never carries the weights.
//!   `memory_manager_obj.experts` maps each name to its `Expert` object.
//! - **warm**: the adapter's bytes in RAM, least recently used first out,
//!   within `warm_bytes`.
//! - **hot**: loaded in the model (materialized to disk for the backend,
//!   then [`Engine::load_adapter`]), within `hot_bytes` as the backend
//!   counts it ([`Engine::hot_cost`]); experts in use are pinned and never
//!   evicted under a request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use sha2::{Digest, Sha256};

use super::engine::{AdapterSpec, Engine};
use batos_actors::space::ObjectSpace;
use batos_object::changes::Changes;
use batos_object::error::ActorError;
use batos_object::roots;
use batos_object::value::{as_ref, find_slot as slot, make_ref, Oid, Value, PARENT_SLOT};

/// The PEFT files of one adapter.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The PEFT weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// Where an expert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// In the image only.
    Cold,
    /// In RAM.
    Warm,
    /// Loaded in the model.
    Hot,
}

impl Tier {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cold => "cold",
            Tier::Warm => "warm",
            Tier::Hot => "hot",
        }
    }
}

/// One expert as `list_experts` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpertInfo {
    /// The persona's name.
    pub name: String,
    /// Its tier.
    pub tier: Tier,
    /// Adapter bytes (config + weights).
    pub bytes: u64,
    /// Content hash of the current version.
    pub hash: String,
    /// Versions absorbed.
    pub versions: usize,
}

/// Budgets of the tiers.
#[derive(Debug, Clone)]
pub struct TierBudgets {
    /// Bytes of adapters in RAM.
    pub warm_bytes: u64,
    /// Model memory for hot experts (as [`Engine::hot_cost`] counts).
    pub hot_bytes: u64,
    /// Where hot adapters are written for the backend.
    pub materialize_dir: PathBuf,
}

struct Entry {
    info: ExpertInfo,
    /// The `ExpertVersion` object of the current version.
    version_oid: Oid,
    warm: Option<Arc<(Vec<u8>, Vec<u8>)>>,
    last_used: u64,
}

impl Entry {
    /// Loaded in the model (the tier is the one record of it).
    fn is_hot(&self) -> bool {
        self.info.tier == Tier::Hot
    }
}

#[derive(Clone)]
struct ExpertMetrics {
    moves: IntCounterVec,
    move_seconds: HistogramVec,
    bytes: IntGaugeVec,
}

/// The memory manager.
pub struct ExpertManager {
    space: ObjectSpace,
    engine: Option<Arc<dyn Engine>>,
    budgets: TierBudgets,
    state: tokio::sync::Mutex<HashMap<String, Entry>>,
    /// Requests using each hot expert (never evicted while > 0).
    pins: parking_lot::Mutex<HashMap<String, usize>>,
    clock: std::sync::atomic::AtomicU64,
    metrics: ExpertMetrics,
}

/// Keeps an expert hot while a request uses it.
pub struct Pin {
    manager: Arc<ExpertManager>,
    name: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = self.manager.pins.lock();
        if let Some(n) = pins.get_mut(&self.name) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Pin {
    fn new(manager: &Arc<ExpertManager>, name: &str) -> Pin {
        *manager.pins.lock().entry(name.to_string()).or_default() += 1;
        Pin {
            manager: manager.clone(),
            name: name.to_string(),
        }
    }
}

fn hash_files(config: &[u8], weights: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((config.len() as u64).to_be_bytes());
    h.update(config);
    h.update(weights);
    hex::encode(h.finalize())
}

/// An adapter folder as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundAdapter {
    /// The folder's name: the persona's name.
    pub name: String,
    /// `adapter_config.json`.
    pub config: Vec<u8>,
    /// `adapter_model.safetensors`.
    pub weights: Vec<u8>,
}

/// Adapter folders in `dir`, by name.
pub fn scan(dir: &Path) -> Result<Vec<FoundAdapter>, String> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(format!("reading {}: {err}", dir.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let (config, weights) = (path.join(ADAPTER_CONFIG), path.join(ADAPTER_WEIGHTS));
        if !config.is_file() || !weights.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let config = std::fs::read(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        check_config(&config).map_err(|e| format!("{name}/{ADAPTER_CONFIG}: {e}"))?;
        let weights = std::fs::read(&weights).map_err(|e| format!("{}: {e}", weights.display()))?;
        out.push(FoundAdapter {
            name,
            config,
            weights,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Checks that the adapter config is a JSON object (the backend reads the rest).
fn check_config(bytes: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
        .map(|_| ())
        .map_err(|e| format!("not a JSON object: {e}"))
}

impl ExpertManager {
    /// Opens the manager: loads what the image holds, absorbs the adapters
    /// in `adapters_dir` (new or changed ones become new versions).
    pub async fn open(
        space: ObjectSpace,
        engine: Option<Arc<dyn Engine>>,
        adapters_dir: &Path,
        budgets: TierBudgets,
        registry: &Registry,
    ) -> Result<Arc<ExpertManager>, ActorError> {
        let metrics = ExpertMetrics {
            moves: IntCounterVec::new(
                Opts::new(
                    "batos_expert_tier_moves_total",
                    "Experts moved between tiers",
                ),
                &["from", "to"],
            )
            .map_err(ActorError::internal)?,
            move_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "batos_expert_tier_move_seconds",
                    "Time to move an expert up a tier",
                )
                .buckets(
                    prometheus::exponential_buckets(0.0005, 2.0, 16)
                        .map_err(ActorError::internal)?,
                ),
                &["to"],
            )
            .map_err(ActorError::internal)?,
            bytes: IntGaugeVec::new(
                Opts::new("batos_expert_tier_bytes", "Bytes of experts per tier"),
                &["tier"],
            )
            .map_err(ActorError::internal)?,
        };
        registry
            .register(Box::new(metrics.moves.clone()))
            .map_err(ActorError::internal)?;
        registry
            .register(Box::new(metrics.move_seconds.clone()))
            .map_err(ActorError::internal)?;
        registry
            .register(Box::new(metrics.bytes.clone()))
            .map_err(ActorError::internal)?;
        let manager = Arc::new(ExpertManager {
            space,
            engine,
            budgets,
            state: tokio::sync::Mutex::new(HashMap::new()),
            pins: parking_lot::Mutex::new(HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(0),
            metrics,
        });
        manager.load().await?;
        let dir = adapters_dir.to_path_buf();
        let found = tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .map_err(ActorError::internal)?
            .map_err(|e| ActorError::BadRequest(format!("persona adapters: {e}")))?;
        manager.absorb(found).await?;
        Ok(manager)
    }

    fn manager_oid(&self) -> Result<Oid, ActorError> {
        self.space.root(roots::MEMORY_MANAGER)
    }

    async fn load(&self) -> Result<(), ActorError> {
        let mm = self
            .space
            .read_committed(self.manager_oid()?)
            .await?
            .unwrap_or_default();
        let Some(Value::Map(pairs)) = slot(&mm, "experts") else {
            return Ok(());
        };
        let mut state = self.state.lock().await;
        for (k, v) in pairs {
            let (Some(name), Some(expert)) = (k.as_str(), as_ref(v)) else {
                continue;
            };
            let slots = self.space.read_committed(expert).await?.unwrap_or_default();
            let Some(version_oid) = slot(&slots, "current").and_then(as_ref) else {
                continue;
            };
            // The expert object carries the current version's hash and size,
            // so starting never reads the adapters' weights.
            let versions = match slot(&slots, "versions") {
                Some(Value::Array(v)) => v.len(),
                _ => 1,
            };
            state.insert(
                name.to_string(),
                Entry {
                    info: ExpertInfo {
                        name: name.to_string(),
                        tier: Tier::Cold,
                        bytes: slot(&slots, "bytes").and_then(Value::as_u64).unwrap_or(0),
                        hash: slot(&slots, "hash")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        versions,
                    },
                    version_oid,
                    warm: None,
                    last_used: 0,
                },
            );
        }
        Ok(())
    }

    /// Stores new or changed adapters as new versions (one transaction).
    async fn absorb(&self, found: Vec<FoundAdapter>) -> Result<(), ActorError> {
        let manager = self.manager_oid()?;
        let mm = self
            .space
            .read_committed(manager)
            .await?
            .unwrap_or_default();
        let mut directory = match slot(&mm, "experts") {
            Some(Value::Map(pairs)) => pairs.clone(),
            _ => Vec::new(),
        };
        let traits = self.space.roots().traits();
        let mut changes = Changes::new();
        let mut state = self.state.lock().await;
        let mut absorbed = 0;
        for FoundAdapter {
            name,
            config,
            weights,
        } in found
        {
            let hash = hash_files(&config, &weights);
            if state.get(&name).is_some_and(|e| e.info.hash == hash) {
                continue;
            }
            let bytes = (config.len() + weights.len()) as u64;
            let version_oid = self.space.allocate_oid();
            let config_blob = changes.store_blob(config);
            let weights_blob = changes.store_blob(weights);
            changes.create(
                version_oid,
                vec![
                    (
                        PARENT_SLOT.to_string(),
                        Value::Array(vec![make_ref(traits)]),
                    ),
                    ("expert".to_string(), Value::from(name.as_str())),
                    ("hash".to_string(), Value::from(hash.as_str())),
                    ("bytes".to_string(), Value::from(bytes)),
                    // The files live in the image's blob store, by hash.
                    (
                        "adapter_config".to_string(),
                        Value::from(config_blob.as_str()),
                    ),
                    (
                        "adapter_weights".to_string(),
                        Value::from(weights_blob.as_str()),
                    ),
                    (
                        "absorbed_ms".to_string(),
                        Value::from(batos_object::clock::unix_ms()),
                    ),
                ],
            );
            let existing = directory
                .iter()
                .find(|(k, _)| k.as_str() == Some(name.as_str()))
                .and_then(|(_, v)| as_ref(v));
            let (expert_oid, mut versions) = match existing {
                Some(oid) => {
                    let slots = self.space.read_committed(oid).await?.unwrap_or_default();
                    let versions = match slot(&slots, "versions") {
                        Some(Value::Array(v)) => v.clone(),
                        _ => Vec::new(),
                    };
                    (oid, versions)
                }
                None => {
                    let oid = self.space.allocate_oid();
                    changes.create(
                        oid,
                        vec![
                            (
                                PARENT_SLOT.to_string(),
                                Value::Array(vec![make_ref(traits)]),
                            ),
                            ("name".to_string(), Value::from(name.as_str())),
                        ],
                    );
                    directory.push((Value::from(name.as_str()), make_ref(oid)));
                    (oid, Vec::new())
                }
            };
            versions.push(make_ref(version_oid));
            let count = versions.len();
            changes.set(expert_oid, "versions", Value::Array(versions));
            changes.set(expert_oid, "current", make_ref(version_oid));
            changes.set(expert_oid, "hash", Value::from(hash.as_str()));
            changes.set(expert_oid, "bytes", Value::from(bytes));
            state.insert(
                name.clone(),
                Entry {
                    info: ExpertInfo {
                        name: name.clone(),
                        tier: Tier::Cold,
                        bytes,
                        hash,
                        versions: count,
                    },
                    version_oid,
                    warm: None,
                    last_used: 0,
                },
            );
            absorbed += 1;
        }
        if absorbed > 0 {
            changes.set(manager, "experts", Value::Map(directory));
            self.space.apply(changes).await?;
            tracing::info!(absorbed, "persona adapters absorbed into the image");
        }
        self.update_gauges(&state);
        Ok(())
    }

    /// Every expert with its tier and size, by name.
    pub async fn list(&self) -> Vec<ExpertInfo> {
        let state = self.state.lock().await;
        let mut out: Vec<ExpertInfo> = state.values().map(|e| e.info.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Makes `name` hot (loading it through warm if needed) and pins it
    /// for the caller's request.
    pub async fn acquire(self: &Arc<Self>, name: &str) -> Result<Pin, ActorError> {
        let Some(engine) = self.engine.clone() else {
            return Err(ActorError::Unavailable(
                "no model is configured: experts cannot be loaded".into(),
            ));
        };
        let mut state = self.state.lock().await;
        let tick = self
            .clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let entry = state.get_mut(name).ok_or_else(|| {
            ActorError::BadRequest(format!("no expert named {name:?} (see list_experts)"))
        })?;
        entry.last_used = tick;
        if entry.is_hot() {
            return Ok(Pin::new(self, name));
        }
        let (version_oid, bytes, hash) =
            (entry.version_oid, entry.info.bytes, entry.info.hash.clone());
        // Cold → warm.
        let files = match entry.warm.clone() {
            Some(files) => files,
            None => {
                let started = Instant::now();
                let slots = self
                    .space
                    .read_committed(version_oid)
                    .await?
                    .unwrap_or_default();
                let mut files = Vec::with_capacity(2);
                for key in ["adapter_config", "adapter_weights"] {
                    let blob = match slot(&slots, key).and_then(Value::as_str) {
                        Some(hash) => self.space.load_blob(hash).await?,
                        None => None,
                    };
                    files.push(blob.ok_or_else(|| {
                        ActorError::internal(format!("expert {name}: {key} missing in the image"))
                    })?);
                }
                let weights = files.pop().unwrap_or_default();
                let config = files.pop().unwrap_or_default();
                let files = Arc::new((config, weights));
                self.metrics
                    .moves
                    .with_label_values(&["cold", "warm"])
                    .inc();
                self.metrics
                    .move_seconds
                    .with_label_values(&["warm"])
                    .observe(started.elapsed().as_secs_f64());
                let entry = state.get_mut(name).expect("entry present");
                entry.warm = Some(files.clone());
                entry.info.tier = Tier::Warm;
                Self::evict_warm(&mut state, self.budgets.warm_bytes, name, &self.metrics);
                files
            }
        };
        // Warm → hot, making room first.
        let cost = engine.hot_cost(bytes);
        self.evict_hot(&mut state, &engine, cost, name)?;
        let started = Instant::now();
        let dir = self
            .budgets
            .materialize_dir
            .join(format!("{name}-{}", &hash[..16.min(hash.len())]));
        let spec = AdapterSpec {
            name: name.to_string(),
            dir: dir.clone(),
            hash,
        };
        let load = {
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                std::fs::write(dir.join(ADAPTER_CONFIG), &files.0).map_err(|e| e.to_string())?;
                std::fs::write(dir.join(ADAPTER_WEIGHTS), &files.1).map_err(|e| e.to_string())?;
                engine.load_adapter(&spec).map_err(|e| e.to_string())
            })
        };
        load.await
            .map_err(ActorError::internal)?
            .map_err(|e| ActorError::Unavailable(format!("expert {name} cannot be loaded: {e}")))?;
        self.metrics.moves.with_label_values(&["warm", "hot"]).inc();
        self.metrics
            .move_seconds
            .with_label_values(&["hot"])
            .observe(started.elapsed().as_secs_f64());
        let entry = state.get_mut(name).expect("entry present");
        entry.info.tier = Tier::Hot;
        self.update_gauges(&state);
        Ok(Pin::new(self, name))
    }

    fn evict_warm(
        state: &mut HashMap<String, Entry>,
        budget: u64,
        keep: &str,
        metrics: &ExpertMetrics,
    ) {
        loop {
            let used: u64 = state
                .values()
                .filter(|e| e.warm.is_some() && !e.is_hot())
                .map(|e| e.info.bytes)
                .sum();
            if used <= budget {
                return;
            }
            let victim = state
                .iter()
                .filter(|(n, e)| e.warm.is_some() && !e.is_hot() && n.as_str() != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(n, _)| n.clone());
            let Some(victim) = victim else { return };
            let e = state.get_mut(&victim).expect("victim present");
            e.warm = None;
            e.info.tier = Tier::Cold;
            metrics.moves.with_label_values(&["warm", "cold"]).inc();
        }
    }

    fn evict_hot(
        &self,
        state: &mut HashMap<String, Entry>,
        engine: &Arc<dyn Engine>,
        need: u64,
        keep: &str,
    ) -> Result<(), ActorError> {
        loop {
            let used: u64 = state
                .values()
                .filter(|e| e.is_hot())
                .map(|e| engine.hot_cost(e.info.bytes))
                .sum();
            if used + need <= self.budgets.hot_bytes {
                return Ok(());
            }
            let pins = self.pins.lock().clone();
            let victim = state
                .iter()
                .filter(|(n, e)| {
                    e.is_hot() && pins.get(*n).copied().unwrap_or(0) == 0 && n.as_str() != keep
                })
                .min_by_key(|(_, e)| e.last_used)
                .map(|(n, _)| n.clone());
            let Some(victim) = victim else {
                if used == 0 {
                    return Err(ActorError::BadRequest(format!(
                        "expert {keep:?} needs {need} bytes hot, over the budget of {} ([inference] hot_bytes)",
                        self.budgets.hot_bytes
                    )));
                }
                return Err(ActorError::Overloaded(
                    "every hot expert is in use; retry when a request finishes".into(),
                ));
            };
            let _ = engine.unload_adapter(&victim);
            let e = state.get_mut(&victim).expect("victim present");
            e.info.tier = if e.warm.is_some() {
                Tier::Warm
            } else {
                Tier::Cold
            };
            self.metrics.moves.with_label_values(&["hot", "warm"]).inc();
        }
    }

    fn update_gauges(&self, state: &HashMap<String, Entry>) {
        for tier in [Tier::Cold, Tier::Warm, Tier::Hot] {
            let bytes: u64 = state
                .values()
                .filter(|e| e.info.tier == tier)
                .map(|e| e.info.bytes)
                .sum();
            self.metrics
                .bytes
                .with_label_values(&[tier.as_str()])
                .set(bytes as i64);
        }
    }
}
