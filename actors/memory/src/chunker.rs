//! Splitting documents into token-budgeted chunks that respect paragraphs
//! and sentences.
//!
//! Paragraphs (separated by blank lines) are kept whole when they fit;
//! consecutive small paragraphs share a chunk. A paragraph over the budget
//! is split at sentence ends, and a sentence over the budget at word
//! boundaries. Every byte of the text that is not separator whitespace
//! lands in exactly one chunk, in order.

use super::tokens::TokenCounter;

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk's text (paragraphs joined by a blank line).
    pub text: String,
    /// Its tokens by the counter used.
    pub tokens: usize,
    /// Byte offset of the chunk's first character in the document.
    pub offset: usize,
}

/// Splits `text` into chunks of at most `budget` tokens (a single word over
/// the budget is a chunk of its own).
pub fn chunk(text: &str, budget: usize, counter: &dyn TokenCounter) -> Vec<Chunk> {
    let budget = budget.max(1);
    let mut pieces = Vec::new();
    for (offset, para) in paragraphs(text) {
        let tokens = counter.count(para);
        if tokens <= budget {
            pieces.push((offset, para, tokens, true));
            continue;
        }
        for (o, sentence) in sentences(para) {
            let t = counter.count(sentence);
            if t <= budget {
                pieces.push((offset + o, sentence, t, false));
            } else {
                for (wo, words) in word_runs(sentence, budget, counter) {
                    pieces.push((offset + o + wo, words, counter.count(words), false));
                }
            }
        }
    }
    pack(pieces, budget, counter)
}

/// Packs pieces in order into chunks within the budget. Pieces are joined
/// with a blank line after a paragraph and a space inside one.
fn pack(
    pieces: Vec<(usize, &str, usize, bool)>,
    budget: usize,
    counter: &dyn TokenCounter,
) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut current: Option<Chunk> = None;
    let mut last_was_para = false;
    for (offset, piece, tokens, is_para) in pieces {
        if let Some(cur) = current.as_mut() {
            let sep = if last_was_para || is_para {
                "\n\n"
            } else {
                " "
            };
            if cur.tokens + tokens <= budget {
                let candidate = format!("{}{sep}{piece}", cur.text);
                let joined = counter.count(&candidate);
                if joined <= budget {
                    cur.text = candidate;
                    cur.tokens = joined;
                    last_was_para = is_para;
                    continue;
                }
            }
            chunks.extend(current.take());
        }
        current = Some(Chunk {
            text: piece.to_string(),
            tokens,
            offset,
        });
        last_was_para = is_para;
    }
    chunks.extend(current);
    chunks
}

/// Non-empty paragraphs with their byte offsets.
fn paragraphs(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let is_blank = line.trim().is_empty();
        if is_blank {
            if let Some(s) = start.take() {
                push_trimmed(&mut out, text, s, pos);
            }
        } else if start.is_none() {
            start = Some(pos);
        }
        pos += line.len();
    }
    if let Some(s) = start {
        push_trimmed(&mut out, text, s, pos);
    }
    out
}

fn push_trimmed<'a>(out: &mut Vec<(usize, &'a str)>, text: &'a str, start: usize, end: usize) {
    let slice = &text[start..end];
    let lead = slice.len() - slice.trim_start().len();
    let trimmed = slice.trim();
    if !trimmed.is_empty() {
        out.push((start + lead, trimmed));
    }
}

/// Sentences of a paragraph with their byte offsets: a sentence ends after
/// `.`, `!` or `?` (and any closing quotes or brackets) followed by
/// whitespace.
fn sentences(para: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = para.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'.' | b'!' | b'?') {
            let mut end = i + 1;
            while end < bytes.len() && matches!(bytes[end], b'"' | b'\'' | b')' | b']') {
                end += 1;
            }
            if end < bytes.len() && bytes[end].is_ascii_whitespace() {
                push_trimmed(&mut out, para, start, end);
                start = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    push_trimmed(&mut out, para, start, para.len());
    out
}

/// Runs of whole words within the budget (a word over it stands alone).
fn word_runs<'a>(
    sentence: &'a str,
    budget: usize,
    counter: &dyn TokenCounter,
) -> Vec<(usize, &'a str)> {
    let mut out = Vec::new();
    let mut run_start: Option<usize> = None;
    let mut run_end = 0;
    let mut run_tokens = 0;
    for (offset, word) in words(sentence) {
        let t = counter.count(word);
        match run_start {
            Some(_) if run_tokens + t <= budget => {
                run_end = offset + word.len();
                run_tokens += t;
            }
            _ => {
                if let Some(s) = run_start {
                    out.push((s, &sentence[s..run_end]));
                }
                run_start = Some(offset);
                run_end = offset + word.len();
                run_tokens = t;
            }
        }
    }
    if let Some(s) = run_start {
        out.push((s, &sentence[s..run_end]));
    }
    out
}

fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

#[cfg(test)]
mod tests {
    use super::super::tokens::ApproxCounter;
    use super::*;
    use proptest::prelude::*;

    fn words_of(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn small_paragraphs_share_a_chunk_and_big_ones_split_at_sentences() {
        let text =
            "One two.\n\nThree four.\n\nA first sentence here. A second one there. A third one.";
        let chunks = chunk(text, 8, &ApproxCounter);
        assert_eq!(chunks[0].text, "One two.\n\nThree four.");
        assert_eq!(chunks[0].offset, 0);
        assert!(chunks[1..].iter().all(|c| c.text.ends_with('.')));
        assert_eq!(&text[chunks[1].offset..chunks[1].offset + 6], "A firs");
    }

    #[test]
    fn a_huge_sentence_splits_at_words() {
        let text = "word ".repeat(50);
        let chunks = chunk(&text, 10, &ApproxCounter);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.tokens == 10));
    }

    proptest! {
        #[test]
        fn chunks_cover_every_word_in_order_within_budget(
            paras in proptest::collection::vec(
                proptest::collection::vec("[a-zA-Z]{1,12}[.,!?]?", 1..40), 0..8),
            budget in 1usize..60,
        ) {
            let text = paras.iter().map(|p| p.join(" ")).collect::<Vec<_>>().join("\n\n");
            let chunks = chunk(&text, budget, &ApproxCounter);
            let joined: Vec<String> = chunks.iter().flat_map(|c| words_of(&c.text)).collect();
            prop_assert_eq!(joined, words_of(&text));
            for c in &chunks {
                let single_word = c.text.split_whitespace().count() == 1;
                prop_assert!(c.tokens <= budget || single_word, "chunk over budget: {:?}", c);
                prop_assert_eq!(c.tokens, ApproxCounter.count(&c.text));
                let first = c.text.split_whitespace().next().unwrap();
                prop_assert!(text[c.offset..].starts_with(first));
            }
        }
    }
}
