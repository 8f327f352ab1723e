//! Starting the cognitive core from the configuration: the model backend,
//! the inference service, the persona experts' tiers and the model tier of
//! doesNotUnderstand. A model that cannot load is reported clearly and the
//! kernel runs on without one (`infer` answers `unavailable`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use batos_actors::ObjectSpace;
use batos_cognition::generation::{GenerationConfig, Language, ModelTier};
use batos_cognition::inference::experts::{ExpertManager, TierBudgets};
use batos_cognition::inference::openai::{ExpertField, GrammarFormat, RemoteEngine, RemoteSpec};
use batos_cognition::inference::scripted::ScriptedEngine;
use batos_cognition::inference::{Cognition, Engine, InferenceService, ServiceConfig};
use prometheus::Registry;

use crate::config::InferenceConfig;
use crate::error::KernelError;

/// The running cognitive core.
pub struct Core {
    /// Generation, when a model is loaded.
    pub cognition: Option<Cognition>,
    /// The experts (listed even without a model).
    pub experts: Arc<ExpertManager>,
    /// doesNotUnderstand's model tier, when a model is loaded.
    pub tier: Option<Arc<ModelTier>>,
}

/// Loads the configured backend; `Ok(None)` when no model is configured.
pub fn load_engine(
    config: &InferenceConfig,
    data_dir: &Path,
) -> Result<Option<Arc<dyn Engine>>, String> {
    if config.engine == "openai" {
        return connect_remote(config).map(Some);
    }
    if config.model.as_os_str().is_empty() {
        return Ok(None);
    }
    let path = &config.model;
    if !path.exists() {
        return Err(format!(
            "the model {} does not exist (models are never downloaded; see scripts/fetch-model.sh)",
            path.display()
        ));
    }
    match config.engine.as_str() {
        "scripted" => Ok(Some(Arc::new(
            ScriptedEngine::load(path).map_err(|e| e.to_string())?,
        ))),
        "mistral" => load_mistral(config, data_dir),
        other => Err(format!(
            "unknown [inference] engine {other:?} (expected \"mistral\", \"openai\" or \"scripted\")"
        )),
    }
}

/// The remote OpenAI-compatible server of `engine = "openai"`.
fn connect_remote(config: &InferenceConfig) -> Result<Arc<dyn Engine>, String> {
    if config.remote_url.is_empty() {
        return Err("[inference] engine = \"openai\" needs remote_url".into());
    }
    let spec = RemoteSpec {
        url: config.remote_url.clone(),
        model: config.remote_model.clone(),
        api_key: remote_api_key(config)?,
        connect_timeout: Duration::from_millis(config.remote_connect_timeout_ms.max(1)),
        retries: config.remote_retries,
        retry_backoff: Duration::from_millis(config.remote_retry_backoff_ms),
        stream: config.remote_stream,
        grammar: GrammarFormat::parse(&config.remote_grammar).map_err(|e| e.to_string())?,
        expert_field: ExpertField::parse(&config.remote_expert_field).map_err(|e| e.to_string())?,
        experts: config.remote_experts.clone(),
    };
    let engine = RemoteEngine::connect(spec).map_err(|e| e.to_string())?;
    tracing::info!(model = %engine.model_name(), url = %config.remote_url, "remote inference server");
    Ok(Arc::new(engine))
}

/// The API key from its file (read like any secret: the owner's alone) or
/// its environment variable.
fn remote_api_key(config: &InferenceConfig) -> Result<Option<String>, String> {
    let file = &config.remote_api_key_file;
    if !file.as_os_str().is_empty() {
        let bytes = batos_client::keys::read_secret(file, 64 * 1024).map_err(|e| e.to_string())?;
        let key = String::from_utf8(bytes)
            .map_err(|_| format!("{}: the API key is not UTF-8", file.display()))?;
        return Ok(Some(key.trim().to_owned()));
    }
    if !config.remote_api_key_env.is_empty() {
        return std::env::var(&config.remote_api_key_env)
            .map(|key| Some(key.trim().to_owned()))
            .map_err(|_| {
                format!(
                    "[inference] remote_api_key_env names {:?}, which is not set",
                    config.remote_api_key_env
                )
            });
    }
    Ok(None)
}

#[cfg(feature = "mistral")]
fn load_mistral(
    config: &InferenceConfig,
    data_dir: &Path,
) -> Result<Option<Arc<dyn Engine>>, String> {
    use batos_cognition::inference::mistral::MistralEngine;
    use batos_cognition::inference::{ModelSource, ModelSpec};
    let path = &config.model;
    let source = if path.is_dir() {
        ModelSource::Safetensors(path.clone())
    } else {
        ModelSource::Gguf(path.clone())
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.display().to_string());
    let spec = ModelSpec {
        source,
        isq: (!config.isq.is_empty()).then(|| config.isq.clone()),
        name,
    };
    let started = std::time::Instant::now();
    let engine =
        MistralEngine::load(&spec, &data_dir.join("hf-home")).map_err(|e| e.to_string())?;
    tracing::info!(model = %spec.name, load_ms = started.elapsed().as_millis() as u64, "model loaded");
    Ok(Some(Arc::new(engine)))
}

#[cfg(not(feature = "mistral"))]
fn load_mistral(_: &InferenceConfig, _: &Path) -> Result<Option<Arc<dyn Engine>>, String> {
    Err("this kernel was built without the `mistral` feature: it cannot load models".into())
}

/// Starts the cognitive core over the space.
pub async fn start(
    space: &ObjectSpace,
    config: &InferenceConfig,
    data_dir: &Path,
    registry: &Registry,
) -> Result<Core, KernelError> {
    let engine = {
        let (config, data_dir) = (config.clone(), data_dir.to_path_buf());
        tokio::task::spawn_blocking(move || load_engine(&config, &data_dir))
            .await
            .map_err(|e| KernelError::Config(e.to_string()))?
    };
    let engine = match engine {
        Ok(engine) => engine,
        Err(err) => {
            tracing::error!(error = %err, "no model: generation is unavailable");
            eprintln!("batos: model not loaded: {err}");
            None
        }
    };
    let service = match &engine {
        Some(engine) => Some(InferenceService::start(
            engine.clone(),
            ServiceConfig {
                max_queue: config.max_queue.max(1),
                timeout: Duration::from_millis(config.timeout_ms.max(1)),
                default_max_tokens: config.default_max_tokens.max(1),
                ..ServiceConfig::default()
            },
            registry,
        )?),
        None => None,
    };
    let experts = ExpertManager::open(
        space.clone(),
        engine,
        &config.adapters_dir,
        TierBudgets {
            warm_bytes: config.warm_bytes,
            hot_bytes: config.hot_bytes,
            materialize_dir: data_dir.join("experts"),
        },
        registry,
    )
    .await?;
    let cognition = service.map(|service| Cognition {
        service,
        experts: experts.clone(),
    });
    let mut model_tier = None;
    if let Some(cognition) = &cognition {
        let tier = ModelTier::new(
            cognition.clone(),
            GenerationConfig {
                attempts: config.dnu_attempts,
                max_tokens: config.dnu_max_tokens.max(1),
                expert: (!config.dnu_expert.is_empty()).then(|| config.dnu_expert.clone()),
                language: Language::parse(&config.dnu_language).ok_or_else(|| {
                    KernelError::Config(format!(
                        "[inference] dnu_language {:?}: expected \"python\" or \"wat\"",
                        config.dnu_language
                    ))
                })?,
            },
            registry,
        )?;
        space.enable_generation(tier.clone());
        model_tier = Some(tier);
    }
    Ok(Core {
        cognition,
        experts,
        tier: model_tier,
    })
}
