//! A backend that answers from a script instead of a model: for tests of
//! everything around the model (the doesNotUnderstand retry loop,
//! provenance, single flight, expert tiers) and for reproducible demos.
//!
//! The script is a JSON file:
//! `{"model": "name", "responses": ["first answer", "second answer", ...]}`.
//! Each generation takes the next response, whatever the prompt; when they
//! run out, generation fails. A request naming an expert fails unless that
//! expert's adapter was loaded, as with a real backend.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::engine::{AdapterSpec, CallControl, Engine, EngineError, EngineOutput, EngineRequest};

/// The scripted backend.
pub struct ScriptedEngine {
    model: String,
    responses: Vec<String>,
    next: AtomicUsize,
    adapters: Mutex<HashSet<String>>,
}

impl ScriptedEngine {
    /// Reads a script file.
    pub fn load(path: &Path) -> Result<ScriptedEngine, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Invalid(format!("script {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses a script.
    pub fn parse(text: &str) -> Result<ScriptedEngine, EngineError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| EngineError::Invalid(format!("script: {e}")))?;
        let responses = value
            .get("responses")
            .and_then(|r| r.as_array())
            .ok_or_else(|| EngineError::Invalid("script: `responses` must be an array".into()))?
            .iter()
            .map(|r| {
                r.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| EngineError::Invalid("script: responses must be strings".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScriptedEngine {
            model: value
                .get("model")
                .and_then(|m| m.as_str())
                .unwrap_or("scripted")
                .to_string(),
            responses,
            next: AtomicUsize::new(0),
            adapters: Mutex::new(HashSet::new()),
        })
    }
}

impl Engine for ScriptedEngine {
    fn model_name(&self) -> String {
        self.model.clone()
    }

    fn generate(
        &self,
        request: &EngineRequest,
        control: &CallControl,
    ) -> Result<EngineOutput, EngineError> {
        if let Some(reason) = control.stop_reason() {
            return Err(EngineError::Cancelled(reason.into()));
        }
        if let Some(expert) = &request.expert {
            if !self.adapters.lock().contains(expert) {
                return Err(EngineError::Invalid(format!(
                    "expert {expert:?} is not loaded"
                )));
            }
        }
        let i = self.next.fetch_add(1, Ordering::AcqRel);
        let text =
            self.responses.get(i).cloned().ok_or_else(|| {
                EngineError::Backend(format!("the script has no response {}", i + 1))
            })?;
        let tokens = text.split_whitespace().count().min(request.max_tokens);
        Ok(EngineOutput {
            text,
            tokens,
            first_token: None,
        })
    }

    fn load_adapter(&self, adapter: &AdapterSpec) -> Result<(), EngineError> {
        for file in [
            super::experts::ADAPTER_CONFIG,
            super::experts::ADAPTER_WEIGHTS,
        ] {
            if !adapter.dir.join(file).is_file() {
                return Err(EngineError::Invalid(format!(
                    "adapter {}: {file} missing",
                    adapter.name
                )));
            }
        }
        self.adapters.lock().insert(adapter.name.clone());
        Ok(())
    }

    fn unload_adapter(&self, name: &str) -> Result<(), EngineError> {
        self.adapters.lock().remove(name);
        Ok(())
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
        Ok(text.split_whitespace().count())
    }
}
