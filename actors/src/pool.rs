//! The sandbox threads: methods run here, off the actor arbiters, on
//! threads with stacks deep enough for nested sends (each nesting level
//! holds a wasm stack of up to `max_wasm_stack`).

use crossbeam_channel::Sender;
use tokio::sync::oneshot;

use batos_object::error::{panic_message, ActorError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of threads for blocking work: a bounded number of threads
/// whatever the load (tokio's blocking pool would grow one per waiting job).
pub(crate) struct Pool {
    jobs: Sender<Job>,
}

/// Stack of each sandbox thread: room for the send depth limit times the
/// wasm stack limit, plus host frames (only touched pages use memory).
pub(crate) const SANDBOX_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Stack of each image I/O thread.
pub(crate) const IO_STACK_BYTES: usize = 2 * 1024 * 1024;

impl Pool {
    pub(crate) fn new(name: &str, threads: usize, stack_bytes: usize) -> std::io::Result<Pool> {
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("batos-{name}-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        run_contained(job);
                    }
                })?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `f` on a pool thread without waiting for it.
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let span = tracing::Span::current();
        if self.jobs.send(Box::new(move || span.in_scope(f))).is_err() {
            tracing::error!("a thread pool is shut down; job dropped");
        }
    }

    /// Runs `f` on a pool thread and waits for it without blocking the caller's thread.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ActorError> {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(span.in_scope(f));
            }))
            .map_err(|_| ActorError::internal("the sandbox pool is shut down"))?;
        rx.await
            .map_err(|_| ActorError::internal("a pool job failed (see the kernel's log)"))
    }
}

/// Runs one job, containing a panic: it is logged, the job's caller sees
/// its reply channel close (an internal error), and the thread goes on
/// serving. A panicking job must not shrink the pool until nothing runs.
fn run_contained(job: Job) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        let what = panic_message(&*panic);
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            panic = %what,
            "a pool job panicked; the thread goes on"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_fails_alone_and_the_pool_keeps_serving() {
        let pool = Pool::new("test", 1, IO_STACK_BYTES).unwrap();
        let failed = futures::executor::block_on(pool.run(|| -> u32 { panic!("boom") }));
        assert!(matches!(failed, Err(ActorError::Internal(_))), "{failed:?}");
        // The pool's only thread survived the panic.
        for i in 0..3u32 {
            assert_eq!(
                futures::executor::block_on(pool.run(move || i * 2)).unwrap(),
                i * 2
            );
        }
    }
}
