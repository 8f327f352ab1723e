//! Fractal summaries: how a group of texts becomes one `ContextualSummary`.
//!
//! With a model configured, the inference actor writes summaries. Without
//! one, [`Extractive`] does, deterministically: it takes the lead sentence
//! of every child in order (documents put their point first), then, while
//! the budget allows, the remaining sentences that carry the group's most
//! frequent content words (4+ letters), each kept in its original order.

use std::collections::HashMap;

use super::tokens::TokenCounter;

/// Writes the summary of a group of texts.
pub trait Summarizer: Send + Sync {
    /// A summary of `texts` (in order) within `budget` tokens.
    fn summarize(&self, texts: &[&str], budget: usize) -> Result<String, String>;
    /// Recorded on each summary as its provenance.
    fn name(&self) -> String;
}

/// The documented extractive summarizer (no model).
pub struct Extractive<C> {
    counter: C,
}

impl<C: TokenCounter> Extractive<C> {
    /// A summarizer counting tokens with `counter`.
    pub fn new(counter: C) -> Self {
        Extractive { counter }
    }
}

fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let end_mark = matches!(bytes[i], b'.' | b'!' | b'?' | b'\n');
        let boundary = i + 1 == bytes.len() || bytes[i + 1].is_ascii_whitespace();
        if end_mark && boundary {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn content_words(sentence: &str) -> impl Iterator<Item = String> + '_ {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
}

impl<C: TokenCounter> Summarizer for Extractive<C> {
    fn summarize(&self, texts: &[&str], budget: usize) -> Result<String, String> {
        // (child index, sentence index, sentence)
        let all: Vec<(usize, usize, &str)> = texts
            .iter()
            .enumerate()
            .flat_map(|(c, t)| {
                sentences(t)
                    .into_iter()
                    .enumerate()
                    .map(move |(s, x)| (c, s, x))
            })
            .collect();
        let mut freq: HashMap<String, usize> = HashMap::new();
        for (_, _, s) in &all {
            for w in content_words(s) {
                *freq.entry(w).or_default() += 1;
            }
        }
        let score = |s: &str| -> f64 {
            let words: Vec<String> = content_words(s).collect();
            if words.is_empty() {
                return 0.0;
            }
            words.iter().map(|w| freq[w] as f64).sum::<f64>() / (words.len() as f64).sqrt()
        };
        let mut chosen: Vec<usize> = Vec::new();
        let mut used = 0;
        let mut take = |i: usize, chosen: &mut Vec<usize>| {
            let t = self.counter.count(all[i].2);
            if used + t <= budget || chosen.is_empty() {
                used += t;
                chosen.push(i);
            }
        };
        for (i, (_, s, _)) in all.iter().enumerate() {
            if *s == 0 {
                take(i, &mut chosen);
            }
        }
        let scores: Vec<f64> = all.iter().map(|(_, _, x)| score(x)).collect();
        let mut rest: Vec<usize> = (0..all.len()).filter(|i| all[*i].1 != 0).collect();
        rest.sort_by(|a, b| {
            scores[*b]
                .partial_cmp(&scores[*a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(b))
        });
        for i in rest {
            take(i, &mut chosen);
        }
        chosen.sort_unstable();
        let mut text = chosen
            .iter()
            .map(|i| all[*i].2)
            .collect::<Vec<_>>()
            .join(" ");
        if self.counter.count(&text) > budget {
            // A single lead sentence over the budget: keep whole words.
            let mut kept = String::new();
            for w in text.split_whitespace() {
                let candidate = if kept.is_empty() {
                    w.to_string()
                } else {
                    format!("{kept} {w}")
                };
                if self.counter.count(&candidate) > budget {
                    break;
                }
                kept = candidate;
            }
            text = kept;
        }
        Ok(text)
    }

    fn name(&self) -> String {
        "extractive".into()
    }
}

/// Groups `n` items into runs of at most `fanout`, in order.
pub fn groups(n: usize, fanout: usize) -> Vec<std::ops::Range<usize>> {
    let fanout = fanout.max(2);
    (0..n.div_ceil(fanout))
        .map(|g| g * fanout..((g + 1) * fanout).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tokens::ApproxCounter;
    use super::*;

    #[test]
    fn extractive_keeps_lead_sentences_in_order_within_budget() {
        let s = Extractive::new(ApproxCounter);
        let texts = [
            "Objects delegate along parents. Filler words here. Objects persist in the image.",
            "The kernel commits atomically. Objects are actors.",
        ];
        let out = s.summarize(&texts, 20).unwrap();
        assert_eq!(
            out, "Objects delegate along parents. The kernel commits atomically.",
            "lead sentences first"
        );
        let all = s.summarize(&texts, 100).unwrap();
        assert!(
            all.starts_with("Objects delegate along parents. Filler"),
            "original order: {all}"
        );
        let tiny = s.summarize(&texts, 3).unwrap();
        assert!(
            ApproxCounter.count(&tiny) <= 3 && !tiny.is_empty(),
            "{tiny}"
        );
    }

    #[test]
    fn groups_cover_all_items() {
        assert!(groups(0, 4).is_empty());
        assert_eq!(groups(9, 4), vec![0..4, 4..8, 8..9]);
    }
}
