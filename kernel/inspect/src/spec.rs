//! The pane spec: which panes the inspector shows, their titles and help,
//! as declared by `genesis_obj`'s `ui_code` slot (written by the
//! display_yourself cycle), with a built-in default when the slot is missing
//! or invalid.
//!
//! ```text
//! {"version": 1, "title": str, "about": str,
//!  "panes": [{"kind": "memory_search", "title", "limit", "help"},
//!            {"kind": "object_browser", "title", "start", "help"},
//!            {"kind": "events", "title", "topics": [str], "help"}],
//!  "provenance": {...}}
//! ```
//!
//! Unknown pane kinds are ignored; a later pane of a kind already declared
//! is ignored too. Optional fields take their defaults; a field of the wrong
//! type makes the whole `ui_code` invalid (it is then reported and the
//! built-in default is used).

use rmpv::Value;

use batos_protocol::{TOPIC_CYCLE, TOPIC_STATE};

/// The title when `ui_code` gives none.
pub const DEFAULT_TITLE: &str = "BAT OS Memory Inspector";
/// The `about` line of the built-in default.
pub const DEFAULT_ABOUT: &str = "BAT OS: a persistent, self-extending object system.";
/// How many hits a search asks for when the spec does not say.
pub const DEFAULT_LIMIT: u64 = 20;
/// The most hits a search may ask for (protocol: `limit` 1..1000).
pub const MAX_LIMIT: u64 = 1000;
/// The object the browser opens when the spec does not say.
pub const DEFAULT_START: &str = "genesis_obj";
/// The event topics the kernel publishes.
pub const TOPICS: [&str; 2] = [TOPIC_STATE, TOPIC_CYCLE];
/// The only `ui_code` version this inspector understands.
const SPEC_VERSION: u64 = 1;
/// Longest text kept from any spec string, in characters.
const MAX_TEXT: usize = 400;

/// The kinds of pane the inspector can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaneKind {
    /// `memory_search`: a query, its hits and the selected hit's text.
    Memory,
    /// `object_browser`: one object's slots, parents and methods.
    Objects,
    /// `events`: the live event feed.
    Events,
}

impl PaneKind {
    /// The kind's name in `ui_code`.
    pub fn wire_name(self) -> &'static str {
        match self {
            PaneKind::Memory => "memory_search",
            PaneKind::Objects => "object_browser",
            PaneKind::Events => "events",
        }
    }

    /// The kind named `name` in `ui_code`, if it is one we know.
    pub fn parse(name: &str) -> Option<PaneKind> {
        [PaneKind::Memory, PaneKind::Objects, PaneKind::Events]
            .into_iter()
            .find(|k| k.wire_name() == name)
    }

    /// The title of this kind of pane in the built-in default.
    pub fn default_title(self) -> &'static str {
        match self {
            PaneKind::Memory => "Memory",
            PaneKind::Objects => "Objects",
            PaneKind::Events => "Events",
        }
    }
}

/// What configures each kind of pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaneConfig {
    /// Memory search: how many hits to ask for.
    Memory {
        /// `limit` of `search_memory`, 1..=1000.
        limit: u64,
    },
    /// Object browser: where it starts.
    Objects {
        /// A root name or an oid, as text.
        start: String,
    },
    /// Event feed: which topics it shows.
    Events {
        /// Topics shown (events of other topics are dropped).
        topics: Vec<String>,
    },
}

impl PaneConfig {
    /// The kind of pane this configures.
    pub fn kind(&self) -> PaneKind {
        match self {
            PaneConfig::Memory { .. } => PaneKind::Memory,
            PaneConfig::Objects { .. } => PaneKind::Objects,
            PaneConfig::Events { .. } => PaneKind::Events,
        }
    }
}

/// One pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaneSpec {
    /// Shown in the tab bar.
    pub title: String,
    /// Shown in the footer while the pane has focus.
    pub help: String,
    /// Kind-specific settings.
    pub config: PaneConfig,
}

impl PaneSpec {
    /// The kind of this pane.
    pub fn kind(&self) -> PaneKind {
        self.config.kind()
    }
}

/// Where the spec in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `genesis_obj.ui_code` has not been read yet (the default is shown).
    Loading,
    /// Read from `genesis_obj.ui_code`.
    UiCode,
    /// The built-in default (no `ui_code`, or an invalid one).
    BuiltIn,
}

impl Origin {
    /// The label shown on screen.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Loading => "ui: loading genesis_obj.ui_code",
            Origin::UiCode => "ui: from genesis_obj.ui_code",
            Origin::BuiltIn => "ui: built-in default",
        }
    }
}

/// The whole spec: title, about line and panes in tab order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Title bar text.
    pub title: String,
    /// A line about the system, under the title.
    pub about: String,
    /// Panes in tab order; never empty, at most one per kind.
    pub panes: Vec<PaneSpec>,
    /// Where this spec came from.
    pub origin: Origin,
}

/// Why a `ui_code` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

fn invalid(message: impl Into<String>) -> SpecError {
    SpecError(message.into())
}

impl Spec {
    /// The built-in default: Memory, Objects, Events.
    pub fn builtin() -> Spec {
        Spec {
            title: DEFAULT_TITLE.into(),
            about: DEFAULT_ABOUT.into(),
            panes: vec![
                PaneSpec {
                    title: PaneKind::Memory.default_title().into(),
                    help: "Search what the system has ingested; the detail shows the chunk and its summary chain.".into(),
                    config: PaneConfig::Memory {
                        limit: DEFAULT_LIMIT,
                    },
                },
                PaneSpec {
                    title: PaneKind::Objects.default_title().into(),
                    help: "Browse objects: slots, parents, methods and their versions.".into(),
                    config: PaneConfig::Objects {
                        start: DEFAULT_START.into(),
                    },
                },
                PaneSpec {
                    title: PaneKind::Events.default_title().into(),
                    help: "Committed changes and cycle transitions, live; newest at the bottom.".into(),
                    config: PaneConfig::Events {
                        topics: default_topics(),
                    },
                },
            ],
            origin: Origin::BuiltIn,
        }
    }

    /// Parses and validates a `ui_code` value.
    pub fn from_ui_code(value: &Value) -> Result<Spec, SpecError> {
        let map = value
            .as_map()
            .ok_or_else(|| invalid("ui_code is not a map"))?;
        match field(map, "version") {
            Some(v) if v.as_u64() == Some(SPEC_VERSION) => {}
            Some(v) => return Err(invalid(format!("unsupported ui_code version {v}"))),
            None => return Err(invalid("ui_code has no version")),
        }
        let title = opt_text(map, "title", "ui_code")?.unwrap_or_else(|| DEFAULT_TITLE.into());
        let about = opt_text(map, "about", "ui_code")?.unwrap_or_default();
        let items = field(map, "panes")
            .ok_or_else(|| invalid("ui_code has no panes"))?
            .as_array()
            .ok_or_else(|| invalid("ui_code panes is not an array"))?;
        let mut panes: Vec<PaneSpec> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(pane) = parse_pane(index, item)? {
                if panes.iter().all(|p| p.kind() != pane.kind()) {
                    panes.push(pane);
                }
            }
        }
        if panes.is_empty() {
            return Err(invalid("ui_code declares no pane this inspector knows"));
        }
        Ok(Spec {
            title,
            about,
            panes,
            origin: Origin::UiCode,
        })
    }

    /// The spec for a `ui_code` slot value (`None`: the slot is absent),
    /// and, when the value was refused, why.
    pub fn resolve(ui_code: Option<&Value>) -> (Spec, Option<SpecError>) {
        match ui_code.map(Spec::from_ui_code) {
            None => (Spec::builtin(), None),
            Some(Ok(spec)) => (spec, None),
            Some(Err(err)) => (Spec::builtin(), Some(err)),
        }
    }

    /// The pane of this kind, if the spec shows one.
    pub fn pane(&self, kind: PaneKind) -> Option<&PaneSpec> {
        self.panes.iter().find(|p| p.kind() == kind)
    }

    /// `limit` for searches.
    pub fn search_limit(&self) -> u64 {
        match self.pane(PaneKind::Memory).map(|p| &p.config) {
            Some(PaneConfig::Memory { limit }) => *limit,
            _ => DEFAULT_LIMIT,
        }
    }

    /// Where the object browser starts, if the spec shows one.
    pub fn start(&self) -> Option<&str> {
        match self.pane(PaneKind::Objects).map(|p| &p.config) {
            Some(PaneConfig::Objects { start }) => Some(start),
            _ => None,
        }
    }

    /// Whether the event pane shows events of `topic` (false if there is
    /// no event pane).
    pub fn shows_topic(&self, topic: &str) -> bool {
        match self.pane(PaneKind::Events).map(|p| &p.config) {
            Some(PaneConfig::Events { topics }) => topics.iter().any(|t| t == topic),
            _ => false,
        }
    }
}

fn default_topics() -> Vec<String> {
    TOPICS.iter().map(|t| t.to_string()).collect()
}

/// One entry of `panes`: `None` for a kind we do not know.
fn parse_pane(index: usize, item: &Value) -> Result<Option<PaneSpec>, SpecError> {
    let what = format!("pane {index}");
    let map = item
        .as_map()
        .ok_or_else(|| invalid(format!("{what} is not a map")))?;
    let kind_name = field(map, "kind")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no kind string")))?;
    let Some(kind) = PaneKind::parse(kind_name) else {
        return Ok(None);
    };
    let what = format!("pane {index} ({kind_name})");
    let title = opt_text(map, "title", &what)?.unwrap_or_else(|| kind.default_title().into());
    let help = opt_text(map, "help", &what)?.unwrap_or_default();
    let config = match kind {
        PaneKind::Memory => PaneConfig::Memory {
            limit: parse_limit(map, &what)?,
        },
        PaneKind::Objects => PaneConfig::Objects {
            start: parse_start(map, &what)?,
        },
        PaneKind::Events => PaneConfig::Events {
            topics: parse_topics(map, &what)?,
        },
    };
    Ok(Some(PaneSpec {
        title,
        help,
        config,
    }))
}

fn parse_limit(map: &[(Value, Value)], what: &str) -> Result<u64, SpecError> {
    match field(map, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(invalid(format!(
                "{what}: limit must be an integer 1..={MAX_LIMIT}, got {v}"
            ))),
        },
    }
}

fn parse_start(map: &[(Value, Value)], what: &str) -> Result<String, SpecError> {
    match field(map, "start") {
        None => Ok(DEFAULT_START.into()),
        Some(Value::Integer(n)) => n
            .as_u64()
            .map(|oid| oid.to_string())
            .ok_or_else(|| invalid(format!("{what}: start is not an oid"))),
        Some(v) => match v.as_str().map(str::trim) {
            Some(s) if !s.is_empty() => Ok(clean(s)),
            _ => Err(invalid(format!(
                "{what}: start must be a root name or an oid"
            ))),
        },
    }
}

fn parse_topics(map: &[(Value, Value)], what: &str) -> Result<Vec<String>, SpecError> {
    let Some(v) = field(map, "topics") else {
        return Ok(default_topics());
    };
    let items = v
        .as_array()
        .ok_or_else(|| invalid(format!("{what}: topics is not an array")))?;
    items
        .iter()
        .map(|t| {
            t.as_str()
                .map(clean)
                .ok_or_else(|| invalid(format!("{what}: topics holds a non-string")))
        })
        .collect()
}

/// The value under `key` in a string-keyed map.
fn field<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// An optional string field: absent is `None`, a non-string is an error.
fn opt_text(map: &[(Value, Value)], key: &str, what: &str) -> Result<Option<String>, SpecError> {
    match field(map, key) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(clean(s)))
            .ok_or_else(|| invalid(format!("{what}: {key} is not a string"))),
    }
}

/// Text from the image as it may be shown: no control characters (a
/// `ui_code` may be written by a model), whitespace collapsed, bounded.
fn clean(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    let kept: String = joined
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    if joined.chars().count() > MAX_TEXT {
        format!("{kept}…")
    } else {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batos_object::value::string_map;

    fn full_ui_code() -> Value {
        string_map(vec![
            ("version", Value::from(1)),
            ("title", Value::from("My Inspector")),
            ("about", Value::from("about\nthis")),
            (
                "panes",
                Value::Array(vec![
                    string_map(vec![
                        ("kind", Value::from("events")),
                        ("title", Value::from("Live")),
                        ("topics", Value::Array(vec![Value::from("cycle_update")])),
                        ("help", Value::from("watch")),
                    ]),
                    string_map(vec![("kind", Value::from("sparkline"))]),
                    string_map(vec![
                        ("kind", Value::from("memory_search")),
                        ("title", Value::from("Recall")),
                        ("limit", Value::from(5)),
                        ("help", Value::from("search")),
                    ]),
                    string_map(vec![
                        ("kind", Value::from("object_browser")),
                        ("start", Value::from(7)),
                    ]),
                    string_map(vec![
                        ("kind", Value::from("events")),
                        ("title", Value::from("Duplicate")),
                    ]),
                ]),
            ),
            (
                "provenance",
                string_map(vec![("written_by", Value::from("template"))]),
            ),
        ])
    }

    #[test]
    fn a_valid_ui_code_gives_its_panes_in_order() {
        let spec = Spec::from_ui_code(&full_ui_code()).expect("valid");
        assert_eq!(spec.origin, Origin::UiCode);
        assert_eq!(spec.title, "My Inspector");
        assert_eq!(spec.about, "about this", "whitespace collapsed");
        let kinds: Vec<PaneKind> = spec.panes.iter().map(PaneSpec::kind).collect();
        assert_eq!(
            kinds,
            [PaneKind::Events, PaneKind::Memory, PaneKind::Objects],
            "unknown kinds and duplicates are ignored"
        );
        assert_eq!(spec.panes[0].title, "Live");
        assert_eq!(spec.panes[2].title, "Objects", "default title");
        assert_eq!(spec.search_limit(), 5);
        assert_eq!(spec.start(), Some("7"));
        assert!(spec.shows_topic("cycle_update"));
        assert!(!spec.shows_topic("uvm_state_update"));
    }

    #[test]
    fn the_builtin_default_has_three_panes() {
        let spec = Spec::builtin();
        assert_eq!(spec.origin, Origin::BuiltIn);
        let titles: Vec<&str> = spec.panes.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["Memory", "Objects", "Events"]);
        assert_eq!(spec.start(), Some("genesis_obj"));
        assert!(spec.shows_topic("uvm_state_update") && spec.shows_topic("cycle_update"));
    }

    #[test]
    fn invalid_ui_code_falls_back_to_the_default_with_a_reason() {
        let cases = [
            Value::from("not a map"),
            string_map(vec![("panes", Value::Array(vec![]))]),
            string_map(vec![
                ("version", Value::from(2)),
                ("panes", Value::Array(vec![])),
            ]),
            string_map(vec![("version", Value::from(1))]),
            string_map(vec![
                ("version", Value::from(1)),
                (
                    "panes",
                    Value::Array(vec![string_map(vec![("kind", Value::from("nope"))])]),
                ),
            ]),
            string_map(vec![
                ("version", Value::from(1)),
                ("title", Value::from(3)),
                (
                    "panes",
                    Value::Array(vec![string_map(vec![("kind", Value::from("events"))])]),
                ),
            ]),
            string_map(vec![
                ("version", Value::from(1)),
                (
                    "panes",
                    Value::Array(vec![string_map(vec![
                        ("kind", Value::from("memory_search")),
                        ("limit", Value::from(0)),
                    ])]),
                ),
            ]),
            string_map(vec![
                ("version", Value::from(1)),
                ("panes", Value::Array(vec![Value::from(1)])),
            ]),
        ];
        for case in cases {
            let (spec, err) = Spec::resolve(Some(&case));
            assert_eq!(spec, Spec::builtin(), "{case}");
            assert!(err.is_some(), "{case} must be refused");
        }
        let (spec, err) = Spec::resolve(None);
        assert_eq!(spec, Spec::builtin());
        assert!(err.is_none(), "no ui_code is not an error");
    }

    #[test]
    fn control_characters_never_reach_the_screen() {
        let ui = string_map(vec![
            ("version", Value::from(1)),
            ("title", Value::from("evil\u{1b}[2Jtitle")),
            (
                "panes",
                Value::Array(vec![string_map(vec![("kind", Value::from("events"))])]),
            ),
        ]);
        let spec = Spec::from_ui_code(&ui).expect("valid");
        assert!(!spec.title.contains('\u{1b}'), "{:?}", spec.title);
        let long = "x".repeat(MAX_TEXT * 2);
        assert_eq!(clean(&long).chars().count(), MAX_TEXT + 1);
    }
}
