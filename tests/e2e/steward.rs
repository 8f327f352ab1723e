//! The steward (`batos steward`): crash restarts with backoff, the crash-loop limit, upgrades through the upgrade channel (applied, rejected, rolled back, under write load), and a clean shutdown on SIGTERM.
//!
//! Each test runs its own steward on its own temporary directory: the image
//! in `data/`, the kernel binary the steward manages in `bin/batos` (a hard
//! link to, or copy of, the built `batos`, so upgrades never touch the build
//! output), and the upgrade channel in `channel/`. The tests wait on the
//! steward's stdout lines (`batos steward ready|restarted|upgrade ...`), never
//! on sleeps.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tempfile::TempDir;

use crate::harness::*;

/// How long a steward may take to print its ready line (a kernel start and a ping).
const STEWARD_READY: Duration = Duration::from_secs(60);
/// How long one upgrade may take (copy and hash the binary, stop, start, ping).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(120);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a steward is started. Always given: `--data`, fixed loopback ports
/// for the kernel (see [`quiet_port`]), `--no-first-conversation`,
/// `--kernel-binary`, `--upgrade-channel` and `--steward-metrics 127.0.0.1:0`.
#[derive(Default)]
struct StewardOpts {
    /// A shell script to manage as the kernel instead of the real binary.
    kernel_script: Option<&'static str>,
    /// TOML written to `batos.toml` and passed with `--config`.
    config: Option<&'static str>,
    /// More flags.
    args: Vec<&'static str>,
}

/// A running `batos steward` with its stdout lines.
struct Steward {
    child: Mutex<Child>,
    pid: u32,
    status: Mutex<Option<ExitStatus>>,
    root: Arc<TempDir>,
    log: PathBuf,
    lines: Mutex<mpsc::Receiver<String>>,
    seen: Arc<Mutex<Vec<String>>>,
    /// The kernel binary the steward manages.
    binary: PathBuf,
    /// The upgrade channel folder.
    channel: PathBuf,
    /// From the ready line.
    endpoint: String,
    kernel_pid: u32,
    metrics: String,
}

impl Steward {
    /// Starts a steward and waits for its ready line.
    fn start(opts: StewardOpts) -> Steward {
        let mut st = Steward::spawn(opts);
        let line = st.wait_line("the steward's ready line", STEWARD_READY, |l| {
            l.starts_with("batos steward ready ")
        });
        st.endpoint = value_of(&line, "endpoint");
        st.kernel_pid = pid_of(&line);
        st.metrics = value_of(&line, "steward_metrics");
        assert!(
            st.endpoint.starts_with("tcp://127.0.0.1:") && !st.endpoint.ends_with(":*"),
            "a real endpoint in {line:?}"
        );
        st
    }

    /// Starts a steward without waiting for anything.
    fn spawn(opts: StewardOpts) -> Steward {
        let root = new_image_dir();
        let dir = root.path();
        let binary = dir.join("bin").join("batos");
        std::fs::create_dir_all(dir.join("bin")).expect("create bin/");
        match opts.kernel_script {
            Some(script) => write_script(&binary, script),
            None => link_or_copy(&batos_bin(), &binary),
        }
        let channel = dir.join("channel");
        let log = dir.join("steward.log");
        let mut cmd = Command::new(batos_bin());
        cmd.arg("steward").arg("--data").arg(dir.join("data"));
        cmd.arg("--endpoint")
            .arg(format!("tcp://127.0.0.1:{}", quiet_port()));
        cmd.arg("--events")
            .arg(format!("tcp://127.0.0.1:{}", quiet_port()));
        cmd.arg("--metrics")
            .arg(format!("127.0.0.1:{}", quiet_port()));
        cmd.args([
            "--no-first-conversation",
            "--steward-metrics",
            "127.0.0.1:0",
        ]);
        cmd.arg("--kernel-binary").arg(&binary);
        cmd.arg("--upgrade-channel").arg(&channel);
        if let Some(text) = opts.config {
            let path = dir.join("batos.toml");
            std::fs::write(&path, text).expect("write config file");
            cmd.arg("--config").arg(path);
        }
        cmd.args(&opts.args);
        cmd.env("RUST_BACKTRACE", "1").env_remove("BATOS_CONFIG");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        cmd.stderr(Stdio::from(File::create(&log).expect("create log file")));
        die_with_test(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", batos_bin().display()));
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lock(&seen).push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Steward {
            child: Mutex::new(child),
            pid,
            status: Mutex::new(None),
            root,
            log,
            lines: Mutex::new(rx),
            seen,
            binary,
            channel,
            endpoint: String::new(),
            kernel_pid: 0,
            metrics: String::new(),
        }
    }

    fn root(&self) -> Arc<TempDir> {
        Arc::clone(&self.root)
    }

    /// The end of the steward's stderr (with the kernel's), without colours.
    fn log_tail(&self) -> String {
        strip_ansi(&file_tail(&self.log, 12_000))
    }

    /// Everything the steward printed on stdout so far.
    fn stdout(&self) -> Vec<String> {
        lock(&self.seen).clone()
    }

    /// The last stdout line starting with `prefix`.
    fn last_line(&self, prefix: &str) -> Option<String> {
        self.stdout()
            .into_iter()
            .rev()
            .find(|l| l.starts_with(prefix))
    }

    /// Consumes stdout lines until one satisfies `pred` (the steward's
    /// stdout is the event; the wait is bounded).
    #[track_caller]
    fn wait_line(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let rx = lock(&self.lines);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no {what} within {timeout:?}\n--- stdout ---\n{}\n--- log ---\n{}",
                    self.stdout().join("\n"),
                    self.log_tail()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the steward closed its stdout before {what}\n--- stdout ---\n{}\n--- log ---\n{}",
                    self.stdout().join("\n"),
                    self.log_tail()
                ),
            }
        }
    }

    /// Waits for the `batos steward upgrade file=NAME ...` line of each
    /// name; returns them by name.
    #[track_caller]
    fn wait_upgrades(&self, names: &[&str]) -> HashMap<String, String> {
        let mut found = HashMap::new();
        while found.len() < names.len() {
            let line = self.wait_line("the upgrade result lines", UPGRADE_TIMEOUT, |l| {
                l.starts_with("batos steward upgrade ")
            });
            let file = value_of(&line, "file");
            assert!(
                names.contains(&file.as_str()),
                "an upgrade line for an unexpected file: {line:?}"
            );
            assert!(
                found.insert(file, line.clone()).is_none(),
                "two result lines for one file: {line:?}"
            );
        }
        found
    }

    /// Submits an instruction the documented way: `NAME.json.tmp`, then a
    /// rename to `NAME.json`.
    fn submit(&self, name: &str, body: &[u8]) {
        let tmp = self.channel.join(format!("{name}.json.tmp"));
        std::fs::write(&tmp, body).expect("write instruction");
        std::fs::rename(&tmp, self.channel.join(format!("{name}.json")))
            .expect("rename instruction");
    }

    fn submit_json(&self, name: &str, instruction: serde_json::Value) {
        self.submit(name, instruction.to_string().as_bytes());
    }

    /// `channel/FOLDER/NAME.result.json`.
    #[track_caller]
    fn record(&self, folder: &str, name: &str) -> serde_json::Value {
        let path = self
            .channel
            .join(folder)
            .join(format!("{name}.result.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "read {}: {e}\n--- log ---\n{}",
                path.display(),
                self.log_tail()
            )
        });
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
    }

    fn dealer(&self) -> Client {
        Client::connect(&self.endpoint, Kind::Dealer)
    }

    fn scrape(&self) -> Metrics {
        scrape(&self.metrics)
    }

    fn signal(&self, sig: libc::c_int) {
        assert!(
            lock(&self.status).is_none(),
            "signal to a steward that already exited"
        );
        // SAFETY: kill(2) on our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the steward to exit (bounded; SIGKILL and a failure after).
    fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        if let Some(status) = *lock(&self.status) {
            return status;
        }
        let deadline = Instant::now() + timeout;
        let mut child = lock(&self.child);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                *lock(&self.status) = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                *lock(&self.status) = Some(ExitStatus::default());
                panic!(
                    "the steward did not exit within {timeout:?}\n--- log ---\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then a clean exit (status 0) of the steward and its kernel.
    fn stop_ok(&self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(EXIT_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(0),
            "the steward must exit 0 on SIGTERM, got {status:?}\n--- log ---\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        if lock(&self.status).is_none() {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- steward stdout ---\n{}\n--- steward log ({}) ---\n{}",
                self.stdout().join("\n"),
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// If the test process dies, its stewards die with it (and their kernels,
/// which get SIGTERM from the steward's death).
fn die_with_test(cmd: &mut Command) {
    kill_with_parent(cmd);
}

/// A free loopback port below the ephemeral range. The kernel's ports must
/// stay free while the steward restarts it; a port from the ephemeral range
/// (what `:0` and `:*` give) can be taken meanwhile as the local end of any
/// outgoing connection (the tests make many), one below it cannot.
fn quiet_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    const LOW: u32 = 10_000;
    if ephemeral_low <= LOW + 1_000 {
        return free_port();
    }
    let span = ephemeral_low - LOW;
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    for _ in 0..1_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + seed.wrapping_add(n.wrapping_mul(7_919)) % span;
        let port = u16::try_from(port).expect("below the ephemeral range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {ephemeral_low}");
}

/// Removes ANSI colour sequences (`ESC [ ... m`), which tracing writes
/// even to a file.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=VALUE` from a steward line.
#[track_caller]
fn value_of(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_owned()
}

#[track_caller]
fn pid_of(line: &str) -> u32 {
    let pid = value_of(line, "kernel_pid");
    pid.parse()
        .unwrap_or_else(|_| panic!("kernel_pid is not a pid in {line:?}"))
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// A hard link (the upgrade never writes the file, it renames over it), or
/// a copy across file systems.
fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
}

/// SHA-256 (hex) with Debian's `sha256sum`.
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints the hash first")
        .to_owned()
}

fn replace_binary(id: &str, path: &str, sha256: &str) -> serde_json::Value {
    json!({
        "version": 1,
        "id": id,
        "actions": [{"action": "replace_binary", "path": path, "sha256": sha256}],
    })
}

#[test]
fn a_crashed_kernel_is_restarted_on_the_same_endpoint_with_its_image() {
    let st = Steward::start(StewardOpts::default());
    let c = st.dealer();
    let o = c.create(&[("kept", Value::from(7))]);
    drop(c);
    let old = st.kernel_pid;

    // SAFETY: kill(2); the kernel is the steward's child, alive until it reaps it.
    assert_eq!(unsafe { libc::kill(old as libc::pid_t, libc::SIGKILL) }, 0);
    let line = st.wait_line("a restart after the crash", STEWARD_READY, |l| {
        l.starts_with("batos steward restarted ")
    });
    assert_eq!(value_of(&line, "cause"), "crash", "{line}");
    assert_eq!(
        value_of(&line, "endpoint"),
        st.endpoint,
        "the same endpoint"
    );
    assert_ne!(pid_of(&line), old, "a new kernel process");

    let c = st.dealer();
    c.ping();
    assert_same(
        &c.get(o, "kept"),
        &Value::from(7),
        "acknowledged before the crash",
    );
    let m = st.scrape();
    assert_eq!(
        m.count("batos_steward_restarts_total", &[]),
        1.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.types
            .get("batos_steward_kernel_uptime_seconds")
            .map(String::as_str),
        Some("gauge")
    );
    let log = st.log_tail();
    assert!(
        log.contains("delay_ms=100"),
        "the first restart waits 100 ms:\n{log}"
    );
    st.stop_ok();
}

#[test]
fn a_crash_loop_stops_the_steward_with_status_3() {
    let st = Steward::spawn(StewardOpts {
        kernel_script: Some("#!/bin/sh\necho 'fake kernel: refusing to start' >&2\nexit 1\n"),
        args: vec!["--max-restarts", "2", "--restart-window-s", "60"],
        ..StewardOpts::default()
    });
    let status = st.wait_exit(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(3),
        "crash loop exit status\n{}",
        st.log_tail()
    );
    let log = st.log_tail();
    assert!(log.contains("fake kernel: refusing to start"), "{log}");
    assert!(
        log.contains("crash loop") && log.contains("3 times within 60 s (limit 2)"),
        "the steward says why it stopped:\n{log}"
    );
    assert!(
        !st.stdout()
            .iter()
            .any(|l| l.starts_with("batos steward ready")),
        "no kernel ever came up: {:?}",
        st.stdout()
    );
}

#[test]
fn a_valid_upgrade_replaces_the_binary_and_config_and_keeps_the_image() {
    let st = Steward::start(StewardOpts {
        config: Some("[sandbox]\nwall_clock_ms = 2000\n"),
        ..StewardOpts::default()
    });
    let c = st.dealer();
    let o = c.create(&[("before", Value::from(1))]);
    drop(c);
    let payload = st.channel.join("payload").join("batos-new");
    link_or_copy(&batos_bin(), &payload);
    let hash = sha256sum(&payload);
    let config_path = st.root.path().join("batos.toml");
    set_mode(&config_path, 0o600);

    st.submit_json(
        "upgrade-1",
        json!({
            "version": 1,
            "id": "upgrade-1",
            "actions": [
                {"action": "replace_binary", "path": "payload/batos-new", "sha256": hash},
                {"action": "set_config", "key": "sandbox.wall_clock_ms", "value": 3000},
            ],
        }),
    );
    let lines = st.wait_upgrades(&["upgrade-1.json"]);
    assert_eq!(value_of(&lines["upgrade-1.json"], "outcome"), "applied");

    let record = st.record("processed", "upgrade-1");
    assert_eq!(record["outcome"], "applied", "{record}");
    assert_eq!(record["id"], "upgrade-1", "{record}");
    assert!(
        record["at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{record}"
    );
    assert!(st.channel.join("processed/upgrade-1.json").is_file());
    assert!(
        !st.channel.join("upgrade-1.json").exists(),
        "processed once, moved away"
    );

    let restarted = st
        .last_line("batos steward restarted ")
        .expect("a restarted line");
    assert_eq!(value_of(&restarted, "cause"), "upgrade", "{restarted}");
    assert_ne!(pid_of(&restarted), st.kernel_pid);
    assert_eq!(value_of(&restarted, "endpoint"), st.endpoint);
    assert_eq!(
        sha256sum(&st.binary),
        hash,
        "the payload is the kernel binary now"
    );
    assert!(
        st.root.path().join("bin/batos.prev").is_file(),
        "the previous binary is kept"
    );
    let config = std::fs::read_to_string(&config_path).expect("config");
    assert!(config.contains("wall_clock_ms = 3000"), "{config}");
    assert_eq!(
        mode_of(&config_path),
        0o600,
        "the rewritten config keeps its mode"
    );

    let c = st.dealer();
    c.ping();
    assert_same(
        &c.get(o, "before"),
        &Value::from(1),
        "the image survives the upgrade",
    );
    let m = st.scrape();
    assert_eq!(
        m.count("batos_steward_upgrades_total", &[("outcome", "applied")]),
        1.0
    );
    assert_eq!(
        m.count("batos_steward_restarts_total", &[]),
        0.0,
        "an upgrade is not a crash"
    );
    st.stop_ok();
}

#[test]
fn invalid_instructions_are_rejected_and_the_kernel_keeps_running() {
    let st = Steward::start(StewardOpts {
        config: Some("[sandbox]\nwall_clock_ms = 2000\n"),
        ..StewardOpts::default()
    });
    let pid = st.kernel_pid;
    let blob = st.channel.join("payload").join("blob");
    std::fs::write(&blob, b"not a kernel").expect("write payload");
    let blob_hash = sha256sum(&blob);
    let outside = st.root.path().join("outside-kernel");
    std::fs::write(&outside, b"not allowed").expect("write outside file");
    let outside_hash = sha256sum(&outside);
    let outside_path = outside.to_str().expect("utf-8 path").to_owned();

    // A half-written submission is never acted on.
    std::fs::write(
        st.channel.join("pending.json.tmp"),
        b"{\"version\": 1, \"id\": \"pend",
    )
    .expect("tmp");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad-json", b"{\"version\": 1, \"id\": ".to_vec(), "not valid JSON"),
        (
            "unknown-action",
            json!({"version": 1, "id": "unknown-action", "actions": [{"action": "shell", "cmd": "rm -rf /"}]})
                .to_string()
                .into_bytes(),
            "shell",
        ),
        (
            "wrong-hash",
            replace_binary("wrong-hash", "payload/blob", &"0".repeat(64)).to_string().into_bytes(),
            "sha256 mismatch",
        ),
        (
            "outside",
            replace_binary("outside", &outside_path, &outside_hash).to_string().into_bytes(),
            "outside the allowed folders",
        ),
        (
            "escape",
            replace_binary("escape", "payload/../../outside-kernel", &outside_hash).to_string().into_bytes(),
            "outside the allowed folders",
        ),
        (
            "unknown-key",
            json!({"version": 1, "id": "unknown-key", "actions": [
                {"action": "set_config", "key": "sandbox.no_such_key", "value": 1},
            ]})
            .to_string()
            .into_bytes(),
            "no_such_key",
        ),
        (
            "listen-address",
            json!({"version": 1, "id": "listen-address", "actions": [
                {"action": "set_config", "key": "bridge.endpoint", "value": "tcp://0.0.0.0:5555"},
            ]})
            .to_string()
            .into_bytes(),
            "by hand",
        ),
        (
            "move-image",
            json!({"version": 1, "id": "move-image", "actions": [
                {"action": "set_config", "key": "kernel.data_dir", "value": "/tmp/elsewhere"},
            ]})
            .to_string()
            .into_bytes(),
            "by hand",
        ),
        (
            "wrong-version",
            json!({"version": 2, "id": "wrong-version", "actions": []}).to_string().into_bytes(),
            "version 2",
        ),
        (
            "not-allowed",
            json!({"version": 1, "id": "not-allowed", "actions": [{"action": "run_command", "name": "rm"}]})
                .to_string()
                .into_bytes(),
            "allow-list",
        ),
    ];
    for (name, body, _) in &cases {
        st.submit(name, body);
    }
    // An instruction that is a link to a file elsewhere is not followed.
    let target = st.root.path().join("elsewhere.json");
    std::fs::write(
        &target,
        json!({"version": 1, "id": "linked", "actions": [
            {"action": "set_config", "key": "sandbox.wall_clock_ms", "value": 1},
        ]})
        .to_string(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&target, st.channel.join("linked.json.tmp")).unwrap();
    std::fs::rename(
        st.channel.join("linked.json.tmp"),
        st.channel.join("linked.json"),
    )
    .unwrap();
    let mut names: Vec<String> = cases.iter().map(|(n, _, _)| format!("{n}.json")).collect();
    names.push("linked.json".into());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let lines = st.wait_upgrades(&names);
    assert_eq!(value_of(&lines["linked.json"], "outcome"), "rejected");
    let reason = st.record("rejected", "linked")["reason"].to_string();
    assert!(reason.contains("not a symlink"), "{reason}");
    let config = std::fs::read_to_string(st.root.path().join("batos.toml")).unwrap();
    assert!(config.contains("wall_clock_ms = 2000"), "{config}");

    for (name, _, needle) in &cases {
        let line = &lines[&format!("{name}.json")];
        assert_eq!(value_of(line, "outcome"), "rejected", "{line}");
        let record = st.record("rejected", name);
        assert_eq!(record["outcome"], "rejected", "{name}: {record}");
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(needle),
            "{name}: the reason should mention {needle:?}: {record}"
        );
        if *name == "bad-json" {
            assert!(record["id"].is_null(), "{record}");
        } else {
            assert_eq!(record["id"], *name, "{record}");
        }
        assert!(st
            .channel
            .join("rejected")
            .join(format!("{name}.json"))
            .is_file());
    }
    // The payload is untouched, the half-written file is still waiting.
    assert_eq!(sha256sum(&blob), blob_hash);
    assert!(st.channel.join("pending.json.tmp").is_file());
    assert!(!st.channel.join("rejected/pending.result.json").exists());

    // The kernel never stopped: same process, answering.
    assert!(alive(pid), "the kernel kept running");
    assert!(
        st.last_line("batos steward restarted ").is_none(),
        "no restart: {:?}",
        st.stdout()
    );
    st.dealer().ping();
    let m = st.scrape();
    assert_eq!(
        m.count("batos_steward_upgrades_total", &[("outcome", "rejected")]),
        cases.len() as f64 + 1.0
    );
    assert_eq!(
        m.count("batos_steward_upgrades_total", &[("outcome", "applied")]),
        0.0
    );
    st.stop_ok();
}

#[test]
fn a_failed_upgrade_rolls_back_to_the_previous_binary() {
    let st = Steward::start(StewardOpts::default());
    let c = st.dealer();
    let o = c.create(&[("kept", Value::Boolean(true))]);
    drop(c);
    let original = sha256sum(&st.binary);
    let broken = st.channel.join("payload").join("broken-kernel");
    write_script(
        &broken,
        "#!/bin/sh\necho 'broken kernel: exiting' >&2\nexit 1\n",
    );
    let hash = sha256sum(&broken);

    st.submit_json(
        "broken-1",
        replace_binary("broken-1", "payload/broken-kernel", &hash),
    );
    let lines = st.wait_upgrades(&["broken-1.json"]);
    assert_eq!(value_of(&lines["broken-1.json"], "outcome"), "rolled_back");

    let record = st.record("processed", "broken-1");
    assert_eq!(record["outcome"], "rolled_back", "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not come up") && reason.contains("restored the previous binary"),
        "{record}"
    );
    assert_eq!(
        sha256sum(&st.binary),
        original,
        "the previous binary is back"
    );
    let restarted = st
        .last_line("batos steward restarted ")
        .expect("a restarted line");
    assert_eq!(value_of(&restarted, "cause"), "rollback", "{restarted}");
    assert!(st.log_tail().contains("broken kernel: exiting"));

    let c = st.dealer();
    c.ping();
    assert_same(
        &c.get(o, "kept"),
        &Value::Boolean(true),
        "the image survives a rollback",
    );
    let m = st.scrape();
    assert_eq!(
        m.count(
            "batos_steward_upgrades_total",
            &[("outcome", "rolled_back")]
        ),
        1.0
    );
    st.stop_ok();
}

/// What a client writing through an upgrade saw.
struct WriteLog {
    acked: Vec<u64>,
    longest_gap: Duration,
    reconnects: usize,
}

/// Writes `w0, w1, ...` on `oid`, one at a time, recording acknowledged
/// writes; a reply that does not come within 2 s means the kernel is
/// restarting: reconnect and go on. Says when 50 writes are acknowledged,
/// and stops 50 acknowledgements after `upgraded` is set.
fn write_through(
    endpoint: &str,
    oid: u64,
    warm: mpsc::Sender<()>,
    upgraded: &AtomicBool,
) -> WriteLog {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut client = Client::connect(endpoint, Kind::Dealer);
    let mut log = WriteLog {
        acked: Vec::new(),
        longest_gap: Duration::ZERO,
        reconnects: 0,
    };
    let mut warm = Some(warm);
    let mut after_upgrade = 0;
    let mut last_ack = Instant::now();
    for i in 0u64.. {
        assert!(
            Instant::now() < deadline,
            "the writer ran for 240 s ({} writes acknowledged)",
            log.acked.len()
        );
        let id = client.fresh_id();
        client.send_request(
            "set_slot",
            &id,
            &[
                ("oid", Value::from(oid)),
                ("slot", s(&format!("w{i}"))),
                ("value", Value::from(i)),
            ],
        );
        match client.try_recv_reply(Duration::from_secs(2)) {
            Some(reply) if reply.id.as_ref().is_some_and(|got| same(got, &id)) => {
                if reply.is_ok() {
                    log.acked.push(i);
                    log.longest_gap = log.longest_gap.max(last_ack.elapsed());
                    last_ack = Instant::now();
                    if log.acked.len() == 50 {
                        if let Some(tx) = warm.take() {
                            let _ = tx.send(());
                        }
                    }
                    if upgraded.load(Ordering::SeqCst) {
                        after_upgrade += 1;
                        if after_upgrade >= 50 {
                            return log;
                        }
                    }
                }
                // An error reply (the kernel is stopping): not acknowledged.
            }
            _ => {
                // No reply (or a stray one): start over on a fresh socket.
                client = Client::connect(endpoint, Kind::Dealer);
                log.reconnects += 1;
            }
        }
    }
    log
}

#[test]
fn an_upgrade_under_write_load_loses_no_acknowledged_write() {
    let st = Steward::start(StewardOpts::default());
    let o = st.dealer().create(&[]);
    let payload = st.channel.join("payload").join("batos-new");
    link_or_copy(&batos_bin(), &payload);
    let hash = sha256sum(&payload);

    let upgraded = Arc::new(AtomicBool::new(false));
    let (warm_tx, warm_rx) = mpsc::channel();
    let writer = {
        let endpoint = st.endpoint.clone();
        let upgraded = Arc::clone(&upgraded);
        thread::spawn(move || write_through(&endpoint, o, warm_tx, &upgraded))
    };
    warm_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer got 50 acknowledgements before the upgrade");

    st.submit_json(
        "live-1",
        replace_binary("live-1", "payload/batos-new", &hash),
    );
    let lines = st.wait_upgrades(&["live-1.json"]);
    assert_eq!(value_of(&lines["live-1.json"], "outcome"), "applied");
    upgraded.store(true, Ordering::SeqCst);
    let log = writer.join().expect("the writer thread");

    let c = st.dealer();
    c.ping();
    let slots = c.slots(o);
    for i in &log.acked {
        let got = field(&slots, &format!("w{i}")).unwrap_or_else(|| {
            panic!(
                "acknowledged write w{i} was lost ({} acknowledged)",
                log.acked.len()
            )
        });
        assert_same(got, &Value::from(*i), &format!("w{i}"));
    }
    assert!(
        log.acked.len() >= 100,
        "{} writes acknowledged",
        log.acked.len()
    );
    assert!(
        log.longest_gap < Duration::from_secs(60),
        "clients got answers again within {:?} ({} reconnects)",
        log.longest_gap,
        log.reconnects
    );
    st.stop_ok();
}

#[test]
fn sigterm_stops_the_steward_and_the_kernel_cleanly() {
    let st = Steward::start(StewardOpts::default());
    let c = st.dealer();
    let o = c.create(&[("kept", Value::Boolean(true))]);
    drop(c);
    let kernel = st.kernel_pid;
    st.stop_ok();
    assert!(!alive(kernel), "the kernel exited with the steward");
    let log = st.log_tail();
    assert!(log.contains("kernel stopped cleanly"), "{log}");

    // The image is intact for a plain kernel on the same data directory.
    let k = Kernel::start_on(st.root(), Options::default());
    assert_same(
        &k.dealer().get(o, "kept"),
        &Value::Boolean(true),
        "kept across the steward's shutdown",
    );
    k.stop();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whoever can write the channel folder can ask for upgrades: a folder
/// others may write to stops the steward before it starts anything.
#[test]
fn an_upgrade_channel_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    std::fs::create_dir(&channel).unwrap();
    set_mode(&channel, 0o777);
    let mut cmd = Command::new(batos_bin());
    cmd.arg("steward")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--upgrade-channel")
        .arg(&channel)
        .env_remove("BATOS_CONFIG")
        .stdin(Stdio::null());
    die_with_test(&mut cmd);
    let out = cmd.output().expect("run batos steward");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("chmod go-w"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "no kernel was started");
}

/// The steward's metrics have no authentication: a non-loopback address
/// is refused before any kernel starts, naming the flag that allows it.
#[test]
fn a_non_loopback_steward_metrics_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(batos_bin());
    cmd.arg("steward")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--upgrade-channel")
        .arg(dir.path().join("channel"))
        .args(["--steward-metrics", "0.0.0.0:0"])
        .env_remove("BATOS_CONFIG")
        .stdin(Stdio::null());
    die_with_test(&mut cmd);
    let out = cmd.output().expect("run batos steward");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--steward-metrics-allow-remote"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("ready"), "{stdout}");
}

/// The shell example of docs/steward.md, run as written beside a channel,
/// submits an upgrade the steward applies.
#[test]
fn the_documented_shell_submission_is_applied() {
    let st = Steward::start(StewardOpts::default());
    let lines = crate::docs::indented_block(
        &crate::docs::repo_file("docs/steward.md"),
        "cp batos-v2 upgrade_channel/payload/batos-v2",
    );
    let work = tempfile::tempdir().expect("temp dir");
    link_or_copy(&batos_bin(), &work.path().join("batos-v2"));
    std::os::unix::fs::symlink(&st.channel, work.path().join("upgrade_channel"))
        .expect("link the channel");
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let out = Command::new("timeout")
        .args(["60", "bash", "-c", &script])
        .current_dir(work.path())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let upgrades = st.wait_upgrades(&["v2.json"]);
    assert_eq!(value_of(&upgrades["v2.json"], "outcome"), "applied");
    assert_eq!(
        sha256sum(&st.binary),
        sha256sum(&work.path().join("batos-v2"))
    );
    st.stop_ok();
}
