//! The `batos` subcommands for people: values in and out as JSON, exit
//! codes scripts can trust (see [`ExitCode`]).

use batos_object::value::map_field as field;
use rmpv::Value;

use batos_client::{Client, ClientError, Curve};

/// Exit statuses of the client subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The kernel answered ok.
    Ok = 0,
    /// The kernel answered with an error (printed as `error: CODE: MESSAGE`).
    KernelError = 1,
    /// The command line was wrong (bad arguments, invalid JSON).
    Usage = 2,
    /// The kernel could not be reached.
    Unreachable = 3,
}

/// A client subcommand, already parsed.
#[derive(Debug, Clone)]
pub enum Request {
    /// `batos ping`
    Ping,
    /// `batos state [OID]`
    State(Option<String>),
    /// `batos get OID SLOT`
    Get(String, String),
    /// `batos set OID SLOT JSON`
    Set(String, String, String),
    /// `batos send OID SELECTOR [JSON...]`
    Send(String, String, Vec<String>),
    /// `batos new [JSON]`
    New(Option<String>),
    /// `batos clone OID`
    Clone(String),
    /// `batos ingest FILE...` (each file's path is its source)
    Ingest(Vec<std::path::PathBuf>),
    /// `batos search QUERY [--source S] [--limit N]`
    Search {
        /// The query.
        query: String,
        /// Only this source.
        source: Option<String>,
        /// At most this many hits.
        limit: Option<u64>,
    },
    /// `batos experts`
    Experts,
    /// `batos infer PROMPT [--expert NAME] [--max-tokens N]`
    Infer {
        /// The prompt.
        prompt: String,
        /// The persona expert.
        expert: Option<String>,
        /// Most tokens.
        max_tokens: Option<u64>,
    },
    /// `batos cycle start KIND`
    CycleStart(String),
    /// `batos cycle get OID`
    CycleGet(String),
    /// `batos method OID SELECTOR FILE [--lang python|wat|wasm]` (`-`: stdin)
    Method {
        /// The object.
        oid: String,
        /// The selector.
        selector: String,
        /// The file, or `-` for standard input.
        file: std::path::PathBuf,
        /// `python`, `wat` or `wasm`; default: the file's extension (`-`: `wat`).
        lang: Option<String>,
    },
    /// `batos source OID SELECTOR [--version N]`: the text a version was
    /// written in (default: the active version).
    Source {
        /// The object.
        oid: String,
        /// The selector.
        selector: String,
        /// The version; default: the active one.
        version: Option<u64>,
    },
}

/// How a subcommand's result is printed.
enum Output {
    /// As JSON.
    Json,
    /// The source text of a method version, as it is.
    Source {
        selector: String,
        version: Option<u64>,
    },
}

/// Runs a client subcommand, printing the result as JSON on stdout.
pub fn run(endpoint: &str, timeout_ms: i32, curve: Option<&Curve>, request: Request) -> ExitCode {
    let output = match &request {
        Request::Source {
            selector, version, ..
        } => Output::Source {
            selector: selector.clone(),
            version: *version,
        },
        _ => Output::Json,
    };
    let (command, fields) = match build(request) {
        Ok(call) => call,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::Usage;
        }
    };
    let outcome =
        Client::connect_with(endpoint, timeout_ms, curve).and_then(|mut c| c.call(command, fields));
    match outcome {
        Ok(Ok(result)) => match output {
            Output::Json => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&result)).unwrap_or_default()
                );
                ExitCode::Ok
            }
            Output::Source { selector, version } => {
                match source_text(&result, &selector, version) {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::Ok
                    }
                    Err(message) => {
                        eprintln!("error: {message}");
                        ExitCode::KernelError
                    }
                }
            }
        },
        Ok(Err(err)) => {
            eprintln!("error: {}: {}", err.code.as_str(), err.message);
            ExitCode::KernelError
        }
        Err(err @ (ClientError::Timeout { .. } | ClientError::Zmq(_))) => {
            eprintln!("error: {err}");
            ExitCode::Unreachable
        }
        Err(err @ ClientError::Malformed(_)) => {
            eprintln!("error: {err}");
            ExitCode::KernelError
        }
    }
}

type Call = (&'static str, Vec<(&'static str, Value)>);

fn build(request: Request) -> Result<Call, String> {
    Ok(match request {
        Request::Ping => ("ping", vec![]),
        Request::State(None) => ("get_full_state", vec![]),
        Request::State(Some(oid)) => ("get_full_state", vec![("oid", oid_arg(&oid))]),
        Request::Get(oid, slot) => (
            "get_slot",
            vec![("oid", oid_arg(&oid)), ("slot", Value::from(slot))],
        ),
        Request::Set(oid, slot, json) => (
            "set_slot",
            vec![
                ("oid", oid_arg(&oid)),
                ("slot", Value::from(slot)),
                ("value", parse_json(&json)?),
            ],
        ),
        Request::Send(oid, selector, args) => {
            let args = args
                .iter()
                .map(|a| parse_json(a))
                .collect::<Result<Vec<_>, _>>()?;
            (
                "send",
                vec![
                    ("oid", oid_arg(&oid)),
                    ("selector", Value::from(selector)),
                    ("args", Value::Array(args)),
                ],
            )
        }
        Request::New(None) => ("create_object", vec![]),
        Request::New(Some(json)) => match parse_json(&json)? {
            slots @ Value::Map(_) => ("create_object", vec![("slots", slots)]),
            _ => return Err("the slots of a new object must be a JSON object".into()),
        },
        Request::Clone(oid) => ("clone", vec![("oid", oid_arg(&oid))]),
        Request::Ingest(files) => {
            let mut documents = Vec::with_capacity(files.len());
            for path in files {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                documents.push(Value::Map(vec![
                    (
                        Value::from("source"),
                        Value::from(path.display().to_string()),
                    ),
                    (Value::from("text"), Value::from(text)),
                ]));
            }
            ("ingest", vec![("documents", Value::Array(documents))])
        }
        Request::Search {
            query,
            source,
            limit,
        } => {
            let mut fields = vec![("query", Value::from(query))];
            if let Some(source) = source {
                fields.push(("source", Value::from(source)));
            }
            if let Some(limit) = limit {
                fields.push(("limit", Value::from(limit)));
            }
            ("search_memory", fields)
        }
        Request::Experts => ("list_experts", vec![]),
        Request::Infer {
            prompt,
            expert,
            max_tokens,
        } => {
            let mut fields = vec![("prompt", Value::from(prompt))];
            if let Some(expert) = expert {
                fields.push(("expert", Value::from(expert)));
            }
            if let Some(n) = max_tokens {
                fields.push(("max_tokens", Value::from(n)));
            }
            ("infer", fields)
        }
        Request::CycleStart(kind) => ("start_cycle", vec![("kind", Value::from(kind))]),
        Request::CycleGet(oid) => ("get_cycle", vec![("cycle", oid_arg(&oid))]),
        Request::Method {
            oid,
            selector,
            file,
            lang,
        } => {
            let stdin = file.as_os_str() == "-";
            let lang = match lang {
                Some(lang) => lang,
                None if stdin => "wat".into(),
                None => match file.extension().and_then(|e| e.to_str()) {
                    Some("wat") => "wat".into(),
                    Some("wasm") => "wasm".into(),
                    Some("py") => "python".into(),
                    _ => {
                        return Err(format!(
                            "{}: say the language with --lang python|wat|wasm (from the extension: .py, .wat or .wasm)",
                            file.display()
                        ))
                    }
                },
            };
            let bytes = if stdin {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                bytes
            } else {
                std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?
            };
            let text = |bytes: Vec<u8>| {
                String::from_utf8(bytes)
                    .map(Value::from)
                    .map_err(|_| format!("{}: {lang} must be UTF-8 text", file.display()))
            };
            let code = match lang.as_str() {
                "python" => ("python", text(bytes)?),
                "wat" => ("wat", text(bytes)?),
                "wasm" => ("wasm", Value::Binary(bytes)),
                other => {
                    return Err(format!(
                        "unknown method language {other:?} (python, wat or wasm)"
                    ))
                }
            };
            (
                "create_method",
                vec![
                    ("oid", oid_arg(&oid)),
                    ("selector", Value::from(selector)),
                    code,
                ],
            )
        }
        Request::Source { oid, .. } => ("get_full_state", vec![("oid", oid_arg(&oid))]),
    })
}

/// The text version `version` (default: the active one) of `selector` was
/// written in, from a `get_full_state` result.
fn source_text(state: &Value, selector: &str, version: Option<u64>) -> Result<String, String> {
    let version = match version {
        Some(v) => v,
        None => field(state, "slots")
            .and_then(|slots| field(slots, selector))
            .and_then(|slot| field(slot, "$method"))
            .and_then(|m| field(m, "version"))
            .and_then(|v| v.as_u64())
            .ok_or_else(|| format!("the object has no method {selector:?}"))?,
    };
    let record = field(state, "methods")
        .and_then(|methods| field(methods, selector))
        .and_then(|versions| {
            versions
                .as_array()?
                .iter()
                .find(|r| field(r, "version").and_then(|v| v.as_u64()) == Some(version))
        })
        .ok_or_else(|| format!("{selector:?} has no version {version}"))?;
    field(record, "source")
        .and_then(|source| field(source, "text"))
        .and_then(|text| text.as_str().map(str::to_owned))
        .ok_or_else(|| {
            format!(
                "version {version} of {selector:?} was installed as a binary: no source was kept"
            )
        })
}

/// An oid argument: an integer, or a root name.
fn oid_arg(arg: &str) -> Value {
    arg.parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(arg))
}

fn parse_json(text: &str) -> Result<Value, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON {text:?}: {e}"))?;
    from_json(json)
}

/// JSON → MessagePack. `{"$bin": "HEX"}` gives a binary value.
pub fn from_json(json: serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s),
        J::Array(items) => {
            Value::Array(items.into_iter().map(from_json).collect::<Result<_, _>>()?)
        }
        J::Object(map) => {
            if map.len() == 1 {
                if let Some(J::String(hex)) = map.get("$bin") {
                    return hex::decode(hex)
                        .map(Value::Binary)
                        .map_err(|e| format!("`$bin` is not hex: {e}"));
                }
            }
            Value::Map(
                map.into_iter()
                    .map(|(k, v)| Ok((Value::from(k), from_json(v)?)))
                    .collect::<Result<_, String>>()?,
            )
        }
    })
}

/// MessagePack → JSON for display: binary as `{"$bin": HEX}`, non-finite
/// floats as strings (`"NaN"`, `"inf"`, `"-inf"`).
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(J::Number)
            .unwrap_or_else(|| J::String(format!("{f}")))
    };
    match value {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => float(f64::from(*f)),
        Value::F64(f) => float(*f),
        Value::String(s) => J::String(
            s.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{:?}", s.as_bytes())),
        ),
        Value::Binary(b) => serde_json::json!({ "$bin": hex::encode(b) }),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| k.to_string()),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(ty, data) => serde_json::json!({ "$ext": [ty, hex::encode(data)] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_messagepack() {
        let text = r#"{"a":[1,-2,18446744073709551615,1.5,null,true,"s"],"b":{"$ref":3},"c":{"$bin":"00ff"}}"#;
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let value = from_json(json.clone()).unwrap();
        assert_eq!(to_json(&value), json);
    }

    #[test]
    fn bad_json_is_a_usage_error() {
        assert!(build(Request::Set("1".into(), "x".into(), "{nope".into())).is_err());
        assert!(build(Request::New(Some("[1]".into()))).is_err());
    }
}
