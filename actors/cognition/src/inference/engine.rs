//! The narrow trait every model backend implements (mistral.rs today; a
//! remote OpenAI-compatible server or a scripted test generator alike).
//!
//! Calls are blocking: the inference service runs them on its own threads,
//! never on an actor or I/O thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the model is and where it lives (always a local path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// One GGUF file (its tokenizer is read from the file).
    Gguf(PathBuf),
    /// A folder with `config.json`, `tokenizer.json` and `*.safetensors`.
    Safetensors(PathBuf),
}

/// How to load the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Where the weights are.
    pub source: ModelSource,
    /// In-situ quantization (e.g. "Q4K", "Q8_0"); `None` keeps the weights as stored.
    pub isq: Option<String>,
    /// The name reported as provenance (defaults to the file or folder name).
    pub name: String,
}

/// A persona expert's LoRA adapter, materialized on disk in PEFT layout
/// (`adapter_config.json` + `adapter_model.safetensors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSpec {
    /// The expert's name (e.g. "BRICK").
    pub name: String,
    /// The folder holding the two PEFT files.
    pub dir: PathBuf,
    /// Content hash of the adapter (its version).
    pub hash: String,
}

/// A grammar the output must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// A regular expression (llguidance syntax).
    Regex(String),
    /// A Lark grammar (llguidance syntax).
    Lark(String),
}

/// One generation.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRequest {
    /// The user message (the engine applies the model's chat template).
    pub prompt: String,
    /// The expert whose adapter must be active, exactly; `None` for the base model.
    pub expert: Option<String>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Output grammar, if any.
    pub constraint: Option<Constraint>,
    /// Sampling temperature; `None` is greedy (deterministic).
    pub temperature: Option<f64>,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineOutput {
    /// The generated text.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Time from the start of the call to the first token, when known.
    pub first_token: Option<Duration>,
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The model, adapter or request is unusable (a clear message for people).
    #[error("{0}")]
    Invalid(String),
    /// The deadline passed or the request was cancelled.
    #[error("generation cancelled: {0}")]
    Cancelled(String),
    /// The backend failed.
    #[error("inference backend: {0}")]
    Backend(String),
    /// The backend cannot be reached now (a remote server down or
    /// overloaded, after the retries): the kernel is fine, try later.
    #[error("inference backend unreachable: {0}")]
    Unreachable(String),
}

/// Cancellation and deadline of one call, checked by the backend between tokens.
#[derive(Debug, Clone)]
pub struct CallControl {
    cancelled: Arc<AtomicBool>,
    /// When the call must give up.
    pub deadline: Instant,
}

impl CallControl {
    /// A control that expires after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        CallControl {
            cancelled: Arc::new(AtomicBool::new(false)),
            deadline: Instant::now() + timeout,
        }
    }

    /// The same call (shared cancellation) with its deadline reset to
    /// `timeout` from now (when generation starts after queueing).
    pub fn restarted(&self, timeout: Duration) -> Self {
        CallControl {
            cancelled: self.cancelled.clone(),
            deadline: Instant::now() + timeout,
        }
    }

    /// Asks the call to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Whether the call should stop now, and why.
    pub fn stop_reason(&self) -> Option<&'static str> {
        if self.cancelled.load(Ordering::Acquire) {
            Some("cancelled")
        } else if Instant::now() >= self.deadline {
            Some("deadline passed")
        } else {
            None
        }
    }
}

/// A model backend.
pub trait Engine: Send + Sync + 'static {
    /// The model's name, recorded as provenance of what it generates.
    fn model_name(&self) -> String;
    /// Generates one answer. Blocking.
    fn generate(
        &self,
        request: &EngineRequest,
        control: &CallControl,
    ) -> Result<EngineOutput, EngineError>;
    /// Makes an expert's adapter usable by `generate` (the hot tier). Blocking.
    fn load_adapter(&self, adapter: &AdapterSpec) -> Result<(), EngineError>;
    /// Frees an expert's adapter (it leaves the hot tier).
    fn unload_adapter(&self, name: &str) -> Result<(), EngineError>;
    /// Tokens in `text` by the model's tokenizer.
    fn count_tokens(&self, text: &str) -> Result<usize, EngineError>;
    /// Memory an adapter of `adapter_bytes` takes once hot (the memory
    /// manager's budget). Backends that keep a model copy per expert add
    /// the base weights.
    fn hot_cost(&self, adapter_bytes: u64) -> u64 {
        adapter_bytes
    }
}
