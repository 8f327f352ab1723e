//! Data access for the inspector: the requests it makes over the commands
//! socket (run one at a time on a worker thread, so the screen never waits
//! on the kernel) and the event feed (a SUB socket read on its own thread).
//! Both hand their results to the UI thread over channels.
//!
//! The wire shapes parsed here are those of `docs/protocol.md`:
//! references are `{"$ref": oid}` maps, method slots `{"$method": {...}}`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rmpv::Value;

use batos_client::{Client, Subscriber};
use batos_protocol::ErrorCode;
use batos_protocol::{TOPIC_CYCLE, TOPIC_STATE};

/// Most summaries followed up a chain (guards against cycles and very deep trees).
const MAX_CHAIN: usize = 32;
/// How often the event thread checks whether it should stop.
const EVENT_POLL: Duration = Duration::from_millis(200);
/// Deepest nesting searched for a reference inside a slot value.
const MAX_REF_DEPTH: usize = 4;
/// Most slot names listed in one event line.
const MAX_EVENT_NAMES: usize = 8;

// ---------------------------------------------------------------------------
// What the kernel tells us
// ---------------------------------------------------------------------------

/// Whether a search hit is a chunk of a document or a summary of chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    /// A MemoryChunk.
    Chunk,
    /// A ContextualSummary.
    Summary,
}

/// One `search_memory` hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk (or summary) object.
    pub chunk: u64,
    /// The document it came from.
    pub source: String,
    /// BM25 score.
    pub score: f64,
    /// Matching text, matches marked `**like this**`.
    pub snippet: String,
    /// Chunk or summary.
    pub kind: HitKind,
}

/// One summary on the way up from a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The ContextualSummary object.
    pub oid: u64,
    /// Its `level` (1 summarizes chunks).
    pub level: Option<i64>,
    /// The first non-empty line of its `summary_text`.
    pub first_line: String,
}

/// The selected hit in full: its text and its summary chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// The chunk (or summary) object.
    pub oid: u64,
    /// `source_text`, or `summary_text` for a summary.
    pub text: String,
    /// `token_count`, if the object has one.
    pub token_count: Option<u64>,
    /// `metadata.source`, or `source`.
    pub source: Option<String>,
    /// `metadata.index`.
    pub index: Option<u64>,
    /// Summaries from the nearest up to the top.
    pub chain: Vec<ChainLink>,
    /// Why the chain stops early, if it does.
    pub chain_error: Option<String>,
}

/// One version of a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodVersion {
    /// Counts from 1 per object and selector (0 for primitives).
    pub version: u64,
    /// SHA-256 of the WASM binary, or `primitive`.
    pub hash: String,
    /// Who wrote it (`client`, `synthesis`, `model`...), if known.
    pub provenance: Option<String>,
    /// The text it was compiled from, when the kernel kept it.
    pub source: Option<MethodText>,
}

/// A method version's source as the kernel keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodText {
    /// The language (`wat`).
    pub language: String,
    /// The text.
    pub text: String,
}

impl ObjectView {
    /// The method in slot `name` at its active version, if it kept a source.
    pub fn active_source(&self, name: &str) -> Option<(u64, &MethodText)> {
        let (_, value) = self.slots.iter().find(|(slot, _)| slot == name)?;
        let version = field(field(value, "$method")?, "version")?.as_u64()?;
        let method = self.methods.iter().find(|m| m.selector == name)?;
        let active = method.versions.iter().find(|v| v.version == version)?;
        Some((version, active.source.as_ref()?))
    }
}

/// A selector and its versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// The selector.
    pub selector: String,
    /// Its versions, oldest first.
    pub versions: Vec<MethodVersion>,
}

/// One object as the browser shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectView {
    /// The object.
    pub oid: u64,
    /// Its root name, if it is a root.
    pub name: Option<String>,
    /// Its own slots, sorted by name.
    pub slots: Vec<(String, Value)>,
    /// The oids in `parent*`, in order.
    pub parents: Vec<u64>,
    /// Its methods and their versions.
    pub methods: Vec<MethodInfo>,
}

/// One event as the event pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    /// When it arrived, since the inspector started.
    pub at: Duration,
    /// The topic frame.
    pub topic: String,
    /// The object (or cycle) it is about.
    pub oid: Option<u64>,
    /// What happened, on one line.
    pub text: String,
}

// ---------------------------------------------------------------------------
// Requests and responses
// ---------------------------------------------------------------------------

/// Something the UI asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read `genesis_obj.ui_code`.
    Spec,
    /// `search_memory`.
    Search {
        /// The query.
        query: String,
        /// At most this many hits.
        limit: u64,
    },
    /// A hit's text and summary chain.
    Detail {
        /// The chunk (or summary) object.
        chunk: u64,
    },
    /// One object for the browser.
    Object {
        /// An oid (optionally `@`-prefixed) or a root name.
        target: String,
    },
}

/// The answer to a [`Request`]: each request gets exactly one.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `ui_code`, or `None` when genesis_obj has no such slot.
    Spec(Result<Option<Value>, String>),
    /// Hits for `query`.
    Search {
        /// The query searched.
        query: String,
        /// Its hits, best first.
        result: Result<Vec<Hit>, String>,
    },
    /// A hit's detail.
    Detail {
        /// The object asked about.
        chunk: u64,
        /// Its detail.
        result: Result<Detail, String>,
    },
    /// An object.
    Object {
        /// The target as asked.
        target: String,
        /// The object.
        result: Result<ObjectView, String>,
    },
}

impl Response {
    /// The failed answer to `request` (e.g. when the worker is gone).
    pub fn failed(request: Request, why: &str) -> Response {
        let why = why.to_string();
        match request {
            Request::Spec => Response::Spec(Err(why)),
            Request::Search { query, .. } => Response::Search {
                query,
                result: Err(why),
            },
            Request::Detail { chunk } => Response::Detail {
                chunk,
                result: Err(why),
            },
            Request::Object { target } => Response::Object {
                target,
                result: Err(why),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// The request worker
// ---------------------------------------------------------------------------

/// Runs requests on a thread of its own, in order, one at a time; a kernel
/// that does not answer costs each request the client timeout, never more.
pub struct Worker {
    requests: Sender<Request>,
    responses: Receiver<Response>,
}

impl Worker {
    /// Connects to the commands endpoint and starts the thread.
    pub fn start(endpoint: &str, timeout_ms: i32) -> anyhow::Result<Worker> {
        let client = Client::connect(endpoint, timeout_ms)
            .with_context(|| format!("cannot open a client socket to {endpoint}"))?;
        let (requests, incoming) = mpsc::channel::<Request>();
        let (outgoing, responses) = mpsc::channel::<Response>();
        std::thread::Builder::new()
            .name("inspect-requests".into())
            .spawn(move || serve(client, incoming, outgoing))
            .context("cannot start the request thread")?;
        Ok(Worker {
            requests,
            responses,
        })
    }

    /// Queues a request; gives it back if the worker is gone.
    pub fn submit(&self, request: Request) -> Result<(), Request> {
        self.requests.send(request).map_err(|e| e.0)
    }

    /// A response, if one is ready.
    pub fn try_recv(&self) -> Option<Response> {
        self.responses.try_recv().ok()
    }
}

fn serve(client: Client, incoming: Receiver<Request>, outgoing: Sender<Response>) {
    let mut session = Session {
        client,
        roots: None,
    };
    for request in incoming {
        let response = session.execute(request);
        if outgoing.send(response).is_err() {
            return;
        }
    }
}

/// The worker's side of the connection: the client and what it has
/// learned (the root table, fetched once).
struct Session {
    client: Client,
    roots: Option<HashMap<u64, String>>,
}

impl Session {
    fn execute(&mut self, request: Request) -> Response {
        match request {
            Request::Spec => Response::Spec(self.ui_code()),
            Request::Search { query, limit } => {
                let result = self.search(&query, limit);
                Response::Search { query, result }
            }
            Request::Detail { chunk } => Response::Detail {
                chunk,
                result: self.detail(chunk),
            },
            Request::Object { target } => {
                let result = self.object(&target);
                Response::Object { target, result }
            }
        }
    }

    /// One command; kernel errors and transport errors both as text.
    fn call(&mut self, command: &str, fields: Vec<(&str, Value)>) -> Result<Value, String> {
        self.client
            .call(command, fields)
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn ui_code(&mut self) -> Result<Option<Value>, String> {
        let fields = vec![
            ("oid", Value::from("genesis_obj")),
            ("slot", Value::from("ui_code")),
        ];
        match self.client.call("get_slot", fields) {
            Ok(Ok(value)) => Ok(Some(value)),
            Ok(Err(wire)) if wire.code == ErrorCode::NoSuchSlot => Ok(None),
            Ok(Err(wire)) => Err(wire.to_string()),
            Err(err) => Err(err.to_string()),
        }
    }

    fn search(&mut self, query: &str, limit: u64) -> Result<Vec<Hit>, String> {
        let fields = vec![("query", Value::from(query)), ("limit", Value::from(limit))];
        parse_hits(&self.call("search_memory", fields)?)
    }

    fn state(&mut self, oid: Value) -> Result<Value, String> {
        self.call("get_full_state", vec![("oid", oid)])
    }

    fn detail(&mut self, chunk: u64) -> Result<Detail, String> {
        let state = self.state(Value::from(chunk))?;
        let slots = slots_of(&state)?;
        let mut detail = detail_of(chunk, slots);
        let mut seen = HashSet::from([chunk]);
        let mut next = field(slots, "parent_summary*").and_then(first_ref);
        while let Some(oid) = next {
            if detail.chain.len() >= MAX_CHAIN || !seen.insert(oid) {
                break;
            }
            let step = self.state(Value::from(oid)).and_then(|summary| {
                let slots = slots_of(&summary)?;
                Ok((
                    chain_link(oid, slots),
                    field(slots, "parent_summary*").and_then(first_ref),
                ))
            });
            match step {
                Ok((link, up)) => {
                    detail.chain.push(link);
                    next = up;
                }
                Err(err) => {
                    detail.chain_error = Some(format!("summary @{oid}: {err}"));
                    break;
                }
            }
        }
        Ok(detail)
    }

    fn object(&mut self, target: &str) -> Result<ObjectView, String> {
        let state = self.state(target_value(target))?;
        let mut view = parse_object(&state)?;
        view.name = self.root_name(view.oid);
        Ok(view)
    }

    /// The root name of `oid`, fetching the root table on first use.
    fn root_name(&mut self, oid: u64) -> Option<String> {
        if self.roots.is_none() {
            let image = self.call("get_full_state", vec![]).ok()?;
            self.roots = Some(parse_roots(&image));
        }
        self.roots.as_ref()?.get(&oid).cloned()
    }
}

/// An oid argument: `123` or `@123` is an oid, anything else a root name.
pub fn target_value(target: &str) -> Value {
    let target = target.trim();
    target
        .trim_start_matches('@')
        .parse::<u64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(target))
}

// ---------------------------------------------------------------------------
// Parsing results
// ---------------------------------------------------------------------------

pub use batos_object::value::map_field as field;

/// The oid of a reference `{"$ref": oid}`.
pub use batos_object::value::as_ref as ref_oid;

/// The first reference in a value: the value itself, or (depth first)
/// inside its arrays and maps.
pub fn first_ref(value: &Value) -> Option<u64> {
    first_ref_within(value, MAX_REF_DEPTH)
}

fn first_ref_within(value: &Value, depth: usize) -> Option<u64> {
    if let Some(oid) = ref_oid(value) {
        return Some(oid);
    }
    if depth == 0 {
        return None;
    }
    match value {
        Value::Array(items) => items.iter().find_map(|v| first_ref_within(v, depth - 1)),
        Value::Map(entries) => entries
            .iter()
            .find_map(|(_, v)| first_ref_within(v, depth - 1)),
        _ => None,
    }
}

/// `search_memory`'s result.
pub fn parse_hits(result: &Value) -> Result<Vec<Hit>, String> {
    let hits = field(result, "hits")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("search_memory result has no hits array: {result}"))?;
    hits.iter().map(parse_hit).collect()
}

fn parse_hit(hit: &Value) -> Result<Hit, String> {
    let chunk = field(hit, "chunk")
        .and_then(|v| v.as_u64().or_else(|| ref_oid(v)))
        .ok_or_else(|| format!("a hit has no chunk oid: {hit}"))?;
    let text = |key: &str| {
        field(hit, key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let kind = match field(hit, "kind").and_then(Value::as_str) {
        Some("summary") => HitKind::Summary,
        _ => HitKind::Chunk,
    };
    Ok(Hit {
        chunk,
        source: text("source"),
        score: field(hit, "score").and_then(Value::as_f64).unwrap_or(0.0),
        snippet: text("snippet"),
        kind,
    })
}

/// The `slots` map of a `get_full_state` result.
fn slots_of(state: &Value) -> Result<&Value, String> {
    field(state, "slots")
        .filter(|s| s.as_map().is_some())
        .ok_or_else(|| format!("get_full_state result has no slots map: {state}"))
}

/// A chunk's (or summary's) own detail, without its chain.
pub fn detail_of(oid: u64, slots: &Value) -> Detail {
    let text = ["source_text", "summary_text"]
        .iter()
        .find_map(|k| field(slots, k).and_then(Value::as_str))
        .unwrap_or("(no source_text or summary_text slot)")
        .to_string();
    let metadata = field(slots, "metadata");
    let source = metadata
        .and_then(|m| field(m, "source"))
        .or_else(|| field(slots, "source"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Detail {
        oid,
        text,
        token_count: field(slots, "token_count").and_then(Value::as_u64),
        source,
        index: metadata
            .and_then(|m| field(m, "index"))
            .and_then(Value::as_u64),
        chain: Vec::new(),
        chain_error: None,
    }
}

/// A summary as one link of a chain.
pub fn chain_link(oid: u64, slots: &Value) -> ChainLink {
    let first_line = field(slots, "summary_text")
        .and_then(Value::as_str)
        .and_then(|t| t.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("(no summary_text)")
        .to_string();
    ChainLink {
        oid,
        level: field(slots, "level").and_then(Value::as_i64),
        first_line,
    }
}

/// `get_full_state`'s result for one object (without its root name).
pub fn parse_object(state: &Value) -> Result<ObjectView, String> {
    let oid = field(state, "oid")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("get_full_state result has no oid: {state}"))?;
    let mut slots: Vec<(String, Value)> = slots_of(state)?
        .as_map()
        .map(|entries| {
            entries
                .iter()
                .map(|(k, v)| (key_text(k), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    slots.sort_by(|a, b| a.0.cmp(&b.0));
    let parents = slots
        .iter()
        .find(|(k, _)| k == "parent*")
        .map(|(_, v)| refs_in(v))
        .unwrap_or_default();
    let methods = parse_methods(&slots, field(state, "methods"));
    Ok(ObjectView {
        oid,
        name: None,
        slots,
        parents,
        methods,
    })
}

/// The oids of a `$ref` or an array of `$ref`s.
fn refs_in(value: &Value) -> Vec<u64> {
    match value {
        Value::Array(items) => items.iter().filter_map(ref_oid).collect(),
        other => ref_oid(other).into_iter().collect(),
    }
}

/// Methods: the history in `methods` (`{selector: [{version, hash,
/// provenance, ...}]}`), plus method slots (`{"$method": {...}}`) that have
/// no history there (primitives).
fn parse_methods(slots: &[(String, Value)], history: Option<&Value>) -> Vec<MethodInfo> {
    let mut methods: Vec<MethodInfo> = history
        .and_then(Value::as_map)
        .map(|entries| {
            entries
                .iter()
                .map(|(selector, versions)| MethodInfo {
                    selector: key_text(selector),
                    versions: versions
                        .as_array()
                        .map(|vs| vs.iter().map(method_version).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in slots {
        let Some(method) = field(value, "$method") else {
            continue;
        };
        if methods.iter().all(|m| &m.selector != name) {
            methods.push(MethodInfo {
                selector: name.clone(),
                versions: vec![method_version(method)],
            });
        }
    }
    methods.sort_by(|a, b| a.selector.cmp(&b.selector));
    methods
}

fn method_version(record: &Value) -> MethodVersion {
    let provenance = field(record, "provenance").and_then(|p| {
        p.as_str()
            .or_else(|| field(p, "kind").and_then(Value::as_str))
            .map(str::to_string)
    });
    MethodVersion {
        version: field(record, "version")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        hash: field(record, "hash")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        provenance,
        source: field(record, "source").and_then(|source| {
            Some(MethodText {
                language: field(source, "language")?.as_str()?.to_string(),
                text: field(source, "text")?.as_str()?.to_string(),
            })
        }),
    }
}

/// `get_full_state` without an oid: `{"roots": {name: oid}}` as oid → name.
fn parse_roots(image: &Value) -> HashMap<u64, String> {
    field(image, "roots")
        .and_then(Value::as_map)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(name, oid)| Some((oid.as_u64()?, name.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn key_text(key: &Value) -> String {
    key.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| key.to_string())
}

/// One published message as an event line.
pub fn parse_event(frames: &[Vec<u8>], at: Duration) -> EventLine {
    let (topic, body) = match frames {
        [topic, body] => (String::from_utf8_lossy(topic).into_owned(), body),
        _ => {
            return EventLine {
                at,
                topic: "?".into(),
                oid: None,
                text: format!("malformed event: {} frames", frames.len()),
            }
        }
    };
    let mut reader = body.as_slice();
    let value = match rmpv::decode::read_value(&mut reader) {
        Ok(value) => value,
        Err(err) => {
            return EventLine {
                at,
                topic,
                oid: None,
                text: format!("undecodable body: {err}"),
            }
        }
    };
    let (oid, text) = match topic.as_str() {
        TOPIC_STATE => state_event(&value),
        TOPIC_CYCLE => cycle_event(&value),
        _ => (None, format!("{} bytes", body.len())),
    };
    EventLine {
        at,
        topic,
        oid,
        text,
    }
}

fn state_event(body: &Value) -> (Option<u64>, String) {
    let oid = field(body, "oid").and_then(Value::as_u64);
    let changed: Vec<String> = field(body, "changed")
        .and_then(Value::as_map)
        .map(|m| m.iter().map(|(k, _)| key_text(k)).collect())
        .unwrap_or_default();
    let removed: Vec<String> = field(body, "removed")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(key_text).collect())
        .unwrap_or_default();
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!("set {}", name_list(&changed)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", name_list(&removed)));
    }
    if let Some(tx) = field(body, "tx").and_then(Value::as_u64) {
        parts.push(format!("tx {tx}"));
    }
    (oid, parts.join("  "))
}

fn cycle_event(body: &Value) -> (Option<u64>, String) {
    let cycle = field(body, "cycle").and_then(|v| v.as_u64().or_else(|| ref_oid(v)));
    let state = field(body, "state").and_then(Value::as_str).unwrap_or("?");
    (cycle, format!("state {state}"))
}

fn name_list(names: &[String]) -> String {
    let shown = names
        .iter()
        .take(MAX_EVENT_NAMES)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().checked_sub(MAX_EVENT_NAMES) {
        Some(more) if more > 0 => format!("{shown} (+{more} more)"),
        _ => shown,
    }
}

// ---------------------------------------------------------------------------
// The event feed
// ---------------------------------------------------------------------------

/// What the event thread hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// An event.
    Event(EventLine),
    /// The feed failed (it stops after this).
    Error(String),
}

/// A SUB socket on the events endpoint, read on its own thread.
pub struct EventFeed {
    items: Receiver<FeedItem>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventFeed {
    /// Subscribes to every topic of `endpoint` (the pane filters by topic).
    pub fn connect(endpoint: &str) -> anyhow::Result<EventFeed> {
        let socket = Subscriber::connect(endpoint)
            .with_context(|| format!("cannot connect to the events endpoint {endpoint}"))?;
        let (tx, items) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("inspect-events".into())
                .spawn(move || listen(socket, tx, stop, started))
                .context("cannot start the event thread")?
        };
        Ok(EventFeed {
            items,
            stop,
            thread: Some(thread),
        })
    }

    /// The next item, if one is ready.
    pub fn try_recv(&self) -> Option<FeedItem> {
        self.items.try_recv().ok()
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn listen(socket: Subscriber, tx: Sender<FeedItem>, stop: Arc<AtomicBool>, started: Instant) {
    while !stop.load(Ordering::Relaxed) {
        let item = match socket.recv_within(EVENT_POLL) {
            Ok(None) => continue,
            Ok(Some(frames)) => FeedItem::Event(parse_event(&frames, started.elapsed())),
            Err(err) => FeedItem::Error(format!("event feed: {err}")),
        };
        let failed = matches!(item, FeedItem::Error(_));
        if tx.send(item).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batos_object::value::string_map;

    fn oref(oid: u64) -> Value {
        string_map(vec![("$ref", Value::from(oid))])
    }

    #[test]
    fn references_are_found_in_slots() {
        assert_eq!(ref_oid(&oref(7)), Some(7));
        assert_eq!(
            ref_oid(&string_map(vec![
                ("$ref", Value::from(7)),
                ("x", Value::Nil)
            ])),
            None
        );
        assert_eq!(
            first_ref(&Value::Array(vec![Value::from(1), oref(9), oref(3)])),
            Some(9)
        );
        assert_eq!(first_ref(&Value::from("@3")), None);
        assert_eq!(target_value("@12"), Value::from(12u64));
        assert_eq!(target_value(" genesis_obj "), Value::from("genesis_obj"));
    }

    #[test]
    fn hits_parse_with_their_kind() {
        let result = string_map(vec![(
            "hits",
            Value::Array(vec![
                string_map(vec![
                    ("chunk", Value::from(10)),
                    ("source", Value::from("zoo.txt")),
                    ("score", Value::F64(1.5)),
                    ("snippet", Value::from("the **zebra**")),
                ]),
                string_map(vec![
                    ("chunk", Value::from(11)),
                    ("kind", Value::from("summary")),
                    ("score", Value::from(1)),
                ]),
            ]),
        )]);
        let hits = parse_hits(&result).expect("hits");
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].source, "zoo.txt");
        assert_eq!(hits[0].kind, HitKind::Chunk);
        assert_eq!(hits[1].kind, HitKind::Summary);
        assert_eq!(hits[1].score, 1.0);
        assert!(parse_hits(&string_map(vec![])).is_err());
    }

    #[test]
    fn objects_parse_slots_parents_and_methods() {
        let state = string_map(vec![
            ("oid", Value::from(3)),
            (
                "slots",
                string_map(vec![
                    ("z", Value::from(1)),
                    ("parent*", Value::Array(vec![oref(2), oref(1)])),
                    (
                        "clone",
                        string_map(vec![(
                            "$method",
                            string_map(vec![
                                ("selector", Value::from("clone")),
                                ("version", Value::from(0)),
                                ("hash", Value::from("primitive")),
                            ]),
                        )]),
                    ),
                ]),
            ),
            (
                "methods",
                string_map(vec![(
                    "greet",
                    Value::Array(vec![
                        string_map(vec![
                            ("version", Value::from(1)),
                            ("hash", Value::from("aa")),
                            (
                                "provenance",
                                string_map(vec![("kind", Value::from("client"))]),
                            ),
                        ]),
                        string_map(vec![
                            ("version", Value::from(2)),
                            ("hash", Value::from("bb")),
                        ]),
                    ]),
                )]),
            ),
        ]);
        let view = parse_object(&state).expect("object");
        assert_eq!(view.oid, 3);
        let names: Vec<&str> = view.slots.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["clone", "parent*", "z"], "sorted");
        assert_eq!(view.parents, [2, 1]);
        let selectors: Vec<&str> = view.methods.iter().map(|m| m.selector.as_str()).collect();
        assert_eq!(selectors, ["clone", "greet"]);
        assert_eq!(view.methods[1].versions.len(), 2);
        assert_eq!(
            view.methods[1].versions[0].provenance.as_deref(),
            Some("client")
        );
        assert_eq!(view.methods[0].versions[0].hash, "primitive");
    }

    #[test]
    fn details_and_chain_links_read_the_memory_slots() {
        let chunk = string_map(vec![
            ("source_text", Value::from("The zebra grazes.")),
            ("token_count", Value::from(4)),
            (
                "metadata",
                string_map(vec![
                    ("source", Value::from("zoo.txt")),
                    ("index", Value::from(0)),
                ]),
            ),
            ("parent_summary*", oref(40)),
        ]);
        let detail = detail_of(12, &chunk);
        assert_eq!(detail.text, "The zebra grazes.");
        assert_eq!(detail.token_count, Some(4));
        assert_eq!(detail.source.as_deref(), Some("zoo.txt"));
        assert_eq!(detail.index, Some(0));
        let summary = string_map(vec![
            ("summary_text", Value::from("\n  Zebras, briefly.\nMore.")),
            ("level", Value::from(1)),
        ]);
        let link = chain_link(40, &summary);
        assert_eq!(link.first_line, "Zebras, briefly.");
        assert_eq!(link.level, Some(1));
    }

    #[test]
    fn events_become_one_line_each() {
        let body = string_map(vec![
            ("event", Value::from("uvm_state_update")),
            ("oid", Value::from(42)),
            ("changed", string_map(vec![("mood", Value::from("calm"))])),
            ("removed", Value::Array(vec![Value::from("old")])),
            ("tx", Value::from(7)),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &body).expect("encode");
        let line = parse_event(&[b"uvm_state_update".to_vec(), bytes], Duration::ZERO);
        assert_eq!(line.oid, Some(42));
        assert_eq!(line.text, "set mood  removed old  tx 7");

        let body = string_map(vec![
            ("cycle", Value::from(5)),
            ("state", Value::from("COMPLETE")),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &body).expect("encode");
        let line = parse_event(&[b"cycle_update".to_vec(), bytes], Duration::ZERO);
        assert_eq!((line.oid, line.text.as_str()), (Some(5), "state COMPLETE"));

        let line = parse_event(&[b"x".to_vec()], Duration::ZERO);
        assert!(line.text.contains("malformed"));
    }
}
