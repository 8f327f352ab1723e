//! The mistral.rs backend (`mistralrs` 0.8.1, pinned): a local model,
//! GGUF or safetensors, with persona experts as LoRA adapters.
//!
//! How it uses mistral.rs, and why (each point was measured with 0.8.1):
//!
//! - **Offline, always.** Given a path that does not exist, mistral.rs treats
//!   it as a Hugging Face model id and goes to the network, and 0.8.1 ignores
//!   `HF_HUB_OFFLINE`. So every path is checked here before mistral.rs sees
//!   it, and the Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`) is pointed at
//!   a folder of ours.
//! - **Adapters are fixed when a model is built.** 0.8.1 merges LoRA weights
//!   into the base weights while loading (`LoraModelBuilder`); asking for
//!   adapters per request (`RequestBuilder::set_adapters`) changes nothing.
//!   So each hot expert is a *resident model* of its own: base weights plus
//!   its merged adapter, a full copy of the base weights per expert (see
//!   [`Engine::hot_cost`]). A request is routed to the base model or
//!   to its expert's model.
//! - **One fresh OS thread per model build.** mistral.rs keeps the adapters
//!   being merged in a thread-local list that it never clears, so a model
//!   built on a thread that once built a LoRA model silently inherits that
//!   model's adapters. Every build here runs on a new thread.
//! - **Adapters load from a local hub cache.** 0.8.1 looks LoRA adapter ids
//!   up on the hub only (never as local folders), through `hf-hub`'s cache
//!   first. [`MistralEngine::load_adapter`] registers the adapter's two PEFT
//!   files in our cache as repository `batos-adapters/<name>` (layout in
//!   `register_adapter`), so loading never opens a connection.
//! - **Grammar-constrained generation must be told to stop.** Under a
//!   constraint, llguidance only allows the tokenizer's end-of-text token once
//!   the grammar is complete, and mistral.rs does not stop on it unless it is
//!   a stop token; the special end tokens of the vocabulary are found once at
//!   load and added as stop tokens to every request.
//! - **Async inside, blocking outside.** The mistral.rs API is async; the
//!   engine owns a small multi-thread tokio runtime and blocks on it in the
//!   [`Engine`] methods (from a helper thread when the caller is itself
//!   inside a runtime, where a nested `block_on` would panic).

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mistralrs::{
    Constraint as MistralConstraint, GgufModelBuilder, IsqType, LoraModelBuilder, Model,
    RequestBuilder, Response, SamplingParams, StopTokens, TextMessageRole, TextMessages,
    TextModelBuilder, TokenSource,
};
use parking_lot::{Mutex, RwLock};

use super::engine::{
    AdapterSpec, CallControl, Constraint, Engine, EngineError, EngineOutput, EngineRequest,
    ModelSource, ModelSpec,
};
use super::experts::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};

/// The hub "organization" under which adapters are registered in our cache.
const ADAPTER_REPO_PREFIX: &str = "batos-adapters";
/// How often a waiting generation checks its [`CallControl`] for cancellation.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// End-of-text / end-of-turn markers of common vocabularies. Those that are
/// one *special* token in the model's tokenizer become stop tokens.
const STOP_TOKEN_CANDIDATES: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<eos>",
];

/// A model served by mistral.rs, with its hot experts.
///
/// Each hot expert is a separate resident mistral.rs model holding its own
/// copy of the base weights with the adapter merged in: switching experts
/// costs nothing per request, but every hot expert costs the base model's
/// memory again ([`Engine::hot_cost`] says so to the memory manager).
pub struct MistralEngine {
    name: String,
    source: ModelSource,
    isq: Option<IsqType>,
    /// The Hugging Face hub cache (`<hf_home>/hub`), where adapters are registered.
    hub_cache: PathBuf,
    /// Bytes of the base weights on disk (what each resident expert adds).
    base_bytes: u64,
    /// Token ids that end generation (besides the model's own EOS).
    stop_ids: Vec<u32>,
    base: Arc<Model>,
    experts: RwLock<HashMap<String, Expert>>,
    /// Serializes model builds (each needs the base model's memory again).
    build_lock: Mutex<()>,
    /// Drives the mistral.rs futures; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

/// A hot expert: its adapter version and its resident model.
struct Expert {
    hash: String,
    model: Arc<Model>,
}

impl MistralEngine {
    /// Loads `spec` with mistral.rs, strictly offline.
    ///
    /// The source must exist locally: a GGUF file, or a folder with
    /// `config.json`, `tokenizer.json` and `*.safetensors` (a plain
    /// Hugging Face layout whose `architectures` mistral.rs knows).
    /// `spec.isq` (e.g. `"Q4K"`, `"Q8_0"`, `"4"`) quantizes safetensors
    /// weights in place while loading; GGUF files are already quantized
    /// and ignore it.
    ///
    /// `hf_home` becomes the Hugging Face home of this process (`HF_HOME`,
    /// with the hub cache in `hf_home/hub`, `HF_HUB_CACHE`); adapters are
    /// registered there. The variables are set process-wide, once, before
    /// the first model is built; call this early, before other threads read
    /// the environment.
    pub fn load(spec: &ModelSpec, hf_home: &Path) -> Result<MistralEngine, EngineError> {
        let source = checked_source(&spec.source)?;
        let base_bytes = weight_bytes(&source)?;
        let isq = match (&spec.isq, &source) {
            (None, _) => None,
            (Some(isq), ModelSource::Gguf(path)) => {
                tracing::warn!(
                    isq = %isq,
                    model = %path.display(),
                    "in-situ quantization does not apply to GGUF models (already quantized); ignored"
                );
                None
            }
            (Some(isq), ModelSource::Safetensors(_)) => Some(parse_isq(isq)?),
        };
        let hub_cache = prepare_hf_home(hf_home)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("batos-mistralrs")
            .enable_all()
            .build()
            .map_err(|e| {
                EngineError::Backend(format!("cannot start the mistral.rs runtime: {e}"))
            })?;

        let what = format!("model {} ({})", spec.name, source_path(&source).display());
        let built = {
            let source = source.clone();
            let hub_cache = hub_cache.clone();
            build_on_fresh_thread(runtime.handle().clone(), what, move |runtime| {
                let built = match &source {
                    ModelSource::Gguf(file) => runtime.block_on(gguf_builder(file)?.build()),
                    ModelSource::Safetensors(dir) => {
                        runtime.block_on(text_builder(dir, isq, &hub_cache)?.build())
                    }
                };
                built.map_err(|e| format!("{e:#}"))
            })
        };
        let base = match built {
            Ok(base) => base,
            Err(err) => {
                // Dropping a runtime may block (a panic inside async code).
                runtime.shutdown_background();
                return Err(err);
            }
        };

        let mut engine = MistralEngine {
            name: spec.name.clone(),
            source,
            isq,
            hub_cache,
            base_bytes,
            stop_ids: Vec::new(),
            base: Arc::new(base),
            experts: RwLock::new(HashMap::new()),
            build_lock: Mutex::new(()),
            runtime: Some(runtime),
        };
        let base = engine.base.clone();
        engine.stop_ids = engine.block_on(async move { special_stop_ids(&base).await })?;
        tracing::info!(
            model = %engine.name,
            stop_ids = ?engine.stop_ids,
            base_bytes = engine.base_bytes,
            "mistral.rs model loaded"
        );
        Ok(engine)
    }

    /// The names of the hot experts (their adapters are loaded).
    pub fn hot_experts(&self) -> Vec<String> {
        let mut names: Vec<String> = self.experts.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The resident model that serves `expert` (the base model for `None`).
    fn model_for(&self, expert: Option<&str>) -> Result<Arc<Model>, EngineError> {
        match expert {
            None => Ok(self.base.clone()),
            Some(name) => self
                .experts
                .read()
                .get(name)
                .map(|expert| expert.model.clone())
                .ok_or_else(|| EngineError::Invalid(format!("expert {name:?} is not loaded"))),
        }
    }

    /// The mistral.rs request for `request`: the prompt as one user message
    /// (the model's chat template applies), greedy unless a temperature is
    /// given, at most `max_tokens`, the stop tokens, the grammar if any.
    fn request_builder(&self, request: &EngineRequest) -> RequestBuilder {
        let mut sampling = match request.temperature {
            Some(temperature) if temperature > 0.0 => {
                let mut sampling = SamplingParams::neutral();
                sampling.temperature = Some(temperature);
                sampling
            }
            // Greedy: top-k 1, no temperature, no penalties (deterministic).
            _ => SamplingParams::deterministic(),
        };
        sampling.max_len = Some(request.max_tokens);
        if !self.stop_ids.is_empty() {
            sampling.stop_toks = Some(StopTokens::Ids(self.stop_ids.clone()));
        }
        let constraint = match &request.constraint {
            None => MistralConstraint::None,
            Some(Constraint::Regex(regex)) => MistralConstraint::Regex(regex.clone()),
            Some(Constraint::Lark(grammar)) => MistralConstraint::Lark(grammar.clone()),
        };
        RequestBuilder::new()
            .add_message(TextMessageRole::User, &request.prompt)
            .set_sampling(sampling)
            .set_constraint(constraint)
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, EngineError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| EngineError::Backend("the mistral.rs runtime is shut down".into()))
    }

    /// Runs `future` to completion on the engine's runtime, blocking the
    /// caller. From inside an async runtime (where a nested `block_on`
    /// panics) it runs on a scoped helper thread instead. A panic inside
    /// mistral.rs becomes an error rather than killing the caller's thread.
    fn block_on<F>(&self, future: F) -> Result<F::Output, EngineError>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime()?;
        let panicked = |_| EngineError::Backend("a mistral.rs call panicked (see the log)".into());
        if tokio::runtime::Handle::try_current().is_err() {
            return std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(future)))
                .map_err(panicked);
        }
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("batos-mistralrs-call".into())
                .spawn_scoped(scope, || runtime.block_on(future))
                .map_err(|e| EngineError::Backend(format!("cannot start a helper thread: {e}")))?
                .join()
                .map_err(panicked)
        })
    }
}

impl Drop for MistralEngine {
    fn drop(&mut self) {
        // Dropping a runtime blocks on its workers, which panics inside an
        // async context; let them wind down in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Engine for MistralEngine {
    fn model_name(&self) -> String {
        self.name.clone()
    }

    /// Streams the generation so that the first token can be timed and
    /// the call can stop early: at the deadline or on cancellation, the
    /// stream is dropped and mistral.rs cancels the sequence at its next
    /// token. The token count is mistral.rs's own (`usage.completion_tokens`
    /// of the last chunk; the number of chunks if it never came).
    fn generate(
        &self,
        request: &EngineRequest,
        control: &CallControl,
    ) -> Result<EngineOutput, EngineError> {
        let started = Instant::now();
        if let Some(reason) = control.stop_reason() {
            return Err(EngineError::Cancelled(reason.into()));
        }
        if request.max_tokens == 0 {
            return Err(EngineError::Invalid(
                "`max_tokens` must be at least 1".into(),
            ));
        }
        let model = self.model_for(request.expert.as_deref())?;
        let builder = self.request_builder(request);
        let control = control.clone();
        self.block_on(async move { stream_generation(&model, builder, &control, started).await })?
    }

    /// Builds a resident model of the base weights with this adapter merged
    /// in, on a fresh OS thread. Costly: it reads the base weights again and
    /// holds a full copy of them for as long as the expert stays hot (see
    /// [`Engine::hot_cost`]). Loading the same adapter version again is a
    /// no-op; a new version replaces the old model.
    ///
    /// Needs a safetensors base model: mistral.rs 0.8.1 applies PEFT LoRA
    /// adapters only to plain (`TextModelBuilder`) models.
    fn load_adapter(&self, adapter: &AdapterSpec) -> Result<(), EngineError> {
        let ModelSource::Safetensors(base_dir) = &self.source else {
            return Err(EngineError::Invalid(format!(
                "expert {:?}: LoRA adapters need a safetensors base model; {} is a GGUF file \
                 (mistral.rs 0.8.1 merges PEFT adapters only into safetensors models)",
                adapter.name,
                source_path(&self.source).display()
            )));
        };
        check_adapter(adapter)?;
        if self
            .experts
            .read()
            .get(&adapter.name)
            .is_some_and(|expert| expert.hash == adapter.hash)
        {
            return Ok(());
        }

        let _building = self.build_lock.lock();
        let repo_id = register_adapter(&self.hub_cache, adapter)?;
        let what = format!(
            "expert {:?} (adapter {})",
            adapter.name,
            adapter.dir.display()
        );
        let model = {
            let base_dir = base_dir.clone();
            let hub_cache = self.hub_cache.clone();
            let isq = self.isq;
            build_on_fresh_thread(self.runtime()?.handle().clone(), what, move |runtime| {
                let base = text_builder(&base_dir, isq, &hub_cache)?;
                runtime
                    .block_on(
                        LoraModelBuilder::from_text_model_builder(base, [repo_id.clone()]).build(),
                    )
                    .map_err(|e| format!("{e:#}"))
            })?
        };
        let previous = self.experts.write().insert(
            adapter.name.clone(),
            Expert {
                hash: adapter.hash.clone(),
                model: Arc::new(model),
            },
        );
        // A replaced version's model is freed once its in-flight requests end.
        drop(previous);
        tracing::info!(expert = %adapter.name, hash = %adapter.hash, "expert is hot");
        Ok(())
    }

    /// Drops the expert's resident model (its memory is freed once requests
    /// still running on it finish). Unknown names are not an error.
    fn unload_adapter(&self, name: &str) -> Result<(), EngineError> {
        let removed = self.experts.write().remove(name);
        if removed.is_some() {
            tracing::info!(expert = %name, "expert left the hot tier");
        }
        Ok(())
    }

    /// Tokens of `text` by the model's own tokenizer (a mistral.rs
    /// tokenization request; no chat template, no special tokens added).
    fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        let model = self.base.clone();
        let text = text.to_owned();
        let tokens = self.block_on(async move { tokenize(&model, text).await })??;
        Ok(tokens.len())
    }

    /// The adapter plus a full copy of the base weights: every hot expert is
    /// a resident model of its own (mistral.rs 0.8.1 fixes adapters at build
    /// time). The base weights are counted as their size on disk (an upper
    /// bound when ISQ quantizes them while loading).
    fn hot_cost(&self, adapter_bytes: u64) -> u64 {
        adapter_bytes.saturating_add(self.base_bytes)
    }
}

/// Sends one streaming chat request and collects its output, honouring
/// `control` between chunks.
async fn stream_generation(
    model: &Model,
    request: RequestBuilder,
    control: &CallControl,
    started: Instant,
) -> Result<EngineOutput, EngineError> {
    let mut stream = model
        .stream_chat_request(request)
        .await
        .map_err(sdk_error)?;
    let mut text = String::new();
    let mut chunks = 0usize;
    let mut first_token = None;
    let mut generated = None;
    loop {
        if let Some(reason) = control.stop_reason() {
            // Dropping the stream makes mistral.rs cancel the sequence.
            return Err(EngineError::Cancelled(reason.into()));
        }
        let wake = std::cmp::min(control.deadline, Instant::now() + CANCEL_POLL);
        let next = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(wake),
            stream.next(),
        )
        .await
        {
            Ok(next) => next,
            // Nothing yet: check the deadline and cancellation again.
            Err(_elapsed) => continue,
        };
        // The engine closed the stream (it may skip the last chunk when the
        // final token is an incomplete UTF-8 sequence).
        let Some(response) = next else { break };
        match response {
            Response::Chunk(chunk) => {
                chunks += 1;
                if first_token.is_none() {
                    first_token = Some(started.elapsed());
                }
                if let Some(usage) = &chunk.usage {
                    generated = Some(usage.completion_tokens);
                }
                let mut finished = false;
                for choice in &chunk.choices {
                    if let Some(content) = &choice.delta.content {
                        text.push_str(content);
                    }
                    finished |= choice.finish_reason.is_some();
                }
                if finished {
                    break;
                }
            }
            Response::Done(done) => {
                if first_token.is_none() {
                    first_token = Some(started.elapsed());
                }
                if let Some(content) = done
                    .choices
                    .first()
                    .and_then(|c| c.message.content.as_ref())
                {
                    text = content.clone();
                }
                generated = Some(done.usage.completion_tokens);
                chunks = chunks.max(1);
                break;
            }
            Response::ModelError(message, _partial) => {
                return Err(EngineError::Backend(format!("the model failed: {message}")))
            }
            Response::InternalError(err) => return Err(EngineError::Backend(err.to_string())),
            Response::ValidationError(err) => return Err(EngineError::Invalid(err.to_string())),
            _ => {
                return Err(EngineError::Backend(
                    "mistral.rs answered a chat request with an unexpected response".into(),
                ))
            }
        }
    }
    if chunks == 0 {
        return Err(EngineError::Backend(
            "the mistral.rs engine closed the stream without output (see its log)".into(),
        ));
    }
    Ok(EngineOutput {
        text,
        tokens: generated.unwrap_or(chunks),
        first_token,
    })
}

/// Token ids of `text` (no chat template, no special tokens added).
async fn tokenize(model: &Model, text: String) -> Result<Vec<u32>, EngineError> {
    // `Model::tokenize` takes `either::Either<TextMessages, String>`; the
    // `either` crate converts `Result<R, L>` into `Either<L, R>` (`Ok` is
    // `Right`), which spares this crate a direct `either` dependency.
    model
        .tokenize(
            Ok::<String, TextMessages>(text).into(),
            None,
            false,
            false,
            None,
        )
        .await
        .map_err(sdk_error)
}

/// The vocabulary's end markers that are single *special* tokens (they
/// decode to nothing when special tokens are skipped).
async fn special_stop_ids(model: &Model) -> Vec<u32> {
    let mut ids = Vec::new();
    for candidate in STOP_TOKEN_CANDIDATES {
        let Ok(tokens) = tokenize(model, (*candidate).to_string()).await else {
            continue;
        };
        let &[id] = tokens.as_slice() else { continue };
        let is_special = model
            .detokenize(vec![id], true)
            .await
            .is_ok_and(|decoded| decoded.is_empty());
        if is_special && !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Builds a model on a new OS thread (see the module docs: mistral.rs
/// leaks merged adapters between builds on one thread), blocking until it
/// is ready. `build` runs on that thread and blocks on `runtime` itself, so
/// the load runs there; mistral.rs's `block_in_place` during the build is
/// allowed because `Handle::block_on` of a multi-thread runtime permits it.
///
/// A build that panics is tried again, on a fresh thread, up to
/// [`BUILD_ATTEMPTS`] times: mistral.rs 0.8.1 `try_lock().unwrap()`s its
/// pipeline right after starting the engine thread that locks it, which
/// panics now and then on a loaded machine. A build that fails with an
/// error is not retried.
fn build_on_fresh_thread<F>(
    runtime: tokio::runtime::Handle,
    what: String,
    build: F,
) -> Result<Model, EngineError>
where
    F: Fn(&tokio::runtime::Handle) -> Result<Model, String> + Send + Sync + 'static,
{
    let build = Arc::new(build);
    for attempt in 1..=BUILD_ATTEMPTS {
        let (build, runtime) = (build.clone(), runtime.clone());
        let thread = std::thread::Builder::new()
            .name("batos-mistralrs-build".into())
            .spawn(move || build(&runtime))
            .map_err(|e| {
                EngineError::Backend(format!("loading {what}: cannot start a thread: {e}"))
            })?;
        match thread.join() {
            Ok(Ok(model)) => return Ok(model),
            Ok(Err(err)) => return Err(EngineError::Backend(format!("loading {what}: {err}"))),
            Err(_) if attempt < BUILD_ATTEMPTS => {
                tracing::warn!(what = %what, attempt, "mistral.rs panicked while loading; trying again on a fresh thread");
            }
            Err(_) => {}
        }
    }
    Err(EngineError::Backend(format!(
        "loading {what}: mistral.rs panicked (see the log), {BUILD_ATTEMPTS} times"
    )))
}

/// Times a model build that panicked is tried (see [`build_on_fresh_thread`]).
const BUILD_ATTEMPTS: u32 = 3;

/// The builder for a GGUF file (its tokenizer and chat template are read
/// from the file).
fn gguf_builder(file: &Path) -> Result<GgufModelBuilder, String> {
    let dir = file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| format!("{} has no file name", file.display()))?;
    Ok(
        GgufModelBuilder::new(utf8(dir)?, vec![utf8(Path::new(name))?])
            .with_token_source(TokenSource::None),
    )
}

/// The builder for a safetensors folder.
fn text_builder(
    dir: &Path,
    isq: Option<IsqType>,
    hub_cache: &Path,
) -> Result<TextModelBuilder, String> {
    let mut builder = TextModelBuilder::new(utf8(dir)?)
        .with_token_source(TokenSource::None)
        .from_hf_cache_path(hub_cache.to_path_buf());
    if let Some(isq) = isq {
        builder = builder.with_isq(isq);
    }
    Ok(builder)
}

fn utf8(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("path {} is not valid UTF-8", path.display()))
}

/// `source` made absolute, after checking that everything mistral.rs will
/// read is there (a missing path would send it to the network).
fn checked_source(source: &ModelSource) -> Result<ModelSource, EngineError> {
    let canonical = |path: &Path| {
        std::fs::canonicalize(path)
            .map_err(|e| EngineError::Invalid(format!("model {}: {e}", path.display())))
    };
    match source {
        ModelSource::Gguf(file) => {
            let file = canonical(file)?;
            if !file.is_file() {
                return Err(EngineError::Invalid(format!(
                    "model {}: not a file (a GGUF model is one .gguf file)",
                    file.display()
                )));
            }
            utf8(&file).map_err(EngineError::Invalid)?;
            Ok(ModelSource::Gguf(file))
        }
        ModelSource::Safetensors(dir) => {
            let dir = canonical(dir)?;
            if !dir.is_dir() {
                return Err(EngineError::Invalid(format!(
                    "model {}: not a folder (a safetensors model is a folder)",
                    dir.display()
                )));
            }
            for needed in ["config.json", "tokenizer.json"] {
                if !dir.join(needed).is_file() {
                    return Err(EngineError::Invalid(format!(
                        "model {}: `{needed}` is missing",
                        dir.display()
                    )));
                }
            }
            if safetensors_files(&dir)?.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "model {}: no `*.safetensors` weights",
                    dir.display()
                )));
            }
            utf8(&dir).map_err(EngineError::Invalid)?;
            Ok(ModelSource::Safetensors(dir))
        }
    }
}

fn source_path(source: &ModelSource) -> &Path {
    match source {
        ModelSource::Gguf(path) | ModelSource::Safetensors(path) => path,
    }
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| EngineError::Invalid(format!("model {}: {e}", dir.display())))?;
    Ok(entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect())
}

/// Bytes of the model's weights on disk.
fn weight_bytes(source: &ModelSource) -> Result<u64, EngineError> {
    let files = match source {
        ModelSource::Gguf(file) => vec![file.clone()],
        ModelSource::Safetensors(dir) => safetensors_files(dir)?,
    };
    files.iter().try_fold(0u64, |total, file| {
        let len = std::fs::metadata(file)
            .map_err(|e| EngineError::Invalid(format!("model {}: {e}", file.display())))?
            .len();
        Ok(total.saturating_add(len))
    })
}

/// `"Q4K"`, `"q8_0"`, `"4"` ... as mistral.rs's ISQ type.
fn parse_isq(isq: &str) -> Result<IsqType, EngineError> {
    mistralrs::parse_isq_value(isq.trim(), None)
        .map_err(|e| EngineError::Invalid(format!("isq {isq:?}: {e}")))
}

/// Creates `hf_home/hub` and makes it this process's Hugging Face cache:
/// `HF_HOME` and `HF_HUB_CACHE` (both read by mistral.rs 0.8.1), plus
/// `HF_HUB_OFFLINE=1` for other Hugging Face tooling (0.8.1 ignores it;
/// offline is ensured by checking paths and registering adapters).
fn prepare_hf_home(hf_home: &Path) -> Result<PathBuf, EngineError> {
    let hub = hf_home.join("hub");
    std::fs::create_dir_all(&hub)
        .map_err(|e| EngineError::Invalid(format!("hf_home {}: {e}", hub.display())))?;
    let hf_home = std::fs::canonicalize(hf_home)
        .map_err(|e| EngineError::Invalid(format!("hf_home {}: {e}", hf_home.display())))?;
    let hub = hf_home.join("hub");
    let settings = [
        ("HF_HOME", hf_home.as_os_str()),
        ("HF_HUB_CACHE", hub.as_os_str()),
        ("HF_HUB_OFFLINE", std::ffi::OsStr::new("1")),
    ];
    for (key, value) in settings {
        // Set only when different: writing the environment races with
        // other threads reading it, so touch it as little as possible.
        if std::env::var_os(key).as_deref() != Some(value) {
            std::env::set_var(key, value);
        }
    }
    Ok(hub)
}

/// Checks an adapter folder before mistral.rs sees it: both PEFT files, and
/// the configuration keys mistral.rs 0.8.1 reads (`r`, `lora_alpha`, and
/// `target_modules` as a list of module names).
fn check_adapter(adapter: &AdapterSpec) -> Result<(), EngineError> {
    let invalid = |what: String| {
        EngineError::Invalid(format!(
            "expert {:?} ({}): {what}",
            adapter.name,
            adapter.dir.display()
        ))
    };
    for needed in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
        if !adapter.dir.join(needed).is_file() {
            return Err(invalid(format!("`{needed}` is missing")));
        }
    }
    let text = std::fs::read_to_string(adapter.dir.join(ADAPTER_CONFIG))
        .map_err(|e| invalid(format!("{ADAPTER_CONFIG}: {e}")))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{ADAPTER_CONFIG}: {e}")))?;
    if !config.get("r").is_some_and(serde_json::Value::is_u64) {
        return Err(invalid(format!(
            "{ADAPTER_CONFIG}: `r` must be a whole number"
        )));
    }
    if !config
        .get("lora_alpha")
        .is_some_and(serde_json::Value::is_number)
    {
        return Err(invalid(format!(
            "{ADAPTER_CONFIG}: `lora_alpha` must be a number"
        )));
    }
    let modules_ok = config
        .get("target_modules")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|modules| {
            !modules.is_empty() && modules.iter().all(serde_json::Value::is_string)
        });
    if !modules_ok {
        return Err(invalid(format!(
            "{ADAPTER_CONFIG}: `target_modules` must be a list of module names"
        )));
    }
    Ok(())
}

/// Registers an adapter's PEFT files in the local hub cache, where
/// mistral.rs 0.8.1 (through `hf-hub` 0.4.3) finds them without a
/// connection, and returns the repository id to load it by.
///
/// `hf-hub`'s cache layout, for repository `batos-adapters/<name>` at
/// revision `main` (the one mistral.rs asks for when none is set):
///
/// ```text
/// <hub_cache>/models--batos-adapters--<name>/refs/main            the commit id, no newline
/// <hub_cache>/models--batos-adapters--<name>/snapshots/<commit>/  adapter_config.json
///                                                                 adapter_model.safetensors
/// ```
///
/// The commit id is the adapter's content hash, so each version has its own
/// snapshot. The files are copied (not linked): the cache stays valid
/// whatever happens to the source folder.
fn register_adapter(hub_cache: &Path, adapter: &AdapterSpec) -> Result<String, EngineError> {
    let name = sanitize(&adapter.name);
    let commit = match sanitize(&adapter.hash) {
        hash if hash.is_empty() => "local".to_string(),
        hash => hash,
    };
    let repo_id = format!("{ADAPTER_REPO_PREFIX}/{name}");
    let repo_dir = hub_cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(&commit);
    let io = |what: &Path, e: std::io::Error| {
        EngineError::Backend(format!(
            "expert {:?}: registering the adapter in {}: {e}",
            adapter.name,
            what.display()
        ))
    };
    std::fs::create_dir_all(&snapshot).map_err(|e| io(&snapshot, e))?;
    for file in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
        let target = snapshot.join(file);
        let partial = snapshot.join(format!("{file}.partial"));
        std::fs::copy(adapter.dir.join(file), &partial).map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    }
    let refs = repo_dir.join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| io(&refs, e))?;
    // `hf-hub` reads the ref verbatim: no trailing newline.
    std::fs::write(refs.join("main"), commit.as_bytes()).map_err(|e| io(&refs, e))?;
    Ok(repo_id)
}

/// Keeps `[A-Za-z0-9._-]`, replacing anything else with `_` (a name usable
/// as one path component and one hub repository name).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('.')
        .to_string()
}

/// A mistral.rs SDK error as ours.
fn sdk_error(err: mistralrs::error::Error) -> EngineError {
    match err {
        mistralrs::error::Error::RequestValidation(message) => EngineError::Invalid(message),
        other => EngineError::Backend(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isq_names_parse() {
        assert_eq!(parse_isq("Q4K").ok(), Some(IsqType::Q4K));
        assert_eq!(parse_isq("q8_0").ok(), Some(IsqType::Q8_0));
        assert!(matches!(parse_isq("Q9"), Err(EngineError::Invalid(_))));
    }

    #[test]
    fn sanitize_keeps_safe_names() {
        assert_eq!(sanitize("BRICK"), "BRICK");
        assert_eq!(sanitize("a/b c"), "a_b_c");
        assert_eq!(sanitize("..x.."), "x");
    }

    #[test]
    fn missing_model_is_invalid_before_mistralrs() {
        let err = checked_source(&ModelSource::Gguf(PathBuf::from("/nonexistent/model.gguf")));
        assert!(matches!(err, Err(EngineError::Invalid(_))));
        let err = checked_source(&ModelSource::Safetensors(PathBuf::from(
            "/nonexistent/model",
        )));
        assert!(matches!(err, Err(EngineError::Invalid(_))));
    }
}
