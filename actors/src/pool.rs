//! The sandbox threads: methods run here, off the actor arbiters, on
//! threads with stacks deep enough for nested sends (each nesting level
//! holds a wasm stack of up to `max_wasm_stack`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use batos_object::error::{panic_message, ActorError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Who a job is for: jobs of one client run in the order they came, and
/// clients take turns, so one client's queue of long methods does not make
/// another's wait behind all of it.
pub(crate) type Client = u64;

/// The client of the kernel's own work (and of the image I/O threads,
/// where every job is the kernel's: one FIFO queue).
pub(crate) const KERNEL: Client = 0;

/// A fixed pool of threads for blocking work: a bounded number of threads
/// whatever the load (tokio's blocking pool would grow one per waiting job).
/// Its queue is as long as the work admitted: the bridge's in-flight limits
/// and the orchestrator's bound the jobs waiting here.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Fair>,
    ready: Condvar,
}

/// Jobs per client, and the clients with jobs in turn order.
#[derive(Default)]
struct Fair {
    jobs: HashMap<Client, VecDeque<Job>>,
    turns: VecDeque<Client>,
    closed: bool,
}

impl Fair {
    fn push(&mut self, client: Client, job: Job) {
        let jobs = self.jobs.entry(client).or_default();
        if jobs.is_empty() {
            self.turns.push_back(client);
        }
        jobs.push_back(job);
    }

    /// The next client's oldest job; the client goes to the back of the
    /// turns if it has more.
    fn pop(&mut self) -> Option<Job> {
        let client = self.turns.pop_front()?;
        let jobs = self.jobs.get_mut(&client)?;
        let job = jobs.pop_front();
        if jobs.is_empty() {
            self.jobs.remove(&client);
        } else {
            self.turns.push_back(client);
        }
        job
    }
}

/// Stack of each sandbox thread: room for the send depth limit times the
/// wasm stack limit, plus host frames (only touched pages use memory).
pub(crate) const SANDBOX_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Stack of each image I/O thread.
pub(crate) const IO_STACK_BYTES: usize = 2 * 1024 * 1024;

impl Pool {
    pub(crate) fn new(name: &str, threads: usize, stack_bytes: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Fair::default()),
            ready: Condvar::new(),
        });
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("batos-{name}-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || {
                    while let Some(job) = shared.next() {
                        run_contained(job);
                    }
                })?;
        }
        Ok(Pool { shared })
    }

    /// Runs `f` on a pool thread (the kernel's turn), not waiting for it.
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let span = tracing::Span::current();
        if !self
            .shared
            .submit(KERNEL, Box::new(move || span.in_scope(f)))
        {
            tracing::error!("a thread pool is shut down; job dropped");
        }
    }

    /// Runs `f` on a pool thread in the kernel's turn and waits for it.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ActorError> {
        self.run_for(KERNEL, f).await
    }

    /// Runs `f` on a pool thread in `client`'s turn and waits for it.
    pub(crate) async fn run_for<R: Send + 'static>(
        &self,
        client: Client,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ActorError> {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        let job = Box::new(move || {
            let _ = tx.send(span.in_scope(f));
        });
        if !self.shared.submit(client, job) {
            return Err(ActorError::internal("the sandbox pool is shut down"));
        }
        rx.await
            .map_err(|_| ActorError::internal("a pool job failed (see the kernel's log)"))
    }
}

impl Shared {
    fn submit(&self, client: Client, job: Job) -> bool {
        let mut queue = self.queue.lock();
        if queue.closed {
            return false;
        }
        queue.push(client, job);
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// The next job to run, waiting for one; `None` once the pool closes.
    fn next(&self) -> Option<Job> {
        let mut queue = self.queue.lock();
        loop {
            if let Some(job) = queue.pop() {
                return Some(job);
            }
            if queue.closed {
                return None;
            }
            self.ready.wait(&mut queue);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

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

    fn job(log: &Arc<Mutex<Vec<(Client, u32)>>>, client: Client, n: u32) -> Job {
        let log = log.clone();
        Box::new(move || log.lock().push((client, n)))
    }

    #[test]
    fn clients_take_turns_and_each_keeps_its_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut fair = Fair::default();
        for n in 0..3 {
            fair.push(1, job(&log, 1, n));
        }
        fair.push(2, job(&log, 2, 0));
        fair.push(1, job(&log, 1, 3));
        fair.push(2, job(&log, 2, 1));
        while let Some(job) = fair.pop() {
            job();
        }
        assert_eq!(
            *log.lock(),
            [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2), (1, 3)]
        );
        assert!(fair.jobs.is_empty() && fair.turns.is_empty());
    }
}
