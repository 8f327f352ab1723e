//! The commands of protocol v1 and their fields, decoded and type-checked.

use std::collections::HashSet;

use rmpv::Value;

use super::{kind, ErrorCode, WireError};

/// An object named by oid or by root name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjRef {
    /// An oid.
    Oid(u64),
    /// A root object's name (e.g. `"genesis_obj"`).
    Root(String),
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjRef::Oid(oid) => write!(f, "{oid}"),
            ObjRef::Root(name) => f.write_str(name),
        }
    }
}

/// A decoded command with its validated fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `ping`
    Ping,
    /// `get_full_state`
    GetFullState { oid: Option<ObjRef> },
    /// `create_object`
    CreateObject { slots: Vec<(String, Value)> },
    /// `clone`
    Clone { oid: ObjRef },
    /// `get_slot`
    GetSlot { oid: ObjRef, slot: String },
    /// `set_slot`
    SetSlot {
        oid: ObjRef,
        slot: String,
        value: Value,
    },
    /// `remove_slot`
    RemoveSlot { oid: ObjRef, slot: String },
    /// `send`
    Send {
        oid: ObjRef,
        selector: String,
        args: Vec<Value>,
    },
    /// `create_method`
    CreateMethod {
        oid: ObjRef,
        selector: String,
        code: MethodCode,
    },
    /// `ingest`
    Ingest { documents: Vec<(String, String)> },
    /// `search_memory`
    SearchMemory {
        query: String,
        limit: u64,
        source: Option<String>,
        /// `"chunk"` or `"summary"` (an extension: absent = both).
        kind: Option<String>,
        /// Summaries related to this object (an extension).
        related: Option<ObjRef>,
    },
    /// `list_experts`
    ListExperts,
    /// `infer`
    Infer {
        prompt: String,
        expert: Option<String>,
        max_tokens: Option<u64>,
    },
    /// `start_cycle`
    StartCycle { kind: String },
    /// `get_cycle`
    GetCycle { cycle: ObjRef },
    /// `snapshot`
    Snapshot,
}

/// Longest `search_memory` query: BM25 over thousands of words helps no
/// one and costs the index a long scan.
pub const MAX_QUERY_BYTES: usize = 4096;

/// A method's code as sent to `create_method`.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodCode {
    /// WebAssembly text.
    Wat(String),
    /// A WebAssembly binary.
    Wasm(Vec<u8>),
    /// A method in Python (`def name(self, ...):`), compiled by the kernel.
    Python(String),
}

impl Command {
    /// The command's wire name (also its metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::GetFullState { .. } => "get_full_state",
            Command::CreateObject { .. } => "create_object",
            Command::Clone { .. } => "clone",
            Command::GetSlot { .. } => "get_slot",
            Command::SetSlot { .. } => "set_slot",
            Command::RemoveSlot { .. } => "remove_slot",
            Command::Send { .. } => "send",
            Command::CreateMethod { .. } => "create_method",
            Command::Ingest { .. } => "ingest",
            Command::SearchMemory { .. } => "search_memory",
            Command::ListExperts => "list_experts",
            Command::Infer { .. } => "infer",
            Command::StartCycle { .. } => "start_cycle",
            Command::GetCycle { .. } => "get_cycle",
            Command::Snapshot => "snapshot",
        }
    }

    /// The object the command is addressed to, if it names one.
    pub fn target(&self) -> Option<&ObjRef> {
        match self {
            Command::GetFullState { oid } => oid.as_ref(),
            Command::Clone { oid }
            | Command::GetSlot { oid, .. }
            | Command::SetSlot { oid, .. }
            | Command::RemoveSlot { oid, .. }
            | Command::Send { oid, .. }
            | Command::CreateMethod { oid, .. } => Some(oid),
            Command::SearchMemory { related, .. } => related.as_ref(),
            Command::GetCycle { cycle } => Some(cycle),
            _ => None,
        }
    }

    /// The selector (`send`, `create_method`) or slot (`get_slot`,
    /// `set_slot`, `remove_slot`) the command names.
    pub fn member(&self) -> Option<&str> {
        match self {
            Command::Send { selector, .. } | Command::CreateMethod { selector, .. } => {
                Some(selector)
            }
            Command::GetSlot { slot, .. }
            | Command::SetSlot { slot, .. }
            | Command::RemoveSlot { slot, .. } => Some(slot),
            _ => None,
        }
    }

    /// Every command name, for metrics labels.
    pub const NAMES: [&'static str; 16] = [
        "ping",
        "get_full_state",
        "create_object",
        "clone",
        "get_slot",
        "set_slot",
        "remove_slot",
        "send",
        "create_method",
        "ingest",
        "search_memory",
        "list_experts",
        "infer",
        "start_cycle",
        "get_cycle",
        "snapshot",
    ];

    /// Decodes the fields of command `name` from the request map.
    pub(super) fn parse(name: &str, fields: &Fields<'_>) -> Result<Command, WireError> {
        Ok(match name {
            "ping" => Command::Ping,
            "get_full_state" => Command::GetFullState {
                oid: fields.opt("oid", obj_ref)?,
            },
            "create_object" => Command::CreateObject {
                slots: fields.opt("slots", slot_map)?.unwrap_or_default(),
            },
            "clone" => Command::Clone {
                oid: fields.req("oid", obj_ref)?,
            },
            "get_slot" => Command::GetSlot {
                oid: fields.req("oid", obj_ref)?,
                slot: fields.req("slot", string)?,
            },
            "set_slot" => Command::SetSlot {
                oid: fields.req("oid", obj_ref)?,
                slot: fields.req("slot", string)?,
                value: fields.req("value", |v| Ok(v.clone()))?,
            },
            "remove_slot" => Command::RemoveSlot {
                oid: fields.req("oid", obj_ref)?,
                slot: fields.req("slot", string)?,
            },
            "send" => Command::Send {
                oid: fields.req("oid", obj_ref)?,
                selector: fields.req("selector", string)?,
                args: fields.opt("args", array)?.unwrap_or_default(),
            },
            "create_method" => {
                let oid = fields.req("oid", obj_ref)?;
                let selector = fields.req("selector", string)?;
                let code = match (
                    fields.opt("wat", string)?,
                    fields.opt("wasm", binary)?,
                    fields.opt("python", string)?,
                ) {
                    (Some(wat), None, None) => MethodCode::Wat(wat),
                    (None, Some(wasm), None) => MethodCode::Wasm(wasm),
                    (None, None, Some(python)) => MethodCode::Python(python),
                    _ => {
                        return Err(bad(
                            "create_method needs exactly one of `wat` (str), `wasm` (bin) or `python` (str)",
                        ))
                    }
                };
                Command::CreateMethod {
                    oid,
                    selector,
                    code,
                }
            }
            "ingest" => Command::Ingest {
                documents: fields.req("documents", documents)?,
            },
            "search_memory" => {
                // Extension: `related` (an oid) asks for the summaries most
                // like that object's text (Table 3's find_related_summaries);
                // `query` may then be left out.
                let related = fields.opt("related", obj_ref)?;
                let query = match (fields.opt("query", string)?, &related) {
                    (Some(q), _) => q,
                    (None, Some(_)) => String::new(),
                    (None, None) => return Err(bad("search_memory needs `query` (str)")),
                };
                if query.trim().is_empty() && related.is_none() {
                    return Err(bad("`query` must not be empty"));
                }
                if query.len() > MAX_QUERY_BYTES {
                    return Err(bad(format!(
                        "`query` is {} bytes; at most {MAX_QUERY_BYTES}",
                        query.len()
                    )));
                }
                let limit = fields.opt("limit", uint)?.unwrap_or(10);
                if !(1..=1000).contains(&limit) {
                    return Err(bad("`limit` must be within 1..1000"));
                }
                let kind = fields.opt("kind", string)?;
                if let Some(k) = &kind {
                    if k != "chunk" && k != "summary" {
                        return Err(bad("`kind` must be \"chunk\" or \"summary\""));
                    }
                }
                Command::SearchMemory {
                    query,
                    limit,
                    source: fields.opt("source", string)?,
                    kind,
                    related,
                }
            }
            "list_experts" => Command::ListExperts,
            "infer" => Command::Infer {
                prompt: fields.req("prompt", string)?,
                expert: fields.opt("expert", nullable_string)?.flatten(),
                max_tokens: fields.opt("max_tokens", uint)?,
            },
            "start_cycle" => {
                let kind = fields.req("kind", string)?;
                if kind != "display_yourself" {
                    return Err(bad(format!(
                        "unknown cycle kind {kind:?} (known: \"display_yourself\")"
                    )));
                }
                Command::StartCycle { kind }
            }
            "get_cycle" => Command::GetCycle {
                cycle: fields.req("cycle", obj_ref)?,
            },
            "snapshot" => Command::Snapshot,
            other => {
                return Err(WireError::new(
                    ErrorCode::UnknownCommand,
                    format!("unknown command {other:?}"),
                ));
            }
        })
    }
}

/// The request map's fields, looked up by name.
pub(super) struct Fields<'a>(pub(super) &'a [(Value, Value)]);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    }

    fn req<T>(
        &self,
        name: &str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<T, WireError> {
        let value = self
            .get(name)
            .ok_or_else(|| bad(format!("missing field `{name}`")))?;
        parse(value).map_err(|e| bad(format!("field `{name}`: {e}")))
    }

    fn opt<T>(
        &self,
        name: &str,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, WireError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => parse(value)
                .map(Some)
                .map_err(|e| bad(format!("field `{name}`: {e}"))),
        }
    }
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::BadRequest, message)
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "not valid UTF-8".to_string()),
        other => Err(format!("expected str, got {}", kind(other))),
    }
}

fn nullable_string(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Nil => Ok(None),
        other => string(other).map(Some),
    }
}

fn binary(v: &Value) -> Result<Vec<u8>, String> {
    match v {
        Value::Binary(b) => Ok(b.clone()),
        other => Err(format!("expected bin, got {}", kind(other))),
    }
}

fn uint(v: &Value) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("expected a non-negative int, got {}", kind(v)))
}

fn array(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items.clone()),
        other => Err(format!("expected array, got {}", kind(other))),
    }
}

fn obj_ref(v: &Value) -> Result<ObjRef, String> {
    match v {
        Value::Integer(i) => i
            .as_u64()
            .map(ObjRef::Oid)
            .ok_or_else(|| format!("oid must be unsigned, got {i}")),
        Value::String(_) => string(v).map(ObjRef::Root),
        other => Err(format!(
            "expected an oid (int) or a root name (str), got {}",
            kind(other)
        )),
    }
}

fn slot_map(v: &Value) -> Result<Vec<(String, Value)>, String> {
    match v {
        Value::Map(entries) => {
            let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.len());
            // Linear: a scan of `out` per slot made one request with many
            // slots stall the bridge for everyone.
            let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
            for (k, v) in entries {
                let name = string(k).map_err(|e| format!("slot name: {e}"))?;
                if !seen.insert(k.as_str().unwrap_or_default()) {
                    return Err(format!("slot {name:?} given twice"));
                }
                out.push((name, v.clone()));
            }
            Ok(out)
        }
        other => Err(format!("expected map, got {}", kind(other))),
    }
}

fn documents(v: &Value) -> Result<Vec<(String, String)>, String> {
    array(v)?
        .iter()
        .map(|doc| {
            let Value::Map(entries) = doc else {
                return Err("each document must be a map".to_string());
            };
            let fields = Fields(entries);
            let source = fields.req("source", string).map_err(|e| e.message)?;
            let text = fields.req("text", string).map_err(|e| e.message)?;
            Ok((source, text))
        })
        .collect()
}
