//! doesNotUnderstand, second tier: a language model writes the missing
//! method.
//!
//! When lookup is exhausted and synthesis has no accessor for the selector,
//! the space asks the [`ModelTier`] for a candidate. The tier builds a
//! prompt (the method ABI in brief, the receiver's slots and parents, the
//! selector, the arguments, and what memory knows about them), asks the
//! model for WAT constrained to an s-expression grammar, and checks each
//! answer exactly as a client's method is checked: WAT → binary, the audit,
//! compilation. A failure is fed back into the next attempt, up to the
//! configured number of attempts. The candidate that passes is installed by
//! the message's own transaction, together with everything the re-sent
//! message writes, so a failed generation or a trapping candidate leaves
//! the image unchanged.
//!
//! Concurrent doesNotUnderstand for the same receiver and selector share
//! one generation (single flight).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures::future::{BoxFuture, FutureExt, Shared};
use prometheus::{IntCounterVec, Opts, Registry};
use sha2::{Digest, Sha256};

use crate::inference::{Cognition, Constraint, Inference};
use batos_actors::{Candidate, MethodRequest, MethodWriter, ObjectSpace};
use batos_memory::{Catalog, SearchQuery};
use batos_object::error::ActorError;
use batos_object::slot::{MethodSource, Provenance};
use batos_object::value::{Oid, Value};

/// Settings of the tier.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Tokens per attempt.
    pub max_tokens: usize,
    /// The persona expert that writes methods (`None`: the base model).
    pub expert: Option<String>,
}

/// The grammar generated methods are constrained to (llguidance Lark): a
/// subset of WAT with folded instructions only, in the shape the ABI asks
/// for: `uvm` imports, the exported memory, data segments, helper
/// functions, then `invoke`. It rules out whole classes of mistakes (a
/// missing or misnamed `invoke`, a second module); the audit and the
/// compiler still check everything else.
pub const WAT_GRAMMAR: &str = r#"start: "(module" import* memory data* helper* invoke ")"
import: "(import" "\"uvm\"" STRING "(func" ID? param? result? ")" ")"
memory: "(memory" "(export" "\"memory\"" ")" INT ")"
data: "(data" "(i32.const" INT ")" STRING ")"
helper: "(func" ID param? result? local* instr* ")"
invoke: "(func" "(export" "\"invoke\"" ")" local* instr* ")"
param: "(param" VALTYPE+ ")"
result: "(result" VALTYPE ")"
local: "(local" ID VALTYPE ")"
instr: "(" OP arg* ")"
arg: instr | INT | FLOAT | ID | STRING | VALTYPE
OP: /[a-z][a-z0-9_]*(\.[a-z0-9_]+)?/
ID: /\$[A-Za-z0-9_]+/
VALTYPE: "i32" | "i64" | "f32" | "f64"
INT: /-?[0-9]+/
FLOAT: /-?[0-9]+\.[0-9]+/
STRING: /"([^"\\]|\\.)*"/
%ignore /[ \t\r\n]+/
"#;

type Flight = Shared<BoxFuture<'static, Result<Arc<Candidate>, ActorError>>>;

/// The model tier of doesNotUnderstand.
pub struct ModelTier {
    cognition: Cognition,
    config: GenerationConfig,
    memory: OnceLock<Catalog>,
    inflight: parking_lot::Mutex<HashMap<(Oid, String, usize), Flight>>,
    outcomes: IntCounterVec,
}

impl ModelTier {
    /// A tier generating with `service`.
    pub fn new(
        cognition: Cognition,
        mut config: GenerationConfig,
        registry: &Registry,
    ) -> Result<Arc<ModelTier>, ActorError> {
        config.attempts = config.attempts.max(1);
        let outcomes = IntCounterVec::new(
            Opts::new(
                "batos_dnu_generations_total",
                "doesNotUnderstand generations by the model, by outcome",
            ),
            &["outcome"],
        )
        .map_err(ActorError::internal)?;
        for outcome in ["installed", "refused", "gave_up", "error"] {
            outcomes.with_label_values(&[outcome]);
        }
        registry
            .register(Box::new(outcomes.clone()))
            .map_err(ActorError::internal)?;
        Ok(Arc::new(ModelTier {
            cognition,
            config,
            memory: OnceLock::new(),
            inflight: parking_lot::Mutex::new(HashMap::new()),
            outcomes,
        }))
    }

    /// Lets prompts include what memory knows (set once the catalog is open).
    pub fn set_memory(&self, catalog: Catalog) {
        let _ = self.memory.set(catalog);
    }

    /// A candidate for `selector` on `receiver`, generated once for all
    /// concurrent askers.
    async fn candidate(
        self: &Arc<Self>,
        space: &ObjectSpace,
        receiver: Oid,
        selector: &str,
        args: &[Value],
    ) -> Result<Arc<Candidate>, ActorError> {
        let key = (receiver, selector.to_string(), args.len());
        let flight = {
            let mut inflight = self.inflight.lock();
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let this = self.clone();
                    let space = space.clone();
                    let selector = selector.to_string();
                    let args = args.to_vec();
                    async move {
                        this.generate(&space, receiver, &selector, &args)
                            .await
                            .map(Arc::new)
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let result = flight.clone().await;
        let mut inflight = self.inflight.lock();
        if inflight.get(&key).is_some_and(|f| f.ptr_eq(&flight)) {
            inflight.remove(&key);
        }
        result
    }

    async fn generate(
        &self,
        space: &ObjectSpace,
        receiver: Oid,
        selector: &str,
        args: &[Value],
    ) -> Result<Candidate, ActorError> {
        // The receiver's slots and what memory recalls, both blocking reads
        // on the space's I/O threads.
        let slots = space
            .read_committed_slots(receiver)
            .await?
            .unwrap_or_default();
        let notes = match self.memory.get().cloned() {
            Some(catalog) => {
                let words = split_selector(selector);
                space.run_io(move || recall(&catalog, &words)).await?
            }
            None => Vec::new(),
        };
        let prompt = build_prompt(receiver, selector, args, &slots, &notes);
        let prompt_hash = hex::encode(Sha256::digest(prompt.as_bytes()));
        let mut feedback: Option<String> = None;
        let mut last_error = String::new();
        for attempt in 1..=self.config.attempts {
            let mut text = prompt.clone();
            if let Some(f) = &feedback {
                text.push_str(&format!(
                    "\n\nYour previous module was refused: {f}\nWrite a corrected module."
                ));
            }
            let answer = self
                .cognition
                .infer(
                    Inference {
                        prompt: text,
                        expert: self.config.expert.clone(),
                        max_tokens: Some(self.config.max_tokens),
                        constraint: Some(Constraint::Lark(WAT_GRAMMAR.to_string())),
                    },
                    false,
                )
                .await;
            let answer = match answer {
                Ok(a) => a,
                // A full queue is the client's to retry; any other failure
                // means nothing could generate the method.
                Err(err @ ActorError::Overloaded(_)) => return Err(err),
                Err(err) => {
                    self.outcomes.with_label_values(&["error"]).inc();
                    return Err(ActorError::DoesNotUnderstand(format!(
                        "object {receiver} does not understand {selector:?} ({} argument(s)): \
                         the model could not write a method: {err}",
                        args.len()
                    )));
                }
            };
            let wat = extract_module(&answer.text);
            let checked = space.check_wat(wat.to_string()).await?;
            match checked {
                Ok(wasm) => {
                    self.outcomes.with_label_values(&["installed"]).inc();
                    tracing::info!(
                        oid = receiver,
                        selector,
                        attempt,
                        model = %answer.model,
                        "the model wrote a method"
                    );
                    return Ok(Candidate {
                        wasm,
                        provenance: Provenance::Model {
                            model: answer.model,
                            expert: answer.expert,
                            prompt_hash,
                            attempts: attempt,
                        },
                        source: Some(MethodSource::wat(wat)),
                    });
                }
                Err(err) => {
                    self.outcomes.with_label_values(&["refused"]).inc();
                    tracing::info!(oid = receiver, selector, attempt, error = %err, "a generated method was refused");
                    last_error = err.clone();
                    feedback = Some(err);
                }
            }
        }
        self.outcomes.with_label_values(&["gave_up"]).inc();
        Err(ActorError::DoesNotUnderstand(format!(
            "object {receiver} does not understand {selector:?} ({} argument(s)): the model wrote no acceptable \
             method in {} attempt(s); last refusal: {last_error}",
            args.len(),
            self.config.attempts
        )))
    }
}

impl MethodWriter for ModelTier {
    fn write(
        self: Arc<Self>,
        space: ObjectSpace,
        request: MethodRequest,
    ) -> BoxFuture<'static, Result<Arc<Candidate>, ActorError>> {
        async move {
            self.candidate(&space, request.receiver, &request.selector, &request.args)
                .await
        }
        .boxed()
    }
}

/// What memory holds about `words` (a selector's words), for the prompt.
fn recall(catalog: &Catalog, words: &str) -> Vec<String> {
    if words.trim().is_empty() {
        return Vec::new();
    }
    catalog
        .search(&SearchQuery {
            text: words,
            limit: 3,
            source: None,
            kind: None,
        })
        .map(|hits| {
            hits.into_iter()
                .map(|h| format!("{}: {}", h.source, h.snippet.replace("**", "")))
                .collect()
        })
        .unwrap_or_default()
}

/// `setBalance_` → "set balance": words for a memory query.
fn split_selector(selector: &str) -> String {
    let mut out = String::new();
    for c in selector.chars() {
        if c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else if c.is_alphanumeric() {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out
}

/// The `(module ...)` in a model's answer (it may wrap it in prose or a
/// code fence).
pub fn extract_module(text: &str) -> &str {
    let Some(start) = text.find("(module") else {
        return text.trim();
    };
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..=i];
                }
            }
            _ => {}
        }
    }
    &text[start..]
}

fn describe(value: &Value) -> String {
    let mut s = value.to_string();
    if s.len() > 120 {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The prompt: the ABI in brief, the receiver, the message, and memory.
pub fn build_prompt(
    receiver: Oid,
    selector: &str,
    args: &[Value],
    slots: &[(String, batos_object::slot::Slot)],
    notes: &[String],
) -> String {
    let mut p = String::from(
        "Write one BAT OS method as a WebAssembly text module (WAT). Rules:\n\
         - export (memory (export \"memory\") 1) and (func (export \"invoke\")) with no params or results;\n\
         - import only from module \"uvm\": arg_count () -> i32; arg_i64 (idx i32, out i32) -> i32; \
         slot_i64 (name_ptr i32, name_len i32, out i32) -> i32; set_slot_i64 (name_ptr i32, name_len i32, v i64) -> i32; \
         arg_msgpack (idx i32, buf i32, cap i32) -> i32; slot_msgpack (name_ptr i32, name_len i32, buf i32, cap i32) -> i32; \
         set_slot_msgpack (name_ptr i32, name_len i32, ptr i32, len i32) -> i32; return_i64 (v i64); \
         return_msgpack (ptr i32, len i32) -> i32; self_oid () -> i64;\n\
         - strings are UTF-8 bytes in memory (put names in a data segment); statuses < 0 are errors;\n\
         - no start function, no other imports.\n\
         Example:\n\
         (module (import \"uvm\" \"return_i64\" (func $r (param i64))) (memory (export \"memory\") 1) \
         (func (export \"invoke\") (call $r (i64.const 42))))\n\n",
    );
    p.push_str(&format!("The receiver is object {receiver}. Its slots:\n"));
    for (name, slot) in slots {
        let shown = match slot {
            batos_object::slot::Slot::Data(v) => describe(v),
            batos_object::slot::Slot::Method(m) => format!("<method v{}>", m.version),
            batos_object::slot::Slot::Primitive(_) => "<primitive>".into(),
        };
        p.push_str(&format!("- {name} = {shown}\n"));
    }
    p.push_str(&format!(
        "\nThe message: selector {selector:?} with {} argument(s): [{}].\n",
        args.len(),
        args.iter().map(describe).collect::<Vec<_>>().join(", ")
    ));
    if !notes.is_empty() {
        p.push_str("\nWhat memory knows about it:\n");
        for n in notes {
            p.push_str(&format!("- {n}\n"));
        }
    }
    p.push_str("\nAnswer with the module only.\n");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_module_from_prose_and_fences() {
        let text = "Here you go:\n```wat\n(module (func (export \"invoke\") (drop (i32.const 1))) (data \")(\"))\n```\nDone.";
        assert_eq!(
            extract_module(text),
            "(module (func (export \"invoke\") (drop (i32.const 1))) (data \")(\"))"
        );
        assert_eq!(extract_module("nothing"), "nothing");
    }

    #[test]
    fn selector_words() {
        assert_eq!(split_selector("setBalance_").trim(), "set balance");
    }
}
