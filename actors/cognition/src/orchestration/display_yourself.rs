//! display_yourself (the seed's Table 4): the first conversation, in which
//! the system ingests its own design documents, reasons over what its
//! memory returns about them, and writes the description of its own
//! Memory Inspector onto `genesis_obj` as `ui_code`.

use crate::inference::{Cognition, Inference};
use batos_memory::{Catalog, Document, EntryKind, Hit, SearchQuery};
use batos_object::changes::Changes;
use batos_object::error::ActorError;
use batos_object::value::{find_slot as slot, make_ref, map_field, Oid, Value};

use super::ui_code;

/// Cycle slots the steps write (shown by `get_cycle`).
pub(super) const RESULT_SLOTS: [&str; 4] = [
    "source_material",
    "generated_chunks",
    "intermediate_results",
    "final_synthesis",
];

/// One state's prototype.
pub(super) struct StateSpec {
    pub name: &'static str,
    pub expert: &'static str,
    pub step: &'static str,
    pub action: &'static str,
    pub settings: Vec<(String, Value)>,
}

/// The default queries REASONING asks memory, one per part of the UI.
pub(super) fn default_queries() -> Vec<(Value, Value)> {
    [
        ("about", "persistent prototype objects actors image kernel"),
        (
            "memory_search",
            "search_memory query ranked snippets source",
        ),
        (
            "object_browser",
            "get_full_state slots parents methods versions",
        ),
        ("events", "events PUB uvm_state_update cycle_update"),
    ]
    .into_iter()
    .map(|(k, v)| (Value::from(k), Value::from(v)))
    .collect()
}

/// The states, in order (each one's `next_state` is the one after it).
pub(super) fn states() -> Vec<StateSpec> {
    let spec = |name, expert, step, action| StateSpec {
        name,
        expert,
        step,
        action,
        settings: Vec::new(),
    };
    vec![
        spec(
            "IDLE",
            "",
            "begin",
            "The architect asks the system to display itself.",
        ),
        spec(
            "INGESTING",
            "BABS",
            "load_documents",
            "Load the kernel's own design documents.",
        ),
        spec(
            "CHUNKING",
            "BABS",
            "chunk_documents",
            "Decompose the documents into token-budgeted chunks.",
        ),
        spec(
            "INDEXING",
            "BABS",
            "index_documents",
            "Create MemoryChunk objects, index them and summarize them.",
        ),
        StateSpec {
            settings: vec![("queries".to_string(), Value::Map(default_queries()))],
            ..spec(
                "REASONING",
                "BRICK",
                "reason",
                "Ask memory about the system's design and build the prompt.",
            )
        },
        spec(
            "SYNTHESIZING",
            "ROBIN",
            "synthesize",
            "Write the inspector's description from what memory returned.",
        ),
        spec(
            "COMPLETE",
            "ALFRED",
            "install",
            "Install ui_code on genesis_obj and report.",
        ),
    ]
}

/// What a step can reach.
pub(super) struct StepContext<'a> {
    pub cycle: Oid,
    pub cycle_slots: &'a [(String, Value)],
    pub state: &'a [(String, Value)],
    pub expert: &'a str,
    pub catalog: &'a Catalog,
    pub model: Option<&'a Cognition>,
    pub documents: &'a [Document],
    pub genesis: Oid,
}

/// Runs the step named by a state's `step` slot; its writes go into
/// `changes` (committed with the transition). Returns a note for history.
pub(super) async fn run_step(
    step: &str,
    cx: &StepContext<'_>,
    changes: &mut Changes,
) -> Result<String, ActorError> {
    match step {
        "begin" => Ok("cycle started".into()),
        "load_documents" => {
            let material: Vec<Value> = cx
                .documents
                .iter()
                .map(|d| {
                    Value::Map(vec![
                        ("source".into(), Value::from(d.source.as_str())),
                        ("bytes".into(), Value::from(d.text.len() as u64)),
                    ])
                })
                .collect();
            changes.set(cx.cycle, "source_material", Value::Array(material));
            Ok(format!("{} documents", cx.documents.len()))
        }
        "chunk_documents" => {
            // The catalog's own chunker: the budget and tokenizer ingest uses.
            let catalog = cx.catalog.clone();
            let documents = cx.documents.to_vec();
            let counts: Vec<Value> = tokio::task::spawn_blocking(move || {
                documents
                    .iter()
                    .map(|d| {
                        let chunks = catalog.chunk(&d.text);
                        Value::Map(vec![
                            ("source".into(), Value::from(d.source.as_str())),
                            ("chunks".into(), Value::from(chunks.len() as u64)),
                            (
                                "tokens".into(),
                                Value::from(chunks.iter().map(|c| c.tokens as u64).sum::<u64>()),
                            ),
                        ])
                    })
                    .collect()
            })
            .await
            .map_err(ActorError::internal)?;
            let total = counts.len();
            changes.set(cx.cycle, "generated_chunks", Value::Array(counts));
            Ok(format!("{total} documents chunked"))
        }
        "index_documents" => {
            let report = cx.catalog.ingest(cx.documents.to_vec()).await?;
            let sources = cx.documents.iter().map(|d| d.source.clone()).collect();
            let summaries = cx.catalog.summarize(sources).await?;
            Ok(format!(
                "{} chunks indexed, {summaries} summaries",
                report.chunks
            ))
        }
        "reason" => {
            let queries = match slot(cx.state, "queries") {
                Some(Value::Map(pairs)) => pairs.clone(),
                _ => default_queries(),
            };
            let mut evidence = Vec::new();
            let mut prompt = String::from(
                "You are describing BAT OS's own Memory Inspector. From these excerpts of the system's design, \
                 write one short paragraph telling a person what the system is and what the inspector shows.\n",
            );
            let asked: Vec<(String, String)> = queries
                .iter()
                .filter_map(|(p, q)| Some((p.as_str()?.to_string(), q.as_str()?.to_string())))
                .collect();
            // After a start that found the index behind, it is rebuilt while
            // the kernel serves: a resumed cycle waits for it.
            cx.catalog.searchable().await;
            // Index searches block: run them off the async threads.
            let answers = {
                let catalog = cx.catalog.clone();
                let asked = asked.clone();
                tokio::task::spawn_blocking(move || {
                    asked
                        .iter()
                        .map(|(_, q)| search(&catalog, q, 3))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(ActorError::internal)??
            };
            for ((part, query), hits) in asked.iter().zip(answers) {
                let (part, query) = (part.as_str(), query.as_str());
                prompt.push_str(&format!("\n[{part}] (query: {query})\n"));
                for hit in &hits {
                    prompt.push_str(&format!("- {}: {}\n", hit.source, plain(&hit.snippet)));
                }
                evidence.push(Value::Map(vec![
                    ("part".into(), Value::from(part)),
                    ("query".into(), Value::from(query)),
                    (
                        "hits".into(),
                        Value::Array(hits.iter().map(hit_value).collect()),
                    ),
                ]));
            }
            let n = evidence.len();
            changes.set(
                cx.cycle,
                "intermediate_results",
                Value::Map(vec![
                    ("prompt".into(), Value::from(prompt)),
                    ("evidence".into(), Value::Array(evidence)),
                ]),
            );
            Ok(format!("{n} queries answered from memory"))
        }
        "synthesize" => {
            let results = slot(cx.cycle_slots, "intermediate_results").unwrap_or(&Value::Nil);
            let prompt = map_field(results, "prompt")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let evidence = map_field(results, "evidence")
                .cloned()
                .unwrap_or(Value::Array(vec![]));
            let mut generated = None;
            if let Some(model) = cx.model {
                let expert = (!cx.expert.is_empty()).then(|| cx.expert.to_string());
                match model
                    .infer(
                        Inference {
                            prompt,
                            expert,
                            max_tokens: Some(96),
                            constraint: None,
                        },
                        false,
                    )
                    .await
                {
                    Ok(out) if !out.text.trim().is_empty() => generated = Some(out),
                    Ok(_) => {
                        tracing::warn!("the model wrote an empty description; using the template")
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the model could not write the description; using the template")
                    }
                }
            }
            let ui = ui_code::build(&ui_code::Inputs {
                cycle: cx.cycle,
                evidence: &evidence,
                generated: generated.as_ref(),
                sources: cx.documents.iter().map(|d| d.source.as_str()).collect(),
            });
            let by = if generated.is_some() {
                "model"
            } else {
                "template"
            };
            changes.set(cx.cycle, "final_synthesis", ui);
            Ok(format!("ui_code written by the {by}"))
        }
        "install" => {
            let ui = slot(cx.cycle_slots, "final_synthesis")
                .cloned()
                .ok_or_else(|| {
                    ActorError::internal("COMPLETE reached without a final_synthesis")
                })?;
            changes.set(cx.genesis, "ui_code", ui);
            changes.set(cx.genesis, "ui_code_cycle", make_ref(cx.cycle));
            Ok("ui_code installed on genesis_obj".into())
        }
        other => Err(ActorError::BadRequest(format!(
            "state step {other:?} is not a kernel step"
        ))),
    }
}

fn search(catalog: &Catalog, query: &str, limit: usize) -> Result<Vec<Hit>, ActorError> {
    // Prefer summaries (they speak for many chunks), then chunks.
    let mut hits = catalog.search(&SearchQuery {
        text: query,
        limit,
        source: None,
        kind: Some(EntryKind::Chunk),
    })?;
    let summaries = catalog.search(&SearchQuery {
        text: query,
        limit: 1,
        source: None,
        kind: Some(EntryKind::Summary),
    })?;
    hits.splice(0..0, summaries);
    hits.truncate(limit);
    Ok(hits)
}

/// A snippet without its `**` highlight marks, on one line.
pub(super) fn plain(snippet: &str) -> String {
    snippet
        .replace("**", "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn hit_value(hit: &Hit) -> Value {
    Value::Map(vec![
        ("object".into(), make_ref(hit.oid)),
        ("source".into(), Value::from(hit.source.as_str())),
        ("kind".into(), Value::from(hit.kind.as_str())),
        ("snippet".into(), Value::from(plain(&hit.snippet))),
    ])
}
