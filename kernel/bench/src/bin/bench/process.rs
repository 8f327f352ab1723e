//! Child processes: kernels and Redis started, watched and stopped with the bench.

use super::*;

/// Make a child die when the bench dies, so no kernel or Redis is left behind.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    batos_client::launch::die_with_parent(cmd, libc::SIGKILL);
}

/// A child process that is always reaped: stopped with SIGTERM by `stop`, or
/// killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) what: String,
    pub(crate) finished: bool,
}

pub(crate) struct Stopped {
    pub(crate) status: ExitStatus,
    /// The process had already exited before it was asked to stop.
    pub(crate) already_exited: bool,
    pub(crate) took: Duration,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn stop(&mut self, timeout: Duration) -> Result<Stopped> {
        let started = Instant::now();
        if let Some(status) = self.child.try_wait()? {
            self.finished = true;
            return Ok(Stopped {
                status,
                already_exited: true,
                took: Duration::ZERO,
            });
        }
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) on our own child, which has not been reaped yet
        // (try_wait just returned None), so its pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.finished = true;
            bail!("sending SIGTERM to {} (pid {pid}): {err}", self.what);
        }
        let deadline = started + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.finished = true;
                return Ok(Stopped {
                    status,
                    already_exited: false,
                    took: started.elapsed(),
                });
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.finished = true;
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM; killed it",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.finished {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            if lines.is_empty() {
                format!("({} is empty)", path.display())
            } else {
                lines[start..].join("\n")
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub(crate) struct Ready {
    pub(crate) at: Instant,
    pub(crate) endpoint: String,
}

/// One `batos run` process.
pub(crate) struct Kernel {
    pub(crate) proc_: Proc,
    pub(crate) log: PathBuf,
    pub(crate) spawned_at: Instant,
    pub(crate) ready_wait: ReadyWait,
    pub(crate) ready: Option<Ready>,
}

impl Kernel {
    pub(crate) fn start(
        batos: &Path,
        data: &Path,
        log: &Path,
        durability: Durability,
        endpoint: &str,
        rust_log: &str,
        env: &[(&str, String)],
    ) -> Result<Kernel> {
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(batos);
        cmd.arg("run")
            .arg("--data")
            .arg(data)
            .args(["--endpoint", endpoint])
            .args(["--events", "tcp://127.0.0.1:*"])
            .args(["--metrics", "127.0.0.1:0"])
            .args(["--durability", durability.flag()])
            .arg("--no-first-conversation")
            .env("RUST_LOG", rust_log)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        die_with_parent(&mut cmd);
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", batos.display()))?;
        let stdout = child.stdout.take();
        let proc_ = Proc {
            child,
            what: "the batos kernel".to_string(),
            finished: false,
        };
        let stdout = stdout.context("kernel stdout was not captured")?;
        let ready_wait = ReadyWait::watch(stdout, "kernel-stdout".to_string(), |_| {})
            .context("spawning the stdout reader")?;
        Ok(Kernel {
            proc_,
            log: log.to_path_buf(),
            spawned_at,
            ready_wait,
            ready: None,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    /// Wait for the `batos ready endpoint=...` line.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<&Ready> {
        if self.ready.is_none() {
            let (at, line) = self
                .ready_wait
                .wait(&mut self.proc_.child, timeout)
                .map_err(|e| anyhow!("{e}; log tail:\n{}", log_tail(&self.log, 30)))?;
            self.ready = Some(Ready {
                at,
                endpoint: line.endpoint,
            });
        }
        Ok(self.ready.as_ref().expect("set above"))
    }

    pub(crate) fn stop(&mut self) -> Result<Stopped> {
        self.proc_.stop(STOP_TIMEOUT)
    }
}

/// Notes to attach to a row about how the kernel stopped.
pub(crate) fn stop_notes(stopped: Result<Stopped>) -> Vec<String> {
    match stopped {
        Ok(s) if s.already_exited => vec![format!(
            "the kernel had exited on its own ({}) before SIGTERM",
            s.status
        )],
        Ok(s) if !s.status.success() => {
            vec![format!("kernel exit status after SIGTERM: {}", s.status)]
        }
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("stopping the kernel: {e:#}")],
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Find an executable: a path is taken as is, a bare name is looked up on PATH.
pub(crate) fn find_exe(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

pub(crate) fn spawn_reader<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run a command to completion, killing it after `timeout`.
pub(crate) fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let child = cmd.spawn().with_context(|| format!("starting {program}"))?;
    let mut proc_ = Proc {
        child,
        what: program.clone(),
        finished: false,
    };
    let out_t = spawn_reader(proc_.child.stdout.take());
    let err_t = spawn_reader(proc_.child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = proc_.child.try_wait()? {
            proc_.finished = true;
            break status;
        }
        if Instant::now() >= deadline {
            drop(proc_); // kills and reaps it
            bail!("{program} did not finish within {timeout:?}; killed it");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}
