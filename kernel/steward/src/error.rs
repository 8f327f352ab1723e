//! The steward's one error type: why it stopped, or why an upgrade instruction was refused.

use std::path::PathBuf;

/// Everything that can go wrong in the steward. The first group stops the
/// steward; the second is why an instruction file was rejected (its `Display`
/// becomes the `reason` of the result record, and the kernel keeps running).
#[derive(Debug, thiserror::Error)]
pub enum StewardError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the steward was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The upgrade channel cannot be watched.
    #[error("watching {}: {message}", path.display())]
    Watch {
        /// The folder.
        path: PathBuf,
        /// notify's explanation.
        message: String,
    },
    /// The steward was started with unusable options.
    #[error("{0}")]
    Usage(String),
    /// The steward's metrics could not be set up.
    #[error("steward metrics: {0}")]
    Metrics(String),
    /// The kernel kept dying: more unexpected exits than allowed in the window.
    #[error(
        "crash loop: the kernel exited unexpectedly {exits} times within {window_s} s (limit {limit}); \
         last failure: {last}; the steward gives up"
    )]
    CrashLoop {
        /// Unexpected exits counted in the window.
        exits: usize,
        /// The window.
        window_s: u64,
        /// `--max-restarts`.
        limit: u32,
        /// The last failure, for people.
        last: String,
    },
    /// The kernel did not exit cleanly when the steward stopped it.
    #[error("the kernel {0} when it was stopped")]
    KernelExit(String),

    /// The instruction file is not JSON.
    #[error("not valid JSON: {0}")]
    BadJson(String),
    /// The instruction's `version` is not one this steward reads.
    #[error("unsupported instruction version {0} (this steward reads version 1)")]
    UnsupportedVersion(String),
    /// The instruction breaks the format (unknown field or action, missing field, bad id...).
    #[error("invalid instruction: {0}")]
    Invalid(String),
    /// A payload path resolves outside every allowed folder.
    #[error("path {path:?} is outside the allowed folders ({allowed})")]
    PathOutside {
        /// The path as written in the instruction.
        path: String,
        /// The allowed folders.
        allowed: String,
    },
    /// A payload's SHA-256 is not the one the instruction names.
    #[error(
        "sha256 mismatch for {path:?}: the instruction says {expected}, the file has {actual}"
    )]
    HashMismatch {
        /// The path as written in the instruction.
        path: String,
        /// From the instruction.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// `run_command` names a command the steward does not allow.
    #[error("unknown command {0:?}: not in the steward's allow-list")]
    UnknownCommand(String),
    /// `set_config` would make the configuration invalid (unknown key, wrong type...).
    #[error("set_config {key:?}: {reason}")]
    BadConfig {
        /// The key as written in the instruction.
        key: String,
        /// Why the configuration refuses it.
        reason: String,
    },
}

impl StewardError {
    /// An I/O error with what the steward was doing.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> StewardError {
        StewardError::Io {
            what: what.into(),
            source,
        }
    }

    /// The process exit status `batos steward` uses for this error: 3 for a
    /// crash loop, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            StewardError::CrashLoop { .. } => 3,
            _ => 1,
        }
    }
}
