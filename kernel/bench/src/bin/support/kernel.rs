//! What the benchmarks share: a `batos run` child (a fresh temporary data
//! directory, ephemeral loopback ports, no metrics, no heartbeat; killed on
//! drop) and reading fields of the kernel's replies.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use batos_client::launch::{self, ReadyWait};

pub use batos_object::value::map_field as field;

/// How long a kernel may take to print its ready line (a model may load).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

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
        let mut cmd = Command::new(batos);
        cmd.arg("run")
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
            .stderr(Stdio::inherit());
        launch::die_with_parent(&mut cmd, libc::SIGKILL);
        let mut child = cmd.spawn().context("starting batos")?;
        let stdout = child.stdout.take().context("stdout")?;
        let wait = ReadyWait::watch(stdout, "kernel-stdout".into(), |_| {})?;
        let endpoint = match wait.wait(&mut child, READY_TIMEOUT) {
            Ok((_, ready)) => ready.endpoint,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err.into());
            }
        };
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
