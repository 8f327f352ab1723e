//! The upgrade channel folder: the notify watcher, moving handled instructions to `processed/` or `rejected/` with a result record, and [`request_upgrade`] for writers.
//!
//! Layout (`docs/steward.md`): instruction files `*.json` at the top (written
//! as `NAME.json.tmp`, then renamed), `payload/` for files they refer to,
//! `processed/` and `rejected/` for handled instructions, each next to its
//! `NAME.result.json`.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};

use super::error::StewardError;
use super::files;
use super::instruction::{check_id, Instruction, INSTRUCTION_VERSION, MAX_INSTRUCTION_BYTES};
use super::Event;

/// Handled instructions that were carried out (applied or rolled back).
pub const PROCESSED: &str = "processed";
/// Instructions that failed validation.
pub const REJECTED: &str = "rejected";
/// Default folder `replace_binary` payloads come from.
pub const PAYLOAD: &str = "payload";
/// Suffix of a result record (`NAME.json` → `NAME.result.json`).
pub const RECORD_SUFFIX: &str = ".result.json";

/// How an instruction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Carried out; the new kernel answered `ping`.
    Applied,
    /// Refused before anything was touched; the kernel kept running.
    Rejected,
    /// Carried out, but the new kernel did not come up: the previous binary
    /// and configuration were restored.
    RolledBack,
}

impl Outcome {
    /// The name used in records, metrics labels and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Rejected => "rejected",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

/// The `NAME.result.json` written next to a handled instruction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The instruction's id (null when the file has none, e.g. bad JSON).
    pub id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for people.
    pub reason: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

impl ResultRecord {
    /// A record stamped now.
    pub fn now(id: Option<String>, outcome: Outcome, reason: impl Into<String>) -> ResultRecord {
        ResultRecord {
            id,
            outcome,
            reason: reason.into(),
            at: rfc3339(SystemTime::now()),
        }
    }
}

/// The channel's folders (the root canonical, the others created).
#[derive(Debug, Clone)]
pub struct Layout {
    /// The watched folder.
    pub root: PathBuf,
    /// `processed/`.
    pub processed: PathBuf,
    /// `rejected/`.
    pub rejected: PathBuf,
    /// `payload/`.
    pub payload: PathBuf,
}

impl Layout {
    /// Creates the folders that are missing.
    pub fn create(root: &Path) -> Result<Layout, StewardError> {
        std::fs::create_dir_all(root).map_err(|e| {
            StewardError::io(
                format!("creating the upgrade channel {}", root.display()),
                e,
            )
        })?;
        let root = root.canonicalize().map_err(|e| {
            StewardError::io(
                format!("resolving the upgrade channel {}", root.display()),
                e,
            )
        })?;
        let layout = Layout {
            processed: root.join(PROCESSED),
            rejected: root.join(REJECTED),
            payload: root.join(PAYLOAD),
            root,
        };
        for dir in [&layout.processed, &layout.rejected, &layout.payload] {
            std::fs::create_dir_all(dir)
                .map_err(|e| StewardError::io(format!("creating {}", dir.display()), e))?;
        }
        for dir in [&layout.root, &layout.payload] {
            check_private_dir(dir)?;
        }
        Ok(layout)
    }
}

/// Refuses a channel folder that someone other than this user could write
/// to: whoever can drop a file there can ask for an upgrade, and whoever
/// can write `payload/` can swap a binary.
fn check_private_dir(dir: &Path) -> Result<(), StewardError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| StewardError::io(format!("checking {}", dir.display()), e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let problem = if !meta.is_dir() {
        Some("is not a folder (a link is not followed)".to_string())
    } else if meta.uid() != me {
        Some(format!(
            "is owned by uid {}, not by this user ({me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "has mode {:o}: others may write to it (chmod go-w)",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        Some(why) => Err(StewardError::Usage(format!(
            "the upgrade channel {} {why}",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Whether a file name is an instruction: `*.json`, not hidden. Writers'
/// `*.json.tmp` files are not.
pub fn is_instruction_name(name: &str) -> bool {
    name.len() > ".json".len() && name.ends_with(".json") && !name.starts_with('.')
}

fn instruction_in(root: &Path, path: &Path) -> bool {
    path.parent() == Some(root)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_instruction_name)
}

/// Watches the channel folder (not recursively). A file counts when it is
/// renamed into the folder, or when a writer closes it after writing in
/// place; creation alone does not (the file may still be half-written).
/// When notify reports lost events, the folder is rescanned.
pub(crate) fn watch(
    layout: &Layout,
    tx: Sender<Event>,
) -> Result<RecommendedWatcher, StewardError> {
    let root = layout.root.clone();
    let handler = move |result: notify::Result<notify::Event>| match result {
        Ok(event) => {
            if event.need_rescan() {
                let _ = tx.send(Event::Rescan);
                return;
            }
            let complete = matches!(
                event.kind,
                EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                )) | EventKind::Access(AccessKind::Close(AccessMode::Write))
            );
            if !complete {
                return;
            }
            for path in event.paths {
                if instruction_in(&root, &path) {
                    let _ = tx.send(Event::File(path));
                }
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "upgrade channel watcher error; rescanning the folder");
            let _ = tx.send(Event::Rescan);
        }
    };
    let watch_error = |e: notify::Error| StewardError::Watch {
        path: layout.root.clone(),
        message: e.to_string(),
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(watch_error)?;
    watcher
        .watch(&layout.root, RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    Ok(watcher)
}

/// The instruction files now in the folder, by name.
pub fn scan(root: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(folder = %root.display(), error = %err, "cannot list the upgrade channel");
            return Vec::new();
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| instruction_in(root, p))
        .collect();
    found.sort();
    found
}

/// Reads an instruction file (at most [`MAX_INSTRUCTION_BYTES`]).
pub fn read_instruction(path: &Path) -> Result<Vec<u8>, StewardError> {
    let file = files::open_regular(path)
        .map_err(|e| StewardError::io(format!("reading {}", path.display()), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_INSTRUCTION_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StewardError::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 > MAX_INSTRUCTION_BYTES {
        return Err(StewardError::Invalid(format!(
            "the file is larger than {MAX_INSTRUCTION_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// Moves a handled instruction into `folder`, keeping its name unless one
/// of that name is already there. Returns where it went.
pub fn archive(path: &Path, folder: &Path) -> Result<PathBuf, StewardError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("instruction.json");
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let mut dest = folder.join(name);
    let mut n = 1u32;
    while dest.exists() || record_path(&dest).exists() {
        dest = folder.join(format!("{stem}.{n}.json"));
        n += 1;
    }
    std::fs::rename(path, &dest).map_err(|e| {
        StewardError::io(
            format!("moving {} to {}", path.display(), dest.display()),
            e,
        )
    })?;
    sync_dir(folder).map_err(|e| StewardError::io(format!("syncing {}", folder.display()), e))?;
    Ok(dest)
}

/// `DIR/NAME.json` → `DIR/NAME.result.json`.
pub fn record_path(archived: &Path) -> PathBuf {
    let name = archived
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("instruction.json");
    let stem = name.strip_suffix(".json").unwrap_or(name);
    archived.with_file_name(format!("{stem}{RECORD_SUFFIX}"))
}

/// Writes the result record next to an archived instruction (atomically).
pub fn write_record(archived: &Path, record: &ResultRecord) -> Result<PathBuf, StewardError> {
    let path = record_path(archived);
    let mut body = serde_json::to_vec_pretty(record)
        .map_err(|e| StewardError::io("encoding a result record", std::io::Error::other(e)))?;
    body.push(b'\n');
    write_atomic(&path, &body)
        .map_err(|e| StewardError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Submits an upgrade instruction the documented way: writes
/// `CHANNEL/ID.json.tmp`, syncs it, then renames it to `CHANNEL/ID.json`, so
/// the steward never sees a half-written file. The file name comes from the
/// id (characters other than letters, digits, `-`, `_` and `.` become `_`);
/// an instruction of that name already waiting is an error. The kernel (or
/// any tool) calls this to ask the steward for an upgrade.
pub fn request_upgrade(
    channel_dir: &Path,
    instruction: &Instruction,
) -> Result<PathBuf, StewardError> {
    if instruction.version != INSTRUCTION_VERSION {
        return Err(StewardError::UnsupportedVersion(
            instruction.version.to_string(),
        ));
    }
    check_id(&instruction.id)?;
    let name = format!("{}.json", file_stem_for(&instruction.id));
    let path = channel_dir.join(&name);
    if path.exists() {
        return Err(StewardError::Invalid(format!(
            "an instruction named {name} is already waiting"
        )));
    }
    let mut body = serde_json::to_vec_pretty(instruction)
        .map_err(|e| StewardError::io("encoding an instruction", std::io::Error::other(e)))?;
    body.push(b'\n');
    write_atomic(&path, &body)
        .map_err(|e| StewardError::io(format!("submitting {}", path.display()), e))?;
    Ok(path)
}

/// A file name stem from an id: safe characters only, never hidden.
fn file_stem_for(id: &str) -> String {
    let mut stem: String = id
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') {
        stem.replace_range(..1, "_");
    }
    stem
}

/// Writes `bytes` to `path` through `path.tmp`, fsync and rename. The new
/// file keeps the mode of the one it replaces (0644 for a new one), and the
/// temporary file is created fresh, never through a link.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mode = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => 0o644,
    };
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The mode asked for is cut by the umask: set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
            _ => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory, so renames into it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// RFC 3339 UTC with seconds, e.g. `2025-01-31T23:59:07Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::instruction::{parse, Action};

    #[test]
    fn instruction_names() {
        for yes in ["a.json", "upgrade-7.json", "x.result.json"] {
            assert!(is_instruction_name(yes), "{yes}");
        }
        for no in ["a.json.tmp", ".json", ".hidden.json", "a.toml", "json"] {
            assert!(!is_instruction_name(no), "{no}");
        }
    }

    #[test]
    fn request_upgrade_writes_then_renames() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(&dir.path().join("channel")).unwrap();
        let instruction = Instruction::new(
            "self/upgrade 1",
            vec![Action::RunCommand {
                name: "compact".into(),
            }],
        );
        let path = request_upgrade(&layout.root, &instruction).unwrap();
        assert_eq!(path.file_name().unwrap(), "self_upgrade_1.json");
        assert_eq!(parse(&std::fs::read(&path).unwrap()).unwrap(), instruction);
        assert_eq!(
            scan(&layout.root),
            vec![path.clone()],
            "no .tmp file is left behind"
        );
        let err = request_upgrade(&layout.root, &instruction).unwrap_err();
        assert!(err.to_string().contains("already waiting"), "{err}");
        let bad = Instruction {
            version: 2,
            ..instruction
        };
        assert!(matches!(
            request_upgrade(&layout.root, &bad),
            Err(StewardError::UnsupportedVersion(_))
        ));
    }

    #[test]
    fn archive_keeps_names_unique_and_records_sit_next_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let mut archived = Vec::new();
        for _ in 0..2 {
            let path = layout.root.join("u.json");
            std::fs::write(&path, b"{}").unwrap();
            let dest = archive(&path, &layout.rejected).unwrap();
            let record = ResultRecord::now(None, Outcome::Rejected, "not valid JSON");
            let record_file = write_record(&dest, &record).unwrap();
            let back: ResultRecord =
                serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
            assert_eq!(back, record);
            archived.push((dest, record_file));
        }
        assert_eq!(archived[0].0, layout.rejected.join("u.json"));
        assert_eq!(archived[0].1, layout.rejected.join("u.result.json"));
        assert_eq!(archived[1].0, layout.rejected.join("u.1.json"));
        assert_eq!(archived[1].1, layout.rejected.join("u.1.result.json"));
        let text = std::fs::read_to_string(&archived[0].1).unwrap();
        assert!(text.contains(r#""outcome": "rejected""#), "{text}");
        assert!(text.contains(r#""id": null"#), "{text}");
    }

    #[test]
    fn oversized_instructions_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; MAX_INSTRUCTION_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            read_instruction(&path),
            Err(StewardError::Invalid(_))
        ));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_738_367_999)),
            "2025-01-31T23:59:59Z"
        );
    }

    /// The JSON examples of docs/steward.md and upgrade_channel/README.md
    /// are what people copy: every instruction and action there parses, and
    /// the result record has the fields the steward writes.
    #[test]
    fn the_documented_examples_parse() {
        let doc = [
            include_str!("../../../docs/steward.md"),
            include_str!("../../../upgrade_channel/README.md"),
        ]
        .concat();
        let blocks: Vec<serde_json::Value> = doc
            .split("```json\n")
            .skip(1)
            .map(|rest| rest.split("```").next().unwrap_or_default())
            // The documentation shortens hashes to "...": any hex will do.
            .map(|text| text.replace("9f86d08...64 hex digits", &"ab".repeat(32)))
            .map(|text| text.replace("<64 hex digits>", &"ef".repeat(32)))
            .map(|text| text.replace("\"...\"", &format!("\"{}\"", "cd".repeat(32))))
            .map(|text| serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
            .collect();
        let (mut instructions, mut actions, mut records) = (0, 0, 0);
        for block in blocks {
            if block.get("action").is_some() {
                let wrapped = serde_json::json!({"version": 1, "id": "doc", "actions": [block]});
                parse(wrapped.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {block}"));
                actions += 1;
            } else if block.get("actions").is_some() {
                parse(block.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}: {block}"));
                instructions += 1;
            } else {
                let record: ResultRecord = serde_json::from_value(block.clone())
                    .unwrap_or_else(|e| panic!("{e}: {block}"));
                assert_eq!(serde_json::to_value(&record).unwrap(), block);
                records += 1;
            }
        }
        assert_eq!((instructions, actions, records), (2, 3, 1));
    }
}
