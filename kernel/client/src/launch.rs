//! A `batos run` child: the one place that knows how a started kernel
//! announces itself. Its stdout is read to the end on a thread of its own
//! (a kernel must never block on a full pipe), in lines of bounded length,
//! and its first ready line is handed over. The steward, the benchmarks
//! and the end-to-end tests start kernels their own ways (process groups,
//! network namespaces, logs) and share this.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ReadyLine;

/// Longest stdout line read in one piece (a longer one arrives in parts).
pub const MAX_LINE: u64 = 64 * 1024;

/// How often [`ReadyWait::wait`] checks whether the kernel has exited.
const EXIT_CHECK: Duration = Duration::from_millis(20);

/// Why no ready line came.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The kernel is still running but printed no ready line in time.
    #[error("the kernel printed no ready line within {0:?}")]
    Timeout(Duration),
    /// The kernel exited first.
    #[error("the kernel exited ({0}) before it was ready")]
    Exited(ExitStatus),
    /// The kernel closed its stdout without a ready line.
    #[error("the kernel closed its stdout without a `batos ready` line")]
    Closed,
    /// Checking on the child failed.
    #[error("waiting for the kernel: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads `stdout` line by line on a thread named `thread` until it ends,
/// calling `on_line` with each line (its newline included) and, for the
/// first ready line, what it says.
pub fn read_stdout<R, F>(
    stdout: R,
    thread: String,
    mut on_line: F,
) -> std::io::Result<JoinHandle<()>>
where
    R: Read + Send + 'static,
    F: FnMut(&[u8], Option<ReadyLine>) + Send + 'static,
{
    std::thread::Builder::new().name(thread).spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::with_capacity(256);
        let mut announced = false;
        loop {
            line.clear();
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let ready = (!announced)
                        .then(|| std::str::from_utf8(&line).ok())
                        .flatten()
                        .and_then(|text| ReadyLine::parse(text.trim_end()));
                    announced |= ready.is_some();
                    on_line(&line, ready);
                }
            }
        }
    })
}

/// A kernel's ready line, to wait for.
pub struct ReadyWait {
    rx: mpsc::Receiver<(Instant, ReadyLine)>,
}

impl ReadyWait {
    /// Reads `stdout` as [`read_stdout`] does, each line (without its
    /// newline, lossily decoded) also given to `on_line`, and keeps the
    /// ready line, with when it came, for [`ReadyWait::wait`].
    pub fn watch<R, F>(stdout: R, thread: String, mut on_line: F) -> std::io::Result<ReadyWait>
    where
        R: Read + Send + 'static,
        F: FnMut(&str) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        read_stdout(stdout, thread, move |line, ready| {
            on_line(String::from_utf8_lossy(line).trim_end_matches(['\n', '\r']));
            if let Some(ready) = ready {
                let _ = tx.send((Instant::now(), ready));
            }
        })?;
        Ok(ReadyWait { rx })
    }

    /// Waits up to `timeout` for the ready line of `child`, whose stdout
    /// this watches; an exit or a closed stdout ends the wait early.
    pub fn wait(
        &self,
        child: &mut Child,
        timeout: Duration,
    ) -> Result<(Instant, ReadyLine), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(EXIT_CHECK);
            match self.rx.recv_timeout(slice) {
                Ok(ready) => return Ok(ready),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        return Err(LaunchError::Exited(status));
                    }
                    if Instant::now() >= deadline {
                        return Err(LaunchError::Timeout(timeout));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed: say how the kernel ended, if it has.
                    let grace = Instant::now() + Duration::from_secs(5);
                    while Instant::now() < grace {
                        if let Some(status) = child.try_wait()? {
                            return Err(LaunchError::Exited(status));
                        }
                        std::thread::sleep(EXIT_CHECK);
                    }
                    return Err(LaunchError::Closed);
                }
            }
        }
    }
}

/// Linux: the child gets `signal` when the thread that spawned it exits,
/// and does not start at all if this process is already gone, so no
/// kernel outlives whoever started it.
pub fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: the hook runs in the forked child before exec and only
        // calls async-signal-safe functions (prctl, getppid), allocating
        // nothing (`last_os_error` and `from_raw_os_error` only wrap errno).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died between fork and prctl: do not run orphaned.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (cmd, signal);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn watch(child: &mut Child) -> (ReadyWait, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let wait = ReadyWait::watch(
            child.stdout.take().unwrap(),
            "test-stdout".into(),
            move |l| seen.lock().unwrap().push(l.to_string()),
        )
        .unwrap();
        (wait, lines)
    }

    #[test]
    fn the_ready_line_is_found_among_other_lines() {
        let mut child = sh("echo hello; echo 'batos ready endpoint=tcp://127.0.0.1:9 events=tcp://127.0.0.1:8 metrics=off'; sleep 5");
        let (wait, lines) = watch(&mut child);
        let (_, ready) = wait.wait(&mut child, Duration::from_secs(10)).unwrap();
        assert_eq!(ready.endpoint, "tcp://127.0.0.1:9");
        assert_eq!(lines.lock().unwrap()[0], "hello");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_exit_before_the_ready_line_is_reported_with_its_status() {
        let mut child = sh("echo starting; exit 3");
        let (wait, _) = watch(&mut child);
        match wait.wait(&mut child, Duration::from_secs(10)) {
            Err(LaunchError::Exited(status)) => assert_eq!(status.code(), Some(3)),
            other => panic!("expected an exit, got {:?}", other.map(|r| r.1)),
        }
    }

    #[test]
    fn silence_is_a_timeout() {
        let mut child = sh("sleep 5");
        let (wait, _) = watch(&mut child);
        assert!(matches!(
            wait.wait(&mut child, Duration::from_millis(100)),
            Err(LaunchError::Timeout(_))
        ));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
