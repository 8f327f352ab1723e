//! The steward ("Ship of Theseus"): runs the kernel as a child process, restarts it when it dies, and applies upgrades dropped in the upgrade channel, while the image survives every step.
//!
//! `batos steward [run flags...]` is the genesis command. The steward:
//!
//! - starts `KERNEL_BINARY run [run flags...]`, passes the kernel's stdout
//!   through, waits for its ready line and checks it answers `ping`, then
//!   prints `batos steward ready endpoint=... kernel_pid=... steward_metrics=...`;
//! - restarts the kernel when it exits without being asked to, after 100 ms,
//!   200 ms, 400 ms ... (at most 5 s), and gives up with exit status 3 when
//!   it exits more than `--max-restarts` times within `--restart-window-s`;
//! - watches the upgrade channel with notify; an instruction file
//!   ([`instruction`]) is validated, and only then is the kernel stopped
//!   (SIGTERM, bounded wait, SIGKILL), the upgrade applied, and the kernel
//!   started again and pinged; if it does not come up, the previous binary
//!   and configuration are restored and that kernel is started instead;
//! - on SIGTERM/SIGINT, stops the kernel gracefully and exits 0 if it did.
//!
//! Ports given as wildcards (`tcp://127.0.0.1:*`, `127.0.0.1:0`) are pinned
//! to what the first kernel bound, so clients keep one address across
//! restarts. `docs/steward.md` is the user's guide.
//!
//! Everything the supervisor waits for is an event on one channel: the
//! kernel's ready line, its exit, a signal, an instruction file. The only
//! timers are the restart backoff and the bounds on each wait.

pub mod channel;
mod child;
mod error;
mod files;
pub mod instruction;
mod metrics;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use self::channel::{request_upgrade, Outcome, ResultRecord};
pub use self::error::StewardError;
pub use self::instruction::{Action, CommandSpec, Instruction, INSTRUCTION_VERSION};

use self::channel::Layout;
use self::child::{describe, signal_name, Kernel, Ready, Startup};
use self::instruction::{ManagedConfig, Plan, Policy, Step};
use self::metrics::StewardMetrics;
use batos_client::Client;
use batos_config::{Config, Durability};

/// First restart delay; each further failure in the window doubles it.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The `batos run` flags the steward passes to each kernel it starts.
#[derive(Debug, Clone, Default)]
pub struct KernelFlags {
    /// `--config FILE` (else `$BATOS_CONFIG`). `set_config` edits this file.
    pub config: Option<PathBuf>,
    /// `--data DIR`.
    pub data: Option<PathBuf>,
    /// `--endpoint URL`.
    pub endpoint: Option<String>,
    /// `--events URL`.
    pub events: Option<String>,
    /// `--metrics HOST:PORT` (the kernel's own endpoint).
    pub metrics: Option<String>,
    /// `--durability sync|buffered`.
    pub durability: Option<Durability>,
    /// `--no-first-conversation`.
    pub no_first_conversation: bool,
    /// `--model PATH`.
    pub model: Option<PathBuf>,
}

/// How the steward runs (`batos steward --help` lists the flags).
#[derive(Debug, Clone)]
pub struct StewardOptions {
    /// Passed to `batos run`.
    pub kernel: KernelFlags,
    /// The kernel binary the steward runs and upgrades in place (`PATH.new`
    /// is the staged upgrade, `PATH.prev` the previous binary). Default:
    /// this executable.
    pub kernel_binary: Option<PathBuf>,
    /// The watched upgrade channel folder.
    pub channel: PathBuf,
    /// Folders `replace_binary` payloads may come from (default: `CHANNEL/payload`).
    pub allowed_sources: Vec<PathBuf>,
    /// The `run_command` allow-list.
    pub commands: BTreeMap<String, CommandSpec>,
    /// `HOST:PORT` of the steward's metrics; empty disables them.
    pub metrics_listen: String,
    /// Serve the steward's metrics on an address other machines can reach
    /// (they have no authentication); off, such an address is refused.
    pub metrics_allow_remote: bool,
    /// More unexpected exits than this within `restart_window` stop the steward.
    pub max_restarts: u32,
    /// The crash-loop window.
    pub restart_window: Duration,
    /// How long a kernel may take to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// How long a kernel may take to print its ready line.
    pub ready_timeout: Duration,
    /// How long the steward's `ping` waits for its reply.
    pub ping_timeout: Duration,
    /// How long a `run_command` command may run.
    pub command_timeout: Duration,
}

impl Default for StewardOptions {
    fn default() -> Self {
        StewardOptions {
            kernel: KernelFlags::default(),
            kernel_binary: None,
            channel: PathBuf::from("upgrade_channel"),
            allowed_sources: Vec::new(),
            commands: BTreeMap::new(),
            metrics_listen: "127.0.0.1:9465".into(),
            metrics_allow_remote: false,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(300),
        }
    }
}

/// The steward file (`--steward-config`, TOML).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StewardFile {
    /// Folders payloads may come from (added to `--allow-source`).
    #[serde(default)]
    allowed_sources: Vec<PathBuf>,
    /// `NAME = ["PROGRAM", "ARG", ...]`.
    #[serde(default)]
    commands: BTreeMap<String, Vec<String>>,
    /// Bound on each allowed command's run.
    #[serde(default)]
    command_timeout_s: Option<u64>,
}

impl StewardOptions {
    /// Adds the settings of a steward file: allowed source folders, allowed
    /// commands (a command already named keeps its earlier definition), and
    /// the command timeout.
    pub fn load_file(&mut self, path: &Path) -> Result<(), StewardError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StewardError::io(format!("reading {}", path.display()), e))?;
        let file: StewardFile = toml::from_str(&text)
            .map_err(|e| StewardError::Usage(format!("{}: {e}", path.display())))?;
        self.allowed_sources.extend(file.allowed_sources);
        for (name, argv) in file.commands {
            instruction::check_command_name(&name)?;
            let spec = CommandSpec::from_argv(&name, argv)?;
            self.commands.entry(name).or_insert(spec);
        }
        if let Some(secs) = file.command_timeout_s {
            self.command_timeout = Duration::from_secs(secs);
        }
        Ok(())
    }

    /// Adds an `--allow-command NAME=PROGRAM [ARGS...]` (a later one of the
    /// same name replaces an earlier one).
    pub fn allow_command(&mut self, flag: &str) -> Result<(), StewardError> {
        let (name, spec) = CommandSpec::parse_flag(flag)?;
        self.commands.insert(name, spec);
        Ok(())
    }
}

/// The restart delay after `failures` unexpected exits in the window:
/// 100 ms, 200 ms, 400 ms ... at most [`BACKOFF_MAX`].
pub fn backoff(failures: usize) -> Duration {
    let doublings = failures.saturating_sub(1).min(16) as u32;
    (BACKOFF_BASE * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// A port the kernel picks itself (`tcp://HOST:*`, `HOST:0`, `ipc://*`).
fn is_wildcard(address: &str) -> bool {
    address.ends_with(":*") || address.ends_with(":0") || address == "ipc://*"
}

/// Runs the steward until SIGTERM/SIGINT (`Ok` when the kernel then exits
/// 0) or until it gives up (`Err`; [`StewardError::exit_code`] is the
/// process status).
///
/// Call it before the process starts any thread: it blocks SIGTERM and
/// SIGINT and receives them on a thread of its own, and threads started
/// earlier would not have them blocked.
pub fn run(opts: StewardOptions) -> Result<(), StewardError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    receive_signals(tx.clone())?;
    let binary = match &opts.kernel_binary {
        Some(path) => path.clone(),
        None => {
            std::env::current_exe().map_err(|e| StewardError::io("finding this executable", e))?
        }
    };
    if !binary.is_file() {
        return Err(StewardError::Usage(format!(
            "the kernel binary {} is not a file",
            binary.display()
        )));
    }
    let config_path = opts
        .kernel
        .config
        .clone()
        .or_else(|| std::env::var_os("BATOS_CONFIG").map(PathBuf::from));
    let layout = Layout::create(&opts.channel)?;
    let sources = if opts.allowed_sources.is_empty() {
        vec![layout.payload.clone()]
    } else {
        opts.allowed_sources.clone()
    };
    let mut allowed = Vec::with_capacity(sources.len());
    for source in sources {
        let canonical = source.canonicalize().map_err(|e| {
            StewardError::Usage(format!("allowed source folder {}: {e}", source.display()))
        })?;
        allowed.push(canonical);
    }
    let metrics = StewardMetrics::new()?;
    batos_metrics_http::check_listen(
        &opts.metrics_listen,
        opts.metrics_allow_remote,
        "the steward's metrics",
        "pass --steward-metrics-allow-remote",
    )
    .map_err(StewardError::Usage)?;
    let metrics_addr = metrics.serve(&opts.metrics_listen)?;
    let watcher = channel::watch(&layout, tx.clone())?;
    tracing::info!(
        binary = %binary.display(),
        channel = %layout.root.display(),
        config = ?config_path,
        allowed_sources = ?allowed,
        commands = ?opts.commands.keys().collect::<Vec<_>>(),
        metrics = %metrics_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        "steward starting"
    );
    let mut steward = Steward {
        inbox: Inbox {
            rx,
            tx,
            root: layout.root.clone(),
            pending: VecDeque::new(),
            stop: None,
        },
        opts,
        binary,
        config_path,
        layout,
        allowed,
        metrics,
        metrics_addr,
        kernel: None,
        generation: 0,
        crashes: VecDeque::new(),
        announced: false,
        endpoint: String::new(),
        pins: Pins::default(),
        _watcher: watcher,
    };
    steward.serve()
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started
/// after it) and turns them into [`Event::Signal`] on a dedicated thread.
fn receive_signals(tx: Sender<Event>) -> Result<(), StewardError> {
    // SAFETY: sigset_t is plain data for which all-zero bytes are valid.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls write only to it and to
    // this thread's signal mask.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(StewardError::io(
            "blocking SIGTERM and SIGINT",
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    std::thread::Builder::new()
        .name("steward-signals".into())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` and `signal` are valid for the call.
            let rc = unsafe { libc::sigwait(&set, &mut signal) };
            if rc != 0 {
                tracing::error!(error = %std::io::Error::from_raw_os_error(rc), "sigwait failed; signals are no longer handled");
                return;
            }
            if tx.send(Event::Signal(signal)).is_err() {
                return;
            }
        })
        .map_err(|e| StewardError::io("starting the signal thread", e))?;
    Ok(())
}

/// What the supervisor hears about.
pub(crate) enum Event {
    /// A kernel printed its ready line.
    Ready {
        /// Which start.
        generation: u64,
        /// What it said.
        ready: Ready,
    },
    /// A kernel exited (not reaped yet).
    Exited {
        /// Which start.
        generation: u64,
    },
    /// SIGTERM or SIGINT reached the steward.
    Signal(i32),
    /// An instruction file is complete in the channel.
    File(PathBuf),
    /// Events may have been lost: look at the whole channel folder.
    Rescan,
}

/// The supervisor's one event queue. Instruction files are set aside in
/// `pending` while the supervisor waits for something else (a ready line, an
/// exit), and handled one at a time when it is idle.
pub(crate) struct Inbox {
    rx: Receiver<Event>,
    tx: Sender<Event>,
    root: PathBuf,
    pending: VecDeque<PathBuf>,
    stop: Option<i32>,
}

impl Inbox {
    /// For the threads that report kernel events.
    pub(crate) fn sender(&self) -> &Sender<Event> {
        &self.tx
    }

    /// The next ready line, exit or signal, or `None` once `deadline`
    /// passes. Instruction files arriving meanwhile are queued; signals are
    /// also remembered (`stop`).
    pub(crate) fn next(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            let event = self.rx.recv_deadline(deadline).ok()?;
            if let Some(event) = self.absorb(event) {
                return Some(event);
            }
        }
    }

    /// Blocks for the next event of any kind: `None` when it was an
    /// instruction file (now queued), for the caller to handle it.
    fn next_any(&mut self) -> Option<Event> {
        // Never disconnected: the inbox holds a sender.
        let event = self.rx.recv().ok()?;
        self.absorb(event)
    }

    fn absorb(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::File(path) => {
                self.queue(path);
                None
            }
            Event::Rescan => {
                for path in channel::scan(&self.root) {
                    self.queue(path);
                }
                None
            }
            Event::Signal(signal) => {
                tracing::info!(signal = signal_name(signal), "signal received");
                self.stop.get_or_insert(signal);
                Some(Event::Signal(signal))
            }
            other => Some(other),
        }
    }

    fn queue(&mut self, path: PathBuf) {
        if !self.pending.contains(&path) {
            self.pending.push_back(path);
        }
    }
}

/// Why a kernel start did not give a kernel answering `ping`.
enum StartError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    Exited(String),
    TimedOut(Duration),
    Ping(String),
    Interrupted,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "the kernel could not be started: {e}"),
            StartError::Wait(e) => write!(f, "waiting for the kernel failed: {e}"),
            StartError::Exited(how) => write!(f, "the kernel {how} before it was ready"),
            StartError::TimedOut(t) => write!(
                f,
                "the kernel printed no ready line within {} s",
                t.as_secs()
            ),
            StartError::Ping(why) => {
                write!(f, "the kernel was ready but did not answer ping: {why}")
            }
            StartError::Interrupted => write!(f, "stop requested while the kernel was starting"),
        }
    }
}

/// A wildcard address and what the kernel bound for it.
#[derive(Debug, Clone, PartialEq)]
struct Pin {
    requested: String,
    resolved: String,
}

/// Keeps wildcard addresses (endpoint, events, metrics) pinned to what a
/// kernel bound, so clients keep one address across restarts. Best effort:
/// a start that fails while using pinned addresses forgets them (one may
/// have been taken meanwhile), and the next start binds fresh ones.
#[derive(Debug, Default)]
struct Pins {
    /// Endpoint, events, metrics as last requested (flag, else configuration).
    requested: [Option<String>; 3],
    /// What a kernel bound for each wildcard request.
    pinned: [Option<Pin>; 3],
    /// Whether the last start was given a pinned address.
    used: bool,
}

impl Pins {
    /// What to pass for endpoint, events, metrics: the pinned address where
    /// the request is the one it was pinned for, else the flag (if any).
    fn choose(
        &mut self,
        requested: [Option<String>; 3],
        flags: [&Option<String>; 3],
    ) -> [Option<String>; 3] {
        let mut used = false;
        let chosen = std::array::from_fn(|i| match (&self.pinned[i], &requested[i]) {
            (Some(pin), Some(requested)) if pin.requested == *requested => {
                used = true;
                Some(pin.resolved.clone())
            }
            _ => flags[i].clone(),
        });
        self.requested = requested;
        self.used = used;
        chosen
    }

    /// Pins what the kernel bound for wildcard requests.
    fn record(&mut self, ready: &Ready) {
        let resolved = [&ready.endpoint, &ready.events, &ready.metrics];
        for (i, requested) in self.requested.iter().enumerate() {
            let Some(requested) = requested else { continue };
            if is_wildcard(requested) && !resolved[i].is_empty() && resolved[i] != "off" {
                self.pinned[i] = Some(Pin {
                    requested: requested.clone(),
                    resolved: resolved[i].clone(),
                });
            }
        }
    }

    /// After a failed start: forgets the pinned addresses if it used any
    /// (`true` then).
    fn forget(&mut self) -> bool {
        let used = std::mem::take(&mut self.used);
        if used {
            self.pinned = Default::default();
        }
        used
    }
}

/// Files staged for an upgrade before the kernel is stopped.
struct Staged {
    /// `BINARY.new`: the payload's copy, hash checked, executable.
    binary: Option<PathBuf>,
}

impl Staged {
    fn discard(&self) {
        if let Some(path) = &self.binary {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What an upgrade changed, to undo it: (file, its `.prev` copy).
#[derive(Default)]
struct Backups {
    binary: Option<(PathBuf, PathBuf)>,
    config: Option<(PathBuf, PathBuf)>,
}

impl Backups {
    /// Puts the previous binary and configuration back; says what it restored.
    fn restore(&mut self) -> std::io::Result<Vec<&'static str>> {
        let mut restored = Vec::new();
        if let Some((current, prev)) = self.binary.take() {
            std::fs::rename(&prev, &current)?;
            sync_parent(&current)?;
            tracing::info!(binary = %current.display(), "previous kernel binary restored");
            restored.push("binary");
        }
        if let Some((current, prev)) = self.config.take() {
            std::fs::rename(&prev, &current)?;
            sync_parent(&current)?;
            tracing::info!(config = %current.display(), "previous configuration restored");
            restored.push("configuration");
        }
        Ok(restored)
    }
}

struct Steward {
    opts: StewardOptions,
    binary: PathBuf,
    config_path: Option<PathBuf>,
    layout: Layout,
    allowed: Vec<PathBuf>,
    inbox: Inbox,
    metrics: StewardMetrics,
    metrics_addr: Option<SocketAddr>,
    kernel: Option<Kernel>,
    generation: u64,
    /// When unexpected exits happened, within the restart window.
    crashes: VecDeque<Instant>,
    /// Whether the steward's ready line was printed.
    announced: bool,
    /// The current kernel's commands endpoint.
    endpoint: String,
    /// Wildcard addresses pinned to what a kernel bound.
    pins: Pins,
    _watcher: notify::RecommendedWatcher,
}

impl Steward {
    fn serve(&mut self) -> Result<(), StewardError> {
        match self.start_kernel(true) {
            Ok(()) => self.announce("start"),
            Err(StartError::Interrupted) => return self.shutdown(),
            Err(err) => {
                tracing::warn!(error = %err, "the first kernel did not come up");
                self.recover(err.to_string())?;
            }
        }
        // Instructions submitted while no steward was watching.
        for path in channel::scan(&self.layout.root) {
            self.inbox.queue(path);
        }
        loop {
            if let Some(signal) = self.inbox.stop {
                tracing::info!(
                    signal = signal_name(signal),
                    "stopping the kernel, then the steward"
                );
                return self.shutdown();
            }
            if let Some(path) = self.inbox.pending.pop_front() {
                self.handle_instruction(&path)?;
                continue;
            }
            let Some(event) = self.inbox.next_any() else {
                continue;
            };
            if let Event::Exited { generation } = event {
                let Some(mut kernel) = self.kernel.take_if(|k| k.generation() == generation) else {
                    continue;
                };
                self.metrics.kernel_down();
                let status = kernel
                    .reap()
                    .map_err(|e| StewardError::io("reaping the kernel", e))?;
                tracing::warn!(pid = kernel.pid(), status = %describe(status), "the kernel exited unexpectedly");
                self.recover(format!("the kernel {}", describe(status)))?;
            }
        }
    }

    /// Stops the kernel (if one runs) and ends the steward.
    fn shutdown(&mut self) -> Result<(), StewardError> {
        let Some(mut kernel) = self.kernel.take() else {
            tracing::info!("steward stopped (no kernel was running)");
            return Ok(());
        };
        let status = child::stop(&mut kernel, self.opts.stop_timeout, &mut self.inbox)?;
        self.metrics.kernel_down();
        if status.success() {
            tracing::info!(
                pid = kernel.pid(),
                "kernel stopped cleanly; steward exiting"
            );
            Ok(())
        } else {
            Err(StewardError::KernelExit(describe(status)))
        }
    }

    /// Restarts the kernel after an unexpected exit (or a failed start), with
    /// backoff, until one answers (`true`) or a stop is requested (`false`);
    /// more exits than allowed in the window end the steward.
    fn recover(&mut self, mut last: String) -> Result<bool, StewardError> {
        self.metrics.kernel_down();
        loop {
            if self.inbox.stop.is_some() {
                return Ok(false);
            }
            let now = Instant::now();
            self.crashes.push_back(now);
            while self
                .crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.opts.restart_window)
            {
                self.crashes.pop_front();
            }
            let exits = self.crashes.len();
            if exits > self.opts.max_restarts as usize {
                let err = StewardError::CrashLoop {
                    exits,
                    window_s: self.opts.restart_window.as_secs(),
                    limit: self.opts.max_restarts,
                    last,
                };
                tracing::error!(error = %err, "crash loop; the steward stops");
                return Err(err);
            }
            let delay = backoff(exits);
            tracing::warn!(
                reason = %last,
                exits_in_window = exits,
                delay_ms = delay.as_millis() as u64,
                "restarting the kernel after a delay"
            );
            if !self.pause(delay) {
                return Ok(false);
            }
            self.metrics.restarted();
            match self.start_kernel(true) {
                Ok(()) => {
                    self.announce("crash");
                    return Ok(true);
                }
                Err(StartError::Interrupted) => return Ok(false),
                Err(err) => {
                    tracing::warn!(error = %err, "restart failed");
                    last = err.to_string();
                }
            }
        }
    }

    /// The backoff timer: `false` if a stop signal came first.
    fn pause(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            match self.inbox.next(deadline) {
                None => return true,
                Some(Event::Signal(_)) => return false,
                Some(_) => {}
            }
        }
    }

    /// Starts a kernel and waits until it is ready and answers `ping`.
    fn start_kernel(&mut self, interruptible: bool) -> Result<(), StartError> {
        let result = self.try_start_kernel(interruptible);
        if let Err(err) = &result {
            if !matches!(err, StartError::Interrupted) && self.pins.forget() {
                tracing::warn!("the kernel did not come up on its pinned addresses; the next start binds fresh ones");
            }
        }
        result
    }

    fn try_start_kernel(&mut self, interruptible: bool) -> Result<(), StartError> {
        self.generation += 1;
        let generation = self.generation;
        let args = self.kernel_args();
        let mut kernel = Kernel::spawn(&self.binary, &args, generation, self.inbox.sender())
            .map_err(StartError::Spawn)?;
        let pid = kernel.pid();
        tracing::info!(pid, generation, binary = %self.binary.display(), args = ?args, "kernel started; waiting for its ready line");
        let startup = child::wait_ready(
            &mut kernel,
            self.opts.ready_timeout,
            &mut self.inbox,
            interruptible,
        )
        .map_err(StartError::Wait)?;
        let failure = match startup {
            Startup::Ready(ready) => match ping(&ready.endpoint, self.opts.ping_timeout) {
                Ok(()) => {
                    tracing::info!(pid, generation, endpoint = %ready.endpoint, "kernel ready and answering ping");
                    self.pins.record(&ready);
                    self.endpoint = ready.endpoint;
                    self.kernel = Some(kernel);
                    self.metrics.kernel_up();
                    return Ok(());
                }
                Err(why) => StartError::Ping(why),
            },
            Startup::Exited(status) => return Err(StartError::Exited(describe(status))),
            Startup::TimedOut => StartError::TimedOut(self.opts.ready_timeout),
            Startup::Interrupted => StartError::Interrupted,
        };
        // Running but not usable: stop it before saying so.
        if let Err(err) = child::stop(&mut kernel, self.opts.stop_timeout, &mut self.inbox) {
            tracing::error!(pid, error = %err, "could not stop a kernel that failed to start");
        }
        Err(failure)
    }

    /// `run` and the flags, with wildcard addresses pinned to what an earlier
    /// kernel bound for the same request.
    fn kernel_args(&mut self) -> Vec<OsString> {
        let flags = &self.opts.kernel;
        let config = Config::load(self.config_path.as_deref()).ok();
        let requested = [
            flags
                .endpoint
                .clone()
                .or_else(|| config.as_ref().map(|c| c.bridge.endpoint.clone())),
            flags
                .events
                .clone()
                .or_else(|| config.as_ref().map(|c| c.bridge.events.clone())),
            flags
                .metrics
                .clone()
                .or_else(|| config.as_ref().map(|c| c.metrics.listen.clone())),
        ];
        let addresses = self
            .pins
            .choose(requested, [&flags.endpoint, &flags.events, &flags.metrics]);
        let mut args: Vec<OsString> = vec!["run".into()];
        if let Some(path) = &self.config_path {
            args.push("--config".into());
            args.push(path.into());
        }
        if let Some(data) = &flags.data {
            args.push("--data".into());
            args.push(data.into());
        }
        for (flag, value) in ["--endpoint", "--events", "--metrics"]
            .into_iter()
            .zip(addresses)
        {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value.into());
            }
        }
        if let Some(durability) = flags.durability {
            args.push("--durability".into());
            args.push(match durability {
                Durability::Sync => "sync".into(),
                Durability::Buffered => "buffered".into(),
            });
        }
        if flags.no_first_conversation {
            args.push("--no-first-conversation".into());
        }
        if let Some(model) = &flags.model {
            args.push("--model".into());
            args.push(model.clone().into());
        }
        args
    }

    /// Prints the steward's ready line the first time a kernel is up, and a
    /// `restarted` line after that.
    fn announce(&mut self, cause: &str) {
        let pid = self.kernel.as_ref().map(Kernel::pid).unwrap_or(0);
        let line = if self.announced {
            format!(
                "batos steward restarted endpoint={} kernel_pid={pid} cause={cause}",
                self.endpoint
            )
        } else {
            self.announced = true;
            let metrics = self
                .metrics_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "off".into());
            format!(
                "batos steward ready endpoint={} kernel_pid={pid} steward_metrics={metrics}",
                self.endpoint
            )
        };
        tracing::info!(pid, endpoint = %self.endpoint, cause, "kernel up");
        print_line(&line);
    }

    /// What instructions may use, with the configuration file as it is now.
    fn policy(&self) -> Policy {
        let config = self.config_path.as_ref().and_then(|path| match std::fs::read_to_string(path) {
            Ok(text) => Some(ManagedConfig { path: path.clone(), text }),
            Err(err) => {
                tracing::warn!(config = %path.display(), error = %err, "cannot read the configuration file");
                None
            }
        });
        Policy {
            channel: self.layout.root.clone(),
            allowed_sources: self.allowed.clone(),
            commands: self.opts.commands.clone(),
            config,
        }
    }

    /// Validates one instruction file, then rejects it (the kernel untouched)
    /// or carries it out.
    fn handle_instruction(&mut self, path: &Path) -> Result<(), StewardError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) => {
                tracing::debug!(file = %name, error = %err, "instruction file gone (already handled)");
                return Ok(());
            }
        };
        tracing::info!(file = %name, "upgrade instruction received");
        let bytes = if meta.is_file() {
            channel::read_instruction(path)
        } else {
            Err(StewardError::Invalid(
                "an instruction must be a regular file, not a symlink or a folder".into(),
            ))
        };
        let id = bytes.as_ref().ok().and_then(|b| instruction::peek_id(b));
        let validated = bytes
            .and_then(|b| instruction::validate(&b, &self.policy()))
            .and_then(|plan| self.stage(&plan).map(|staged| (plan, staged)));
        let (plan, staged) = match validated {
            Ok(ok) => ok,
            Err(reason) => {
                tracing::warn!(file = %name, id = ?id, reason = %reason, "upgrade instruction rejected; the kernel keeps running");
                let archived = match channel::archive(path, &self.layout.rejected) {
                    Ok(archived) => archived,
                    Err(err) => {
                        tracing::error!(file = %name, error = %err, "cannot move a rejected instruction");
                        return Ok(());
                    }
                };
                self.finish(&name, &archived, id, Outcome::Rejected, reason.to_string());
                return Ok(());
            }
        };
        // At most once: out of the channel before anything changes.
        let archived = match channel::archive(path, &self.layout.processed) {
            Ok(archived) => archived,
            Err(err) => {
                tracing::error!(file = %name, error = %err, "cannot move the instruction to processed/; not applying it");
                staged.discard();
                return Ok(());
            }
        };
        tracing::info!(file = %name, id = %plan.id, actions = plan.steps.len(), "applying upgrade");
        let (outcome, reason, kernel_up) = self.apply(&plan, &staged)?;
        self.finish(
            &name,
            &archived,
            Some(plan.id.clone()),
            outcome,
            reason.clone(),
        );
        if !kernel_up {
            self.recover(reason)?;
        }
        Ok(())
    }

    /// Records how an instruction ended: result file, metrics, a stdout line.
    fn finish(
        &self,
        name: &str,
        archived: &Path,
        id: Option<String>,
        outcome: Outcome,
        reason: String,
    ) {
        let record = ResultRecord::now(id, outcome, reason);
        let record_path = match channel::write_record(archived, &record) {
            Ok(path) => path.display().to_string(),
            Err(err) => {
                tracing::error!(file = %name, error = %err, "cannot write the result record");
                String::from("none")
            }
        };
        self.metrics.upgrade(outcome);
        tracing::info!(file = %name, id = ?record.id, outcome = outcome.as_str(), reason = %record.reason, "upgrade instruction handled");
        print_line(&format!(
            "batos steward upgrade file={name} outcome={} record={record_path}",
            outcome.as_str()
        ));
    }

    /// Copies a replacement binary next to the current one (`BINARY.new`),
    /// checking the hash of the copy itself, while the kernel still runs.
    fn stage(&self, plan: &Plan) -> Result<Staged, StewardError> {
        for step in &plan.steps {
            if let Step::ReplaceBinary { source, sha256 } = step {
                let staged = sibling(&self.binary, ".new");
                let actual = copy_hashing(source, &staged).map_err(|e| {
                    let _ = std::fs::remove_file(&staged);
                    StewardError::io(
                        format!("copying {} to {}", source.display(), staged.display()),
                        e,
                    )
                })?;
                if actual != *sha256 {
                    let _ = std::fs::remove_file(&staged);
                    return Err(StewardError::HashMismatch {
                        path: source.display().to_string(),
                        expected: hex::encode(sha256),
                        actual: hex::encode(actual),
                    });
                }
                return Ok(Staged {
                    binary: Some(staged),
                });
            }
        }
        Ok(Staged { binary: None })
    }

    /// Stops the kernel, applies the plan, starts the kernel and pings it;
    /// rolls back if any of that fails. Returns the outcome, the reason, and
    /// whether a kernel is up afterwards.
    fn apply(
        &mut self,
        plan: &Plan,
        staged: &Staged,
    ) -> Result<(Outcome, String, bool), StewardError> {
        if let Some(mut kernel) = self.kernel.take() {
            child::stop(&mut kernel, self.opts.stop_timeout, &mut self.inbox)?;
            self.metrics.kernel_down();
        }
        let mut backups = Backups::default();
        let failure = match self.apply_steps(plan, staged, &mut backups) {
            Err(why) => {
                staged.discard();
                why
            }
            Ok(()) => match self.start_kernel(false) {
                Ok(()) => {
                    self.announce("upgrade");
                    let reason = format!(
                        "applied {} action(s); the new kernel (pid {}) answers ping",
                        plan.steps.len(),
                        self.kernel_pid()
                    );
                    tracing::info!(id = %plan.id, "upgrade applied");
                    return Ok((Outcome::Applied, reason, true));
                }
                Err(err) => format!("the new kernel did not come up: {err}"),
            },
        };
        tracing::warn!(id = %plan.id, reason = %failure, "upgrade failed; rolling back");
        let restored = match backups.restore() {
            Ok(what) if what.is_empty() => "nothing needed restoring".to_string(),
            Ok(what) => format!("restored the previous {}", what.join(" and ")),
            Err(err) => {
                tracing::error!(error = %err, "restoring the previous files failed");
                format!("restoring the previous files failed ({err})")
            }
        };
        match self.start_kernel(false) {
            Ok(()) => {
                self.announce("rollback");
                let reason = format!(
                    "{failure}; {restored}; the previous kernel (pid {}) answers ping",
                    self.kernel_pid()
                );
                tracing::info!(id = %plan.id, "upgrade rolled back");
                Ok((Outcome::RolledBack, reason, true))
            }
            Err(err) => {
                let reason =
                    format!("{failure}; {restored}; but that kernel did not come up either: {err}");
                tracing::error!(id = %plan.id, reason = %reason, "rollback did not bring a kernel up");
                Ok((Outcome::RolledBack, reason, false))
            }
        }
    }

    fn kernel_pid(&self) -> u32 {
        self.kernel.as_ref().map(Kernel::pid).unwrap_or(0)
    }

    /// Carries out the steps in order (the kernel is stopped), keeping what
    /// is needed to undo them.
    fn apply_steps(
        &self,
        plan: &Plan,
        staged: &Staged,
        backups: &mut Backups,
    ) -> Result<(), String> {
        for step in &plan.steps {
            match step {
                Step::ReplaceBinary { .. } => {
                    let Some(new) = &staged.binary else {
                        return Err("no staged binary (internal error)".into());
                    };
                    let prev = sibling(&self.binary, ".prev");
                    keep_previous(&self.binary, &prev, true).map_err(|e| {
                        format!("keeping the previous binary as {}: {e}", prev.display())
                    })?;
                    backups.binary = Some((self.binary.clone(), prev));
                    std::fs::rename(new, &self.binary)
                        .and_then(|()| sync_parent(&self.binary))
                        .map_err(|e| format!("installing {}: {e}", self.binary.display()))?;
                    tracing::info!(binary = %self.binary.display(), "kernel binary replaced");
                }
                Step::SetConfig { key, text } => {
                    let Some(path) = &self.config_path else {
                        return Err("no configuration file is managed (internal error)".into());
                    };
                    if backups.config.is_none() {
                        let prev = sibling(path, ".prev");
                        keep_previous(path, &prev, false).map_err(|e| {
                            format!(
                                "keeping the previous configuration as {}: {e}",
                                prev.display()
                            )
                        })?;
                        backups.config = Some((path.clone(), prev));
                    }
                    channel::write_atomic(path, text.as_bytes())
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    tracing::info!(key = %key, config = %path.display(), "configuration changed");
                }
                Step::RunCommand { name, spec } => self.run_command(name, spec)?,
            }
        }
        Ok(())
    }

    /// Runs an allowed command to completion (bounded); its stdout goes to
    /// the steward's stderr, so the steward's stdout stays line protocol.
    fn run_command(&self, name: &str, spec: &CommandSpec) -> Result<(), String> {
        tracing::info!(command = name, program = %spec.program.display(), args = ?spec.args, "running an allowed command");
        let stdout = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit());
        child::default_signals(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("command {name:?} could not start: {e}"))?;
        let pid = child.id();
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::Builder::new()
            .name(format!("command-{name}"))
            .spawn(move || {
                child::wait_without_reaping(pid);
                let _ = tx.send(());
            })
            .map_err(|e| format!("command {name:?}: {e}"))?;
        let timed_out = rx.recv_timeout(self.opts.command_timeout).is_err();
        if timed_out {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| format!("command {name:?}: {e}"))?;
        if timed_out {
            return Err(format!(
                "command {name:?} did not finish within {} s and was killed",
                self.opts.command_timeout.as_secs()
            ));
        }
        if status.success() {
            tracing::info!(command = name, "command finished");
            Ok(())
        } else {
            Err(format!("command {name:?} {}", describe(status)))
        }
    }
}

/// One `ping` over the bridge.
fn ping(endpoint: &str, timeout: Duration) -> Result<(), String> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut client = Client::connect(endpoint, timeout_ms).map_err(|e| e.to_string())?;
    match client.call("ping", vec![]) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!(
            "ping answered {}: {}",
            err.code.as_str(),
            err.message
        )),
        Err(err) => Err(err.to_string()),
    }
}

/// Writes one line on stdout (shared with the kernel's passed-through lines).
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `PATH` + `suffix` (`batos` → `batos.new`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Keeps `current` as `prev` (replacing an older `prev`): a hard link when
/// `link` and the file system allows it (the binary is never written in
/// place, only renamed over), else a copy.
fn keep_previous(current: &Path, prev: &Path, link: bool) -> std::io::Result<()> {
    match std::fs::remove_file(prev) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if link && std::fs::hard_link(current, prev).is_ok() {
        return Ok(());
    }
    std::fs::copy(current, prev)?;
    File::open(prev)?.sync_all()
}

/// Copies `from` to `to` (created executable, fsync'd) and returns the
/// SHA-256 of what was written.
fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<[u8; 32]> {
    let mut input = files::open_regular(from)?;
    let mut output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(to)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    drop(output);
    // `mode` applies only to a new file; an old `.new` keeps its own.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    Ok(hasher.finalize().into())
}

/// fsyncs the folder holding `path`, so a rename into it is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => channel::sync_dir(dir),
        _ => channel::sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_up_to_5s() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff(0), BACKOFF_BASE);
        assert_eq!(backoff(usize::MAX), BACKOFF_MAX);
    }

    #[test]
    fn wildcard_addresses_are_pinned_until_a_start_fails_on_them() {
        let ready = |endpoint: &str| Ready {
            endpoint: endpoint.into(),
            events: "tcp://127.0.0.1:7001".into(),
            metrics: "off".into(),
        };
        let wild = Some("tcp://127.0.0.1:*".to_string());
        let fixed = Some("tcp://127.0.0.1:5556".to_string());
        let off = Some(String::new());
        let mut pins = Pins::default();
        // First start: the flags as given.
        let chosen = pins.choose(
            [wild.clone(), fixed.clone(), off.clone()],
            [&wild, &None, &off],
        );
        assert_eq!(chosen, [wild.clone(), None, off.clone()]);
        pins.record(&ready("tcp://127.0.0.1:7000"));
        // Later starts: the wildcard is pinned; fixed and disabled ones are not.
        let chosen = pins.choose(
            [wild.clone(), fixed.clone(), off.clone()],
            [&wild, &None, &off],
        );
        assert_eq!(
            chosen,
            [Some("tcp://127.0.0.1:7000".into()), None, off.clone()]
        );
        // A different request (the configuration changed) is not pinned.
        let other = Some("tcp://127.0.0.1:6000".to_string());
        let chosen = pins.choose([other, fixed.clone(), off.clone()], [&None, &None, &off]);
        assert_eq!(chosen, [None, None, off.clone()]);
        assert!(!pins.forget(), "that start used no pin");
        // A start that fails on a pinned address forgets the pins.
        pins.choose(
            [wild.clone(), fixed.clone(), off.clone()],
            [&wild, &None, &off],
        );
        assert!(pins.forget());
        let chosen = pins.choose([wild.clone(), fixed, off.clone()], [&wild, &None, &off]);
        assert_eq!(chosen, [wild, None, off]);
    }

    #[test]
    fn wildcards_are_recognised() {
        for yes in [
            "tcp://127.0.0.1:*",
            "127.0.0.1:0",
            "ipc://*",
            "tcp://[::1]:*",
        ] {
            assert!(is_wildcard(yes), "{yes}");
        }
        for no in [
            "tcp://127.0.0.1:5555",
            "127.0.0.1:9464",
            "",
            "ipc:///tmp/batos",
            "127.0.0.1:10",
        ] {
            assert!(!is_wildcard(no), "{no}");
        }
    }

    #[test]
    fn steward_files_add_sources_and_commands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steward.toml");
        std::fs::write(
            &path,
            "allowed_sources = [\"/srv/payload\"]\ncommand_timeout_s = 7\n[commands]\ncompact = [\"/bin/true\", \"-x\"]\n",
        )
        .unwrap();
        let mut opts = StewardOptions::default();
        opts.allow_command("compact=/bin/false").unwrap();
        opts.load_file(&path).unwrap();
        assert_eq!(opts.allowed_sources, [PathBuf::from("/srv/payload")]);
        assert_eq!(opts.command_timeout, Duration::from_secs(7));
        assert_eq!(
            opts.commands["compact"].program,
            PathBuf::from("/bin/false"),
            "the flag wins"
        );

        std::fs::write(&path, "[commands]\nbad = []\n").unwrap();
        assert!(StewardOptions::default().load_file(&path).is_err());
        std::fs::write(&path, "shell = \"sh\"\n").unwrap();
        assert!(StewardOptions::default().load_file(&path).is_err());
    }

    #[test]
    fn staged_copies_are_executable_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("payload");
        std::fs::write(&from, b"#!/bin/sh\nexit 0\n").unwrap();
        let to = dir.path().join("batos.new");
        std::fs::write(&to, b"an older, longer staged file").unwrap();
        let hash = copy_hashing(&from, &to).unwrap();
        assert_eq!(hash, instruction::sha256_file(&from).unwrap());
        assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&from).unwrap());
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(sibling(&to, ".prev"), dir.path().join("batos.new.prev"));
    }

    #[test]
    fn previous_files_are_kept_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("batos");
        let prev = sibling(&current, ".prev");
        std::fs::write(&current, b"v1").unwrap();
        std::fs::write(&prev, b"v0").unwrap();
        keep_previous(&current, &prev, true).unwrap();
        channel::write_atomic(&current, b"v2").unwrap();
        assert_eq!(
            std::fs::read(&prev).unwrap(),
            b"v1",
            "a hard link still sees the old file"
        );
        let mut backups = Backups {
            binary: Some((current.clone(), prev.clone())),
            config: None,
        };
        assert_eq!(backups.restore().unwrap(), ["binary"]);
        assert_eq!(std::fs::read(&current).unwrap(), b"v1");
        assert!(!prev.exists());
    }
}
