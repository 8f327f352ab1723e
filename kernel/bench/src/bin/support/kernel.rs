//! What the benchmarks share: a `batos run` child (a fresh temporary data
//! directory, ephemeral loopback ports, no metrics, no heartbeat; killed on
//! drop) and reading fields of the kernel's replies.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result};

pub use batos_object::value::map_field as field;

/// A running kernel.
pub struct Kernel {
    child: Child,
    /// Its commands endpoint.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Kernel {
    /// Starts `batos` with `config` (TOML text, may be empty) and the
    /// first conversation off, and waits for its ready line.
    pub fn start(batos: &Path, config: &str) -> Result<Kernel> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("batos.toml");
        std::fs::write(&path, config)?;
        let mut child = Command::new(batos)
            .arg("run")
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&path)
            .args([
                "--endpoint",
                "tcp://127.0.0.1:*",
                "--events",
                "tcp://127.0.0.1:*",
            ])
            .args(["--metrics", "", "--no-first-conversation"])
            .env("BATOS_HEARTBEAT_INTERVAL_MS", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting batos")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let endpoint = batos_client::ReadyLine::parse(&line)
            .with_context(|| format!("no ready line from batos (got {line:?})"))?
            .endpoint;
        Ok(Kernel {
            child,
            endpoint,
            _dir: dir,
        })
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
