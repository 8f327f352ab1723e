//! `ui_code`: the declarative description of the Memory Inspector that
//! display_yourself installs on `genesis_obj` and `batos inspect` renders.
//!
//! ```text
//! {"version": 1, "title": str, "about": str,
//!  "panes": [{"kind": "memory_search", "title", "limit", "help"},
//!            {"kind": "object_browser", "title", "start", "help"},
//!            {"kind": "events", "title", "topics": [str], "help"}],
//!  "provenance": {"cycle": ref, "written_by": "template"|"model",
//!                 "model"?, "sources": [str], "evidence": [ref]}}
//! ```
//!
//! Each pane's `help` and the `about` text come from memory: the best hit
//! for the part's query (or the model's paragraph for `about`).

use crate::inference::Inferred;
use crate::value::{make_ref, string_map, Oid, Value};

/// Longest help text, in characters.
const HELP_CHARS: usize = 160;

/// What the template is built from.
pub struct Inputs<'a> {
    /// The cycle writing it.
    pub cycle: Oid,
    /// REASONING's evidence: `[{part, query, hits: [{object, source, snippet}]}]`.
    pub evidence: &'a Value,
    /// The model's paragraph, if a model wrote one.
    pub generated: Option<&'a Inferred>,
    /// The documents ingested.
    pub sources: Vec<&'a str>,
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn first_snippet(evidence: &Value, part: &str) -> Option<String> {
    let Value::Array(parts) = evidence else {
        return None;
    };
    parts
        .iter()
        .find(|p| get(p, "part").and_then(Value::as_str) == Some(part))
        .and_then(|p| match get(p, "hits") {
            Some(Value::Array(hits)) => hits.first(),
            _ => None,
        })
        .and_then(|h| get(h, "snippet"))
        .and_then(Value::as_str)
        .map(|s| {
            let text: String = s.chars().take(HELP_CHARS).collect();
            text
        })
}

fn evidence_refs(evidence: &Value) -> Vec<Value> {
    let Value::Array(parts) = evidence else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|p| match get(p, "hits") {
            Some(Value::Array(h)) => Some(h),
            _ => None,
        })
        .flatten()
        .filter_map(|h| get(h, "object").cloned())
        .collect()
}

fn pane(pairs: Vec<(&str, Value)>) -> Value {
    string_map(pairs)
}

/// Builds `ui_code`.
pub fn build(inputs: &Inputs<'_>) -> Value {
    let help = |part: &str, fallback: &str| {
        Value::from(first_snippet(inputs.evidence, part).unwrap_or_else(|| fallback.to_string()))
    };
    let about = match inputs.generated {
        Some(out) => out.text.trim().to_string(),
        None => first_snippet(inputs.evidence, "about")
            .unwrap_or_else(|| "BAT OS: a persistent, self-extending object system.".into()),
    };
    let mut provenance = vec![
        ("cycle", make_ref(inputs.cycle)),
        (
            "written_by",
            Value::from(if inputs.generated.is_some() {
                "model"
            } else {
                "template"
            }),
        ),
        (
            "sources",
            Value::Array(inputs.sources.iter().map(|s| Value::from(*s)).collect()),
        ),
        ("evidence", Value::Array(evidence_refs(inputs.evidence))),
    ];
    if let Some(out) = inputs.generated {
        provenance.push(("model", Value::from(out.model.as_str())));
        if let Some(expert) = &out.expert {
            provenance.push(("expert", Value::from(expert.as_str())));
        }
    }
    pane(vec![
        ("version", Value::from(1u64)),
        ("title", Value::from("BAT OS Memory Inspector")),
        ("about", Value::from(about)),
        (
            "panes",
            Value::Array(vec![
                pane(vec![
                    ("kind", Value::from("memory_search")),
                    ("title", Value::from("Memory")),
                    ("limit", Value::from(20u64)),
                    (
                        "help",
                        help("memory_search", "Search what the system has ingested."),
                    ),
                ]),
                pane(vec![
                    ("kind", Value::from("object_browser")),
                    ("title", Value::from("Objects")),
                    ("start", Value::from("genesis_obj")),
                    (
                        "help",
                        help("object_browser", "Browse objects: slots, parents, methods."),
                    ),
                ]),
                pane(vec![
                    ("kind", Value::from("events")),
                    ("title", Value::from("Events")),
                    (
                        "topics",
                        Value::Array(vec![
                            Value::from("uvm_state_update"),
                            Value::from("cycle_update"),
                        ]),
                    ),
                    (
                        "help",
                        help("events", "Committed changes and cycle transitions, live."),
                    ),
                ]),
            ]),
        ),
        ("provenance", pane(provenance)),
    ])
}
