//! Test harness: spawns the real `batos` binary on a private image and talks to it as a raw client (ZeroMQ + MessagePack, events, metrics, CLI).
//!
//! Every test starts its own kernel on its own temporary directory, so tests
//! run in parallel safely. Everything here is bounded: a kernel that never
//! becomes ready, a reply that never comes or a process that never exits makes
//! the test fail with a message (and the kernel's log tail), never hang.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use batos_client::launch::{self, ReadyWait};
pub use batos_client::Curve;
use batos_client::{Connect, Connection, Pattern};
pub use batos_object::slot::Slot;
pub use batos_object::txn::Transaction;
pub use rmpv::Value;
use tempfile::TempDir;

/// How long a kernel may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client waits for any one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kernel may take to exit after SIGTERM/SIGINT/SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The roots of a fresh image.
pub const ROOTS: [&str; 6] = [
    "traits_obj",
    "pLLM_obj",
    "genesis_obj",
    "memory_manager_obj",
    "knowledge_catalog_obj",
    "orchestrator_obj",
];

/// Every error code of protocol v1.
pub const ERROR_CODES: [&str; 13] = [
    "bad_request",
    "too_large",
    "unsupported_version",
    "unknown_command",
    "no_such_object",
    "no_such_slot",
    "does_not_understand",
    "covenant_violation",
    "method_trap",
    "forbidden",
    "overloaded",
    "unavailable",
    "internal",
];

/// Every command of protocol v1.
pub const COMMANDS: [&str; 16] = [
    "ping",
    "get_full_state",
    "create_object",
    "clone",
    "get_slot",
    "set_slot",
    "remove_slot",
    "send",
    "create_method",
    "ingest",
    "search_memory",
    "list_experts",
    "infer",
    "start_cycle",
    "get_cycle",
    "snapshot",
];

// ---------------------------------------------------------------------------
// Locating and spawning the binary
// ---------------------------------------------------------------------------

/// The `batos` binary: `$BATOS_BIN`, else `<target>/release/batos` next to
/// the `deps/` directory holding this test executable.
pub fn batos_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("BATOS_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let exe = std::env::current_exe().expect("current_exe");
                let dir = exe
                    .parent()
                    .and_then(Path::parent)
                    .unwrap_or_else(|| panic!("test executable {} has no grandparent directory", exe.display()));
                dir.join(format!("batos{}", std::env::consts::EXE_SUFFIX))
            }
        };
        assert!(
            path.is_file(),
            "the batos binary was not found at {} (build it first: `cargo build --release -p batos-kernel`, \
             or point BATOS_BIN at it)",
            path.display()
        );
        path
    })
    .clone()
}

/// How a kernel is started. Flags always given: `--data`, `--endpoint`,
/// `--events`, `--metrics` (all on ephemeral loopback ports) and
/// `--no-first-conversation` (unless `first_conversation`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// TOML text written to `<image>/batos.toml` and passed with `--config`.
    pub config: Option<String>,
    /// `--durability buffered|sync`.
    pub durability: Option<&'static str>,
    /// Replaces the default `tcp://127.0.0.1:*` command endpoint.
    pub endpoint: Option<String>,
    /// Replaces the default `tcp://127.0.0.1:*` events endpoint.
    pub events: Option<String>,
    /// Replaces the default `127.0.0.1:0` metrics address.
    pub metrics: Option<String>,
    /// Extra arguments after the others.
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Leave out `--no-first-conversation` (a fresh image then runs display_yourself).
    pub first_conversation: bool,
    /// Run the kernel in a network namespace of its own with only loopback
    /// (`unshare -n`): proves it reaches no network. Commands and events
    /// then use `ipc://` endpoints in the test's directory.
    pub no_network: bool,
    /// Run the kernel in this existing network namespace (`ip netns exec`).
    pub netns: Option<String>,
}

impl Options {
    pub fn config(text: &str) -> Self {
        Options {
            config: Some(text.to_owned()),
            ..Options::default()
        }
    }

    pub fn durability(durability: &'static str) -> Self {
        Options {
            durability: Some(durability),
            ..Options::default()
        }
    }
}

/// A fresh temporary directory for one image (data dir, config, logs).
pub fn new_image_dir() -> Arc<TempDir> {
    Arc::new(
        tempfile::Builder::new()
            .prefix("batos-e2e-")
            .tempdir()
            .expect("create temp dir"),
    )
}

/// Whether this machine lets us make a network namespace (root, or
/// unprivileged user namespaces). Checked once.
pub fn netns_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let ok = Command::new("unshare")
            .args(["-n", "--", "sh", "-c", "ip link set lo up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "warning: `unshare -n` is not permitted here; tests that ask for no network \
                 run with the machine's network (offline loading is then not proven)"
            );
        }
        ok
    })
}

fn run_command(root: &Path, opts: &Options) -> Command {
    let (mut cmd, endpoint, events) = if opts.no_network && netns_available() {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ]);
        cmd.arg(batos_bin());
        let ipc = |name: &str| format!("ipc://{}", root.join(name).display());
        (cmd, ipc("commands.sock"), ipc("events.sock"))
    } else if let Some(netns) = &opts.netns {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns]).arg(batos_bin());
        let tcp = "tcp://127.0.0.1:*".to_string();
        (cmd, tcp.clone(), tcp)
    } else {
        (
            Command::new(batos_bin()),
            "tcp://127.0.0.1:*".to_string(),
            "tcp://127.0.0.1:*".to_string(),
        )
    };
    cmd.arg("run").arg("--data").arg(root.join("data"));
    cmd.arg("--endpoint")
        .arg(opts.endpoint.as_deref().unwrap_or(&endpoint));
    cmd.arg("--events")
        .arg(opts.events.as_deref().unwrap_or(&events));
    cmd.arg("--metrics")
        .arg(opts.metrics.as_deref().unwrap_or("127.0.0.1:0"));
    if !opts.first_conversation {
        cmd.arg("--no-first-conversation");
    }
    if let Some(text) = &opts.config {
        let path = root.join("batos.toml");
        std::fs::write(&path, text).expect("write config file");
        cmd.arg("--config").arg(path);
    }
    if let Some(durability) = opts.durability {
        cmd.args(["--durability", durability]);
    }
    cmd.args(&opts.args);
    cmd.env("RUST_BACKTRACE", "1");
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    // The heartbeat writes findings objects on its own schedule; tests that
    // count objects or events must not race it, so only the tests that
    // configure a [heartbeat] get one.
    if !opts.config.as_deref().unwrap_or("").contains("[heartbeat]") {
        cmd.env("BATOS_HEARTBEAT_INTERVAL_MS", "0");
    }
    cmd.stdin(Stdio::null());
    kill_with_parent(&mut cmd);
    cmd
}

/// If the test process dies abruptly, its kernels die with it (Linux:
/// PR_SET_PDEATHSIG; it fires when the spawning thread exits, and a kernel
/// never outlives the test thread that started it).
pub fn kill_with_parent(cmd: &mut Command) {
    launch::die_with_parent(cmd, libc::SIGKILL);
}

fn next_log_path(root: &Path) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    root.join(format!("kernel-{}.log", N.fetch_add(1, Ordering::Relaxed)))
}

/// The last `max` characters of a file, for failure messages.
pub fn file_tail(path: &Path, max: usize) -> String {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("<cannot read {}: {e}>", path.display()),
    };
    let count = text.chars().count();
    if count <= max {
        text
    } else {
        let skip = count - max;
        format!("...{}", text.chars().skip(skip).collect::<String>())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for a child to exit, polling `try_wait` (std has no timed wait).
/// On timeout the child is SIGKILLed and `None` is returned.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `batos run` process on its own image.
pub struct Kernel {
    child: Mutex<Child>,
    pid: u32,
    status: Mutex<Option<ExitStatus>>,
    root: Arc<TempDir>,
    opts: Options,
    log: PathBuf,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    /// `tcp://127.0.0.1:PORT` of the ROUTER socket.
    pub endpoint: String,
    /// `tcp://127.0.0.1:PORT` of the PUB socket.
    pub events: String,
    /// `127.0.0.1:PORT` of the Prometheus endpoint.
    pub metrics: String,
}

impl Kernel {
    /// A kernel on a fresh image with default options.
    pub fn start() -> Kernel {
        Kernel::start_with(Options::default())
    }

    /// A kernel on a fresh image.
    pub fn start_with(opts: Options) -> Kernel {
        Kernel::start_on(new_image_dir(), opts)
    }

    /// A kernel on an existing image directory (e.g. after a restart).
    /// Waits for the ready line on stdout (the readiness event).
    pub fn start_on(root: Arc<TempDir>, opts: Options) -> Kernel {
        let log = next_log_path(root.path());
        let mut cmd = run_command(root.path(), &opts);
        cmd.stdout(Stdio::piped());
        cmd.stderr(Stdio::from(File::create(&log).expect("create log file")));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", batos_bin().display()));
        let pid = child.id();

        // Drain stdout on a thread for the kernel's whole life, so it can
        // never block on a full pipe; keep every line.
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&stdout_lines);
        let wait = ReadyWait::watch(stdout, format!("kernel-{pid}-stdout"), move |line| {
            lock(&seen).push(line.to_string())
        })
        .expect("spawn the stdout reader");
        if let Err(err) = wait.wait(&mut child, READY_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "batos is not ready: {err}\n--- log ---\n{}",
                file_tail(&log, 8000)
            );
        }
        let first = lock(&stdout_lines)
            .first()
            .cloned()
            .expect("the ready line was read");
        let ready = match parse_ready_line(&first) {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the first stdout line must be the ready line: {e}\nline: {first:?}");
            }
        };
        Kernel {
            child: Mutex::new(child),
            pid,
            status: Mutex::new(None),
            root,
            opts,
            log,
            stdout_lines,
            endpoint: ready.endpoint,
            events: ready.events,
            metrics: ready.metrics,
        }
    }

    /// The image directory (shared with later restarts).
    pub fn root(&self) -> Arc<TempDir> {
        Arc::clone(&self.root)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the kernel printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout_lines).clone()
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 8000)
    }

    /// A DEALER client (the default kind; pipelining allowed).
    pub fn dealer(&self) -> Client {
        Client::connect(&self.endpoint, Kind::Dealer)
    }

    /// A REQ client (strict send/receive alternation).
    pub fn req(&self) -> Client {
        Client::connect(&self.endpoint, Kind::Req)
    }

    /// A SUB socket on the events endpoint, subscribed to `uvm_state_update`.
    /// Call [`Subscriber::sync`] before relying on it.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber::connect(&self.events, "uvm_state_update")
    }

    /// Scrapes `GET /metrics`.
    pub fn scrape(&self) -> Metrics {
        scrape(&self.metrics)
    }

    /// Runs the CLI against this kernel: `batos --endpoint E ARGS...`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut all = vec!["--endpoint", self.endpoint.as_str()];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// Waits until `oid`'s slot `name` is set and returns it, using the
    /// events (the slot may already be set before we subscribed).
    /// Waits until `ping` says nothing is being rebuilt (a start that found
    /// the memory index behind the image rebuilds it while serving). No
    /// event announces the end, so this asks, as a client would.
    pub fn wait_recovered(&self) {
        let c = self.dealer();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let pong = c.ping();
            if must(&pong, "rebuilding")
                .as_array()
                .is_some_and(Vec::is_empty)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still rebuilding after {READY_TIMEOUT:?}: {pong}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_for_slot(&self, c: &Client, oid: u64, name: &str) -> Value {
        let sub = self.subscriber();
        sub.sync(c);
        if let Ok(v) = c.call("get_slot", &[("oid", Value::from(oid)), ("slot", s(name))]) {
            return v;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(ev) = sub.next_timeout(Duration::from_secs(1)) {
                if ev.oid == oid {
                    if let Some(v) = ev.value_of(name) {
                        return v.clone();
                    }
                }
            }
        }
        panic!("slot {name} of {oid} was never set");
    }

    /// Sends a signal to the kernel process.
    pub fn signal(&self, sig: libc::c_int) {
        assert!(
            lock(&self.status).is_none(),
            "signal to a kernel that already exited"
        );
        // SAFETY: plain kill(2) on our own child's pid; it has not been reaped.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit; fails the test (after SIGKILL) on timeout.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        if let Some(status) = *lock(&self.status) {
            return status;
        }
        let mut child = lock(&self.child);
        match wait_child(&mut child, timeout) {
            Some(status) => {
                *lock(&self.status) = Some(status);
                status
            }
            None => {
                *lock(&self.status) = Some(ExitStatus::default());
                panic!(
                    "batos did not exit within {timeout:?}\n--- log ---\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// Has the process exited (without waiting)?
    pub fn has_exited(&self) -> bool {
        if lock(&self.status).is_some() {
            return true;
        }
        let mut child = lock(&self.child);
        match child.try_wait().expect("try_wait") {
            Some(status) => {
                *lock(&self.status) = Some(status);
                true
            }
            None => false,
        }
    }

    /// SIGTERM, then asserts a clean exit (status 0). Returns the image.
    pub fn stop(self) -> Arc<TempDir> {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(EXIT_TIMEOUT);
        assert_eq!(
            status.code(),
            Some(0),
            "batos must exit 0 on SIGTERM, got {status:?}\n--- log ---\n{}",
            self.log_tail()
        );
        self.root()
    }

    /// SIGKILL (a crash). Returns the image.
    pub fn kill(self) -> Arc<TempDir> {
        {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let status = child.wait().expect("wait after kill");
            *lock(&self.status) = Some(status);
        }
        self.root()
    }

    /// Clean stop (asserting exit 0), then a new kernel on the same image
    /// with the same options.
    pub fn restart(self) -> Kernel {
        let opts = self.opts.clone();
        let root = self.stop();
        Kernel::start_on(root, opts)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if lock(&self.status).is_none() {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- batos log ({}) ---\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// The addresses printed in the ready line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub endpoint: String,
    pub events: String,
    pub metrics: String,
}

/// Parses `batos ready endpoint=tcp://HOST:P events=tcp://HOST:P metrics=127.0.0.1:P`
/// exactly (real, non-zero ports; HOST is 127.0.0.1 unless a test bound
/// another address).
pub fn parse_ready_line(line: &str) -> Result<Ready, String> {
    let words: Vec<&str> = line.split(' ').collect();
    if words.len() != 5 || words[0] != "batos" || words[1] != "ready" {
        return Err("expected `batos ready endpoint=... events=... metrics=...`".into());
    }
    let value = |word: &str, key: &str| -> Result<String, String> {
        word.strip_prefix(key)
            .and_then(|w| w.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("expected {key}=... in {word:?}"))
    };
    let port = |addr: &str, prefix: &str| -> Result<(), String> {
        let port = addr
            .strip_prefix(prefix)
            .ok_or_else(|| format!("{addr:?} does not start with {prefix:?}"))?;
        match port.parse::<u16>() {
            Ok(p) if p != 0 => Ok(()),
            _ => Err(format!("{addr:?} has no real port")),
        }
    };
    let endpoint = value(words[2], "endpoint")?;
    let events = value(words[3], "events")?;
    let metrics = value(words[4], "metrics")?;
    // ipc:// endpoints (a kernel in its own network namespace) have no port.
    let tcp = |addr: &str| -> Result<(), String> {
        let host = addr
            .strip_prefix("tcp://")
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(host, _)| host)
            .ok_or_else(|| format!("{addr:?} is not tcp://HOST:PORT"))?;
        port(addr, &format!("tcp://{host}:"))
    };
    if !endpoint.starts_with("ipc://") {
        tcp(&endpoint)?;
    }
    if !events.starts_with("ipc://") {
        tcp(&events)?;
    }
    port(&metrics, "127.0.0.1:")?;
    Ok(Ready {
        endpoint,
        events,
        metrics,
    })
}

/// What `batos run` did when it was expected to refuse to start.
#[derive(Debug)]
pub struct Refusal {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `batos run` with `opts` on a fresh image and waits for it to exit
/// (failing the test if it is still running after `timeout`).
pub fn run_expecting_exit(opts: &Options, timeout: Duration) -> Refusal {
    let root = new_image_dir();
    let out_path = root.path().join("stdout.txt");
    let err_path = root.path().join("stderr.txt");
    let mut cmd = run_command(root.path(), opts);
    cmd.stdout(Stdio::from(
        File::create(&out_path).expect("create stdout file"),
    ));
    cmd.stderr(Stdio::from(
        File::create(&err_path).expect("create stderr file"),
    ));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", batos_bin().display()));
    let status = wait_child(&mut child, timeout);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(status) => Refusal { status, stdout, stderr },
        None => panic!(
            "batos run was expected to exit but was still running after {timeout:?}\nstdout: {stdout}\nstderr: {}",
            file_tail(&err_path, 4000)
        ),
    }
}

// ---------------------------------------------------------------------------
// MessagePack values
// ---------------------------------------------------------------------------

pub fn encode(v: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, v).expect("encode MessagePack");
    buf
}

/// Decodes exactly one value that spans all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value(&mut rd).map_err(|e| e.to_string())?;
    if !rd.is_empty() {
        return Err(format!("{} trailing bytes after the value", rd.len()));
    }
    Ok(v)
}

/// A MessagePack string.
pub fn s(text: &str) -> Value {
    Value::from(text)
}

/// A map with string keys, in the given order.
pub fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

pub fn empty_map() -> Value {
    Value::Map(Vec::new())
}

/// `{"$ref": oid}`.
pub fn oref(oid: u64) -> Value {
    map(&[("$ref", Value::from(oid))])
}

/// `{"$ref": "root_name"}` (input only).
pub fn oref_name(root: &str) -> Value {
    map(&[("$ref", s(root))])
}

/// `[{"$ref": a}, {"$ref": b}, ...]`.
pub fn parents(oids: &[u64]) -> Value {
    Value::Array(oids.iter().map(|&o| oref(o)).collect())
}

/// The value under `key` in a string-keyed map.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, val)| val)
}

/// The value under `key`, or a test failure.
pub fn must<'a>(v: &'a Value, key: &str) -> &'a Value {
    field(v, key).unwrap_or_else(|| panic!("expected key {key:?} in {v}"))
}

/// The keys of a string-keyed map (panics on anything else).
pub fn keys(v: &Value) -> Vec<String> {
    v.as_map()
        .unwrap_or_else(|| panic!("expected a map, got {v}"))
        .iter()
        .map(|(k, _)| {
            k.as_str()
                .unwrap_or_else(|| panic!("non-string key {k} in {v}"))
                .to_owned()
        })
        .collect()
}

/// An unsigned integer (an oid, a count...).
pub fn uint(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected an unsigned integer, got {v}"))
}

/// The oid of `{"$ref": oid}` (exactly that shape, integer oid).
pub fn ref_oid(v: &Value) -> u64 {
    let pairs = v
        .as_map()
        .unwrap_or_else(|| panic!("expected {{\"$ref\": oid}}, got {v}"));
    assert_eq!(pairs.len(), 1, "expected a single-key $ref map, got {v}");
    assert_eq!(
        pairs[0].0.as_str(),
        Some("$ref"),
        "expected a $ref map, got {v}"
    );
    assert!(
        matches!(pairs[0].1, Value::Integer(_)),
        "output $ref must hold an integer oid, got {v}"
    );
    uint(&pairs[0].1)
}

/// Deep equality as the protocol means it: floats compare by bits (NaN,
/// -0.0), integers by value whatever their encoding, maps regardless of key
/// order; `F32` and `F64` are different types.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Boolean(x), Value::Boolean(y)) => x == y,
        (Value::Integer(x), Value::Integer(y)) => {
            x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
        }
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::String(x), Value::String(y)) => {
            x.as_bytes() == y.as_bytes() && x.is_str() == y.is_str()
        }
        (Value::Binary(x), Value::Binary(y)) => x == y,
        (Value::Ext(t, x), Value::Ext(u, y)) => t == u && x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    let mut matches = y.iter().filter(|(k2, _)| same(k, k2));
                    match (matches.next(), matches.next()) {
                        (Some((_, v2)), None) => same(v, v2),
                        _ => false,
                    }
                })
        }
        _ => false,
    }
}

#[track_caller]
pub fn assert_same(got: &Value, want: &Value, what: &str) {
    assert!(same(got, want), "{what}: got {got:?}, want {want:?}");
}

/// A request map: `v: 1`, `id` (if any), `command`, then `fields`.
pub fn request_value(command: &str, id: Option<&Value>, fields: &[(&str, Value)]) -> Value {
    let mut pairs = vec![(s("v"), Value::from(1))];
    if let Some(id) = id {
        pairs.push((s("id"), id.clone()));
    }
    pairs.push((s("command"), s(command)));
    for (k, v) in fields {
        pairs.push((s(k), v.clone()));
    }
    Value::Map(pairs)
}

pub fn encode_request(command: &str, id: Option<&Value>, fields: &[(&str, Value)]) -> Vec<u8> {
    batos_client::encode_request(id, command, fields.iter().map(|(k, v)| (*k, v.clone())))
}

/// A map whose values are given already encoded (to put hand-made,
/// possibly invalid, MessagePack inside an otherwise well-formed request).
pub fn raw_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = Vec::new();
    let n = entries.len();
    if n < 16 {
        buf.push(0x80 | n as u8);
    } else {
        buf.push(0xde);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    }
    for (k, raw) in entries {
        rmpv::encode::write_value(&mut buf, &s(k)).expect("encode key");
        buf.extend_from_slice(raw);
    }
    buf
}

// ---------------------------------------------------------------------------
// The command socket
// ---------------------------------------------------------------------------

pub fn zmq_ctx() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Req,
    Dealer,
}

/// A decoded, protocol-checked reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Frames before the body (as received by this client).
    pub envelope: Vec<Vec<u8>>,
    /// `id`, if the reply has one.
    pub id: Option<Value>,
    /// `result`, or `(code, message)` of `error`.
    pub outcome: Result<Value, (String, String)>,
    /// The whole reply map.
    pub raw: Value,
}

impl Reply {
    /// Decodes a reply body and checks its envelope against protocol v1:
    /// a map with string keys among `v, id, status, result, error`; `v` is 1;
    /// `status` is `ok` (with `result`, without `error`) or `error` (with
    /// `error: {code, message}` and a known code, without `result`).
    pub fn parse(envelope: Vec<Vec<u8>>, body: &[u8]) -> Reply {
        let raw =
            decode(body).unwrap_or_else(|e| panic!("reply is not one MessagePack value: {e}"));
        let entries = raw
            .as_map()
            .unwrap_or_else(|| panic!("reply is not a map: {raw}"));
        let (mut v, mut id, mut status, mut result, mut error) = (None, None, None, None, None);
        for (k, val) in entries {
            let key = k
                .as_str()
                .unwrap_or_else(|| panic!("reply has a non-string key {k}: {raw}"));
            let slot = match key {
                "v" => &mut v,
                "id" => &mut id,
                "status" => &mut status,
                "result" => &mut result,
                "error" => &mut error,
                other => panic!("reply has an unexpected key {other:?}: {raw}"),
            };
            assert!(slot.is_none(), "reply repeats key {key:?}: {raw}");
            *slot = Some(val.clone());
        }
        assert!(
            matches!(&v, Some(Value::Integer(n)) if n.as_u64() == Some(1)),
            "reply must have v: 1, got {raw}"
        );
        let status = status.unwrap_or_else(|| panic!("reply has no status: {raw}"));
        let outcome = match status.as_str() {
            Some("ok") => {
                assert!(error.is_none(), "ok reply with an error: {raw}");
                Ok(result.unwrap_or_else(|| panic!("ok reply without result: {raw}")))
            }
            Some("error") => {
                assert!(result.is_none(), "error reply with a result: {raw}");
                let err = error.unwrap_or_else(|| panic!("error reply without error: {raw}"));
                let code = field(&err, "code")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("error.code must be a string: {raw}"))
                    .to_owned();
                let message = field(&err, "message")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("error.message must be a string: {raw}"))
                    .to_owned();
                assert!(
                    ERROR_CODES.contains(&code.as_str()),
                    "unknown error code {code:?}: {raw}"
                );
                assert!(!message.is_empty(), "error message is empty: {raw}");
                Err((code, message))
            }
            _ => panic!("status must be \"ok\" or \"error\": {raw}"),
        };
        Reply {
            envelope,
            id,
            outcome,
            raw,
        }
    }

    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The error code, if this is an error reply.
    pub fn code(&self) -> Option<&str> {
        self.outcome.as_ref().err().map(|(c, _)| c.as_str())
    }

    /// The result, or a test failure.
    #[track_caller]
    pub fn result(&self) -> &Value {
        match &self.outcome {
            Ok(v) => v,
            Err((c, m)) => panic!("expected ok, got error {c}: {m}"),
        }
    }

    /// Asserts an error reply with `code`.
    #[track_caller]
    pub fn assert_error(&self, code: &str) {
        match &self.outcome {
            Ok(v) => panic!("expected error {code}, got ok: {v}"),
            Err((c, m)) => assert_eq!(c, code, "wrong error code (message: {m})"),
        }
    }
}

/// A raw command-socket client: `batos_client`'s connection, with every
/// reply checked against protocol v1 here (the kernel is not trusted to
/// check itself).
pub struct Client {
    connection: Connection,
    pub kind: Kind,
    next_id: std::cell::Cell<u64>,
    pub timeout: Duration,
}

impl Client {
    pub fn connect(endpoint: &str, kind: Kind) -> Client {
        Self::connect_with(endpoint, kind, None)
    }

    /// [`Client::connect`], as a CURVE client when `curve` is given.
    pub fn connect_with(endpoint: &str, kind: Kind, curve: Option<&Curve>) -> Client {
        let pattern = match kind {
            Kind::Req => Pattern::Req,
            Kind::Dealer => Pattern::Dealer,
        };
        let connection = Connect::new(endpoint)
            .pattern(pattern)
            .context(zmq_ctx())
            .timeout(REPLY_TIMEOUT)
            .curve(curve)
            // Never let our side's queues drop or stall pipelined traffic.
            .queues(0)
            .open()
            .unwrap_or_else(|e| panic!("connecting to {endpoint}: {e}"));
        Client {
            connection,
            kind,
            next_id: std::cell::Cell::new(1),
            timeout: REPLY_TIMEOUT,
        }
    }

    /// The underlying socket (for tests that need raw access).
    pub fn socket(&self) -> &zmq::Socket {
        self.connection.socket()
    }

    /// A fresh integer id, unique for this client.
    pub fn fresh_id(&self) -> Value {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        Value::from(n)
    }

    /// Sends one message made of `frames` (for REQ, ZeroMQ adds the empty
    /// delimiter in front).
    pub fn send_frames(&self, frames: &[&[u8]]) {
        self.connection
            .send_frames(frames)
            .unwrap_or_else(|e| panic!("zmq send: {e}"));
    }

    /// Sends one body frame.
    pub fn send_body(&self, body: &[u8]) {
        self.send_frames(&[body]);
    }

    /// Sends a request without waiting for its reply.
    pub fn send_request(&self, command: &str, id: &Value, fields: &[(&str, Value)]) {
        self.send_body(&encode_request(command, Some(id), fields));
    }

    /// The next message, or `None` after `timeout`.
    pub fn recv_frames_timeout(&self, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        self.connection
            .recv_within(timeout)
            .unwrap_or_else(|e| panic!("zmq recv: {e}"))
    }

    /// The next message, or a test failure after `self.timeout`.
    #[track_caller]
    pub fn recv_frames(&self) -> Vec<Vec<u8>> {
        match self.recv_frames_timeout(self.timeout) {
            Some(frames) => frames,
            None => panic!("no reply within {:?}", self.timeout),
        }
    }

    /// The next reply, or `None` after `timeout`.
    pub fn try_recv_reply(&self, timeout: Duration) -> Option<Reply> {
        let mut frames = self.recv_frames_timeout(timeout)?;
        let body = frames.pop().expect("a message has at least one frame");
        Some(Reply::parse(frames, &body))
    }

    /// The next reply, or a test failure.
    #[track_caller]
    pub fn recv_reply(&self) -> Reply {
        let mut frames = self.recv_frames();
        let body = frames.pop().expect("a message has at least one frame");
        Reply::parse(frames, &body)
    }

    /// Receives exactly `n` replies (any order).
    pub fn recv_replies(&self, n: usize) -> Vec<Reply> {
        (0..n).map(|_| self.recv_reply()).collect()
    }

    /// Asserts that nothing more arrives within `quiet` (no duplicate replies).
    #[track_caller]
    pub fn assert_silent(&self, quiet: Duration) {
        if let Some(frames) = self.recv_frames_timeout(quiet) {
            let body = frames.last().cloned().unwrap_or_default();
            panic!("unexpected extra message: {:?}", decode(&body));
        }
    }

    /// Sends a raw body and returns its one reply (no id check).
    #[track_caller]
    pub fn request_raw(&self, body: &[u8]) -> Reply {
        self.send_body(body);
        self.recv_reply()
    }

    /// Sends a request with a fresh id and returns its reply, asserting the
    /// id is echoed with the same type.
    #[track_caller]
    pub fn request(&self, command: &str, fields: &[(&str, Value)]) -> Reply {
        let id = self.fresh_id();
        self.send_request(command, &id, fields);
        let reply = self.recv_reply();
        match &reply.id {
            Some(got) if same(got, &id) => {}
            other => panic!("{command}: reply id {other:?} does not echo request id {id} (stray or duplicate reply?)"),
        }
        reply
    }

    /// `Ok(result)` or `Err((code, message))`.
    #[track_caller]
    pub fn call(&self, command: &str, fields: &[(&str, Value)]) -> Result<Value, (String, String)> {
        self.request(command, fields).outcome
    }

    /// The result of a command that must succeed.
    #[track_caller]
    pub fn ok(&self, command: &str, fields: &[(&str, Value)]) -> Value {
        match self.call(command, fields) {
            Ok(v) => v,
            Err((code, message)) => panic!("{command} failed: {code}: {message}"),
        }
    }

    /// Asserts that a command fails with `code`; returns the message.
    #[track_caller]
    pub fn expect_err(&self, command: &str, fields: &[(&str, Value)], code: &str) -> String {
        match self.call(command, fields) {
            Ok(v) => panic!("{command} {fields:?}: expected {code}, got ok: {v}"),
            Err((c, m)) => {
                assert_eq!(
                    c, code,
                    "{command} {fields:?}: wrong error code (message: {m})"
                );
                m
            }
        }
    }

    // -- conveniences over `ok` ---------------------------------------------

    pub fn ping(&self) -> Value {
        self.ok("ping", &[])
    }

    /// `get_full_state` with no oid.
    pub fn image(&self) -> Value {
        self.ok("get_full_state", &[])
    }

    pub fn roots(&self) -> HashMap<String, u64> {
        let image = self.image();
        let roots = must(&image, "roots");
        keys(roots)
            .into_iter()
            .map(|k| (k.clone(), uint(must(roots, &k))))
            .collect()
    }

    pub fn root(&self, name: &str) -> u64 {
        *self
            .roots()
            .get(name)
            .unwrap_or_else(|| panic!("no root {name}"))
    }

    pub fn object_count(&self) -> u64 {
        uint(must(&self.image(), "objects"))
    }

    /// `create_object` with these slots; returns the new oid.
    pub fn create(&self, slots: &[(&str, Value)]) -> u64 {
        let r = self.ok("create_object", &[("slots", map(slots))]);
        uint(must(&r, "oid"))
    }

    /// `get_full_state` of one object: its slots map (checks `oid` is the integer oid).
    pub fn slots(&self, oid: impl Into<Value>) -> Value {
        let oid = oid.into();
        let st = self.ok("get_full_state", &[("oid", oid.clone())]);
        let got = must(&st, "oid");
        assert!(
            matches!(got, Value::Integer(_)),
            "state oid must be an integer, got {got}"
        );
        if let Value::Integer(_) = oid {
            assert_same(got, &oid, "get_full_state oid");
        }
        must(&st, "slots").clone()
    }

    pub fn get(&self, oid: impl Into<Value>, slot: &str) -> Value {
        self.ok("get_slot", &[("oid", oid.into()), ("slot", s(slot))])
    }

    /// `set_slot`, asserting the result is `{}`.
    pub fn set(&self, oid: impl Into<Value>, slot: &str, value: Value) {
        let r = self.ok(
            "set_slot",
            &[("oid", oid.into()), ("slot", s(slot)), ("value", value)],
        );
        assert_same(&r, &empty_map(), "set_slot result");
    }

    /// `remove_slot`, asserting the result is `{}`.
    pub fn remove(&self, oid: impl Into<Value>, slot: &str) {
        let r = self.ok("remove_slot", &[("oid", oid.into()), ("slot", s(slot))]);
        assert_same(&r, &empty_map(), "remove_slot result");
    }

    /// `send`; returns the whole result `{"value", "generated"}`.
    pub fn send(
        &self,
        oid: impl Into<Value>,
        selector: &str,
        args: Vec<Value>,
    ) -> Result<Value, (String, String)> {
        self.call(
            "send",
            &[
                ("oid", oid.into()),
                ("selector", s(selector)),
                ("args", Value::Array(args)),
            ],
        )
    }

    /// `list_experts` as (name, tier, bytes), by name.
    pub fn experts(&self) -> Vec<(String, String, u64)> {
        must(&self.ok("list_experts", &[]), "experts")
            .as_array()
            .unwrap_or_else(|| panic!("experts must be an array"))
            .iter()
            .map(|e| {
                (
                    must(e, "name").as_str().unwrap().to_string(),
                    must(e, "tier").as_str().unwrap().to_string(),
                    uint(must(e, "bytes")),
                )
            })
            .collect()
    }

    /// `send` that must succeed without generating a method; returns `value`.
    #[track_caller]
    pub fn send_value(&self, oid: impl Into<Value>, selector: &str, args: Vec<Value>) -> Value {
        let r = match self.send(oid, selector, args) {
            Ok(r) => r,
            Err((c, m)) => panic!("send {selector} failed: {c}: {m}"),
        };
        let mut k = keys(&r);
        k.sort();
        assert_eq!(k, ["generated", "value"], "send result keys: {r}");
        assert_eq!(
            must(&r, "generated").as_bool(),
            Some(false),
            "generated: {r}"
        );
        must(&r, "value").clone()
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// One `uvm_state_update` event.
#[derive(Debug, Clone)]
pub struct Event {
    pub oid: u64,
    pub changed: Vec<(String, Value)>,
    pub removed: Vec<String>,
    pub tx: u64,
    /// Its number among the topic's events (from 1, gaps mean losses).
    pub seq: u64,
    pub raw: Value,
}

impl Event {
    /// The new value of `slot` in `changed`.
    pub fn value_of(&self, slot: &str) -> Option<&Value> {
        self.changed.iter().find(|(k, _)| k == slot).map(|(_, v)| v)
    }

    fn parse(frames: Vec<Vec<u8>>) -> Event {
        assert_eq!(
            frames.len(),
            2,
            "an event is two frames (topic, body), got {}",
            frames.len()
        );
        assert_eq!(frames[0], b"uvm_state_update", "event topic");
        let raw =
            decode(&frames[1]).unwrap_or_else(|e| panic!("event body is not MessagePack: {e}"));
        assert_eq!(
            must(&raw, "event").as_str(),
            Some("uvm_state_update"),
            "event name: {raw}"
        );
        let oid = uint(must(&raw, "oid"));
        let changed = must(&raw, "changed")
            .as_map()
            .unwrap_or_else(|| panic!("changed must be a map: {raw}"))
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str()
                        .unwrap_or_else(|| panic!("non-string changed key: {raw}"))
                        .to_owned(),
                    v.clone(),
                )
            })
            .collect();
        let removed = must(&raw, "removed")
            .as_array()
            .unwrap_or_else(|| panic!("removed must be an array: {raw}"))
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("removed holds a non-string: {raw}"))
                    .to_owned()
            })
            .collect();
        let tx = uint(must(&raw, "tx"));
        let seq = uint(must(&raw, "seq"));
        assert!(seq > 0, "seq counts from 1: {raw}");
        Event {
            oid,
            changed,
            removed,
            tx,
            seq,
            raw,
        }
    }
}

/// A SUB socket on the events endpoint.
pub struct Subscriber {
    events: batos_client::Subscriber,
}

impl Subscriber {
    pub fn connect(endpoint: &str, topic: &str) -> Subscriber {
        Self::connect_with(endpoint, topic, None)
    }

    /// [`Subscriber::connect`], as a CURVE client when `curve` is given.
    pub fn connect_with(endpoint: &str, topic: &str, curve: Option<&Curve>) -> Subscriber {
        let events = Connect::new(endpoint)
            .context(zmq_ctx())
            .curve(curve)
            .queues(0)
            .subscribe(topic.as_bytes())
            .unwrap_or_else(|e| panic!("subscribing to {endpoint}: {e}"));
        Subscriber { events }
    }

    /// The next event, or `None` after `timeout`.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events
            .recv_within(timeout)
            .unwrap_or_else(|e| panic!("zmq recv: {e}"))
            .map(Event::parse)
    }

    /// The next event, or a test failure.
    #[track_caller]
    pub fn next(&self) -> Event {
        self.next_timeout(REPLY_TIMEOUT)
            .unwrap_or_else(|| panic!("no event within {REPLY_TIMEOUT:?}"))
    }

    /// Beats the slow-joiner problem: writes a scratch slot until its event
    /// arrives, then drains up to the event of the last write, so later
    /// events are exactly those of later writes. Returns the scratch oid.
    pub fn sync(&self, client: &Client) -> u64 {
        let scratch = client.create(&[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n: u64 = 0;
        loop {
            assert!(
                Instant::now() < deadline,
                "the event subscription never delivered an event"
            );
            n += 1;
            client.set(scratch, "__sync", Value::from(n));
            // One write per round; an event for any of them proves we joined,
            // and every later write's event will then come too.
            if let Some(first) = self.next_timeout(Duration::from_millis(100)) {
                let mut ev = first;
                loop {
                    if ev.oid == scratch && ev.value_of("__sync").and_then(Value::as_u64) == Some(n)
                    {
                        return scratch;
                    }
                    match self.next_timeout(Duration::from_secs(1)) {
                        Some(next) => ev = next,
                        // Events are best effort (a PUB drops past its
                        // high-water mark): write again rather than wait
                        // for one that may never come.
                        None => break,
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Metrics (raw HTTP/1.1, no client crate)
// ---------------------------------------------------------------------------

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub content_type: String,
    pub text: String,
    pub samples: Vec<Sample>,
    /// `# TYPE name kind` lines.
    pub types: HashMap<String, String>,
}

impl Metrics {
    /// Sum over the series of `name` whose labels include all of `labels`;
    /// `None` if there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for sample in self.samples.iter().filter(|x| x.name == name) {
            let all = labels
                .iter()
                .all(|(k, v)| sample.labels.iter().any(|(k2, v2)| k2 == k && v2 == v));
            if all {
                *found.get_or_insert(0.0) += sample.value;
            }
        }
        found
    }

    /// Like `sum`, 0 when absent (counters that were never incremented).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sum(name, labels).unwrap_or(0.0)
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|x| x.name == name)
    }
}

/// `GET http://ADDR/metrics`.
pub fn scrape(addr: &str) -> Metrics {
    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "GET /metrics status; body: {body}");
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    parse_metrics(content_type, body)
}

/// A raw HTTP/1.1 GET; returns (status, lower-cased headers, body).
pub fn http_get(addr: &str, path: &str) -> (u16, HashMap<String, String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .expect("write timeout");
    // One write, so even a server that reads a single segment sees it all.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("read response from {addr}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .get("transfer-encoding")
        .map(|t| t.eq_ignore_ascii_case("chunked"))
        == Some(true)
    {
        body = dechunk(&body);
    }
    (
        status,
        headers,
        String::from_utf8(body).expect("metrics body is UTF-8"),
    )
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let size = usize::from_str_radix(&size_text, 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn parse_metrics(content_type: String, text: String) -> Metrics {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                types.insert(name.to_owned(), kind.to_owned());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let sp = line.find(' ').unwrap_or_else(|| panic!("no value: {line}"));
                (&line[..sp], Vec::new(), &line[sp..])
            }
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            t => t
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad sample value in {line}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Metrics {
        content_type,
        text,
        samples,
        types,
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',') | Some(' ')) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            return out;
        }
        assert_eq!(
            chars.next(),
            Some('"'),
            "label value must be quoted in {{{text}}}"
        );
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
    }
}

/// Polls `cond` until it holds (for values with no event, like gauges).
#[track_caller]
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Stdout parsed as one JSON document (asserting exit 0).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, Some(0), "CLI failed: {self:?}");
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("CLI stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs the CLI (`batos ARGS...`), bounded by 30 s.
pub fn cli(args: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(batos_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(File::create(&out_path).expect("stdout file")))
        .stderr(Stdio::from(File::create(&err_path).expect("stderr file")));
    kill_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", batos_bin().display()));
    let status = wait_child(&mut child, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("`batos {}` did not exit within 30 s", args.join(" ")));
    CliOutput {
        code: status.code(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// A guest SDK example built by tests/build.rs (`counter`, `forward`, ...).
pub fn guest_example(name: &str) -> Vec<u8> {
    let dir = env!("BATOS_GUEST_EXAMPLES");
    std::fs::read(format!("{dir}/{name}.wasm")).unwrap_or_else(|e| panic!("{dir}/{name}.wasm: {e}"))
}

/// A loopback TCP port with nothing listening on it (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local_addr").port()
}

/// Writes one transaction straight into a stopped kernel's image under
/// `root` (its RocksDB, with the store's own code): the state a crash
/// between two transactions, damage on disk, or an older kernel leaves,
/// which no client can write through the bridge.
pub fn plant(root: &Path, edit: impl FnOnce(&mut Transaction)) {
    use batos_object::image::{CommitGroup, Image};
    let image = batos_store::RocksImage::open(
        &root.join("data"),
        &batos_store::StoreOptions {
            block_cache_bytes: 1 << 20,
            keep_snapshots: 8,
        },
    )
    .expect("open the stopped kernel's image");
    let meta = image.meta().expect("read the image's counters");
    let mut tx = Transaction::new();
    edit(&mut tx);
    let group = CommitGroup {
        transactions: vec![(meta.last_tx + 1, &tx)],
        next_oid: meta.next_oid,
        objects: meta.objects,
    };
    image
        .commit(&group, true)
        .expect("write the planted transaction");
}

/// A data slot for [`plant`].
pub fn data(value: Value) -> Slot {
    Slot::Data(value)
}
