//! The report: Markdown for `docs/benchmarks.md`, and JSON.

use super::*;

pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let lead = s.len() % 3; // digits before the first comma, modulo 3
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && i % 3 == lead {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(crate) fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        thousands(x.round() as u64)
    } else {
        format!("{x:.1}")
    }
}

pub(crate) fn fmt_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        thousands(us.round() as u64)
    }
}

pub(crate) fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub(crate) fn fmt_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

pub(crate) struct Row {
    pub(crate) sc: Scenario,
    pub(crate) outcome: Result<Measured, String>,
    /// `None`: this row has no Redis reference.
    pub(crate) redis: Option<Result<RedisRef, String>>,
}

impl Row {
    pub(crate) fn measured(&self) -> Option<&Measured> {
        self.outcome.as_ref().ok()
    }
}

pub(crate) struct Verdict {
    pub(crate) target: String,
    pub(crate) ratio: String,
    pub(crate) met: Option<bool>,
    pub(crate) why: String,
}

pub(crate) fn evaluate(row: &Row, rows: &[Row]) -> Verdict {
    let mut v = Verdict {
        target: "—".into(),
        ratio: "—".into(),
        met: None,
        why: String::new(),
    };
    let m = row.measured();
    if let (Some(m), Some(Ok(r))) = (m, &row.redis) {
        if r.rps > 0.0 {
            v.ratio = format!("{:.2}×", m.ops_per_s() / r.rps);
        }
    }
    let Some(target) = target_for(&row.sc) else {
        return v;
    };
    let Some(m) = m else {
        v.target = describe_target(target);
        v.why = "scenario failed".into();
        v.met = Some(false);
        return v;
    };
    v.target = describe_target(target);
    match target {
        Target::RedisRatio(min) => match &row.redis {
            Some(Ok(r)) if r.rps > 0.0 => {
                let ratio = m.ops_per_s() / r.rps;
                v.met = Some(ratio >= min);
            }
            Some(Err(e)) => v.why = format!("Redis {e}"),
            _ => v.why = "no Redis figure".into(),
        },
        Target::P50AtMostUs(max) => {
            if let Some(p50) = m.pct_ns(0.5) {
                v.met = Some(p50 / 1e3 <= max);
            }
        }
        Target::WithinOfDepth1(frac) => {
            let base = rows
                .iter()
                .find(|r| r.sc.op == (Op::Send { depth: 1 }) && r.sc.in_flight == row.sc.in_flight);
            match base.and_then(Row::measured) {
                Some(b) => {
                    let ops_ratio = m.ops_per_s() / b.ops_per_s().max(f64::MIN_POSITIVE);
                    let p50_ratio = match (m.pct_ns(0.5), b.pct_ns(0.5)) {
                        (Some(a), Some(b)) if b > 0.0 => a / b,
                        _ => f64::NAN,
                    };
                    v.ratio = format!("vs depth 1: ops/s {ops_ratio:.2}×, p50 {p50_ratio:.2}×");
                    v.met = Some(ops_ratio >= 1.0 - frac && p50_ratio <= 1.0 + frac);
                }
                None => v.why = "depth 1 not measured".into(),
            }
        }
    }
    if m.errors > 0 {
        v.met = Some(false);
        v.why = format!("{} errors", m.errors);
    }
    v
}

pub(crate) fn describe_target(t: Target) -> String {
    match t {
        Target::RedisRatio(min) => format!("≥ {:.0}% of Redis ops/s", min * 100.0),
        Target::P50AtMostUs(max) => format!("p50 ≤ {max:.0} µs"),
        Target::WithinOfDepth1(frac) => {
            format!("within {:.0}% of depth 1 (ops/s, p50)", frac * 100.0)
        }
    }
}

pub(crate) fn met_cell(v: &Verdict) -> String {
    match (v.met, v.why.is_empty()) {
        (Some(true), _) => "yes".into(),
        (Some(false), true) => "**no**".into(),
        (Some(false), false) => format!("**no** ({})", v.why),
        (None, true) => "—".into(),
        (None, false) => format!("unknown ({})", v.why),
    }
}

pub(crate) fn redis_cell(r: &Option<Result<RedisRef, String>>) -> String {
    match r {
        None => "—".into(),
        Some(Err(e)) => e.clone(),
        Some(Ok(r)) => {
            let mut s = format!("{} ops/s", fmt_rate(r.rps));
            if let Some(p50) = r.p50_ms {
                s.push_str(&format!(", p50 {} µs", fmt_us(p50 * 1e3)));
            }
            if let Some(p99) = r.p99_ms {
                s.push_str(&format!(", p99 {} µs", fmt_us(p99 * 1e3)));
            }
            s.push_str(&format!(" (AOF {}, `-P {} -c 1`)", r.fsync, r.pipeline));
            s
        }
    }
}

pub(crate) struct Settings {
    pub(crate) duration: Duration,
    pub(crate) image_objects: u64,
    pub(crate) touch_objects: u64,
}

pub(crate) fn render_report(
    rows: &[Row],
    image: Option<&Result<ImageOutcome, String>>,
    machine: &[(&'static str, String)],
    settings: &Settings,
) -> (String, bool, bool) {
    let mut all_ok = true;
    let mut all_met = true;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut s = String::new();
    s.push_str(&format!(
        "<!-- batos-bench output, {} -->\n\n",
        utc_datetime(now)
    ));
    s.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (k, v) in machine {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push('\n');
    s.push_str("## Synaptic Bridge (kernel foundation)\n\n");
    s.push_str(&format!(
        "Measured figures from one `batos-bench` run on the machine above ({}). Each scenario ran its own kernel on a fresh data \
         directory, over the public ZeroMQ bridge: {} ms measured after a {} ms warm-up, loads spread over {SPREAD} objects. \
         Redis was measured in the same run with `redis-benchmark -t hset -c 1 -r {SPREAD}`.\n\n",
        utc_datetime(now),
        settings.duration.as_millis(),
        (settings.duration / 10).max(Duration::from_millis(100)).as_millis()
    ));
    if !rows.is_empty() {
        s.push_str(
            "| scenario | ops/s | p50 µs | p99 µs | Redis reference | ratio | target | met? |\n",
        );
        s.push_str("|---|---:|---:|---:|---|---|---|---|\n");
        let mut problems = Vec::new();
        for row in rows {
            let v = evaluate(row, rows);
            if v.met == Some(false) {
                all_met = false;
            }
            let (ops, p50, p99, flag) = match &row.outcome {
                Ok(m) => {
                    if m.errors > 0 {
                        all_ok = false;
                        problems.push(format!(
                            "- {}: {} errors: {}",
                            row.sc.name,
                            m.errors,
                            m.error_samples.join("; ")
                        ));
                    }
                    for n in &m.notes {
                        problems.push(format!("- {}: {n}", row.sc.name));
                    }
                    (
                        fmt_rate(m.ops_per_s()),
                        m.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                        m.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                        if m.errors > 0 {
                            format!(" ⚠ {} errors", m.errors)
                        } else {
                            String::new()
                        },
                    )
                }
                Err(e) => {
                    all_ok = false;
                    problems.push(format!(
                        "- {}: failed: {}",
                        row.sc.name,
                        e.replace('\n', " ⏎ ")
                    ));
                    ("failed".into(), "—".into(), "—".into(), " ⚠ failed".into())
                }
            };
            s.push_str(&format!(
                "| {}{flag} | {ops} | {p50} | {p99} | {} | {} | {} | {} |\n",
                row.sc.label,
                redis_cell(&row.redis),
                v.ratio,
                v.target,
                met_cell(&v)
            ));
        }
        s.push('\n');
        if !problems.is_empty() {
            s.push_str("Errors and notes:\n\n");
            for p in problems {
                s.push_str(&p);
                s.push('\n');
            }
            s.push('\n');
        }
    }
    if let Some(image) = image {
        let quick = settings.image_objects != 1_000_000;
        s.push_str(&format!(
            "### Image of {} objects\n\n",
            thousands(settings.image_objects)
        ));
        if quick {
            s.push_str("A quick run (`--image-objects` is not 1,000,000): the targets below are for 1,000,000 objects and are not judged.\n\n");
        }
        match image {
            Err(e) => {
                all_ok = false;
                s.push_str(&format!("Failed: {}\n\n", e.replace('\n', " ⏎ ")));
            }
            Ok(img) => {
                let judge = |ok: bool| -> String {
                    if quick {
                        "— (quick run)".into()
                    } else if ok {
                        "yes".into()
                    } else {
                        "**no**".into()
                    }
                };
                let mut lines: Vec<(String, String, String, String)> = Vec::new();
                if let Some(b) = &img.build {
                    lines.push((
                        format!("build: `create_object`, {BULK_IN_FLIGHT} in flight"),
                        format!(
                            "{} objects/s ({})",
                            fmt_rate(b.ops_per_s()),
                            fmt_secs(b.elapsed)
                        ),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(d) = img.build_shutdown {
                    lines.push((
                        "clean stop after the build (SIGTERM to exit)".into(),
                        fmt_secs(d),
                        "—".into(),
                        "—".into(),
                    ));
                }
                lines.push((
                    "data directory on disk".into(),
                    fmt_mb(img.disk_bytes),
                    "—".into(),
                    "—".into(),
                ));
                if let Some(d) = img.first_ping {
                    if !quick && d > Duration::from_secs(1) {
                        all_met = false;
                    }
                    lines.push((
                        "process start → first `ping` answered".into(),
                        fmt_secs(d),
                        "≤ 1 s".into(),
                        judge(d <= Duration::from_secs(1)),
                    ));
                }
                if let Some(d) = img.ready_line {
                    lines.push((
                        "process start → `batos ready` line".into(),
                        fmt_secs(d),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(o) = img.ping_objects {
                    lines.push((
                        "objects reported by `ping` after reopening".into(),
                        thousands(o),
                        format!("≥ {}", thousands(img.objects)),
                        if o >= img.objects {
                            "yes".into()
                        } else {
                            "**no**".into()
                        },
                    ));
                }
                for (label, rss) in [
                    ("RSS after opening (first `ping`)".to_string(), img.rss_open),
                    (
                        format!(
                            "RSS after touching {} objects (`send`)",
                            thousands(img.touched)
                        ),
                        img.rss_touched,
                    ),
                ] {
                    if let Some(b) = rss {
                        if !quick && b > 100_000_000 {
                            all_met = false;
                        }
                        lines.push((label, fmt_mb(b), "≤ 100 MB".into(), judge(b <= 100_000_000)));
                    }
                }
                if let (Some(anon), Some(file)) = (img.rss_touched_anon, img.rss_touched_file) {
                    lines.push((
                        "of which anonymous (RssAnon) / file pages, mostly the binary's code (RssFile)"
                            .into(),
                        format!("{} / {}", fmt_mb(anon), fmt_mb(file)),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(b) = img.rss_peak {
                    lines.push((
                        "peak RSS of the reopened kernel (VmHWM)".into(),
                        fmt_mb(b),
                        "—".into(),
                        "—".into(),
                    ));
                }
                if let Some(t) = &img.touch {
                    lines.push((
                        "touch: `send`, 64 in flight, each object once".into(),
                        format!(
                            "{} ops/s, p50 {} µs, p99 {} µs",
                            fmt_rate(t.ops_per_s()),
                            t.pct_ns(0.5).map_or("—".into(), |ns| fmt_us(ns / 1e3)),
                            t.pct_ns(0.99).map_or("—".into(), |ns| fmt_us(ns / 1e3))
                        ),
                        "—".into(),
                        "—".into(),
                    ));
                }
                s.push_str("| metric | value | target | met? |\n|---|---|---|---|\n");
                for (a, b, c, d) in lines {
                    s.push_str(&format!("| {a} | {b} | {c} | {d} |\n"));
                }
                s.push_str("\nMB = 10⁶ bytes. RSS is the kernel process's VmRSS from /proc.\n\n");
                if !img.errors.is_empty() {
                    all_ok = false;
                    all_met = false;
                    s.push_str("Errors:\n\n");
                    for e in &img.errors {
                        s.push_str(&format!("- {e}\n"));
                    }
                    s.push('\n');
                }
                if !img.notes.is_empty() {
                    s.push_str("Notes:\n\n");
                    for n in &img.notes {
                        s.push_str(&format!("- {n}\n"));
                    }
                    s.push('\n');
                }
            }
        }
    }
    s.push_str(&format!(
        "Image settings: {} objects, {} touched. ops/s counts replies over the measured window; latency is request sent → reply received at the client, \
         per request (with 64 in flight it includes queueing).\n",
        thousands(settings.image_objects),
        thousands(settings.touch_objects.min(settings.image_objects))
    ));
    (s, all_ok, all_met)
}

pub(crate) fn measured_json(m: &Measured) -> serde_json::Value {
    serde_json::json!({
        "ops": m.ops,
        "elapsed_s": m.elapsed.as_secs_f64(),
        "ops_per_s": m.ops_per_s(),
        "p50_us": m.pct_ns(0.5).map(|ns| ns / 1e3),
        "p99_us": m.pct_ns(0.99).map(|ns| ns / 1e3),
        "errors": m.errors,
        "error_samples": m.error_samples,
        "notes": m.notes,
        "server_cpu_us_per_op": m.server_cpu_us_per_op,
    })
}

pub(crate) fn report_json(
    rows: &[Row],
    image: Option<&Result<ImageOutcome, String>>,
    machine: &[(&'static str, String)],
) -> serde_json::Value {
    let rows_json: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let v = evaluate(row, rows);
            serde_json::json!({
                "scenario": row.sc.name,
                "label": row.sc.label,
                "in_flight": row.sc.in_flight,
                "result": match &row.outcome {
                    Ok(m) => measured_json(m),
                    Err(e) => serde_json::json!({ "failed": e }),
                },
                "redis": match &row.redis {
                    None => serde_json::Value::Null,
                    Some(Err(e)) => serde_json::json!({ "not_measured": e }),
                    Some(Ok(r)) => serde_json::json!({
                        "appendfsync": r.fsync,
                        "pipeline": r.pipeline,
                        "requests": r.requests,
                        "ops_per_s": r.rps,
                        "p50_us": r.p50_ms.map(|x| x * 1e3),
                        "p99_us": r.p99_ms.map(|x| x * 1e3),
                    }),
                },
                "ratio": v.ratio,
                "target": v.target,
                "met": v.met,
            })
        })
        .collect();
    let image_json = match image {
        None => serde_json::Value::Null,
        Some(Err(e)) => serde_json::json!({ "failed": e }),
        Some(Ok(img)) => serde_json::json!({
            "objects": img.objects,
            "build": img.build.as_ref().map(measured_json),
            "build_shutdown_s": img.build_shutdown.map(|d| d.as_secs_f64()),
            "disk_bytes": img.disk_bytes,
            "ping_objects": img.ping_objects,
            "first_ping_s": img.first_ping.map(|d| d.as_secs_f64()),
            "ready_line_s": img.ready_line.map(|d| d.as_secs_f64()),
            "rss_open_bytes": img.rss_open,
            "touched": img.touched,
            "touch": img.touch.as_ref().map(measured_json),
            "rss_touched_bytes": img.rss_touched,
            "rss_touched_anon_bytes": img.rss_touched_anon,
            "rss_touched_file_bytes": img.rss_touched_file,
            "rss_peak_bytes": img.rss_peak,
            "errors": img.errors,
            "notes": img.notes,
        }),
    };
    let machine_json: serde_json::Map<String, serde_json::Value> = machine
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(v.clone())))
        .collect();
    serde_json::json!({ "machine": machine_json, "scenarios": rows_json, "image": image_json })
}
