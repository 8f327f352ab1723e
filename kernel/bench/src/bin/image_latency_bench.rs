//! The commit pipeline over a slower image: the kernel's object space in
//! process, over its RocksDB image wrapped to add a fixed latency to every
//! commit and object read, as a distributed store (TiKV: a two-phase commit
//! replicated by Raft; a point read from a region leader) would. Writers
//! `set_slot` random objects at several concurrencies; the table shows
//! throughput, latency and how many transactions each commit carried
//! (group commit is what turns a slower commit into the same throughput).
//! `docs/scaling.md` reads it.
//!
//!     cargo run --release -p batos-bench --bin batos-image-latency-bench [-- --duration-ms 2000]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use batos_actors::committer::NoEvents;
use batos_actors::space::NoHooks;
use batos_actors::{ObjectSpace, SpaceConfig};
use batos_object::image::{CommitGroup, Image, ImageError, ImageMeta, StoredObject};
use batos_object::slot::MethodRecord;
use batos_object::{Oid, Value};
use batos_sandbox::audit::AuditLimits;
use batos_sandbox::{CacheKey, SandboxLimits};
use batos_store::{RocksImage, StoreOptions};
use clap::Parser;
use rand::Rng;

#[derive(Parser)]
struct Args {
    /// Measured time per row.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Objects written to (spread at random).
    #[arg(long, default_value_t = 1000)]
    objects: u64,
}

/// An image whose commits and object reads take `commit` and `read`
/// longer, as over a network.
struct Remote {
    inner: RocksImage,
    commit: Duration,
    read: Duration,
    commits: AtomicU64,
    transactions: AtomicU64,
}

impl Image for Remote {
    fn meta(&self) -> Result<ImageMeta, ImageError> {
        self.inner.meta()
    }
    fn load_object(&self, oid: Oid) -> Result<Option<StoredObject>, ImageError> {
        std::thread::sleep(self.read);
        self.inner.load_object(oid)
    }
    fn object_exists(&self, oid: Oid) -> Result<bool, ImageError> {
        std::thread::sleep(self.read);
        self.inner.object_exists(oid)
    }
    fn commit(&self, group: &CommitGroup<'_>, sync: bool) -> Result<(), ImageError> {
        std::thread::sleep(self.commit);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.transactions
            .fetch_add(group.transactions.len() as u64, Ordering::Relaxed);
        self.inner.commit(group, sync)
    }
    fn checkpoint(&self) -> Result<String, ImageError> {
        self.inner.checkpoint()
    }
    fn flush(&self) -> Result<(), ImageError> {
        self.inner.flush()
    }
    fn method_history(&self, oid: Oid) -> Result<Vec<(String, MethodRecord)>, ImageError> {
        self.inner.method_history(oid)
    }
    fn load_module(&self, hash: &str) -> Result<Option<Vec<u8>>, ImageError> {
        self.inner.load_module(hash)
    }
    fn load_compiled(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
        self.inner.load_compiled(key)
    }
    fn store_compiled(&self, key: &[u8], bytes: &[u8]) -> Result<(), ImageError> {
        self.inner.store_compiled(key, bytes)
    }
    fn retain_compiled(&self, prefix: &[u8]) -> Result<usize, ImageError> {
        self.inner.retain_compiled(prefix)
    }
}

/// A space over `image`, as the kernel opens one.
async fn open_space(image: Arc<Remote>) -> ObjectSpace {
    ObjectSpace::open(
        image,
        config(),
        Arc::new(NoEvents),
        Arc::new(NoHooks),
        &prometheus::Registry::new(),
    )
    .await
    .expect("open the space")
}

/// The kernel's defaults where they matter here (sync durability: a
/// distributed commit is durable when it returns).
fn config() -> SpaceConfig {
    SpaceConfig {
        arbiters: 2,
        passivate_after_ms: 600_000,
        passivate_check_ms: 1_000,
        sync: true,
        max_group: 512,
        sandbox: SandboxLimits::default(),
        audit: AuditLimits::default(),
        sandbox_threads: 2,
        cache_key: CacheKey::new([1; 32]),
        max_transaction_bytes: 64 << 20,
    }
}

struct Row {
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    per_commit: f64,
    first_touch_p50_us: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// One row: a fresh image and space, `objects` created, then `in_flight`
/// writers for `duration`.
fn measure(latency: (Duration, Duration), in_flight: usize, args: &Args) -> Row {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = RocksImage::open(
        dir.path(),
        &StoreOptions {
            block_cache_bytes: 16 << 20,
            keep_snapshots: 8,
        },
    )
    .expect("open the image");
    let image = Arc::new(Remote {
        inner,
        commit: latency.0,
        read: latency.1,
        commits: AtomicU64::new(0),
        transactions: AtomicU64::new(0),
    });
    let duration = Duration::from_millis(args.duration_ms);
    let objects = args.objects;
    actix_rt::System::new().block_on(async move {
        let space = open_space(image.clone()).await;
        // Created in parallel, so the set-up is group-committed too.
        let creators: Vec<_> = (0..64)
            .map(|w| {
                let space = space.clone();
                actix_rt::spawn(async move {
                    let mut oids = Vec::new();
                    for _ in (w..objects).step_by(64) {
                        oids.push(space.create_object(vec![]).await.expect("create"));
                    }
                    oids
                })
            })
            .collect();
        let mut oids = Vec::new();
        for creator in creators {
            oids.extend(creator.await.expect("creator"));
        }
        let oids = Arc::new(oids);
        let (commits0, txs0) = (
            image.commits.load(Ordering::Relaxed),
            image.transactions.load(Ordering::Relaxed),
        );
        let started = Instant::now();
        let until = started + duration;
        let writers: Vec<_> = (0..in_flight)
            .map(|_| {
                let (space, oids) = (space.clone(), oids.clone());
                actix_rt::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let oid = oids[rand::rng().random_range(0..oids.len())];
                        let t = Instant::now();
                        space
                            .set_slot(oid, "n".into(), Value::from(n))
                            .await
                            .expect("set_slot");
                        latencies.push(t.elapsed().as_micros() as u64);
                        n += 1;
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for writer in writers {
            latencies.extend(writer.await.expect("writer"));
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let commits = image.commits.load(Ordering::Relaxed) - commits0;
        let txs = image.transactions.load(Ordering::Relaxed) - txs0;
        space.shutdown().await;
        drop(space);

        // First touches: a fresh space over the same image loads each
        // object from it (one read latency) before answering.
        let space = open_space(image.clone()).await;
        let mut touches = Vec::new();
        for oid in oids.iter().take(200) {
            let t = Instant::now();
            space.get_slot(*oid, "n".into()).await.ok();
            touches.push(t.elapsed().as_micros() as u64);
        }
        touches.sort_unstable();
        space.shutdown().await;
        Row {
            ops_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_us: percentile(&latencies, 0.5),
            p99_us: percentile(&latencies, 0.99),
            per_commit: txs as f64 / commits.max(1) as f64,
            first_touch_p50_us: percentile(&touches, 0.5),
        }
    })
}

fn main() {
    let args = Args::parse();
    println!(
        "| added commit / read latency | in flight | set_slot ops/s | p50 µs | p99 µs | transactions per commit | first touch p50 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let latencies = [
        (Duration::ZERO, Duration::ZERO),
        (Duration::from_millis(2), Duration::from_micros(500)),
        (Duration::from_millis(10), Duration::from_millis(1)),
    ];
    for latency in latencies {
        for in_flight in [1, 64, 256] {
            let row = measure(latency, in_flight, &args);
            println!(
                "| {} ms / {} ms | {in_flight} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} |",
                latency.0.as_secs_f64() * 1e3,
                latency.1.as_secs_f64() * 1e3,
                row.ops_per_s,
                row.p50_us,
                row.p99_us,
                row.per_commit,
                row.first_touch_p50_us,
            );
        }
    }
}
