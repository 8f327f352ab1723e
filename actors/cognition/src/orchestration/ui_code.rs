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
use batos_object::value::{make_ref, map_field, string_map, Oid, Value};

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

/// The snippet of the best hit for `part`; with `kind`, of the best hit of
/// that kind.
fn first_snippet(evidence: &Value, part: &str, kind: Option<&str>) -> Option<String> {
    let Value::Array(parts) = evidence else {
        return None;
    };
    let hits = parts
        .iter()
        .find(|p| map_field(p, "part").and_then(Value::as_str) == Some(part))
        .and_then(|p| match map_field(p, "hits") {
            Some(Value::Array(hits)) => Some(hits),
            _ => None,
        })?;
    hits.iter()
        .find(|h| kind.is_none() || map_field(h, "kind").and_then(Value::as_str) == kind)
        .and_then(|h| map_field(h, "snippet"))
        .and_then(Value::as_str)
        .map(|s| s.chars().take(HELP_CHARS).collect())
}

fn evidence_refs(evidence: &Value) -> Vec<Value> {
    let Value::Array(parts) = evidence else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|p| match map_field(p, "hits") {
            Some(Value::Array(h)) => Some(h),
            _ => None,
        })
        .flatten()
        .filter_map(|h| map_field(h, "object").cloned())
        .collect()
}

/// Builds `ui_code`.
pub fn build(inputs: &Inputs<'_>) -> Value {
    let help = |part: &str, fallback: &str| {
        Value::from(
            first_snippet(inputs.evidence, part, None).unwrap_or_else(|| fallback.to_string()),
        )
    };
    let about = match inputs.generated {
        Some(out) => out.text.trim().to_string(),
        // A passage of the documents themselves introduces the system
        // better than a summary stitched from lead sentences.
        None => first_snippet(inputs.evidence, "about", Some("chunk"))
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
    string_map(vec![
        ("version", Value::from(1u64)),
        ("title", Value::from("BAT OS Memory Inspector")),
        ("about", Value::from(about)),
        (
            "panes",
            Value::Array(vec![
                string_map(vec![
                    ("kind", Value::from("memory_search")),
                    ("title", Value::from("Memory")),
                    ("limit", Value::from(20u64)),
                    (
                        "help",
                        help("memory_search", "Search what the system has ingested."),
                    ),
                ]),
                string_map(vec![
                    ("kind", Value::from("object_browser")),
                    ("title", Value::from("Objects")),
                    ("start", Value::from("genesis_obj")),
                    (
                        "help",
                        help("object_browser", "Browse objects: slots, parents, methods."),
                    ),
                ]),
                string_map(vec![
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
        ("provenance", string_map(provenance)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(oid: Oid, kind: &str, snippet: &str) -> Value {
        string_map(vec![
            ("object", make_ref(oid)),
            ("source", Value::from("doc.md")),
            ("kind", Value::from(kind)),
            ("snippet", Value::from(snippet)),
        ])
    }

    fn part(name: &str, hits: Vec<Value>) -> Value {
        string_map(vec![
            ("part", Value::from(name)),
            ("query", Value::from("q")),
            ("hits", Value::Array(hits)),
        ])
    }

    #[test]
    fn the_template_takes_its_texts_from_memory() {
        let evidence = Value::Array(vec![
            part(
                "about",
                vec![
                    hit(7, "summary", "a stitched summary"),
                    hit(8, "chunk", "BAT OS is a system"),
                ],
            ),
            part("events", vec![hit(9, "chunk", "events are published")]),
        ]);
        let ui = build(&Inputs {
            cycle: 42,
            evidence: &evidence,
            generated: None,
            sources: vec!["doc.md"],
        });
        assert_eq!(
            map_field(&ui, "about").and_then(Value::as_str),
            Some("BAT OS is a system")
        );
        let Some(Value::Array(panes)) = map_field(&ui, "panes") else {
            panic!("panes: {ui}")
        };
        let help: Vec<&str> = panes
            .iter()
            .map(|p| map_field(p, "help").and_then(Value::as_str).unwrap())
            .collect();
        assert_eq!(help[2], "events are published");
        assert_eq!(
            help[0], "Search what the system has ingested.",
            "fallback without evidence"
        );
        let provenance = map_field(&ui, "provenance").unwrap();
        assert_eq!(
            map_field(provenance, "written_by").and_then(Value::as_str),
            Some("template")
        );
        assert_eq!(
            map_field(provenance, "evidence"),
            Some(&Value::Array(vec![make_ref(7), make_ref(8), make_ref(9)]))
        );
    }

    #[test]
    fn a_model_paragraph_becomes_the_about_text() {
        let generated = Inferred {
            text: "  I am BAT OS.  ".into(),
            expert: Some("ROBIN".into()),
            tokens: 4,
            model: "m".into(),
        };
        let ui = build(&Inputs {
            cycle: 1,
            evidence: &Value::Array(vec![]),
            generated: Some(&generated),
            sources: vec![],
        });
        assert_eq!(
            map_field(&ui, "about").and_then(Value::as_str),
            Some("I am BAT OS.")
        );
        let provenance = map_field(&ui, "provenance").unwrap();
        assert_eq!(
            map_field(provenance, "written_by").and_then(Value::as_str),
            Some("model")
        );
        assert_eq!(
            map_field(provenance, "expert").and_then(Value::as_str),
            Some("ROBIN")
        );
    }
}
