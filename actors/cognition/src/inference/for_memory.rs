//! The model serving fractal memory: its tokenizer counts chunk budgets and
//! it writes summaries, falling back to the extractive summarizer when a
//! generation fails.

use futures::executor::block_on;

use super::service::{Inference, InferenceService};
use batos_memory::summary::{Extractive, Summarizer};
use batos_memory::tokens::{ApproxCounter, TokenCounter};

/// Counts tokens with the model's tokenizer (the approximate counter if it fails).
pub struct ModelCounter {
    service: InferenceService,
    name: String,
}

impl ModelCounter {
    /// A counter over `service`'s tokenizer.
    pub fn new(service: InferenceService) -> Self {
        let name = format!("tokenizer:{}", service.model_name());
        ModelCounter { service, name }
    }
}

impl TokenCounter for ModelCounter {
    fn count(&self, text: &str) -> usize {
        self.service
            .count_tokens(text)
            .unwrap_or_else(|| ApproxCounter.count(text))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Summaries written by the model (called on the memory worker thread).
pub struct ModelSummarizer {
    service: InferenceService,
    fallback: Extractive<ApproxCounter>,
}

impl ModelSummarizer {
    /// A summarizer over `service`.
    pub fn new(service: InferenceService) -> Self {
        ModelSummarizer {
            service,
            fallback: Extractive::new(ApproxCounter),
        }
    }
}

impl Summarizer for ModelSummarizer {
    fn summarize(&self, texts: &[&str], budget: usize) -> Result<String, String> {
        let mut prompt = format!(
            "Summarize the following passages in at most {budget} tokens. Keep names and facts.\n\n"
        );
        for t in texts {
            prompt.push_str(t);
            prompt.push_str("\n\n");
        }
        match block_on(self.service.infer(Inference {
            prompt,
            expert: None,
            max_tokens: Some(budget.max(1)),
            constraint: None,
        })) {
            Ok(out) if !out.text.trim().is_empty() => Ok(out.text.trim().to_string()),
            Ok(_) => self.fallback.summarize(texts, budget),
            Err(err) => {
                tracing::warn!(error = %err, "the model could not summarize; using the extractive summary");
                self.fallback.summarize(texts, budget)
            }
        }
    }

    fn name(&self) -> String {
        format!("model:{}", self.service.model_name())
    }
}
