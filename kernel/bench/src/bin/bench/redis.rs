//! Redis, the reference: `redis-server` and `redis-benchmark`.

use super::*;

pub(crate) struct RedisTools {
    pub(crate) server: PathBuf,
    pub(crate) bench: PathBuf,
    pub(crate) version: String,
}

#[derive(Clone, Debug)]
pub(crate) struct RedisRef {
    pub(crate) fsync: &'static str,
    pub(crate) pipeline: usize,
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

/// Parse `redis-benchmark --csv` (or `-q`) output for the HSET test:
/// requests/s, p50 ms, p99 ms.
pub(crate) fn parse_redis_benchmark(out: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
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

pub(crate) fn redis_benchmark(
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

pub(crate) fn wait_redis(port: u16, server: &mut Proc, log: &Path) -> Result<()> {
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

pub(crate) fn redis_reference(
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

pub(crate) fn redis_reference_in(
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

pub(crate) fn find_redis(args: &Args) -> Result<RedisTools, String> {
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
