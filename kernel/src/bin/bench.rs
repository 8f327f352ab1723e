//! `batos-bench`: the Synaptic Bridge benchmark, driving `batos` kernels over ZeroMQ as an outside client would.
//!
//! Every scenario starts its own `batos run` on a fresh temporary data
//! directory, talks to it only through the public protocol
//! (`docs/protocol.md`: MessagePack maps over a DEALER socket), and
//! stops it with SIGTERM. Redis (`redis-server` + `redis-benchmark -t hset`,
//! AOF `everysec` / `always`) is measured in the same run as the reference.
//! The report goes to stdout as Markdown for `docs/benchmarks.md`; progress
//! goes to stderr.
//!
//! Run (builds the kernel too, so the bench never measures a stale `batos`):
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/batos/target
//! cargo build --release -p batos-kernel --bins && cargo run --release -p batos-kernel --bin batos-bench
//! ```
//!
//! The binary is bounded: every receive has a timeout, every measurement
//! loop stops by time or count, every child process is stopped (SIGTERM,
//! then SIGKILL) and dies with the bench (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Parser;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rmpv::Value;

/// Objects a `set_slot` / `get_slot` / `send` load is spread over.
const SPREAD: usize = 100;
/// Requests in flight while building an image in bulk.
const BULK_IN_FLIGHT: usize = 256;
/// How long a freshly started kernel may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a kernel (or Redis) may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the reopened image may take to answer its first `ping`.
const FIRST_PING_TIMEOUT: Duration = Duration::from_secs(300);
/// The data slot value the delegation base holds.
const DELEGATED_VALUE: i64 = 42;

#[derive(Parser, Debug)]
#[command(
    name = "batos-bench",
    version,
    about = "Benchmark the BAT OS kernel over the Synaptic Bridge, beside Redis measured in the same run",
    long_about = "Benchmark the BAT OS kernel over the Synaptic Bridge, beside Redis measured in the same run.\n\n\
                  Prints a Markdown report on stdout (paste it into docs/benchmarks.md) and progress on stderr.\n\
                  Exit status: 0 when every scenario ran without errors, 1 otherwise, 2 with --check-targets when a target is missed."
)]
struct Args {
    /// The `batos` kernel binary [default: `batos` next to this binary].
    #[arg(long, value_name = "PATH")]
    batos: Option<PathBuf>,
    /// Measured time per scenario, in milliseconds (a warm-up of a tenth of it, at least 100 ms, comes first).
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    duration_ms: u64,
    /// Objects in the image of the image scenario (time to first `ping`, RSS).
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    image_objects: u64,
    /// Distinct objects touched (one `send` each) after opening the image.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    touch_objects: u64,
    /// Do not measure Redis.
    #[arg(long)]
    skip_redis: bool,
    /// Do not build and reopen the large image.
    #[arg(long)]
    skip_image: bool,
    /// Run only this scenario or group (see --list).
    #[arg(long, value_name = "NAME")]
    only: Option<String>,
    /// List scenario and group names, then exit.
    #[arg(long)]
    list: bool,
    /// The Redis server binary (name looked up on PATH, or a path).
    #[arg(long, default_value = "redis-server", value_name = "PATH")]
    redis_server: PathBuf,
    /// The Redis benchmark binary (name looked up on PATH, or a path).
    #[arg(long, default_value = "redis-benchmark", value_name = "PATH")]
    redis_benchmark: PathBuf,
    /// Seconds to wait for any single reply before a scenario fails.
    #[arg(long, default_value_t = 30, value_name = "S")]
    reply_timeout_s: u64,
    /// `RUST_LOG` given to the kernels (logging every request would skew the figures).
    #[arg(long, default_value = "warn", value_name = "FILTER")]
    kernel_rust_log: String,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep the temporary data directories and logs instead of removing them.
    #[arg(long)]
    keep_temp: bool,
    /// Exit with status 2 when a target is not met.
    #[arg(long)]
    check_targets: bool,
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    Buffered,
    Sync,
}

impl Durability {
    fn flag(self) -> &'static str {
        match self {
            Durability::Buffered => "buffered",
            Durability::Sync => "sync",
        }
    }

    /// The Redis AOF policy that matches this durability.
    fn redis_fsync(self) -> &'static str {
        match self {
            Durability::Buffered => "everysec",
            Durability::Sync => "always",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// A bare ZeroMQ ROUTER on one thread of this process answering each
    /// request with an empty ok: the floor of any ZeroMQ server, no kernel.
    ZmqFloor,
    /// `ping`: the bridge alone (ZeroMQ, decode, encode), no object.
    Ping,
    SetSlot(Durability),
    GetSlot,
    Send {
        depth: usize,
    },
    CreateObject,
    /// `send increment`: a WASM counter method inherited from a shared parent.
    Counter,
}

impl Op {
    fn durability(self) -> Durability {
        match self {
            Op::SetSlot(d) => d,
            _ => Durability::Buffered,
        }
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    name: String,
    group: &'static str,
    label: String,
    op: Op,
    in_flight: usize,
}

/// The counter method of docs/method-abi.md.
const COUNTER_WAT: &str = r#"(module
  (import "uvm" "slot_i64" (func $slot_i64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (local $n i64)
    (if (i32.eqz (call $slot_i64 (i32.const 0) (i32.const 5) (i32.const 16)))
      (then (local.set $n (i64.load (i32.const 16)))))
    (local.set $n (i64.add (local.get $n) (i64.const 1)))
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (local.get $n)))
    (call $return_i64 (local.get $n))))"#;

fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("zmq_floor_{k}"),
            group: "ping",
            label: format!("bare ZeroMQ ROUTER (no kernel), {k} in flight"),
            op: Op::ZmqFloor,
            in_flight: k,
        });
        out.push(Scenario {
            name: format!("ping_{k}"),
            group: "ping",
            label: format!("`ping` (the bridge alone), {k} in flight"),
            op: Op::Ping,
            in_flight: k,
        });
    }
    for d in [Durability::Buffered, Durability::Sync] {
        for k in [1, 64] {
            out.push(Scenario {
                name: format!("set_slot_{}_{k}", d.flag()),
                group: "set_slot",
                label: format!("`set_slot` {}, {k} in flight", d.flag()),
                op: Op::SetSlot(d),
                in_flight: k,
            });
        }
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("get_slot_{k}"),
            group: "get_slot",
            label: format!("`get_slot`, {k} in flight"),
            op: Op::GetSlot,
            in_flight: k,
        });
    }
    for depth in [1, 4, 16] {
        for k in [1, 64] {
            out.push(Scenario {
                name: format!("send_depth_{depth}_{k}"),
                group: "send",
                label: format!("`send` data slot, delegation depth {depth}, {k} in flight"),
                op: Op::Send { depth },
                in_flight: k,
            });
        }
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("method_counter_{k}"),
            group: "method",
            label: format!("`send` of a WASM counter method (buffered), {k} in flight"),
            op: Op::Counter,
            in_flight: k,
        });
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("create_object_{k}"),
            group: "create_object",
            label: format!("`create_object`, {k} in flight"),
            op: Op::CreateObject,
            in_flight: k,
        });
    }
    out
}

/// What a row is held to.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// ops/s at least this fraction of Redis's in the same run.
    RedisRatio(f64),
    /// p50 latency at most this many microseconds.
    P50AtMostUs(f64),
    /// ops/s and p50 within this fraction of the depth-1 row with the same in-flight count.
    WithinOfDepth1(f64),
}

fn target_for(sc: &Scenario) -> Option<Target> {
    match (sc.op, sc.in_flight) {
        (Op::SetSlot(Durability::Buffered), 64) => Some(Target::RedisRatio(0.5)),
        (Op::SetSlot(Durability::Sync), 64) => Some(Target::RedisRatio(0.8)),
        (Op::SetSlot(Durability::Buffered), 1) => Some(Target::P50AtMostUs(100.0)),
        (Op::Send { depth: 16 }, _) => Some(Target::WithinOfDepth1(0.2)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Make a child die when the bench dies, so no kernel or Redis is left behind.
fn die_with_parent(cmd: &mut Command) {
    let hook = || -> std::io::Result<()> {
        // SAFETY: prctl(2) with PR_SET_PDEATHSIG only changes this (child)
        // process's own attributes and is async-signal-safe.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: the hook runs between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// A child process that is always reaped: stopped with SIGTERM by `stop`, or
/// killed when dropped.
struct Proc {
    child: Child,
    what: String,
    finished: bool,
}

struct Stopped {
    status: ExitStatus,
    /// The process had already exited before it was asked to stop.
    already_exited: bool,
    took: Duration,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self, timeout: Duration) -> Result<Stopped> {
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
fn log_tail(path: &Path, n: usize) -> String {
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

struct Ready {
    at: Instant,
    endpoint: String,
}

/// One `batos run` process.
struct Kernel {
    proc_: Proc,
    log: PathBuf,
    spawned_at: Instant,
    ready_rx: mpsc::Receiver<(Instant, String)>,
    ready: Option<Ready>,
}

impl Kernel {
    fn start(
        batos: &Path,
        data: &Path,
        log: &Path,
        durability: Durability,
        endpoint: &str,
        rust_log: &str,
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
        let (tx, ready_rx) = mpsc::channel();
        // Reads stdout to its end so the kernel never blocks on a full pipe;
        // forwards the ready line. Ends when the kernel closes stdout.
        let _reader = thread::Builder::new()
            .name("kernel-stdout".to_string())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.trim_start().starts_with("batos ready") {
                        let _ = tx.send((Instant::now(), line));
                    }
                }
            })
            .context("spawning the stdout reader")?;
        Ok(Kernel {
            proc_,
            log: log.to_path_buf(),
            spawned_at,
            ready_rx,
            ready: None,
        })
    }

    fn pid(&self) -> u32 {
        self.proc_.pid()
    }

    /// Wait for the `batos ready endpoint=...` line.
    fn wait_ready(&mut self, timeout: Duration) -> Result<&Ready> {
        if self.ready.is_none() {
            let deadline = Instant::now() + timeout;
            loop {
                match self.ready_rx.recv_timeout(Duration::from_millis(20)) {
                    Ok((at, line)) => {
                        self.ready = Some(parse_ready(&line, at)?);
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Some(status) = self.proc_.exited() {
                            bail!(
                                "the kernel exited ({status}) before it was ready; log tail:\n{}",
                                log_tail(&self.log, 30)
                            );
                        }
                        if Instant::now() >= deadline {
                            bail!("the kernel printed no ready line within {timeout:?}; log tail:\n{}", log_tail(&self.log, 30));
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        thread::sleep(Duration::from_millis(200));
                        let status = self
                            .proc_
                            .exited()
                            .map_or_else(|| "still running".to_string(), |s| s.to_string());
                        bail!(
                            "the kernel closed stdout without a `batos ready` line ({status}); log tail:\n{}",
                            log_tail(&self.log, 30)
                        );
                    }
                }
            }
        }
        Ok(self.ready.as_ref().expect("set above"))
    }

    fn stop(&mut self) -> Result<Stopped> {
        self.proc_.stop(STOP_TIMEOUT)
    }
}

/// Parse `batos ready endpoint=tcp://127.0.0.1:PORT events=... metrics=...`.
fn parse_ready(line: &str, at: Instant) -> Result<Ready> {
    let endpoint = line
        .split_whitespace()
        .filter_map(|tok| tok.split_once('='))
        .find(|(k, _)| *k == "endpoint")
        .map(|(_, v)| v.to_string())
        .with_context(|| format!("ready line without endpoint=: {line:?}"))?;
    Ok(Ready { at, endpoint })
}

/// Notes to attach to a row about how the kernel stopped.
fn stop_notes(stopped: Result<Stopped>) -> Vec<String> {
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

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Find an executable: a path is taken as is, a bare name is looked up on PATH.
fn find_exe(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn spawn_reader<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run a command to completion, killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<Output> {
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

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A directory under `std::env::temp_dir()`, removed on drop unless kept.
struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl TempRoot {
    fn new(keep: bool) -> Result<TempRoot> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("batos-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempRoot { path, keep })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "batos-bench: kept temporary files in {}",
                self.path.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("batos-bench: could not remove {}: {e}", self.path.display());
        }
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The bridge client
// ---------------------------------------------------------------------------

/// One request: the command and its own fields (`v` and `id` are added).
struct Req {
    command: &'static str,
    fields: Vec<(&'static str, Value)>,
}

impl Req {
    fn new(command: &'static str, fields: Vec<(&'static str, Value)>) -> Req {
        Req { command, fields }
    }
}

fn encode_request(id: u64, req: Req) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(3 + req.fields.len());
    entries.push((Value::from("v"), Value::from(1)));
    entries.push((Value::from("id"), Value::from(id)));
    entries.push((Value::from("command"), Value::from(req.command)));
    for (k, v) in req.fields {
        entries.push((Value::from(k), v));
    }
    let mut buf = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut buf, &Value::Map(entries))
        .map_err(|e| anyhow!("encoding a request: {e}"))?;
    Ok(buf)
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn oid_ref(oid: u64) -> Value {
    map(vec![("$ref", Value::from(oid))])
}

/// A decoded reply: its `id` and `result` or error text.
struct Reply {
    id: Option<u64>,
    result: Result<Value, String>,
}

impl Reply {
    fn decode(body: &[u8]) -> Result<Reply> {
        let mut rd = body;
        let value = rmpv::decode::read_value(&mut rd).context("a reply that is not MessagePack")?;
        let entries = match value {
            Value::Map(entries) => entries,
            other => bail!("a reply that is not a map: {other}"),
        };
        let (mut id, mut v, mut status, mut result, mut error) =
            (None, None, None, Value::Nil, Value::Nil);
        for (k, val) in entries {
            match k.as_str() {
                Some("id") => id = val.as_u64(),
                Some("v") => v = val.as_i64(),
                Some("status") => status = val.as_str().map(str::to_string),
                Some("result") => result = val,
                Some("error") => error = val,
                _ => {}
            }
        }
        let result = match (v, status.as_deref()) {
            (Some(1), Some("ok")) => Ok(result),
            (Some(1), Some("error")) => Err(format!(
                "{}: {}",
                error["code"].as_str().unwrap_or("(no code)"),
                error["message"].as_str().unwrap_or("(no message)")
            )),
            (v, status) => Err(format!(
                "malformed reply envelope (v={v:?}, status={status:?})"
            )),
        };
        Ok(Reply { id, result })
    }
}

/// A DEALER connection to the kernel's command socket; requests carry
/// increasing integer ids so several can be in flight.
struct Client {
    sock: zmq::Socket,
    next_id: u64,
    timeout: Duration,
}

impl Client {
    fn connect(ctx: &zmq::Context, endpoint: &str, timeout: Duration) -> Result<Client> {
        let sock = ctx
            .socket(zmq::DEALER)
            .context("creating a DEALER socket")?;
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        sock.set_linger(0)?;
        sock.set_rcvtimeo(ms)?;
        sock.set_sndtimeo(ms)?;
        sock.connect(endpoint)
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Client {
            sock,
            next_id: 1,
            timeout,
        })
    }

    fn send(&mut self, req: Req) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let command = req.command;
        let body = encode_request(id, req)?;
        self.sock
            .send(body, 0)
            .with_context(|| format!("sending `{command}`"))?;
        Ok(id)
    }

    /// The next reply, or `None` when none came within the timeout.
    fn recv(&mut self) -> Result<Option<Reply>> {
        match self.sock.recv_multipart(0) {
            Ok(frames) => {
                let body = frames.last().context("an empty reply message")?;
                Ok(Some(Reply::decode(body)?))
            }
            Err(zmq::Error::EAGAIN) => Ok(None),
            Err(e) => Err(anyhow!(e).context("receiving a reply")),
        }
    }

    /// One request, waiting for its reply; an error reply is an `Err`.
    fn call(&mut self, command: &'static str, fields: Vec<(&'static str, Value)>) -> Result<Value> {
        let id = self.send(Req::new(command, fields))?;
        loop {
            match self.recv()? {
                None => bail!("no reply to `{command}` within {:?}", self.timeout),
                Some(r) if r.id == Some(id) => {
                    return r.result.map_err(|e| anyhow!("`{command}` failed: {e}"))
                }
                Some(_) => {} // a late reply to an abandoned request
            }
        }
    }
}

fn oid_of(v: &Value) -> Result<u64> {
    v["oid"]
        .as_u64()
        .with_context(|| format!("a result without an integer `oid`: {v}"))
}

// ---------------------------------------------------------------------------
// Load driving and statistics
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Measured {
    ops: u64,
    elapsed: Duration,
    /// Per-request latency in nanoseconds, sorted by `finish`.
    lat_ns: Vec<u64>,
    errors: u64,
    error_samples: Vec<String>,
    notes: Vec<String>,
}

impl Measured {
    fn error(&mut self, e: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(e.into());
        }
    }

    fn absorb_errors(&mut self, other: Measured) {
        for e in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
        self.errors += other.errors;
    }

    fn ops_per_s(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.ops as f64 / self.elapsed.as_secs_f64()
        }
    }

    fn pct_ns(&self, p: f64) -> Option<f64> {
        let n = self.lat_ns.len();
        if n == 0 {
            return None;
        }
        // Nearest rank.
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        Some(self.lat_ns[rank - 1] as f64)
    }
}

#[derive(Clone, Copy)]
enum Until {
    Elapsed(Duration),
    Ops(u64),
}

/// Keep `in_flight` requests outstanding until `until`, then drain. Every
/// reply is matched to its request by id; its latency is recorded and its
/// result passed to `check` (with the request's sequence number).
#[allow(clippy::too_many_arguments)]
fn drive<M, C>(
    client: &mut Client,
    in_flight: usize,
    until: Until,
    progress: Option<&str>,
    seq: &mut u64,
    make: &mut M,
    check: &mut C,
) -> Result<Measured>
where
    M: FnMut(u64) -> Req,
    C: FnMut(u64, Value) -> Result<(), String>,
{
    let in_flight = in_flight.max(1);
    let mut pending: HashMap<u64, (u64, Instant)> = HashMap::with_capacity(in_flight * 2);
    let mut m = Measured::default();
    if let Until::Ops(n) = until {
        m.lat_ns.reserve(usize::try_from(n).unwrap_or(0));
    }
    let start = Instant::now();
    let mut last_done = start;
    let mut sent: u64 = 0;
    let progress_step = match until {
        Until::Ops(n) => (n / 10).max(1),
        Until::Elapsed(_) => u64::MAX,
    };
    let mut next_progress = progress_step;
    loop {
        while pending.len() < in_flight {
            let more = match until {
                Until::Elapsed(d) => start.elapsed() < d,
                Until::Ops(n) => sent < n,
            };
            if !more {
                break;
            }
            let s = *seq;
            *seq += 1;
            sent += 1;
            let req = make(s);
            let t = Instant::now();
            let id = client.send(req)?;
            pending.insert(id, (s, t));
        }
        if pending.is_empty() {
            break;
        }
        let Some(reply) = client.recv()? else {
            bail!(
                "no reply within {:?} ({} requests outstanding)",
                client.timeout,
                pending.len()
            );
        };
        let now = Instant::now();
        let Some((s, t)) = reply.id.and_then(|id| pending.remove(&id)) else {
            m.error(format!(
                "a reply whose id matches no outstanding request ({:?})",
                reply.id
            ));
            continue;
        };
        m.ops += 1;
        m.lat_ns
            .push(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
        last_done = now;
        match reply.result {
            Ok(v) => {
                if let Err(e) = check(s, v) {
                    m.error(e);
                }
            }
            Err(e) => m.error(e),
        }
        if let (Some(label), Until::Ops(n)) = (progress, until) {
            if m.ops >= next_progress {
                next_progress += progress_step;
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "  {label}: {}/{} ({}/s)",
                    thousands(m.ops),
                    thousands(n),
                    fmt_rate(m.ops as f64 / secs)
                );
            }
        }
    }
    m.elapsed = last_done - start;
    m.lat_ns.sort_unstable();
    Ok(m)
}

/// A warm-up phase (not recorded, errors kept), then the measured phase.
fn warm_then_measure<M, C>(
    client: &mut Client,
    in_flight: usize,
    duration: Duration,
    make: &mut M,
    check: &mut C,
) -> Result<Measured>
where
    M: FnMut(u64) -> Req,
    C: FnMut(u64, Value) -> Result<(), String>,
{
    let warmup = (duration / 10).max(Duration::from_millis(100));
    let mut seq = 0;
    let warm = drive(
        client,
        in_flight,
        Until::Elapsed(warmup),
        None,
        &mut seq,
        make,
        check,
    )?;
    let mut m = drive(
        client,
        in_flight,
        Until::Elapsed(duration),
        None,
        &mut seq,
        make,
        check,
    )?;
    m.absorb_errors(warm);
    Ok(m)
}

/// Create `n` objects, `in_flight` at a time; returns their oids in order.
fn create_objects<F>(
    client: &mut Client,
    n: u64,
    in_flight: usize,
    mut slots: F,
    progress: Option<&str>,
) -> Result<(Vec<u64>, Measured)>
where
    F: FnMut(u64) -> Value,
{
    let mut oids = vec![0u64; usize::try_from(n).context("object count")?];
    let mut make = |s: u64| Req::new("create_object", vec![("slots", slots(s))]);
    let mut check = |s: u64, v: Value| -> Result<(), String> {
        match v["oid"].as_u64() {
            Some(oid) => {
                oids[s as usize] = oid;
                Ok(())
            }
            None => Err(format!("create_object result without an integer oid: {v}")),
        }
    };
    let mut seq = 0;
    let m = drive(
        client,
        in_flight,
        Until::Ops(n),
        progress,
        &mut seq,
        &mut make,
        &mut check,
    )?;
    if m.errors > 0 {
        bail!(
            "creating {n} objects: {} errors, e.g. {}",
            m.errors,
            m.error_samples.join("; ")
        );
    }
    Ok((oids, m))
}

/// A deterministic, well-mixed pick of one of `n` objects for request `s`
/// (splitmix64), so the checker can recompute what the request targeted.
fn pick(s: u64, n: usize) -> usize {
    let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

// ---------------------------------------------------------------------------
// Bridge scenarios
// ---------------------------------------------------------------------------

struct Ctx {
    batos: PathBuf,
    zmq: zmq::Context,
    tmp: TempRoot,
    dirs: u32,
    keep_temp: bool,
    duration: Duration,
    reply_timeout: Duration,
    rust_log: String,
    kernel_version: Option<String>,
}

impl Ctx {
    /// A fresh directory for one scenario.
    fn scenario_dir(&mut self, name: &str) -> Result<PathBuf> {
        self.dirs += 1;
        let dir = self.tmp.path.join(format!("{:02}-{name}", self.dirs));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn finish_dir(&self, dir: &Path) {
        if !self.keep_temp {
            let _ = fs::remove_dir_all(dir);
        }
    }

    fn start_kernel(&self, dir: &Path, durability: Durability, endpoint: &str) -> Result<Kernel> {
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        Kernel::start(
            &self.batos,
            &data,
            &dir.join("kernel.log"),
            durability,
            endpoint,
            &self.rust_log,
        )
    }

    fn note_version(&mut self, client: &mut Client) -> Result<()> {
        let pong = client.call("ping", vec![])?;
        if self.kernel_version.is_none() {
            self.kernel_version = pong["version"].as_str().map(str::to_string);
        }
        Ok(())
    }
}

fn run_bridge_scenario(ctx: &mut Ctx, sc: &Scenario) -> Result<Measured> {
    let dir = ctx.scenario_dir(&sc.name)?;
    let out = bridge_scenario_in(ctx, sc, &dir);
    if let Err(e) = &out {
        if !format!("{e:#}").contains("log tail") {
            eprintln!(
                "  kernel log tail ({}):\n{}",
                sc.name,
                log_tail(&dir.join("kernel.log"), 20)
            );
        }
    }
    ctx.finish_dir(&dir);
    out
}

/// Answers every request on a ROUTER socket with `{v: 1, id, status: "ok",
/// result: {}}` until `stop`; a thread with its own ZeroMQ context (its own
/// I/O thread), as a server process would have.
fn zmq_floor_server(stop: Arc<AtomicBool>) -> Result<(String, thread::JoinHandle<()>)> {
    let zctx = zmq::Context::new();
    let sock = zctx.socket(zmq::ROUTER)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(50)?;
    sock.bind("tcp://127.0.0.1:*")?;
    let endpoint = sock
        .get_last_endpoint()?
        .map_err(|_| anyhow!("the endpoint is not UTF-8"))?;
    let handle = thread::spawn(move || {
        let _zctx = zctx;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut frames) = sock.recv_multipart(0) else {
                continue;
            };
            let Some(body) = frames.pop() else { continue };
            let id = rmpv::decode::read_value(&mut body.as_slice())
                .ok()
                .and_then(|v| v["id"].as_u64());
            let reply = map(vec![
                ("v", Value::from(1)),
                ("id", id.map_or(Value::Nil, Value::from)),
                ("status", Value::from("ok")),
                ("result", map(vec![])),
            ]);
            let mut out = Vec::with_capacity(32);
            if rmpv::encode::write_value(&mut out, &reply).is_ok() {
                frames.push(out);
                let _ = sock.send_multipart(frames, 0);
            }
        }
    });
    Ok((endpoint, handle))
}

fn bridge_scenario_in(ctx: &mut Ctx, sc: &Scenario, dir: &Path) -> Result<Measured> {
    if sc.op == Op::ZmqFloor {
        let stop = Arc::new(AtomicBool::new(false));
        let (endpoint, server) = zmq_floor_server(stop.clone())?;
        let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout)?;
        let measured = measure_op(&mut client, sc, ctx.duration);
        stop.store(true, Ordering::Relaxed);
        let _ = server.join();
        return measured;
    }
    let mut kernel = ctx.start_kernel(dir, sc.op.durability(), "tcp://127.0.0.1:*")?;
    let endpoint = kernel.wait_ready(READY_TIMEOUT)?.endpoint.clone();
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout)?;
    ctx.note_version(&mut client)?;
    let measured = measure_op(&mut client, sc, ctx.duration);
    drop(client);
    let notes = stop_notes(kernel.stop());
    let mut m = measured?;
    m.notes.extend(notes);
    Ok(m)
}

fn measure_op(client: &mut Client, sc: &Scenario, duration: Duration) -> Result<Measured> {
    let k = sc.in_flight;
    match sc.op {
        Op::SetSlot(_) => {
            let (oids, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("x", Value::from(0))]),
                None,
            )?;
            // The last value sent to each object: it must be what the object
            // holds at the end (same-object order is kept, all were acked).
            let mut last: Vec<u64> = vec![0; SPREAD];
            let mut make = |s: u64| {
                let i = pick(s, SPREAD);
                last[i] = s;
                Req::new(
                    "set_slot",
                    vec![
                        ("oid", Value::from(oids[i])),
                        ("slot", Value::from("x")),
                        ("value", Value::from(s)),
                    ],
                )
            };
            let mut check = |_s: u64, _v: Value| Ok(());
            let mut m = warm_then_measure(client, k, duration, &mut make, &mut check)?;
            for (i, &oid) in oids.iter().enumerate() {
                let got = client.call(
                    "get_slot",
                    vec![("oid", Value::from(oid)), ("slot", Value::from("x"))],
                )?;
                if got.as_u64() != Some(last[i]) {
                    m.error(format!("object {oid} holds {got} after the run; the last acknowledged set_slot wrote {}", last[i]));
                }
            }
            Ok(m)
        }
        Op::Ping | Op::ZmqFloor => {
            let mut make = |_s: u64| Req::new("ping", vec![]);
            let mut check = |_s: u64, v: Value| match v.as_map() {
                Some(_) => Ok(()),
                None => Err(format!("ping gave {v}, expected a map")),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::GetSlot => {
            let (oids, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |i| map(vec![("x", Value::from(i))]),
                None,
            )?;
            let mut make = |s: u64| {
                Req::new(
                    "get_slot",
                    vec![
                        ("oid", Value::from(oids[pick(s, SPREAD)])),
                        ("slot", Value::from("x")),
                    ],
                )
            };
            let mut check = |s: u64, v: Value| {
                let want = pick(s, SPREAD) as u64;
                if v.as_u64() == Some(want) {
                    Ok(())
                } else {
                    Err(format!("get_slot gave {v}, expected {want}"))
                }
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::Send { depth } => {
            // base (holds x) <- c1 <- ... <- c(depth-1) <- leaf_j, j < SPREAD:
            // every leaf finds x `depth` hops up its parent* chain.
            let base = client.call(
                "create_object",
                vec![("slots", map(vec![("x", Value::from(DELEGATED_VALUE))]))],
            )?;
            let mut top = oid_of(&base)?;
            for _ in 1..depth {
                let r = client.call(
                    "create_object",
                    vec![(
                        "slots",
                        map(vec![("parent*", Value::Array(vec![oid_ref(top)]))]),
                    )],
                )?;
                top = oid_of(&r)?;
            }
            let (leaves, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("parent*", Value::Array(vec![oid_ref(top)]))]),
                None,
            )?;
            let first = client.call(
                "send",
                vec![
                    ("oid", Value::from(leaves[0])),
                    ("selector", Value::from("x")),
                ],
            )?;
            if first["value"].as_i64() != Some(DELEGATED_VALUE) {
                bail!("`send x` to a leaf at depth {depth} gave {first}, expected value {DELEGATED_VALUE}");
            }
            let mut make = |s: u64| {
                Req::new(
                    "send",
                    vec![
                        ("oid", Value::from(leaves[pick(s, SPREAD)])),
                        ("selector", Value::from("x")),
                    ],
                )
            };
            let mut check = |_s: u64, v: Value| {
                if v["value"].as_i64() == Some(DELEGATED_VALUE)
                    && v["generated"].as_bool() == Some(false)
                {
                    Ok(())
                } else {
                    Err(format!("send x gave {v}, expected value {DELEGATED_VALUE} found by delegation, generated false"))
                }
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::Counter => {
            let base = client.call("create_object", vec![])?;
            let base = oid_of(&base)?;
            client.call(
                "create_method",
                vec![
                    ("oid", Value::from(base)),
                    ("selector", Value::from("increment")),
                    ("wat", Value::from(COUNTER_WAT)),
                ],
            )?;
            let (leaves, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("parent*", Value::Array(vec![oid_ref(base)]))]),
                None,
            )?;
            let mut make = |s: u64| {
                Req::new(
                    "send",
                    vec![
                        ("oid", Value::from(leaves[pick(s, SPREAD)])),
                        ("selector", Value::from("increment")),
                    ],
                )
            };
            let mut check = |_s: u64, v: Value| match v["value"].as_i64() {
                Some(n) if n > 0 => Ok(()),
                _ => Err(format!(
                    "send increment gave {v}, expected a positive count"
                )),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::CreateObject => {
            let mut make = |s: u64| {
                Req::new(
                    "create_object",
                    vec![("slots", map(vec![("n", Value::from(s))]))],
                )
            };
            let mut check = |_s: u64, v: Value| match v["oid"].as_u64() {
                Some(_) => Ok(()),
                None => Err(format!("create_object result without an integer oid: {v}")),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
    }
}

// ---------------------------------------------------------------------------
// The large image: time to first ping, RSS
// ---------------------------------------------------------------------------

#[derive(Default)]
struct ImageOutcome {
    objects: u64,
    build: Option<Measured>,
    build_shutdown: Option<Duration>,
    disk_bytes: u64,
    /// `objects` as reported by the first `ping` after reopening.
    ping_objects: Option<u64>,
    first_ping: Option<Duration>,
    ready_line: Option<Duration>,
    rss_open: Option<u64>,
    touched: u64,
    touch: Option<Measured>,
    rss_touched: Option<u64>,
    /// `rss_touched` split: anonymous memory, and file pages (the binary's code).
    rss_touched_anon: Option<u64>,
    rss_touched_file: Option<u64>,
    rss_peak: Option<u64>,
    errors: Vec<String>,
    notes: Vec<String>,
}

/// A `/proc/PID/status` field in bytes (the kernel reports kB).
fn proc_status_bytes(pid: u32, key: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    let kb: u64 = line[key.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unparsable line {line:?}"))?;
    Ok(kb * 1024)
}

fn run_image(ctx: &mut Ctx, objects: u64, touch: u64) -> Result<ImageOutcome> {
    let dir = ctx.scenario_dir("image")?;
    let mut out = ImageOutcome {
        objects,
        ..ImageOutcome::default()
    };
    let r = image_in(ctx, &dir, &mut out, touch);
    if r.as_ref()
        .is_err_and(|e| !format!("{e:#}").contains("log tail"))
    {
        eprintln!(
            "  kernel log tail (image):\n{}",
            log_tail(&dir.join("kernel.log"), 20)
        );
    }
    ctx.finish_dir(&dir);
    r.map(|()| out)
}

fn image_in(ctx: &mut Ctx, dir: &Path, out: &mut ImageOutcome, touch: u64) -> Result<()> {
    let n = out.objects;
    // 1. Build the image in bulk, then stop the kernel cleanly.
    let mut kernel = ctx.start_kernel(dir, Durability::Buffered, "tcp://127.0.0.1:*")?;
    let endpoint = kernel.wait_ready(READY_TIMEOUT)?.endpoint.clone();
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout)?;
    ctx.note_version(&mut client)?;
    eprintln!(
        "  building an image of {} objects ({BULK_IN_FLIGHT} create_object in flight)",
        thousands(n)
    );
    let (oids, build) = create_objects(
        &mut client,
        n,
        BULK_IN_FLIGHT,
        |i| map(vec![("n", Value::from(i))]),
        Some("created"),
    )?;
    out.build = Some(build);
    drop(client);
    let stopped = kernel
        .stop()
        .context("stopping the kernel after the build")?;
    if stopped.already_exited || !stopped.status.success() {
        out.notes
            .push(format!("the build kernel stopped with {}", stopped.status));
    }
    out.build_shutdown = Some(stopped.took);
    drop(kernel);
    out.disk_bytes = dir_size(&dir.join("data"));

    // 2. Reopen on a known port; time spawn -> first answered ping. The DEALER
    // connects at once and retries every millisecond until the kernel binds.
    let port = free_port()?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    eprintln!(
        "  reopening the image ({}) and pinging",
        fmt_mb(out.disk_bytes)
    );
    let mut kernel = ctx.start_kernel(dir, Durability::Buffered, &endpoint)?;
    let t0 = kernel.spawned_at;
    let sock = ctx.zmq.socket(zmq::DEALER)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(2)?;
    sock.set_reconnect_ivl(1)?;
    sock.set_reconnect_ivl_max(0)?;
    sock.connect(&endpoint)?;
    let mut ping_id: u64 = 0;
    let mut last_send: Option<Instant> = None;
    let (first_ping, pong) = loop {
        if t0.elapsed() > FIRST_PING_TIMEOUT {
            bail!("the reopened image answered no ping within {FIRST_PING_TIMEOUT:?}");
        }
        if let Some(status) = kernel.proc_.exited() {
            bail!(
                "the kernel exited ({status}) while opening the image; log tail:\n{}",
                log_tail(&kernel.log, 30)
            );
        }
        if last_send.is_none_or(|t| t.elapsed() >= Duration::from_millis(20)) {
            ping_id += 1;
            sock.send(encode_request(ping_id, Req::new("ping", vec![]))?, 0)?;
            last_send = Some(Instant::now());
        }
        match sock.recv_multipart(0) {
            Ok(frames) => {
                let at = t0.elapsed();
                let Some(body) = frames.last() else { continue };
                let reply = Reply::decode(body)?;
                match reply.result {
                    Ok(v) => break (at, v),
                    // e.g. `overloaded` while loading: keep polling
                    Err(e) => {
                        if out.notes.len() < 5 {
                            out.notes.push(format!(
                                "ping answered `{e}` {} after start, while opening",
                                fmt_secs(at)
                            ));
                        }
                    }
                }
            }
            Err(zmq::Error::EAGAIN) => {}
            Err(e) => return Err(anyhow!(e).context("receiving the first ping")),
        }
    };
    out.first_ping = Some(first_ping);
    out.rss_open = Some(proc_status_bytes(kernel.pid(), "VmRSS:")?);
    drop(sock);
    out.ping_objects = pong["objects"].as_u64();
    match out.ping_objects {
        Some(seen) if seen >= n => {}
        seen => out.errors.push(format!(
            "after reopening, ping reports {seen:?} objects; {n} were created"
        )),
    }
    let ready = kernel.wait_ready(READY_TIMEOUT)?;
    out.ready_line = Some(ready.at.saturating_duration_since(t0));

    // 3. Touch distinct objects (`send` of their own data slot activates each).
    let touch = touch.min(n);
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout)?;
    let mut rng = StdRng::seed_from_u64(0xBA70_5EED);
    let chosen = rand::seq::index::sample(&mut rng, oids.len(), usize::try_from(touch)?).into_vec();
    let mut make = |s: u64| {
        Req::new(
            "send",
            vec![
                ("oid", Value::from(oids[chosen[s as usize]])),
                ("selector", Value::from("n")),
            ],
        )
    };
    let mut check = |s: u64, v: Value| {
        let want = chosen[s as usize] as u64;
        if v["value"].as_u64() == Some(want) {
            Ok(())
        } else {
            Err(format!("send n gave {v}, expected {want}"))
        }
    };
    let mut seq = 0;
    let touched = drive(
        &mut client,
        64,
        Until::Ops(touch),
        None,
        &mut seq,
        &mut make,
        &mut check,
    )?;
    out.touched = touch;
    out.rss_touched = Some(proc_status_bytes(kernel.pid(), "VmRSS:")?);
    out.rss_touched_anon = proc_status_bytes(kernel.pid(), "RssAnon:").ok();
    out.rss_touched_file = proc_status_bytes(kernel.pid(), "RssFile:").ok();
    out.rss_peak = proc_status_bytes(kernel.pid(), "VmHWM:").ok();
    if touched.errors > 0 {
        out.errors
            .extend(touched.error_samples.iter().map(|e| format!("touch: {e}")));
        if touched.errors > touched.error_samples.len() as u64 {
            out.errors
                .push(format!("touch: {} errors in all", touched.errors));
        }
    }
    out.touch = Some(touched);
    drop(client);
    out.notes.extend(stop_notes(kernel.stop()));
    Ok(())
}

// ---------------------------------------------------------------------------
// Redis, the reference
// ---------------------------------------------------------------------------

struct RedisTools {
    server: PathBuf,
    bench: PathBuf,
    version: String,
}

#[derive(Clone, Debug)]
struct RedisRef {
    fsync: &'static str,
    pipeline: usize,
    requests: u64,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

/// Parse `redis-benchmark --csv` (or `-q`) output for the HSET test:
/// requests/s, p50 ms, p99 ms.
fn parse_redis_benchmark(out: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
    let lines: Vec<&str> = out
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut header: Option<Vec<String>> = None;
    for line in &lines {
        let cols: Vec<String> = line
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect();
        let first = cols.first().cloned().unwrap_or_default();
        match first.as_str() {
            "test" => header = Some(cols),
            t if t.eq_ignore_ascii_case("HSET") && cols.len() >= 2 => {
                let rps: f64 = cols[1].parse().ok()?;
                let column = |name: &str| -> Option<f64> {
                    let i = header.as_ref()?.iter().position(|c| c == name)?;
                    cols.get(i)?.parse().ok()
                };
                return Some((rps, column("p50_latency_ms"), column("p99_latency_ms")));
            }
            _ => {}
        }
    }
    // `-q`: "HSET: 123456.78 requests per second, p50=0.103 msec"
    for line in &lines {
        let Some(rest) = line.strip_prefix("HSET:") else {
            continue;
        };
        let Some(i) = rest.find("requests per second") else {
            continue;
        };
        let rps: f64 = rest[..i].trim().parse().ok()?;
        let p50 = rest
            .find("p50=")
            .and_then(|j| rest[j + 4..].split_whitespace().next())
            .and_then(|s| s.parse().ok());
        return Some((rps, p50, None));
    }
    None
}

fn redis_benchmark(
    tools: &RedisTools,
    port: u16,
    n: u64,
    pipeline: usize,
    timeout: Duration,
) -> Result<(f64, Option<f64>, Option<f64>)> {
    let mut cmd = Command::new(&tools.bench);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "hset",
        "-n",
        &n.to_string(),
    ])
    .args([
        "-P",
        &pipeline.to_string(),
        "-c",
        "1",
        "-r",
        &SPREAD.to_string(),
        "--csv",
    ]);
    let out = run_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed ({}): {}",
            out.status,
            out.stderr.trim()
        );
    }
    parse_redis_benchmark(&out.stdout).with_context(|| {
        format!(
            "could not parse redis-benchmark output: {:?} (stderr {:?})",
            out.stdout, out.stderr
        )
    })
}

fn wait_redis(port: u16, server: &mut Proc, log: &Path) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.exited() {
            bail!(
                "redis-server exited ({status}); log tail:\n{}",
                log_tail(log, 20)
            );
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 64];
            if s.write_all(b"PING\r\n").is_ok() {
                if let Ok(k) = s.read(&mut buf) {
                    if buf[..k].starts_with(b"+PONG") {
                        return Ok(());
                    }
                }
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "redis-server did not answer PING within 20 s; log tail:\n{}",
                log_tail(log, 20)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn redis_reference(
    ctx: &mut Ctx,
    tools: &RedisTools,
    fsync: &'static str,
    pipeline: usize,
) -> Result<RedisRef> {
    let dir = ctx.scenario_dir(&format!("redis-{fsync}-p{pipeline}"))?;
    let r = redis_reference_in(tools, &dir, fsync, pipeline, ctx.duration);
    ctx.finish_dir(&dir);
    r
}

fn redis_reference_in(
    tools: &RedisTools,
    dir: &Path,
    fsync: &'static str,
    pipeline: usize,
    duration: Duration,
) -> Result<RedisRef> {
    let port = free_port()?;
    let log = dir.join("redis.log");
    let log_file = File::create(&log)?;
    let mut cmd = Command::new(&tools.server);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
            "--save",
            "",
            "--daemonize",
            "no",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file));
    die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", tools.server.display()))?;
    let mut server = Proc {
        child,
        what: "redis-server".to_string(),
        finished: false,
    };
    wait_redis(port, &mut server, &log)?;
    // Calibrate (also the warm-up), then size the measured run to the duration.
    let calibration = if pipeline > 1 { 10_000 } else { 500 };
    let (cal_rps, _, _) =
        redis_benchmark(tools, port, calibration, pipeline, Duration::from_secs(120))?;
    let n = ((cal_rps * duration.as_secs_f64()).round() as u64).clamp(1_000, 50_000_000);
    let timeout = (duration * 5).max(Duration::from_secs(60));
    let (rps, p50_ms, p99_ms) = redis_benchmark(tools, port, n, pipeline, timeout)?;
    let _ = server.stop(STOP_TIMEOUT);
    Ok(RedisRef {
        fsync,
        pipeline,
        requests: n,
        rps,
        p50_ms,
        p99_ms,
    })
}

fn find_redis(args: &Args) -> Result<RedisTools, String> {
    if args.skip_redis {
        return Err("not measured (--skip-redis)".to_string());
    }
    let Some(server) = find_exe(&args.redis_server) else {
        return Err(format!(
            "not measured ({} not found)",
            args.redis_server.display()
        ));
    };
    let Some(bench) = find_exe(&args.redis_benchmark) else {
        return Err(format!(
            "not measured ({} not found)",
            args.redis_benchmark.display()
        ));
    };
    let mut cmd = Command::new(&server);
    cmd.arg("--version");
    let version = match run_with_timeout(cmd, Duration::from_secs(10)) {
        Ok(o) => o.stdout.trim().to_string(),
        Err(e) => {
            return Err(format!(
                "not measured ({} --version failed: {e:#})",
                server.display()
            ))
        }
    };
    Ok(RedisTools {
        server,
        bench,
        version,
    })
}

// ---------------------------------------------------------------------------
// Machine description
// ---------------------------------------------------------------------------

fn first_field(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn os_pretty_name() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The filesystem holding `path`: mount point, type and device (longest mount-point prefix).
fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            let mnt = mnt.replace("\\040", " ");
            path.starts_with(&mnt)
                .then(|| (mnt, fstype.to_string(), dev.to_string()))
        })
        .max_by_key(|(mnt, _, _)| mnt.len())
        .map(|(mnt, fstype, dev)| format!("{fstype} on {mnt} ({dev})"))
}

fn machine_info(ctx: &Ctx, redis: &Result<RedisTools, String>) -> Vec<(&'static str, String)> {
    let unknown = || "unknown".to_string();
    let nproc = thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| unknown());
    let cpu = first_field("/proc/cpuinfo", "model name").unwrap_or_else(unknown);
    let mem = first_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(unknown);
    let os = format!(
        "{} (Linux {})",
        os_pretty_name().unwrap_or_else(unknown),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| unknown())
    );
    let tmp = std::env::temp_dir();
    let fs_desc = format!(
        "{} — {}",
        tmp.display(),
        filesystem_of(&tmp).unwrap_or_else(unknown)
    );
    let batos_mtime = fs::metadata(&ctx.batos)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| utc_datetime(d.as_secs()))
        .unwrap_or_else(unknown);
    let redis_desc = match redis {
        Ok(t) => format!("{} ({})", t.version, t.server.display()),
        Err(e) => e.clone(),
    };
    vec![
        ("CPU", cpu),
        ("logical CPUs (nproc)", nproc),
        ("memory", mem),
        ("OS", os),
        ("data directories", fs_desc),
        (
            "batos",
            format!(
                "{} ({}, built {batos_mtime})",
                ctx.kernel_version.clone().unwrap_or_else(unknown),
                ctx.batos.display()
            ),
        ),
        ("Redis", redis_desc),
    ]
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (civil-from-days).
fn utc_datetime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let lead = s.len() % 3; // digits before the first comma, modulo 3
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && i % 3 == lead {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        thousands(x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

fn fmt_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        thousands(us.round() as u64)
    }
}

fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn fmt_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

struct Row {
    sc: Scenario,
    outcome: Result<Measured, String>,
    /// `None`: this row has no Redis reference.
    redis: Option<Result<RedisRef, String>>,
}

impl Row {
    fn measured(&self) -> Option<&Measured> {
        self.outcome.as_ref().ok()
    }
}

struct Verdict {
    target: String,
    ratio: String,
    met: Option<bool>,
    why: String,
}

fn evaluate(row: &Row, rows: &[Row]) -> Verdict {
    let mut v = Verdict {
        target: "—".into(),
        ratio: "—".into(),
        met: None,
        why: String::new(),
    };
    let m = row.measured();
    if let (Some(m), Some(Ok(r))) = (m, &row.redis) {
        if r.rps > 0.0 {
            v.ratio = format!("{:.2}×", m.ops_per_s() / r.rps);
        }
    }
    let Some(target) = target_for(&row.sc) else {
        return v;
    };
    let Some(m) = m else {
        v.target = describe_target(target);
        v.why = "scenario failed".into();
        v.met = Some(false);
        return v;
    };
    v.target = describe_target(target);
    match target {
        Target::RedisRatio(min) => match &row.redis {
            Some(Ok(r)) if r.rps > 0.0 => {
                let ratio = m.ops_per_s() / r.rps;
                v.met = Some(ratio >= min);
            }
            Some(Err(e)) => v.why = format!("Redis {e}"),
            _ => v.why = "no Redis figure".into(),
        },
        Target::P50AtMostUs(max) => {
            if let Some(p50) = m.pct_ns(0.5) {
                v.met = Some(p50 / 1e3 <= max);
            }
        }
        Target::WithinOfDepth1(frac) => {
            let base = rows
                .iter()
                .find(|r| r.sc.op == (Op::Send { depth: 1 }) && r.sc.in_flight == row.sc.in_flight);
            match base.and_then(Row::measured) {
                Some(b) => {
                    let ops_ratio = m.ops_per_s() / b.ops_per_s().max(f64::MIN_POSITIVE);
                    let p50_ratio = match (m.pct_ns(0.5), b.pct_ns(0.5)) {
                        (Some(a), Some(b)) if b > 0.0 => a / b,
                        _ => f64::NAN,
                    };
                    v.ratio = format!("vs depth 1: ops/s {ops_ratio:.2}×, p50 {p50_ratio:.2}×");
                    v.met = Some(ops_ratio >= 1.0 - frac && p50_ratio <= 1.0 + frac);
                }
                None => v.why = "depth 1 not measured".into(),
            }
        }
    }
    if m.errors > 0 {
        v.met = Some(false);
        v.why = format!("{} errors", m.errors);
    }
    v
}

fn describe_target(t: Target) -> String {
    match t {
        Target::RedisRatio(min) => format!("≥ {:.0}% of Redis ops/s", min * 100.0),
        Target::P50AtMostUs(max) => format!("p50 ≤ {max:.0} µs"),
        Target::WithinOfDepth1(frac) => {
            format!("within {:.0}% of depth 1 (ops/s, p50)", frac * 100.0)
        }
    }
}

fn met_cell(v: &Verdict) -> String {
    match (v.met, v.why.is_empty()) {
        (Some(true), _) => "yes".into(),
        (Some(false), true) => "**no**".into(),
        (Some(false), false) => format!("**no** ({})", v.why),
        (None, true) => "—".into(),
        (None, false) => format!("unknown ({})", v.why),
    }
}

fn redis_cell(r: &Option<Result<RedisRef, String>>) -> String {
    match r {
        None => "—".into(),
        Some(Err(e)) => e.clone(),
        Some(Ok(r)) => {
            let mut s = format!("{} ops/s", fmt_rate(r.rps));
            if let Some(p50) = r.p50_ms {
                s.push_str(&format!(", p50 {} µs", fmt_us(p50 * 1e3)));
            }
            if let Some(p99) = r.p99_ms {
                s.push_str(&format!(", p99 {} µs", fmt_us(p99 * 1e3)));
            }
            s.push_str(&format!(" (AOF {}, `-P {} -c 1`)", r.fsync, r.pipeline));
            s
        }
    }
}

struct Settings {
    duration: Duration,
    image_objects: u64,
    touch_objects: u64,
}

fn render_report(
    rows: &[Row],
    image: Option<&Result<ImageOutcome, String>>,
    machine: &[(&'static str, String)],
    settings: &Settings,
) -> (String, bool, bool) {
    let mut all_ok = true;
    let mut all_met = true;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut s = String::new();
    s.push_str(&format!(
        "<!-- batos-bench output, {} -->\n\n",
        utc_datetime(now)
    ));
    s.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (k, v) in machine {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push('\n');
    s.push_str("## Synaptic Bridge (kernel foundation)\n\n");
    s.push_str(&format!(
        "Measured figures from one `batos-bench` run on the machine above ({}). Each scenario ran its own kernel on a fresh data \
         directory, over the public ZeroMQ bridge: {} ms measured after a {} ms warm-up, loads spread over {SPREAD} objects. \
         Redis was measured in the same run with `redis-benchmark -t hset -c 1 -r {SPREAD}`.\n\n",
        utc_datetime(now),
        settings.duration.as_millis(),
        (settings.duration / 10).max(Duration::from_millis(100)).as_millis()
    ));
    if !rows.is_empty() {
        s.push_str(
            "| scenario | ops/s | p50 µs | p99 µs | Redis reference | ratio | target | met? |\n",
        );
        s.push_str("|---|---:|---:|---:|---|---|---|---|\n");
        let mut problems = Vec::new();
        for row in rows {
            let v = evaluate(row, rows);
            if v.met == Some(false) {
                all_met = false;
            }
            let (ops, p50, p99, flag) = match &row.outcome {
                Ok(m) => {
                    if m.errors > 0 {
                        all_ok = false;
                        problems.push(format!(
                            "- {}: {} errors: {}",
                            row.sc.name,
                            m.errors,
                            m.error_samples.join("; ")
                        ));
                    }
                    for n in &m.notes {
                        problems.push(format!("- {}: {n}", row.sc.name));
                    }
                    (
                        fmt_rate(m.ops_per_s()),
                        m.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                        m.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                        if m.errors > 0 {
                            format!(" ⚠ {} errors", m.errors)
                        } else {
                            String::new()
                        },
                    )
                }
                Err(e) => {
                    all_ok = false;
                    problems.push(format!(
                        "- {}: failed: {}",
                        row.sc.name,
                        e.replace('\n', " ⏎ ")
                    ));
                    ("failed".into(), "—".into(), "—".into(), " ⚠ failed".into())
                }
            };
            s.push_str(&format!(
                "| {}{flag} | {ops} | {p50} | {p99} | {} | {} | {} | {} |\n",
                row.sc.label,
                redis_cell(&row.redis),
                v.ratio,
                v.target,
                met_cell(&v)
            ));
        }
        s.push('\n');
        if !problems.is_empty() {
            s.push_str("Errors and notes:\n\n");
            for p in problems {
                s.push_str(&p);
                s.push('\n');
            }
            s.push('\n');
        }
    }
    if let Some(image) = image {
        let quick = settings.image_objects != 1_000_000;
        s.push_str(&format!(
            "### Image of {} objects\n\n",
            thousands(settings.image_objects)
        ));
        if quick {
            s.push_str("A quick run (`--image-objects` is not 1,000,000): the targets below are for 1,000,000 objects and are not judged.\n\n");
        }
        match image {
            Err(e) => {
                all_ok = false;
                s.push_str(&format!("Failed: {}\n\n", e.replace('\n', " ⏎ ")));
            }
            Ok(img) => {
                let judge = |ok: bool| -> String {
                    if quick {
                        "— (quick run)".into()
                    } else if ok {
                        "yes".into()
                    } else {
                        "**no**".into()
                    }
                };
                let mut lines: Vec<(String, String, String, String)> = Vec::new();
                if let Some(b) = &img.build {
                    lines.push((
                        format!("build: `create_object`, {BULK_IN_FLIGHT} in flight"),
                        format!(
                            "{} objects/s ({})",
                            fmt_rate(b.ops_per_s()),
                            fmt_secs(b.elapsed)
                        ),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(d) = img.build_shutdown {
                    lines.push((
                        "clean stop after the build (SIGTERM to exit)".into(),
                        fmt_secs(d),
                        "—".into(),
                        "—".into(),
                    ));
                }
                lines.push((
                    "data directory on disk".into(),
                    fmt_mb(img.disk_bytes),
                    "—".into(),
                    "—".into(),
                ));
                if let Some(d) = img.first_ping {
                    if !quick && d > Duration::from_secs(1) {
                        all_met = false;
                    }
                    lines.push((
                        "process start → first `ping` answered".into(),
                        fmt_secs(d),
                        "≤ 1 s".into(),
                        judge(d <= Duration::from_secs(1)),
                    ));
                }
                if let Some(d) = img.ready_line {
                    lines.push((
                        "process start → `batos ready` line".into(),
                        fmt_secs(d),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(o) = img.ping_objects {
                    lines.push((
                        "objects reported by `ping` after reopening".into(),
                        thousands(o),
                        format!("≥ {}", thousands(img.objects)),
                        if o >= img.objects {
                            "yes".into()
                        } else {
                            "**no**".into()
                        },
                    ));
                }
                for (label, rss) in [
                    ("RSS after opening (first `ping`)".to_string(), img.rss_open),
                    (
                        format!(
                            "RSS after touching {} objects (`send`)",
                            thousands(img.touched)
                        ),
                        img.rss_touched,
                    ),
                ] {
                    if let Some(b) = rss {
                        if !quick && b > 100_000_000 {
                            all_met = false;
                        }
                        lines.push((label, fmt_mb(b), "≤ 100 MB".into(), judge(b <= 100_000_000)));
                    }
                }
                if let (Some(anon), Some(file)) = (img.rss_touched_anon, img.rss_touched_file) {
                    lines.push((
                        "of which anonymous (RssAnon) / file pages, mostly the binary's code (RssFile)"
                            .into(),
                        format!("{} / {}", fmt_mb(anon), fmt_mb(file)),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(b) = img.rss_peak {
                    lines.push((
                        "peak RSS of the reopened kernel (VmHWM)".into(),
                        fmt_mb(b),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(t) = &img.touch {
                    lines.push((
                        "touch: `send`, 64 in flight, each object once".into(),
                        format!(
                            "{} ops/s, p50 {} µs, p99 {} µs",
                            fmt_rate(t.ops_per_s()),
                            t.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                            t.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3))
                        ),
                        "—".into(),
                        "—".into(),
                    ));
                }
                s.push_str("| metric | value | target | met? |\n|---|---|---|---|\n");
                for (a, b, c, d) in lines {
                    s.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
                }
                s.push_str("\nMB = 10⁶ bytes. RSS is the kernel process's VmRSS from /proc.\n\n");
                if !img.errors.is_empty() {
                    all_ok = false;
                    all_met = false;
                    s.push_str("Errors:\n\n");
                    for e in &img.errors {
                        s.push_str(&format!("- {e}\n"));
                    }
                    s.push('\n');
                }
                if !img.notes.is_empty() {
                    s.push_str("Notes:\n\n");
                    for n in &img.notes {
                        s.push_str(&format!("- {n}\n"));
                    }
                    s.push('\n');
                }
            }
        }
    }
    s.push_str(&format!(
        "Image settings: {} objects, {} touched. ops/s counts replies over the measured window; latency is request sent → reply received at the client, \
         per request (with 64 in flight it includes queueing).\n",
        thousands(settings.image_objects),
        thousands(settings.touch_objects.min(settings.image_objects))
    ));
    (s, all_ok, all_met)
}

fn measured_json(m: &Measured) -> serde_json::Value {
    serde_json::json!({
        "ops": m.ops,
        "elapsed_s": m.elapsed.as_secs_f64(),
        "ops_per_s": m.ops_per_s(),
        "p50_us": m.pct_ns(0.5).map(|ns| ns / 1e3),
        "p99_us": m.pct_ns(0.99).map(|ns| ns / 1e3),
        "errors": m.errors,
        "error_samples": m.error_samples,
        "notes": m.notes,
    })
}

fn report_json(
    rows: &[Row],
    image: Option<&Result<ImageOutcome, String>>,
    machine: &[(&'static str, String)],
) -> serde_json::Value {
    let rows_json: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let v = evaluate(row, rows);
            serde_json::json!({
                "scenario": row.sc.name,
                "label": row.sc.label,
                "in_flight": row.sc.in_flight,
                "result": match &row.outcome {
                    Ok(m) => measured_json(m),
                    Err(e) => serde_json::json!({ "failed": e }),
                },
                "redis": match &row.redis {
                    None => serde_json::Value::Null,
                    Some(Err(e)) => serde_json::json!({ "not_measured": e }),
                    Some(Ok(r)) => serde_json::json!({
                        "appendfsync": r.fsync,
                        "pipeline": r.pipeline,
                        "requests": r.requests,
                        "ops_per_s": r.rps,
                        "p50_us": r.p50_ms.map(|x| x * 1e3),
                        "p99_us": r.p99_ms.map(|x| x * 1e3),
                    }),
                },
                "ratio": v.ratio,
                "target": v.target,
                "met": v.met,
            })
        })
        .collect();
    let image_json = match image {
        None => serde_json::Value::Null,
        Some(Err(e)) => serde_json::json!({ "failed": e }),
        Some(Ok(img)) => serde_json::json!({
            "objects": img.objects,
            "build": img.build.as_ref().map(measured_json),
            "build_shutdown_s": img.build_shutdown.map(|d| d.as_secs_f64()),
            "disk_bytes": img.disk_bytes,
            "ping_objects": img.ping_objects,
            "first_ping_s": img.first_ping.map(|d| d.as_secs_f64()),
            "ready_line_s": img.ready_line.map(|d| d.as_secs_f64()),
            "rss_open_bytes": img.rss_open,
            "touched": img.touched,
            "touch": img.touch.as_ref().map(measured_json),
            "rss_touched_bytes": img.rss_touched,
            "rss_touched_anon_bytes": img.rss_touched_anon,
            "rss_touched_file_bytes": img.rss_touched_file,
            "rss_peak_bytes": img.rss_peak,
            "errors": img.errors,
            "notes": img.notes,
        }),
    };
    let machine_json: serde_json::Map<String, serde_json::Value> = machine
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(v.clone())))
        .collect();
    serde_json::json!({ "machine": machine_json, "scenarios": rows_json, "image": image_json })
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("batos-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let all = scenarios();
    if args.list {
        println!("scenarios (each starts its own kernel):");
        for sc in &all {
            println!("  {:<22} {}", sc.name, sc.label);
        }
        println!(
            "  {:<22} build an image, reopen it: time to first ping, RSS",
            "image"
        );
        println!("groups: ping, set_slot, get_slot, send, create_object");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(only) = &args.only {
        let known = only == "image" || all.iter().any(|sc| &sc.name == only || sc.group == only);
        if !known {
            bail!("unknown scenario or group {only:?}; see --list");
        }
    }
    if args.duration_ms < 10 {
        bail!("--duration-ms must be at least 10");
    }
    if args.image_objects == 0 {
        bail!("--image-objects must be at least 1");
    }
    let batos = match &args.batos {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("batos"),
    };
    if !batos.is_file() {
        bail!(
            "no kernel binary at {} (build it with `cargo build --release -p batos-kernel --bins`, or pass --batos PATH)",
            batos.display()
        );
    }
    let selected: Vec<Scenario> = all
        .into_iter()
        .filter(|sc| {
            args.only
                .as_deref()
                .is_none_or(|o| o == sc.name || o == sc.group)
        })
        .collect();
    let run_image_scenario = !args.skip_image && args.only.as_deref().is_none_or(|o| o == "image");
    if selected.is_empty() && !run_image_scenario {
        bail!("nothing to run (--only image with --skip-image?)");
    }
    let needs_redis = selected.iter().any(|sc| matches!(sc.op, Op::SetSlot(_)));
    let redis = if needs_redis {
        find_redis(&args)
    } else {
        Err("not needed".to_string())
    };
    if needs_redis {
        if let Err(e) = &redis {
            eprintln!("batos-bench: Redis {e}; its reference figures are skipped");
        }
    }

    let mut ctx = Ctx {
        batos,
        zmq: zmq::Context::new(),
        tmp: TempRoot::new(args.keep_temp)?,
        dirs: 0,
        keep_temp: args.keep_temp,
        duration: Duration::from_millis(args.duration_ms),
        reply_timeout: Duration::from_secs(args.reply_timeout_s.max(1)),
        rust_log: args.kernel_rust_log.clone(),
        kernel_version: None,
    };
    eprintln!(
        "batos-bench: kernel {}, temporary files in {}",
        ctx.batos.display(),
        ctx.tmp.path.display()
    );

    let total = selected.len() + usize::from(run_image_scenario);
    let mut rows = Vec::new();
    for (i, sc) in selected.iter().enumerate() {
        eprintln!("[{}/{total}] {} ...", i + 1, sc.name);
        let outcome = run_bridge_scenario(&mut ctx, sc).map_err(|e| format!("{e:#}"));
        match &outcome {
            Ok(m) => eprintln!(
                "  {} ops/s, p50 {} µs, p99 {} µs{}",
                fmt_rate(m.ops_per_s()),
                m.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                m.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                if m.errors > 0 {
                    format!(", {} ERRORS: {}", m.errors, m.error_samples.join("; "))
                } else {
                    String::new()
                }
            ),
            Err(e) => eprintln!("  FAILED: {e}"),
        }
        let redis_ref = match sc.op {
            Op::SetSlot(d) => Some(match &redis {
                Ok(tools) => {
                    let fsync = d.redis_fsync();
                    eprintln!(
                        "  redis-server appendfsync {fsync}, -P {} -c 1 ...",
                        sc.in_flight
                    );
                    let r = redis_reference(&mut ctx, tools, fsync, sc.in_flight)
                        .map_err(|e| format!("failed: {e:#}"));
                    match &r {
                        Ok(r) => eprintln!("  redis: {} ops/s", fmt_rate(r.rps)),
                        Err(e) => eprintln!("  redis {e}"),
                    }
                    r
                }
                Err(e) => Err(e.clone()),
            }),
            _ => None,
        };
        rows.push(Row {
            sc: sc.clone(),
            outcome,
            redis: redis_ref,
        });
    }

    let image = if run_image_scenario {
        eprintln!("[{total}/{total}] image ...");
        let r = run_image(&mut ctx, args.image_objects, args.touch_objects)
            .map_err(|e| format!("{e:#}"));
        match &r {
            Ok(img) => eprintln!(
                "  first ping after {}, RSS {} after open, {} after touching",
                img.first_ping.map_or("—".into(), fmt_secs),
                img.rss_open.map_or("—".into(), fmt_mb),
                img.rss_touched.map_or("—".into(), fmt_mb)
            ),
            Err(e) => eprintln!("  FAILED: {e}"),
        }
        Some(r)
    } else {
        None
    };

    let machine = machine_info(&ctx, &redis);
    let settings = Settings {
        duration: ctx.duration,
        image_objects: args.image_objects,
        touch_objects: args.touch_objects,
    };
    let (text, all_ok, all_met) = render_report(&rows, image.as_ref(), &machine, &settings);
    print!("{text}");
    std::io::stdout().flush().ok();
    if let Some(path) = &args.json {
        let json = report_json(&rows, image.as_ref(), &machine);
        fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("batos-bench: wrote {}", path.display());
    }
    Ok(if !all_ok {
        ExitCode::from(1)
    } else if args.check_targets && !all_met {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"HSET\",\"572342.88\",\"0.102\",\"0.088\",\"0.103\",\"0.135\",\"0.247\",\"0.287\"\n";
        assert_eq!(
            parse_redis_benchmark(out),
            Some((572_342.88, Some(0.103), Some(0.247)))
        );
    }

    #[test]
    fn parses_redis_benchmark_quiet_and_old_csv() {
        let quiet = "\rHSET: rps=0.0 (overall: inf) avg_msec=0.054\r\rHSET: 38461.54 requests per second, p50=0.023 msec\n";
        assert_eq!(
            parse_redis_benchmark(quiet),
            Some((38_461.54, Some(0.023), None))
        );
        assert_eq!(
            parse_redis_benchmark("\"HSET\",\"265252.00\"\n"),
            Some((265_252.0, None, None))
        );
        assert_eq!(parse_redis_benchmark("garbage"), None);
    }

    #[test]
    fn parses_ready_line() {
        let r = parse_ready(
            "batos ready endpoint=tcp://127.0.0.1:40001 events=tcp://127.0.0.1:40002 metrics=127.0.0.1:40003",
            Instant::now(),
        )
        .unwrap();
        assert_eq!(r.endpoint, "tcp://127.0.0.1:40001");
        assert!(parse_ready("batos ready events=x", Instant::now()).is_err());
    }

    #[test]
    fn request_round_trips_and_reply_decodes() {
        let body = encode_request(
            7,
            Req::new(
                "get_slot",
                vec![("oid", Value::from(3u64)), ("slot", Value::from("x"))],
            ),
        )
        .unwrap();
        let v = rmpv::decode::read_value(&mut &body[..]).unwrap();
        assert_eq!(v["v"].as_i64(), Some(1));
        assert_eq!(v["id"].as_u64(), Some(7));
        assert_eq!(v["command"].as_str(), Some("get_slot"));
        assert_eq!(v["slot"].as_str(), Some("x"));

        let mut buf = Vec::new();
        let ok = map(vec![
            ("v", Value::from(1)),
            ("id", Value::from(7)),
            ("status", Value::from("ok")),
            ("result", Value::from(5)),
        ]);
        rmpv::encode::write_value(&mut buf, &ok).unwrap();
        let r = Reply::decode(&buf).unwrap();
        assert_eq!(r.id, Some(7));
        assert_eq!(r.result.unwrap().as_i64(), Some(5));

        buf.clear();
        let err = map(vec![
            ("v", Value::from(1)),
            ("id", Value::from(8)),
            ("status", Value::from("error")),
            (
                "error",
                map(vec![
                    ("code", Value::from("no_such_object")),
                    ("message", Value::from("gone")),
                ]),
            ),
        ]);
        rmpv::encode::write_value(&mut buf, &err).unwrap();
        let r = Reply::decode(&buf).unwrap();
        assert_eq!(r.result.unwrap_err(), "no_such_object: gone");
    }

    #[test]
    fn percentiles_and_formatting() {
        let m = Measured {
            lat_ns: (1..=100).collect(),
            ops: 100,
            elapsed: Duration::from_secs(1),
            ..Measured::default()
        };
        assert_eq!(m.pct_ns(0.5), Some(50.0));
        assert_eq!(m.pct_ns(0.99), Some(99.0));
        assert_eq!(m.ops_per_s(), 100.0);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(utc_datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_datetime(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn pick_spreads_over_all_objects() {
        let mut seen = [false; SPREAD];
        for s in 0..10_000 {
            seen[pick(s, SPREAD)] = true;
        }
        assert!(seen.iter().all(|&b| b));
    }
}
