//! The cognitive core: language-model inference behind a narrow trait
//! ([`engine::Engine`]: mistral.rs in the process, a remote
//! OpenAI-compatible server, or a script), the service that queues and
//! meters it, and the persona experts' tiers.

pub mod engine;
pub mod experts;
pub mod for_memory;
#[cfg(feature = "mistral")]
pub mod mistral;
pub mod openai;
pub mod scripted;
pub mod service;

pub use engine::{
    AdapterSpec, CallControl, Constraint, Engine, EngineError, EngineOutput, EngineRequest,
    ModelSource, ModelSpec,
};
pub use service::{Inference, InferenceService, Inferred, ServiceConfig};

use std::sync::Arc;

use batos_object::error::ActorError;

/// The inference actor as its users see it: generation with the requested
/// expert made hot (and pinned) first.
#[derive(Clone)]
pub struct Cognition {
    /// The queue in front of the model.
    pub service: InferenceService,
    /// The persona experts' tiers.
    pub experts: Arc<experts::ExpertManager>,
}

impl Cognition {
    /// Runs `request` with exactly its expert active. An unknown expert is
    /// `bad_request` and one the model cannot load `unavailable` when
    /// `strict`; otherwise the base model answers (the kernel's own
    /// requests name personas that may not be installed or loadable).
    pub async fn infer(
        &self,
        mut request: Inference,
        strict: bool,
    ) -> Result<Inferred, ActorError> {
        let _pin = match &request.expert {
            Some(name) => match self.experts.acquire(name).await {
                Ok(pin) => Some(pin),
                Err(ActorError::BadRequest(msg) | ActorError::Unavailable(msg)) if !strict => {
                    tracing::debug!(expert = %name, reason = %msg, "expert not installed; using the base model");
                    request.expert = None;
                    None
                }
                Err(err) => return Err(err),
            },
            None => None,
        };
        self.service.infer(request).await
    }
}
