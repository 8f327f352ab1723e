//! Kernel configuration: built-in defaults, overridden by a TOML file, then by
//! `BATOS_<SECTION>_<KEY>` environment variables, then by command-line flags
//! (which the `batos` binary applies). `config/batos.toml` documents every
//! key with its default; a test proves the two agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a configuration could not be read: the file, its TOML, a key or a
/// value (the message says which).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The whole configuration. `config/batos.toml` documents every key.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Process-wide settings.
    pub kernel: KernelConfig,
    /// The Synaptic Bridge (ZeroMQ).
    pub bridge: BridgeConfig,
    /// The image (RocksDB).
    pub store: StoreConfig,
    /// Object actors.
    pub actors: ActorsConfig,
    /// The method sandbox and its audit.
    pub sandbox: SandboxConfig,
    /// The autotelic heartbeat.
    pub heartbeat: HeartbeatConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Fractal memory (the knowledge catalog).
    pub memory: MemoryConfig,
    /// Cognitive cycles.
    pub orchestrator: OrchestratorConfig,
    /// The cognitive core (language model and persona experts).
    pub inference: InferenceConfig,
}

/// `[kernel]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Directory holding the image (`image/`) and snapshots (`snapshots/`).
    pub data_dir: PathBuf,
    /// Log filter (tracing `EnvFilter` syntax) used when `RUST_LOG` is unset.
    pub log: String,
    /// Start the display_yourself first conversation on a fresh image.
    pub first_conversation: bool,
    /// Where `requestUpgrade_` submits upgrade instructions for the steward.
    pub upgrade_channel: PathBuf,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            data_dir: PathBuf::from("data"),
            log: "info".into(),
            first_conversation: true,
            upgrade_channel: PathBuf::from("upgrade_channel"),
        }
    }
}

/// `[bridge]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Commands socket (ROUTER, bound). Loopback only (see Security).
    pub endpoint: String,
    /// Events socket (PUB, bound). Loopback only.
    pub events: String,
    /// Requests with a larger body get `too_large`.
    pub max_request_bytes: usize,
    /// Requests being worked on at once; past this, `overloaded`.
    pub max_inflight: usize,
    /// One connection's share of `max_inflight`: past it, more requests
    /// from that connection get `overloaded` unless as many slots stay
    /// free for the others.
    pub max_inflight_per_peer: usize,
    /// Events queued for the PUB socket before new ones are dropped.
    pub event_queue: usize,
    /// Replies queued for one connection that is not reading them; past
    /// this its replies are dropped and counted.
    pub max_queued_replies: usize,
    /// Events queued for one subscriber that is not reading them; past
    /// this ZeroMQ drops that subscriber's events.
    pub max_queued_events: usize,
    /// The role of a client that presents no key (`read`, `write` or
    /// `admin`): `read` sends and reads; `write` changes the user's
    /// objects; `admin` also installs methods on roots, changes
    /// `traits_obj`, requests upgrades and snapshots.
    pub anonymous_role: String,
    /// The kernel's CURVE key pair file (`batos keys new`). Empty: no
    /// CURVE, and loopback endpoints only. Set: both sockets admit only the
    /// clients in `curve_clients`, on any endpoint.
    pub curve_key: String,
    /// With `curve_key`: the directory of clients allowed in, each client's
    /// public key file (`NAME.pub`) under its role's subdirectory
    /// (`read/`, `write/` or `admin/`).
    pub curve_clients: String,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            endpoint: "tcp://127.0.0.1:5555".into(),
            events: "tcp://127.0.0.1:5556".into(),
            max_request_bytes: 16 * 1024 * 1024,
            max_inflight: 1024,
            max_inflight_per_peer: 256,
            event_queue: 65_536,
            max_queued_replies: 1024,
            max_queued_events: 10_000,
            anonymous_role: "admin".into(),
            curve_key: String::new(),
            curve_clients: String::new(),
        }
    }
}

/// How durable an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync'd before the reply (group commit shares one fsync).
    Sync,
    /// In the write-ahead log (OS page cache) before the reply: survives a
    /// process crash, not a power cut.
    Buffered,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sync"` or `"buffered"`.
    pub durability: Durability,
    /// RocksDB block cache.
    pub block_cache_bytes: usize,
    /// Most transactions in one group commit.
    pub max_group_commit: usize,
    /// Snapshots kept under `<data_dir>/snapshots`: taking one more removes
    /// the oldest (each pins the image's files as they were).
    pub keep_snapshots: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: Durability::Sync,
            block_cache_bytes: 16 * 1024 * 1024,
            max_group_commit: 512,
            keep_snapshots: 8,
        }
    }
}

/// `[actors]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsConfig {
    /// Threads hosting object actors; 0 = one per CPU core.
    pub arbiters: usize,
    /// A live object idle this long is passivated (its actor stops).
    pub passivate_after_ms: u64,
    /// How often each object checks whether it is idle.
    pub passivate_check_ms: u64,
}

impl Default for ActorsConfig {
    fn default() -> Self {
        ActorsConfig {
            arbiters: 0,
            passivate_after_ms: 60_000,
            passivate_check_ms: 5_000,
        }
    }
}

/// `[sandbox]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Threads running methods.
    pub threads: usize,
    /// Fuel (about one unit per wasm instruction) per method call.
    pub fuel_per_call: u64,
    /// Linear memory one method call may use.
    pub max_memory_bytes: usize,
    /// Wall-clock time for one message, nested sends included.
    pub wall_clock_ms: u64,
    /// Bytes of slot values one message may write, every method it runs
    /// together; past this it fails with `too_large` and keeps nothing.
    pub max_transaction_bytes: usize,
    /// Deepest chain of nested sends.
    pub max_send_depth: u32,
    /// Largest module binary the audit accepts.
    pub max_module_bytes: usize,
    /// Most memory pages (64 KiB) a module may declare.
    pub max_memory_pages: u64,
    /// Most table elements a module may declare.
    pub max_table_elements: u64,
    /// Most functions a module may define.
    pub max_functions: u32,
    /// Largest body of one function (the compiler's time grows faster
    /// than a function's size).
    pub max_function_bytes: usize,
    /// Compiled methods kept linked in memory; past this the longest
    /// loaded is let go and loads again, sealed, from the image.
    pub max_loaded_modules: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            threads: 2,
            fuel_per_call: 50_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            wall_clock_ms: 2_000,
            max_transaction_bytes: 64 * 1024 * 1024,
            max_send_depth: 32,
            max_module_bytes: 1024 * 1024,
            max_memory_pages: 256,
            max_table_elements: 10_000,
            max_functions: 10_000,
            max_function_bytes: 128 * 1024,
            max_loaded_modules: 4096,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `HOST:PORT` of the Prometheus endpoint (`/metrics`); empty disables it.
    pub listen: String,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time a connection has to send its whole request head before it is
    /// closed.
    pub header_timeout_ms: u64,
    /// Serve on an address other machines can reach (the endpoint has no
    /// authentication); off, such an address is refused at start.
    pub allow_remote: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
            max_connections: 16,
            header_timeout_ms: 5_000,
            allow_remote: false,
        }
    }
}

/// `[memory]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Token budget of one chunk.
    pub chunk_tokens: usize,
    /// Children (chunks or summaries) per summary.
    pub summary_fanout: usize,
    /// Token budget of one summary.
    pub summary_tokens: usize,
    /// Most documents written in one batch (one image transaction, one index commit).
    pub max_batch_documents: usize,
    /// Ingest requests waiting beyond this get `overloaded`.
    pub max_queue: usize,
    /// Summarize newly ingested sources in the background.
    pub background_summaries: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            chunk_tokens: 256,
            summary_fanout: 8,
            summary_tokens: 160,
            max_batch_documents: 512,
            max_queue: 1024,
            background_summaries: true,
        }
    }
}

/// `[orchestrator]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// A pause after each cycle step, to watch a cycle go (0: none).
    pub step_pause_ms: u64,
    /// Cycles running at once; `start_cycle` past this is `overloaded`
    /// (cycles resumed at start are not refused).
    pub max_running: usize,
    /// Cycles one connection may have running at once; past this its
    /// `start_cycle` is `overloaded`, so one client cannot take them all.
    pub max_running_per_client: usize,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            step_pause_ms: 0,
            max_running: 8,
            max_running_per_client: 2,
        }
    }
}

/// `[inference]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// The backend: "mistral" (mistral.rs, when built with it), "openai"
    /// (a remote OpenAI-compatible server, `remote_*`) or "scripted"
    /// (answers from a JSON script file given as `model`).
    pub engine: String,
    /// The model: a GGUF file or a safetensors folder ("" = no model;
    /// `--model PATH` overrides). Never downloaded: the path must exist.
    pub model: PathBuf,
    /// In-situ quantization applied when loading (e.g. "Q4K", "Q8_0"; "" keeps the weights).
    pub isq: String,
    /// Folder of persona experts (LoRA adapters, PEFT layout) absorbed into the image on start.
    pub adapters_dir: PathBuf,
    /// Generations waiting beyond this get `overloaded`.
    pub max_queue: usize,
    /// Longest one generation may run, queueing excluded.
    pub timeout_ms: u64,
    /// `max_tokens` when `infer` gives none.
    pub default_max_tokens: usize,
    /// Bytes of experts kept in RAM (the warm tier, LRU).
    pub warm_bytes: u64,
    /// Bytes of accelerator (or CPU) memory for hot experts, base weights included.
    pub hot_bytes: u64,
    /// doesNotUnderstand: generation attempts before giving up.
    pub dnu_attempts: u32,
    /// doesNotUnderstand: tokens per generated method.
    pub dnu_max_tokens: usize,
    /// doesNotUnderstand: the persona expert that writes methods ("" = base model).
    pub dnu_expert: String,
    /// doesNotUnderstand: what the model writes methods in ("python" or "wat").
    pub dnu_language: String,
    /// engine "openai": the server's API base URL (`http://HOST:PORT/v1`).
    pub remote_url: String,
    /// engine "openai": the model's name at the server ("" = the first it lists).
    pub remote_model: String,
    /// engine "openai": a file holding the API key ("" = none).
    pub remote_api_key_file: PathBuf,
    /// engine "openai": an environment variable holding the API key ("" = none).
    pub remote_api_key_env: String,
    /// engine "openai": time to connect.
    pub remote_connect_timeout_ms: u64,
    /// engine "openai": retries of a request that failed before any output.
    pub remote_retries: u32,
    /// engine "openai": the first retry's wait (each next one doubles it).
    pub remote_retry_backoff_ms: u64,
    /// engine "openai": stream answers (server-sent events).
    pub remote_stream: bool,
    /// engine "openai": where grammars go: "none", "vllm" or "mistralrs".
    pub remote_grammar: String,
    /// engine "openai": how experts are named: "model" or "adapter_id".
    pub remote_expert_field: String,
    /// engine "openai": expert name → the server's name for its adapter.
    pub remote_experts: BTreeMap<String, String>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            engine: "mistral".into(),
            model: PathBuf::new(),
            isq: String::new(),
            adapters_dir: PathBuf::from("lora_adapters"),
            max_queue: 64,
            timeout_ms: 120_000,
            default_max_tokens: 128,
            warm_bytes: 2 * 1024 * 1024 * 1024,
            hot_bytes: 6_900_000_000,
            dnu_attempts: 3,
            dnu_max_tokens: 512,
            dnu_expert: String::new(),
            dnu_language: "python".into(),
            remote_url: String::new(),
            remote_model: String::new(),
            remote_api_key_file: PathBuf::new(),
            remote_api_key_env: String::new(),
            remote_connect_timeout_ms: 5_000,
            remote_retries: 2,
            remote_retry_backoff_ms: 250,
            remote_stream: true,
            remote_grammar: "none".into(),
            remote_expert_field: "model".into(),
            remote_experts: BTreeMap::new(),
        }
    }
}

const SECTIONS: [&str; 10] = [
    "kernel",
    "bridge",
    "store",
    "actors",
    "sandbox",
    "heartbeat",
    "metrics",
    "memory",
    "orchestrator",
    "inference",
];

/// `[heartbeat]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Time between beats; 0 turns the heartbeat off.
    pub interval_ms: u64,
    /// Time between scheduled checkpoints of the image; 0 turns them off.
    pub checkpoint_every_ms: u64,
    /// Scheduled checkpoints kept (older ones are deleted).
    pub keep_checkpoints: usize,
    /// Share of trapping calls that rolls a method version back.
    pub trap_rollback_threshold: f64,
    /// Calls a version needs (since the last beat) before the rule applies.
    pub trap_rollback_min_calls: u64,
    /// Share of requests answered with an error that is recorded as a finding.
    pub error_rate_threshold: f64,
    /// Requests (since the last beat) needed before the error rule applies.
    pub error_rate_min_requests: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval_ms: 10_000,
            checkpoint_every_ms: 3_600_000,
            keep_checkpoints: 3,
            trap_rollback_threshold: 0.5,
            trap_rollback_min_calls: 10,
            error_rate_threshold: 0.5,
            error_rate_min_requests: 100,
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `BATOS_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError(e.to_string()))
    }

    /// Parses configuration text (no environment).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }
}

/// Overlays `BATOS_<SECTION>_<KEY>=VALUE` variables onto a config table. The
/// value is read as a TOML value when it parses as one, else as a string.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("BATOS_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let section_table = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("[{section}] is not a table")))?;
        section_table.insert(key.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses_and_equals_defaults() {
        let text = include_str!("../../../config/batos.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[bridge]\nendpont = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("endpont"), "{err}");
    }

    #[test]
    fn env_overrides_file_values() {
        let mut table: toml::Table = toml::from_str("[store]\ndurability = \"sync\"\n").unwrap();
        let vars = [
            ("BATOS_STORE_DURABILITY".to_string(), "buffered".to_string()),
            ("BATOS_BRIDGE_MAX_INFLIGHT".to_string(), "7".to_string()),
            ("BATOS_BIN".to_string(), "/elsewhere".to_string()),
        ];
        apply_env(&mut table, vars.into_iter()).unwrap();
        let config = Config::deserialize(toml::Value::Table(table)).unwrap();
        assert_eq!(config.store.durability, Durability::Buffered);
        assert_eq!(config.bridge.max_inflight, 7);
    }
}
