//! `batos-memory-bench`: fractal memory and cycles through the bridge.
//!
//! Starts `batos run` on a fresh temporary image, ingests a generated corpus
//! (deterministic: `--documents` documents of about `--words` words) in
//! requests of `--batch` documents with `--in-flight` requests pipelined,
//! then measures `search_memory` latency one request at a time, then times a
//! full display_yourself cycle (no model). Prints Markdown for
//! `docs/benchmarks.md`.
//!
//! ```sh
//! cargo build --release -p batos-kernel --bins && target/release/batos-memory-bench
//! ```

#[path = "support/kernel.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use batos_client::{encode_request, parse_reply, Client, Connect};
use clap::Parser;
use rmpv::Value;
use support::{field, Kernel};

#[derive(Parser, Debug)]
#[command(
    name = "batos-memory-bench",
    about = "Benchmark fractal memory through the bridge"
)]
struct Args {
    /// The kernel binary [default: `batos` next to this binary].
    #[arg(long)]
    batos: Option<PathBuf>,
    /// Documents in the corpus.
    #[arg(long, default_value_t = 10_000)]
    documents: usize,
    /// Words per document (about).
    #[arg(long, default_value_t = 300)]
    words: usize,
    /// Documents per ingest request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Ingest requests in flight.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Searches measured.
    #[arg(long, default_value_t = 2_000)]
    searches: usize,
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A vocabulary of 5,000 pronounceable words with a Zipf-like draw.
fn vocabulary() -> Vec<String> {
    const SYL: [&str; 20] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "qu", "ri", "do", "fe", "gu",
        "ha", "jo", "ki", "ly", "mo",
    ];
    let mut rng = Rng(0x5eed);
    (0..5000)
        .map(|_| {
            let n = 2 + (rng.next() % 3) as usize;
            (0..n).map(|_| SYL[(rng.next() % 20) as usize]).collect()
        })
        .collect()
}

fn document(rng: &mut Rng, vocab: &[String], words: usize) -> String {
    let mut text = String::with_capacity(words * 7);
    for i in 0..words {
        // Zipf-ish: square a uniform draw toward the common words.
        let u = (rng.next() % 10_000) as f64 / 10_000.0;
        let w = &vocab[((u * u) * vocab.len() as f64) as usize];
        text.push_str(w);
        text.push(if i % 15 == 14 { '.' } else { ' ' });
        if i % 60 == 59 {
            text.push_str("\n\n");
        }
    }
    text
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let batos = match args.batos.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("batos"),
    };
    let vocab = vocabulary();
    let mut rng = Rng(42);
    let docs: Vec<String> = (0..args.documents)
        .map(|_| document(&mut rng, &vocab, args.words))
        .collect();
    let bytes: usize = docs.iter().map(String::len).sum();
    eprintln!(
        "corpus: {} documents, {:.1} MB",
        docs.len(),
        bytes as f64 / 1e6
    );

    let kernel = Kernel::start(&batos, "[store]\ndurability = \"buffered\"\n")?;
    // Ingest, pipelined over one DEALER socket.
    let connection = Connect::new(&kernel.endpoint)
        .timeout(Duration::from_secs(120))
        .open()?;
    let started = Instant::now();
    let mut sent = 0usize;
    let mut done = 0usize;
    let batches: Vec<&[String]> = docs.chunks(args.batch).collect();
    let mut chunks = 0u64;
    while done < batches.len() {
        while sent < batches.len() && sent - done < args.in_flight {
            let documents: Vec<Value> = batches[sent]
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    Value::Map(vec![
                        (
                            "source".into(),
                            Value::from(format!("doc-{}", sent * args.batch + i)),
                        ),
                        ("text".into(), Value::from(text.as_str())),
                    ])
                })
                .collect();
            connection.send(encode_request(
                Some(&Value::from(sent as u64)),
                "ingest",
                [("documents", Value::Array(documents))],
            ))?;
            sent += 1;
        }
        let reply = connection.recv().context("ingest reply")?;
        let (_, outcome) = parse_reply(reply.last().context("an empty reply")?)?;
        let result = outcome.map_err(|e| anyhow!("ingest failed: {e}"))?;
        chunks += field(&result, "chunks")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        done += 1;
    }
    let ingest = started.elapsed();

    // Search latency, one request at a time.
    let mut client = Client::connect(&kernel.endpoint, 30_000)?;
    let mut latencies = Vec::with_capacity(args.searches);
    for i in 0..args.searches {
        let q = format!(
            "{} {}",
            vocab[(rng.next() % 400) as usize],
            vocab[(rng.next() % 2000) as usize]
        );
        let t = Instant::now();
        let r = client.call(
            "search_memory",
            vec![("query", Value::from(q)), ("limit", Value::from(10))],
        )?;
        latencies.push(t.elapsed());
        if let Err(e) = r {
            bail!("search {i} failed: {} {}", e.code.as_str(), e.message);
        }
    }
    latencies.sort();
    drop(kernel);

    // A full display_yourself on a fresh image, no model.
    let kernel = Kernel::start(&batos, "[store]\ndurability = \"buffered\"\n")?;
    let mut client = Client::connect(&kernel.endpoint, 30_000)?;
    let t = Instant::now();
    let r = client.call(
        "start_cycle",
        vec![("kind", Value::from("display_yourself"))],
    )?;
    let cycle = match r {
        Ok(v) => field(&v, "cycle")
            .and_then(Value::as_u64)
            .context("cycle oid")?,
        Err(e) => bail!("start_cycle: {}", e.message),
    };
    let cycle_time = loop {
        let r = client.call("get_cycle", vec![("cycle", Value::from(cycle))])?;
        let status = r.as_ref().ok().and_then(|v| field(v, "status"));
        match status.and_then(Value::as_str) {
            Some("complete") => break t.elapsed(),
            Some("running") => std::thread::sleep(Duration::from_millis(5)),
            _ => bail!("cycle failed: {r:?}"),
        }
    };

    let mb = bytes as f64 / 1e6;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| ingest {} docs × ~{} words ({:.1} MB, {} per request, {} in flight) | {:.2} s: **{:.0} docs/s, {:.2} MB/s**, {} chunks |",
        args.documents,
        args.words,
        mb,
        args.batch,
        args.in_flight,
        ingest.as_secs_f64(),
        args.documents as f64 / ingest.as_secs_f64(),
        mb / ingest.as_secs_f64(),
        chunks
    );
    println!(
        "| search_memory at {} docs, {} queries, 1 in flight | p50 {:.2} ms, **p99 {:.2} ms**, max {:.2} ms |",
        args.documents,
        args.searches,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    println!(
        "| display_yourself, fresh image, no model (start_cycle → complete) | {:.0} ms |",
        cycle_time.as_secs_f64() * 1e3
    );
    Ok(())
}
