//! doesNotUnderstand, second tier: a language model writes the missing
//! method.
//!
//! When lookup is exhausted and synthesis has no accessor for the selector,
//! the space asks the [`ModelTier`] for a candidate. The tier builds a
//! prompt (the Python method subset in brief, the receiver's slots along
//! its `parent*` chain, the selector, the arguments, worked examples, and
//! what memory knows about them), asks the model for one Python `def`
//! constrained to a grammar of its shape, and checks each answer exactly as
//! a client's method is checked: the Python compiler, the audit,
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
use batos_object::slot::{MethodSource, Provenance, Slot};
use batos_object::value::{as_ref, parse_parents, Oid, Value, PARENT_SLOT};

/// Objects of the receiver's chain the prompt shows.
const MAX_CHAIN: usize = 4;

/// Settings of the tier.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Tokens per attempt.
    pub max_tokens: usize,
    /// The persona expert that writes methods (`None`: the base model).
    pub expert: Option<String>,
    /// What the model writes methods in.
    pub language: Language,
}

/// The language the model writes methods in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// One Python `def` (the default).
    Python,
    /// A WAT module against the ABI (the tier before Python methods; kept
    /// as the benchmark's baseline and for models that write WAT better).
    Wat,
}

impl Language {
    /// From the configuration's name for it.
    pub fn parse(name: &str) -> Option<Language> {
        match name {
            "python" => Some(Language::Python),
            "wat" => Some(Language::Wat),
            _ => None,
        }
    }
}

/// The grammar generated methods are constrained to (llguidance Lark):
/// one `def` taking `self`, then an indented body, nothing else. It rules
/// out prose, a second definition and a missing body; the compiler (the
/// subset) and the audit check everything else, and their refusal is fed
/// back for the next attempt.
pub const PYTHON_GRAMMAR: &str = r#"start: "def " NAME "(self" PARAMS "):\n" LINE+
NAME: /[a-z_][a-zA-Z0-9_]*/
PARAMS: /(, [a-z_][a-zA-Z0-9_]*)*/
LINE: /    [^\n]*\n/
"#;

/// The grammar of the WAT-writing tier (`dnu_language = "wat"`; llguidance
/// Lark): a subset of WAT with folded instructions only, in the shape the ABI asks
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
        // The receiver's slots along its parent* chain (nearest first, each
        // object once, a few levels) and what memory recalls: blocking reads
        // on the space's I/O threads.
        let mut chain: Vec<(Oid, Vec<(String, Slot)>)> = Vec::new();
        let mut next = vec![receiver];
        while let Some(oid) = next.pop() {
            if chain.len() >= MAX_CHAIN || chain.iter().any(|(o, _)| *o == oid) {
                continue;
            }
            let slots = space.read_committed_slots(oid).await?.unwrap_or_default();
            let parents = slots
                .iter()
                .find(|(name, _)| name == PARENT_SLOT)
                .and_then(|(_, slot)| match slot {
                    Slot::Data(value) => parse_parents(value).ok(),
                    _ => None,
                })
                .unwrap_or_default();
            next.extend(parents.into_iter().rev());
            chain.push((oid, slots));
        }
        let notes = match self.memory.get().cloned() {
            Some(catalog) => {
                let words = split_selector(selector);
                space.run_io(move || recall(&catalog, &words)).await?
            }
            None => Vec::new(),
        };
        let prompt = match self.config.language {
            Language::Python => build_prompt(selector, args, &chain, &notes),
            Language::Wat => build_wat_prompt(
                receiver,
                selector,
                args,
                chain.first().map(|(_, s)| s.as_slice()).unwrap_or_default(),
                &notes,
            ),
        };
        let grammar = match self.config.language {
            Language::Python => PYTHON_GRAMMAR,
            Language::Wat => WAT_GRAMMAR,
        };
        let prompt_hash = hex::encode(Sha256::digest(prompt.as_bytes()));
        let mut feedback: Option<String> = None;
        let mut last_error = String::new();
        for attempt in 1..=self.config.attempts {
            let mut text = prompt.clone();
            if let Some(f) = &feedback {
                text.push_str(&format!(
                    "\n\nYour previous method was refused: {f}\nWrite a corrected method."
                ));
            }
            let answer = self
                .cognition
                .infer(
                    Inference {
                        prompt: text,
                        expert: self.config.expert.clone(),
                        max_tokens: Some(self.config.max_tokens),
                        constraint: Some(Constraint::Lark(grammar.to_string())),
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
            let (source, checked) = match self.config.language {
                Language::Python => {
                    let text = extract_def(&answer.text);
                    let checked = space
                        .check_python(selector.to_string(), text.clone())
                        .await?;
                    (MethodSource::python(text), checked)
                }
                Language::Wat => {
                    let text = extract_module(&answer.text).to_string();
                    let checked = space.check_wat(text.clone()).await?;
                    (MethodSource::wat(text), checked)
                }
            };
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
                        source: Some(source),
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

/// The `def` in a model's answer (it may wrap it in prose or a code
/// fence): from `def ` to the first line that is neither indented nor blank.
pub fn extract_def(text: &str) -> String {
    let Some(start) = text.find("def ") else {
        return text.trim().to_string();
    };
    let mut lines = text[start..].lines();
    let mut out = String::new();
    if let Some(first) = lines.next() {
        out.push_str(first);
        out.push('\n');
    }
    for line in lines {
        if !(line.starts_with(' ') || line.starts_with('\t') || line.trim().is_empty()) {
            break;
        }
        out.push_str(line);
        out.push('\n');
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

/// The prompt: the Python method subset in brief, worked examples, the
/// receiver's slots along its chain, the message, and memory.
pub fn build_prompt(
    selector: &str,
    args: &[Value],
    chain: &[(Oid, Vec<(String, Slot)>)],
    notes: &[String],
) -> String {
    let name = selector.strip_suffix('_').unwrap_or(selector);
    let params: Vec<String> = (0..args.len()).map(|i| format!("arg{i}")).collect();
    let mut p = String::from(
        "Write one BAT OS method in Python: a single `def NAME(self, ...):` with an indented body. \
         `self.slot` reads a slot (inherited along parents too) and `self.slot = value` writes one; \
         `obj.name(...)` sends a message to another object. Use only: int, float, str, bool, None, \
         list, dict; arithmetic, comparisons, and/or/not, in; if/elif/else, while, for, return, raise; \
         the builtins len str int float bool abs min max round sum sorted range isinstance; \
         str methods upper lower strip split join startswith endswith replace; \
         list methods append pop; dict methods get keys values items. \
         No imports, classes, lambdas, comprehensions or print.\n\n\
         Example: an object with slots width = 3 and height = 4 receives `area`:\n\
         def area(self):\n    return self.width * self.height\n\n\
         Example: an object with slot items = [] receives `add_` with 1 argument:\n\
         def add(self, item):\n    self.items.append(item)\n    return len(self.items)\n\n",
    );
    for (i, (oid, slots)) in chain.iter().enumerate() {
        if i == 0 {
            p.push_str(&format!("The receiver is object {oid}. Its slots:\n"));
        } else {
            p.push_str(&format!(
                "It inherits from object {oid}, whose slots are:\n"
            ));
        }
        for (slot, value) in slots.iter().filter(|(n, _)| n != PARENT_SLOT) {
            let shown = match value {
                Slot::Data(v) => format!("{} ({})", describe(v), kind(v)),
                Slot::Method(m) => format!("a method (version {})", m.version),
                Slot::Primitive(_) => "a built-in method".into(),
            };
            p.push_str(&format!("- {slot} = {shown}\n"));
        }
    }
    p.push_str(&format!(
        "\nThe message: `{selector}` with {} argument(s): [{}].\n",
        args.len(),
        args.iter().map(describe).collect::<Vec<_>>().join(", ")
    ));
    push_notes(&mut p, notes);
    // Small models copy the examples' slot names: say which data slots
    // exist here.
    let names: Vec<String> = chain
        .iter()
        .flat_map(|(_, slots)| slots.iter())
        .filter(|(n, slot)| n != PARENT_SLOT && matches!(slot, Slot::Data(_)))
        .map(|(n, _)| format!("self.{n}"))
        .collect();
    if !names.is_empty() {
        p.push_str(&format!(
            "\nThe receiver's slots are {}; it has no other slots.\n",
            names.join(", ")
        ));
    }
    p.push_str(&format!(
        "\nAnswer with the method only, starting `def {name}(self{}):`.\n",
        params.iter().map(|p| format!(", {p}")).collect::<String>()
    ));
    p
}

/// The WAT tier's prompt: the ABI in brief, the receiver, the message, and memory.
pub fn build_wat_prompt(
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
    push_notes(&mut p, notes);
    p.push_str("\nAnswer with the module only.\n");
    p
}

/// What memory recalls, for a prompt.
fn push_notes(p: &mut String, notes: &[String]) {
    if !notes.is_empty() {
        p.push_str("\nWhat memory knows about it:\n");
        for n in notes {
            p.push_str(&format!("- {n}\n"));
        }
    }
}

/// A value's Python type, for the prompt.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "None",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Map(_) if as_ref(value).is_some() => "object",
        Value::Map(_) => "dict",
        _ => "bytes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_def_from_prose_and_fences() {
        let text =
            "Here you go:\n```python\ndef area(self):\n    x = 1\n\n    return x\n```\nDone.";
        assert_eq!(
            extract_def(text),
            "def area(self):\n    x = 1\n\n    return x\n"
        );
        assert_eq!(extract_def("nothing"), "nothing");
    }

    #[test]
    fn selector_words() {
        assert_eq!(split_selector("setBalance_").trim(), "set balance");
    }
}
