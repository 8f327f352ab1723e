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
//! cargo build --release -p batos-kernel --bin batos && cargo run --release -p batos-bench --bin batos-bench
//! ```
//!
//! The binary is bounded: every receive has a timeout, every measurement
//! loop stops by time or count, every child process is stopped (SIGTERM,
//! then SIGKILL) and dies with the bench (`PR_SET_PDEATHSIG`).

mod bridge;
mod client;
mod drive;
mod image;
mod machine;
mod process;
mod redis;
mod report;
mod scenarios;
mod tempdir;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use batos_client::launch::ReadyWait;
use batos_client::{Connect, Connection, Curve, KeyPair};
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

use bridge::*;
use client::*;
use drive::*;
use image::*;
use machine::*;
use process::*;
use redis::*;
use report::*;
use scenarios::*;
use tempdir::*;

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
        println!("groups: ping, set_slot, curve, get_slot, send, method, create_object");
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
                "  {} ops/s, p50 {} µs, p99 {} µs{}{}",
                fmt_rate(m.ops_per_s()),
                m.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                m.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                m.server_cpu_us_per_op
                    .map_or(String::new(), |us| format!(", kernel CPU {us:.1} µs/op")),
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
    fn request_round_trips_and_reply_decodes() {
        let body = encode_request(
            7,
            Req::new(
                "get_slot",
                vec![("oid", Value::from(3u64)), ("slot", Value::from("x"))],
            ),
        );
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
