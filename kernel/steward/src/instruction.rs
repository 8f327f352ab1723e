//! Upgrade instructions, format version 1: the JSON shape, parsing, and validation against the steward's policy.
//!
//! Validation has no side effects: it reads the payload (to hash it) and the
//! managed configuration text (to check the keys), and returns a [`Plan`] the
//! steward can carry out, or the reason the file is rejected. Only three
//! actions exist, and none of them runs anything the instruction names: a
//! command is looked up by name in the steward's own allow-list.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::StewardError;
use batos_config::Config;

/// The only instruction format version this steward reads.
pub const INSTRUCTION_VERSION: u64 = 1;
/// Instruction files larger than this are rejected unread.
pub const MAX_INSTRUCTION_BYTES: u64 = 1024 * 1024;
/// Most actions in one instruction.
pub const MAX_ACTIONS: usize = 64;
/// Longest `id`, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// The configuration keys `set_config` may change (`section.*`: every key
/// of the section). Keys that name files, addresses, or who may connect
/// (`kernel.data_dir`, `kernel.upgrade_channel`, `bridge.endpoint`,
/// `bridge.events`, `bridge.anonymous_role`, `bridge.curve_*`,
/// `metrics.listen`, `metrics.allow_remote`, `inference.model`,
/// `inference.adapters_dir`, `inference.engine`) are changed by hand only:
/// an instruction must never move the image, open the kernel to others or
/// load code from elsewhere.
pub const SETTABLE_KEYS: &[&str] = &[
    "actors.*",
    "sandbox.*",
    "store.*",
    "heartbeat.*",
    "memory.*",
    "orchestrator.*",
    "kernel.log",
    "kernel.first_conversation",
    "bridge.max_request_bytes",
    "bridge.max_inflight",
    "bridge.event_queue",
    "metrics.max_connections",
    "metrics.header_timeout_ms",
    "inference.isq",
    "inference.max_queue",
    "inference.timeout_ms",
    "inference.default_max_tokens",
    "inference.warm_bytes",
    "inference.hot_bytes",
    "inference.dnu_attempts",
    "inference.dnu_max_tokens",
    "inference.dnu_expert",
];

/// Whether `set_config` may change `section.key`.
pub fn settable(section: &str, key: &str) -> bool {
    SETTABLE_KEYS
        .iter()
        .any(|allowed| match allowed.split_once('.') {
            Some((s, "*")) => s == section,
            Some((s, k)) => s == section && k == key,
            None => false,
        })
}

/// An upgrade instruction (`docs/steward.md` documents the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instruction {
    /// Always [`INSTRUCTION_VERSION`].
    pub version: u64,
    /// Names the instruction in logs and in its result record.
    pub id: String,
    /// Carried out in order while the kernel is stopped.
    pub actions: Vec<Action>,
}

impl Instruction {
    /// A version-1 instruction.
    pub fn new(id: impl Into<String>, actions: Vec<Action>) -> Instruction {
        Instruction {
            version: INSTRUCTION_VERSION,
            id: id.into(),
            actions,
        }
    }
}

/// The allow-list of actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Replace the kernel binary with `path` (inside an allowed folder),
    /// whose SHA-256 must be `sha256` (64 hex digits).
    ReplaceBinary {
        /// Absolute, or relative to the upgrade channel folder.
        path: String,
        /// Hex SHA-256 of the file.
        sha256: String,
    },
    /// Set `section.key` of the steward-managed configuration file.
    SetConfig {
        /// `section.key`, e.g. `sandbox.wall_clock_ms`.
        key: String,
        /// The new value (any JSON but null; objects become tables).
        value: serde_json::Value,
    },
    /// Run the command the steward's allow-list has under `name`.
    RunCommand {
        /// A name from `--allow-command` or the steward file's `[commands]`.
        name: String,
    },
}

/// A program the steward may run for `run_command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// The program (a path, or a name looked up in `PATH`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl CommandSpec {
    /// Parses `--allow-command NAME=PROGRAM [ARGS...]` (the command part is
    /// split on whitespace; there is no quoting).
    pub fn parse_flag(flag: &str) -> Result<(String, CommandSpec), StewardError> {
        let usage = || {
            StewardError::Usage(format!(
                "--allow-command expects NAME=PROGRAM [ARGS...], got {flag:?}"
            ))
        };
        let (name, command) = flag.split_once('=').ok_or_else(usage)?;
        let name = name.trim();
        check_command_name(name)?;
        let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
        Ok((name.to_string(), CommandSpec::from_argv(name, argv)?))
    }

    /// A command from its argument vector (program first).
    pub fn from_argv(name: &str, argv: Vec<String>) -> Result<CommandSpec, StewardError> {
        let mut argv = argv.into_iter();
        let program = argv.next().filter(|p| !p.is_empty()).ok_or_else(|| {
            StewardError::Usage(format!("allowed command {name:?} has no program"))
        })?;
        Ok(CommandSpec {
            program: PathBuf::from(program),
            args: argv.collect(),
        })
    }
}

/// Command names: letters, digits, `_`, `-`, `.`.
pub fn check_command_name(name: &str) -> Result<(), StewardError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StewardError::Usage(format!(
            "command name {name:?} must be letters, digits, `_`, `-` or `.`"
        )))
    }
}

/// What an instruction may use, as the steward was configured.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The upgrade channel folder, canonical (relative payload paths start here).
    pub channel: PathBuf,
    /// Canonical folders payloads must be inside.
    pub allowed_sources: Vec<PathBuf>,
    /// The `run_command` allow-list.
    pub commands: BTreeMap<String, CommandSpec>,
    /// The configuration file the steward manages, with its current text.
    pub config: Option<ManagedConfig>,
}

/// The steward-managed configuration file (`--config`).
#[derive(Debug, Clone)]
pub struct ManagedConfig {
    /// Where it is.
    pub path: PathBuf,
    /// What it holds now.
    pub text: String,
}

/// A validated instruction, ready to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The instruction's id.
    pub id: String,
    /// One step per action, in order.
    pub steps: Vec<Step>,
}

/// One validated action.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Install `source` (canonical, inside an allowed folder) as the kernel binary.
    ReplaceBinary {
        /// The payload.
        source: PathBuf,
        /// Its SHA-256, checked again on the copy the steward installs.
        sha256: [u8; 32],
    },
    /// Write `text` (the whole configuration file after this change).
    SetConfig {
        /// The key changed.
        key: String,
        /// The new file text; it parses as a valid [`Config`].
        text: String,
    },
    /// Run an allowed command.
    RunCommand {
        /// Its name.
        name: String,
        /// What runs.
        spec: CommandSpec,
    },
}

/// The `id` of an instruction file, if it has a string one (for the result
/// record of a file that fails validation).
pub fn peek_id(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("id")?.as_str().map(str::to_string)
}

/// Parses an instruction: JSON, then the version, then the exact shape
/// (unknown fields and actions are errors).
pub fn parse(bytes: &[u8]) -> Result<Instruction, StewardError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StewardError::BadJson(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(StewardError::Invalid(
            "an instruction is a JSON object".into(),
        ));
    };
    match object.get("version") {
        None => return Err(StewardError::Invalid("missing field `version`".into())),
        Some(v) if v.as_u64() == Some(INSTRUCTION_VERSION) => {}
        Some(v) => return Err(StewardError::UnsupportedVersion(v.to_string())),
    }
    serde_json::from_value(value).map_err(|e| StewardError::Invalid(e.to_string()))
}

/// Parses and validates an instruction file's bytes against `policy`.
pub fn validate(bytes: &[u8], policy: &Policy) -> Result<Plan, StewardError> {
    let instruction = parse(bytes)?;
    check_id(&instruction.id)?;
    if instruction.actions.is_empty() {
        return Err(StewardError::Invalid("`actions` is empty".into()));
    }
    if instruction.actions.len() > MAX_ACTIONS {
        return Err(StewardError::Invalid(format!(
            "more than {MAX_ACTIONS} actions"
        )));
    }
    let mut steps = Vec::with_capacity(instruction.actions.len());
    let mut config: Option<toml::Table> = None;
    let mut replaces = false;
    for action in &instruction.actions {
        match action {
            Action::ReplaceBinary { path, sha256 } => {
                if replaces {
                    return Err(StewardError::Invalid(
                        "at most one replace_binary per instruction".into(),
                    ));
                }
                replaces = true;
                let expected = parse_sha256(sha256)?;
                let source = resolve_payload(path, policy)?;
                let actual = sha256_file(&source).map_err(|e| {
                    StewardError::io(format!("reading payload {}", source.display()), e)
                })?;
                if actual != expected {
                    return Err(StewardError::HashMismatch {
                        path: path.clone(),
                        expected: hex::encode(expected),
                        actual: hex::encode(actual),
                    });
                }
                steps.push(Step::ReplaceBinary {
                    source,
                    sha256: expected,
                });
            }
            Action::SetConfig { key, value } => {
                let Some(managed) = &policy.config else {
                    return Err(StewardError::BadConfig {
                        key: key.clone(),
                        reason: "the steward manages no configuration file (start it with --config FILE)".into(),
                    });
                };
                if config.is_none() {
                    config = Some(toml::from_str::<toml::Table>(&managed.text).map_err(|e| {
                        StewardError::BadConfig {
                            key: key.clone(),
                            reason: format!(
                                "the current {} does not parse: {e}",
                                managed.path.display()
                            ),
                        }
                    })?);
                }
                let table = config.get_or_insert_with(toml::Table::new);
                set_key(table, key, value)?;
                let text = toml::to_string(table).map_err(|e| StewardError::BadConfig {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
                Config::from_toml(&text).map_err(|e| StewardError::BadConfig {
                    key: key.clone(),
                    reason: e.to_string(),
                })?;
                steps.push(Step::SetConfig {
                    key: key.clone(),
                    text,
                });
            }
            Action::RunCommand { name } => {
                let spec = policy
                    .commands
                    .get(name)
                    .ok_or_else(|| StewardError::UnknownCommand(name.clone()))?;
                steps.push(Step::RunCommand {
                    name: name.clone(),
                    spec: spec.clone(),
                });
            }
        }
    }
    Ok(Plan {
        id: instruction.id,
        steps,
    })
}

/// Ids: 1 to [`MAX_ID_CHARS`] characters, no control characters.
pub fn check_id(id: &str) -> Result<(), StewardError> {
    if id.trim().is_empty() {
        return Err(StewardError::Invalid("`id` is empty".into()));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(StewardError::Invalid(format!(
            "`id` is longer than {MAX_ID_CHARS} characters"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(StewardError::Invalid(
            "`id` contains control characters".into(),
        ));
    }
    Ok(())
}

fn parse_sha256(text: &str) -> Result<[u8; 32], StewardError> {
    let bad = || StewardError::Invalid(format!("`sha256` must be 64 hex digits, got {text:?}"));
    let bytes = hex::decode(text).map_err(|_| bad())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())
}

/// Resolves a payload path: no `..`, relative paths start at the channel,
/// symlinks resolved, and the result must be a regular file inside an
/// allowed folder.
fn resolve_payload(text: &str, policy: &Policy) -> Result<PathBuf, StewardError> {
    let allowed = || {
        policy
            .allowed_sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let outside = || StewardError::PathOutside {
        path: text.to_string(),
        allowed: allowed(),
    };
    if text.is_empty() {
        return Err(StewardError::Invalid("`path` is empty".into()));
    }
    let path = Path::new(text);
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside());
    }
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        policy.channel.join(path)
    };
    let canonical = joined
        .canonicalize()
        .map_err(|e| StewardError::Invalid(format!("payload {text:?} cannot be resolved: {e}")))?;
    let inside = policy
        .allowed_sources
        .iter()
        .any(|root| canonical != *root && canonical.starts_with(root));
    if !inside {
        return Err(outside());
    }
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| StewardError::Invalid(format!("payload {text:?} cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(StewardError::Invalid(format!(
            "payload {text:?} is not a regular file"
        )));
    }
    Ok(canonical)
}

/// SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = super::files::open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Sets `section.key` in a configuration table.
fn set_key(
    table: &mut toml::Table,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), StewardError> {
    let bad = |reason: String| StewardError::BadConfig {
        key: key.to_string(),
        reason,
    };
    let (section, name) = key
        .split_once('.')
        .ok_or_else(|| bad("a key is `section.key`, e.g. `sandbox.wall_clock_ms`".into()))?;
    if section.is_empty() || name.is_empty() || name.contains('.') {
        return Err(bad(
            "a key is `section.key`, e.g. `sandbox.wall_clock_ms`".into()
        ));
    }
    if !settable(section, name) {
        return Err(bad(
            "not a key instructions may set (docs/steward.md lists them): keys naming files, \
             addresses or who may connect are changed by hand"
                .into(),
        ));
    }
    let value = json_to_toml(value).map_err(bad)?;
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let section_table = entry
        .as_table_mut()
        .ok_or_else(|| bad(format!("[{section}] is not a table")))?;
    section_table.insert(name.to_string(), value);
    Ok(())
}

/// JSON → TOML. TOML has no null, and its integers are signed 64-bit.
fn json_to_toml(value: &serde_json::Value) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => return Err("TOML has no null; give a value".into()),
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.is_u64(), n.as_f64()) {
            (Some(i), _, _) => toml::Value::Integer(i),
            (None, true, _) => return Err(format!("{n} is too large for a TOML integer")),
            (None, false, Some(f)) => toml::Value::Float(f),
            (None, false, None) => return Err(format!("{n} is not a number TOML can hold")),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Result<_, _>>()?)
        }
        J::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_toml(v)?)))
                .collect::<Result<toml::Table, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        policy: Policy,
        payload_hash: String,
        outside_file: PathBuf,
        outside_hash: String,
    }

    const CONFIG: &str = "[sandbox]\nwall_clock_ms = 2000\n";

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let channel = dir.path().join("channel");
        let payload = channel.join("payload");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&payload).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(payload.join("kernel-v2"), b"a new kernel").unwrap();
        let outside_file = outside.join("evil");
        std::fs::write(&outside_file, b"not allowed").unwrap();
        std::os::unix::fs::symlink(&outside_file, payload.join("link")).unwrap();
        let channel = channel.canonicalize().unwrap();
        let policy = Policy {
            allowed_sources: vec![channel.join("payload")],
            channel,
            commands: BTreeMap::from([(
                "compact".to_string(),
                CommandSpec {
                    program: PathBuf::from("/bin/true"),
                    args: vec![],
                },
            )]),
            config: Some(ManagedConfig {
                path: dir.path().join("batos.toml"),
                text: CONFIG.to_string(),
            }),
        };
        Fixture {
            policy,
            payload_hash: hex::encode(Sha256::digest(b"a new kernel")),
            outside_hash: hex::encode(Sha256::digest(b"not allowed")),
            outside_file,
            _dir: dir,
        }
    }

    fn instruction(actions: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"version": 1, "id": "test-1", "actions": actions}))
            .unwrap()
    }

    #[test]
    fn happy_path_gives_one_step_per_action() {
        let f = fixture();
        let bytes = instruction(serde_json::json!([
            {"action": "replace_binary", "path": "payload/kernel-v2", "sha256": f.payload_hash},
            {"action": "set_config", "key": "sandbox.wall_clock_ms", "value": 3000},
            {"action": "set_config", "key": "store.durability", "value": "buffered"},
            {"action": "run_command", "name": "compact"},
        ]));
        let plan = validate(&bytes, &f.policy).unwrap();
        assert_eq!(plan.id, "test-1");
        assert_eq!(plan.steps.len(), 4);
        match &plan.steps[0] {
            Step::ReplaceBinary { source, sha256 } => {
                assert!(source.ends_with("payload/kernel-v2"));
                assert_eq!(hex::encode(sha256), f.payload_hash);
            }
            other => panic!("{other:?}"),
        }
        // Each set_config step carries the whole file so far.
        let Step::SetConfig { text, .. } = &plan.steps[2] else {
            panic!("{:?}", plan.steps[2])
        };
        let config = Config::from_toml(text).unwrap();
        assert_eq!(config.sandbox.wall_clock_ms, 3000);
        assert_eq!(config.store.durability, batos_config::Durability::Buffered);
        assert!(matches!(&plan.steps[3], Step::RunCommand { name, .. } if name == "compact"));
    }

    #[test]
    fn absolute_payload_paths_inside_the_folder_are_fine() {
        let f = fixture();
        let path = f.policy.channel.join("payload/kernel-v2");
        let bytes = instruction(serde_json::json!([
            {"action": "replace_binary", "path": path.to_str().unwrap(), "sha256": f.payload_hash.to_uppercase()},
        ]));
        assert!(validate(&bytes, &f.policy).is_ok());
    }

    #[test]
    fn bad_json_is_rejected() {
        let f = fixture();
        for bytes in [&b"{\"version\": 1,"[..], b"", b"\xff\xfe", b"nope"] {
            let err = validate(bytes, &f.policy).unwrap_err();
            assert!(matches!(err, StewardError::BadJson(_)), "{err}");
        }
        let err = validate(b"[1, 2]", &f.policy).unwrap_err();
        assert!(matches!(err, StewardError::Invalid(_)), "{err}");
    }

    #[test]
    fn wrong_or_missing_version_is_rejected() {
        let f = fixture();
        let err = validate(br#"{"version": 2, "id": "x", "actions": []}"#, &f.policy).unwrap_err();
        assert!(
            matches!(err, StewardError::UnsupportedVersion(ref v) if v == "2"),
            "{err}"
        );
        let err =
            validate(br#"{"version": "1", "id": "x", "actions": []}"#, &f.policy).unwrap_err();
        assert!(matches!(err, StewardError::UnsupportedVersion(_)), "{err}");
        let err = validate(br#"{"id": "x", "actions": []}"#, &f.policy).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
    }

    #[test]
    fn unknown_actions_and_fields_are_rejected() {
        let f = fixture();
        let err = validate(
            &instruction(serde_json::json!([{"action": "shell", "cmd": "rm -rf /"}])),
            &f.policy,
        )
        .unwrap_err();
        assert!(
            matches!(err, StewardError::Invalid(_)) && err.to_string().contains("shell"),
            "{err}"
        );
        let err = validate(
            &instruction(serde_json::json!([{"action": "run_command", "name": "compact", "args": ["--all"]}])),
            &f.policy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("args"), "{err}");
        let err = validate(
            br#"{"version": 1, "id": "x", "actions": [], "extra": true}"#,
            &f.policy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
        let err = validate(
            &instruction(serde_json::json!([{"path": "payload/kernel-v2"}])),
            &f.policy,
        )
        .unwrap_err();
        assert!(matches!(err, StewardError::Invalid(_)), "{err}");
    }

    #[test]
    fn shape_errors_are_rejected() {
        let f = fixture();
        let err = validate(&instruction(serde_json::json!([])), &f.policy).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = validate(
            br#"{"version": 1, "id": " ", "actions": [{"action": "run_command", "name": "compact"}]}"#,
            &f.policy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("id"), "{err}");
        let twice = serde_json::json!({"action": "replace_binary", "path": "payload/kernel-v2", "sha256": f.payload_hash});
        let err = validate(
            &instruction(serde_json::json!([twice.clone(), twice])),
            &f.policy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most one"), "{err}");
        let err = validate(
            &instruction(
                serde_json::json!([{"action": "replace_binary", "path": "payload/kernel-v2", "sha256": "abc"}]),
            ),
            &f.policy,
        )
        .unwrap_err();
        assert!(err.to_string().contains("64 hex"), "{err}");
    }

    #[test]
    fn wrong_hash_is_rejected() {
        let f = fixture();
        let err = validate(
            &instruction(serde_json::json!([
                {"action": "replace_binary", "path": "payload/kernel-v2", "sha256": f.outside_hash},
            ])),
            &f.policy,
        )
        .unwrap_err();
        match err {
            StewardError::HashMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, f.outside_hash);
                assert_eq!(actual, f.payload_hash);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn paths_outside_the_allowed_folders_are_rejected() {
        let f = fixture();
        let outside = f.outside_file.to_str().unwrap().to_string();
        for path in [
            outside.as_str(),
            "payload/../../outside/evil",
            "payload/link",
            "payload",
            "/etc/passwd",
        ] {
            let bytes = instruction(serde_json::json!([
                {"action": "replace_binary", "path": path, "sha256": f.outside_hash},
            ]));
            let err = validate(&bytes, &f.policy).unwrap_err();
            assert!(
                matches!(err, StewardError::PathOutside { .. }),
                "{path}: {err}"
            );
        }
        let bytes = instruction(serde_json::json!([
            {"action": "replace_binary", "path": "payload/missing", "sha256": f.payload_hash},
        ]));
        assert!(matches!(
            validate(&bytes, &f.policy).unwrap_err(),
            StewardError::Invalid(_)
        ));
    }

    #[test]
    fn unknown_config_keys_and_bad_values_are_rejected() {
        let f = fixture();
        let cases = [
            ("sandbox.wall_clock", serde_json::json!(1), "wall_clock"),
            ("nosuch.key", serde_json::json!(1), "nosuch"),
            (
                "sandbox.wall_clock_ms",
                serde_json::json!("soon"),
                "sandbox.wall_clock_ms",
            ),
            ("sandbox.wall_clock_ms", serde_json::Value::Null, "null"),
            (
                "sandbox.wall_clock_ms",
                serde_json::json!(u64::MAX),
                "too large",
            ),
            ("wall_clock_ms", serde_json::json!(1), "section.key"),
            ("sandbox.a.b", serde_json::json!(1), "section.key"),
        ];
        for (key, value, needle) in cases {
            let bytes = instruction(
                serde_json::json!([{"action": "set_config", "key": key, "value": value}]),
            );
            let err = validate(&bytes, &f.policy).unwrap_err();
            assert!(
                matches!(err, StewardError::BadConfig { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(needle), "{key}: {err}");
        }
    }

    #[test]
    fn keys_naming_files_addresses_or_access_are_not_settable() {
        let f = fixture();
        for key in [
            "kernel.data_dir",
            "kernel.upgrade_channel",
            "bridge.endpoint",
            "bridge.events",
            "bridge.anonymous_role",
            "bridge.curve_key",
            "bridge.curve_clients",
            "metrics.listen",
            "metrics.allow_remote",
            "inference.model",
            "inference.adapters_dir",
        ] {
            let bytes = instruction(
                serde_json::json!([{"action": "set_config", "key": key, "value": "x"}]),
            );
            let err = validate(&bytes, &f.policy).unwrap_err();
            assert!(err.to_string().contains("by hand"), "{key}: {err}");
        }
        assert!(settable("heartbeat", "interval_ms") && settable("kernel", "log"));
    }

    #[test]
    fn set_config_needs_a_managed_file() {
        let mut f = fixture();
        f.policy.config = None;
        let bytes = instruction(
            serde_json::json!([{"action": "set_config", "key": "sandbox.wall_clock_ms", "value": 1}]),
        );
        let err = validate(&bytes, &f.policy).unwrap_err();
        assert!(err.to_string().contains("--config"), "{err}");
    }

    #[test]
    fn commands_must_be_allowed_by_name() {
        let f = fixture();
        let err = validate(
            &instruction(serde_json::json!([{"action": "run_command", "name": "rm"}])),
            &f.policy,
        )
        .unwrap_err();
        assert!(
            matches!(err, StewardError::UnknownCommand(ref n) if n == "rm"),
            "{err}"
        );
    }

    #[test]
    fn allow_command_flags_parse() {
        let (name, spec) =
            CommandSpec::parse_flag("migrate=/usr/bin/migrate --fast  --db x").unwrap();
        assert_eq!(name, "migrate");
        assert_eq!(spec.program, PathBuf::from("/usr/bin/migrate"));
        assert_eq!(spec.args, ["--fast", "--db", "x"]);
        for bad in ["migrate", "=prog", "migrate=", "bad name=prog", "x=  "] {
            assert!(CommandSpec::parse_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instructions_round_trip_and_ids_can_be_peeked() {
        let original = Instruction::new(
            "round-trip",
            vec![
                Action::ReplaceBinary {
                    path: "payload/k".into(),
                    sha256: "00".repeat(32),
                },
                Action::SetConfig {
                    key: "kernel.log".into(),
                    value: serde_json::json!("debug"),
                },
                Action::RunCommand {
                    name: "compact".into(),
                },
            ],
        );
        let bytes = serde_json::to_vec(&original).unwrap();
        assert_eq!(parse(&bytes).unwrap(), original);
        assert_eq!(peek_id(&bytes).as_deref(), Some("round-trip"));
        assert_eq!(peek_id(b"{oops"), None);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""action":"replace_binary""#), "{text}");
    }
}
