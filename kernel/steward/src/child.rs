//! The kernel as a child process: spawning it with stdout on a pipe (lines passed through, the ready line announced as an event), reporting its exit as an event without reaping it, and stopping it with a bounded wait.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use batos_client::{launch, ReadyLine};
use crossbeam_channel::Sender;

use super::error::StewardError;
use super::{Event, Inbox};

/// How long a kernel may take to disappear after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What the kernel's ready line says.
pub type Ready = ReadyLine;

/// How an exit status reads in logs and records.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal} ({})", signal_name(signal)),
        (None, None) => format!("ended ({status})"),
    }
}

/// A few signal names for people.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// A running kernel. Its exit arrives as [`Event::Exited`] with its
/// generation; only [`Kernel::reap`] reaps it, so until then its pid cannot
/// be reused and signalling it is safe.
pub(crate) struct Kernel {
    child: Child,
    pid: u32,
    generation: u64,
    reaped: Option<ExitStatus>,
}

impl Kernel {
    /// Starts `binary args...` in its own process group: stdin closed,
    /// stdout on a pipe (each line copied to the steward's stdout; the ready
    /// line also sent as [`Event::Ready`]), stderr shared with the steward.
    /// If the steward dies, the kernel gets SIGTERM (Linux
    /// `PR_SET_PDEATHSIG`) and drains.
    pub(crate) fn spawn(
        binary: &Path,
        args: &[OsString],
        generation: u64,
        events: &Sender<Event>,
    ) -> std::io::Result<Kernel> {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // Its own process group: a Ctrl-C at a terminal reaches the steward
        // only, which stops the kernel itself (rather than seeing it exit
        // and taking that for a crash).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        default_signals(&mut cmd);
        launch::die_with_parent(&mut cmd, libc::SIGTERM);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let mut kernel = Kernel {
            child,
            pid,
            generation,
            reaped: None,
        };
        if let Err(err) = kernel.start_threads(stdout, events) {
            let _ = kernel.child.kill();
            let _ = kernel.child.wait();
            return Err(err);
        }
        Ok(kernel)
    }

    fn start_threads(
        &self,
        stdout: Option<ChildStdout>,
        events: &Sender<Event>,
    ) -> std::io::Result<()> {
        let (pid, generation) = (self.pid, self.generation);
        if let Some(stdout) = stdout {
            forward_stdout(stdout, generation, events.clone())?;
        }
        let tx = events.clone();
        std::thread::Builder::new()
            .name(format!("kernel-{generation}-exit"))
            .spawn(move || {
                wait_without_reaping(pid);
                let _ = tx.send(Event::Exited { generation });
            })?;
        Ok(())
    }

    /// The kernel's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Which start this is (events carry it, so stale ones are ignored).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends a signal (nothing once reaped).
    pub(crate) fn signal(&self, signal: libc::c_int) -> std::io::Result<()> {
        if self.reaped.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).map_err(std::io::Error::other)?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // child's and it is not reaped yet, so it still names that process.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Reaps the kernel after its [`Event::Exited`] (returns at once then).
    pub(crate) fn reap(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.reaped = Some(status);
        Ok(status)
    }
}

/// The child starts with no blocked signals and SIGPIPE at its default: the
/// steward blocks SIGTERM/SIGINT (it receives them with `sigwait`) and the
/// Rust runtime ignores SIGPIPE, and a child inherits both across exec.
pub(crate) fn default_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and only calls
    // async-signal-safe functions (sigemptyset, pthread_sigmask on the one
    // thread, signal), allocating nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
}

/// Blocks until process `pid` (a child of this process) has exited, leaving
/// it waitable (`WNOWAIT`): whoever owns its `Child` reaps it afterwards.
pub(crate) fn wait_without_reaping(pid: u32) {
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero bytes are valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t that outlives the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            // Not waitable (should not happen): report the exit anyway, so
            // the supervisor reaps the child and learns what happened.
            tracing::debug!(pid, error = %err, "waitid failed");
            return;
        }
    }
}

/// Copies the kernel's stdout to ours, line by line, for its whole life (so
/// it never blocks on a full pipe), and announces the first ready line.
fn forward_stdout(stdout: ChildStdout, generation: u64, tx: Sender<Event>) -> std::io::Result<()> {
    launch::read_stdout(
        stdout,
        format!("kernel-{generation}-stdout"),
        move |line, ready| {
            {
                let mut out = std::io::stdout().lock();
                // Nobody reading our stdout must not stop the kernel's.
                let _ = out.write_all(line);
                let _ = out.flush();
            }
            if let Some(ready) = ready {
                let _ = tx.send(Event::Ready { generation, ready });
            }
        },
    )
    .map(drop)
}

/// How waiting for a kernel to become ready ended.
pub(crate) enum Startup {
    /// It printed its ready line.
    Ready(Ready),
    /// It exited first (reaped).
    Exited(ExitStatus),
    /// No ready line in time (still running).
    TimedOut,
    /// SIGTERM/SIGINT reached the steward (still running).
    Interrupted,
}

/// Waits for the kernel's ready line, its exit, the timeout, or (if
/// `interruptible`) a stop signal. Instruction files arriving meanwhile are
/// queued in the inbox.
pub(crate) fn wait_ready(
    kernel: &mut Kernel,
    timeout: Duration,
    inbox: &mut Inbox,
    interruptible: bool,
) -> std::io::Result<Startup> {
    let deadline = Instant::now() + timeout;
    loop {
        match inbox.next(deadline) {
            None => return Ok(Startup::TimedOut),
            Some(Event::Ready { generation, ready }) if generation == kernel.generation => {
                return Ok(Startup::Ready(ready));
            }
            Some(Event::Exited { generation }) if generation == kernel.generation => {
                return kernel.reap().map(Startup::Exited);
            }
            Some(Event::Signal(_)) if interruptible => return Ok(Startup::Interrupted),
            Some(_) => {}
        }
    }
}

/// Stops the kernel gracefully: SIGTERM, wait up to `timeout` for it to exit
/// (it answers in-flight requests and flushes the image), then SIGKILL.
pub(crate) fn stop(
    kernel: &mut Kernel,
    timeout: Duration,
    inbox: &mut Inbox,
) -> Result<ExitStatus, StewardError> {
    if let Some(status) = kernel.reaped {
        return Ok(status);
    }
    let pid = kernel.pid;
    tracing::info!(
        pid,
        timeout_s = timeout.as_secs(),
        "stopping the kernel (SIGTERM)"
    );
    if let Err(err) = kernel.signal(libc::SIGTERM) {
        tracing::warn!(pid, error = %err, "sending SIGTERM to the kernel failed");
    }
    if let Some(status) = wait_exit(kernel, Instant::now() + timeout, inbox)? {
        tracing::info!(pid, status = %describe(status), "kernel stopped");
        return Ok(status);
    }
    tracing::warn!(
        pid,
        timeout_s = timeout.as_secs(),
        "the kernel did not stop in time; sending SIGKILL"
    );
    if let Err(err) = kernel.signal(libc::SIGKILL) {
        tracing::warn!(pid, error = %err, "sending SIGKILL to the kernel failed");
    }
    match wait_exit(kernel, Instant::now() + KILL_WAIT, inbox)? {
        Some(status) => Ok(status),
        None => Err(StewardError::io(
            format!("stopping kernel pid {pid}"),
            std::io::Error::new(std::io::ErrorKind::TimedOut, "still running after SIGKILL"),
        )),
    }
}

fn wait_exit(
    kernel: &mut Kernel,
    deadline: Instant,
    inbox: &mut Inbox,
) -> Result<Option<ExitStatus>, StewardError> {
    loop {
        match inbox.next(deadline) {
            None => return Ok(None),
            Some(Event::Exited { generation }) if generation == kernel.generation => {
                return kernel
                    .reap()
                    .map(Some)
                    .map_err(|e| StewardError::io("reaping the kernel", e));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_read_well() {
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
    }
}
