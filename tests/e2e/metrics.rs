//! The Prometheus endpoint: names, types and labels exist, and counters, histograms and gauges move with traffic.

use std::time::Duration;

use crate::harness::*;

const REQUESTS: &str = "batos_bridge_requests_total";
const DURATION: &str = "batos_bridge_request_duration_seconds";
const COMMIT: &str = "batos_store_commit_duration_seconds";

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let k = Kernel::start();
    let c = k.dealer();
    c.ping();
    c.set(c.create(&[]), "x", Value::from(1));
    let m = k.scrape();
    assert!(
        m.content_type.starts_with("text/plain"),
        "content type {:?}",
        m.content_type
    );
    assert!(m.text.contains("# TYPE"), "no TYPE lines:\n{}", m.text);
    assert_eq!(
        m.types.get(REQUESTS).map(String::as_str),
        Some("counter"),
        "{REQUESTS} type"
    );
    assert_eq!(
        m.types.get(DURATION).map(String::as_str),
        Some("histogram"),
        "{DURATION} type"
    );
    assert_eq!(
        m.types.get(COMMIT).map(String::as_str),
        Some("histogram"),
        "{COMMIT} type"
    );
    assert_eq!(
        m.types.get("batos_actors_live").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        m.types.get("batos_image_objects").map(String::as_str),
        Some("gauge")
    );
    for name in ["batos_actors_live", "batos_image_objects"] {
        assert!(m.has(name), "{name} missing:\n{}", m.text);
    }
    // Histograms expose buckets with `le`, a sum and a count.
    assert!(
        m.samples
            .iter()
            .any(|x| x.name == format!("{DURATION}_bucket")
                && x.labels.iter().any(|(k, _)| k == "le")),
        "no {DURATION} buckets:\n{}",
        m.text
    );
    assert!(m.has(&format!("{DURATION}_sum")) && m.has(&format!("{DURATION}_count")));
    assert!(m.has(&format!("{COMMIT}_bucket")) && m.has(&format!("{COMMIT}_count")));
}

#[test]
fn request_counters_move_with_requests() {
    let k = Kernel::start();
    let c = k.dealer();
    let ok_pings = [("command", "ping"), ("status", "ok")];
    c.ping();
    let before = k.scrape();
    let pings_before = before.count(REQUESTS, &ok_pings);
    assert!(
        pings_before >= 1.0,
        "the first ping was counted:\n{}",
        before.text
    );
    let hist_before = before.count(&format!("{DURATION}_count"), &[("command", "ping")]);

    for _ in 0..5 {
        c.ping();
    }
    let o = c.create(&[]);
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("nope"))],
        "no_such_slot",
    );
    c.expect_err("frobnicate", &[], "unknown_command");
    c.expect_err("infer", &[("prompt", s("hi"))], "unavailable");

    let after = k.scrape();
    assert!(
        after.count(REQUESTS, &ok_pings) >= pings_before + 5.0,
        "ping counter moved:\n{}",
        after.text
    );
    assert!(
        after.count(&format!("{DURATION}_count"), &[("command", "ping")]) >= hist_before + 5.0,
        "ping latency histogram moved:\n{}",
        after.text
    );
    assert!(after.count(REQUESTS, &[("command", "create_object"), ("status", "ok")]) >= 1.0);
    assert!(
        after.count(
            REQUESTS,
            &[("command", "get_slot"), ("status", "no_such_slot")]
        ) >= 1.0,
        "errors are counted by code:\n{}",
        after.text
    );
    assert!(
        after.count(REQUESTS, &[("status", "unknown_command")]) >= 1.0,
        "{}",
        after.text
    );
    assert!(
        after.count(REQUESTS, &[("command", "infer"), ("status", "unavailable")]) >= 1.0,
        "{}",
        after.text
    );
}

#[test]
fn commit_histogram_moves_with_writes() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let count = format!("{COMMIT}_count");
    let before = k.scrape().count(&count, &[]);
    for i in 0..10u64 {
        c.set(o, "i", Value::from(i));
    }
    let after = k.scrape();
    assert!(
        after.count(&count, &[]) >= before + 10.0,
        "one commit per write at least:\n{}",
        after.text
    );
}

#[test]
fn gauges_track_the_image() {
    let k = Kernel::start();
    let c = k.dealer();
    let objects = |m: &Metrics| m.sum("batos_image_objects", &[]);
    // Gauges may be refreshed asynchronously: poll with a deadline.
    eventually("batos_image_objects == 6", Duration::from_secs(10), || {
        objects(&k.scrape()) == Some(6.0)
    });
    let made: Vec<u64> = (0..3).map(|_| c.create(&[])).collect();
    for &o in &made {
        c.set(o, "touch", Value::Boolean(true));
    }
    eventually("batos_image_objects == 9", Duration::from_secs(10), || {
        objects(&k.scrape()) == Some(9.0)
    });
    eventually("batos_actors_live >= 1", Duration::from_secs(10), || {
        k.scrape()
            .sum("batos_actors_live", &[])
            .is_some_and(|n| n >= 1.0)
    });
}

/// The exposition passes `promtool check metrics` (naming and help-text
/// lint), with every subsystem's series present.
#[test]
fn promtool_accepts_the_metrics() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    c.set(o, "x", Value::from(1));
    let _ = c.send(o, "setY_", vec![Value::from(2)]);
    let text = k.scrape().text;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: .ci/run installs it");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connections that never send a request head are closed after the header
/// timeout, and at most `max_connections` are held at once (the rest wait
/// in the backlog), so idle or slow clients cannot pin the endpoint or the
/// kernel's file descriptors; a scrape still gets through.
#[test]
fn idle_metrics_connections_are_closed_and_capped() {
    use std::io::Read;
    let k = Kernel::start_with(Options::config(
        "[metrics]\nmax_connections = 2\nheader_timeout_ms = 300\n",
    ));
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&k.metrics).expect("connect"))
        .collect();
    for (i, mut stream) in idle.into_iter().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("idle connection {i} was not closed: {e}"));
        assert_eq!(n, 0, "idle connection {i} got bytes instead of a close");
    }
    let m = k.scrape();
    assert!(m.types.contains_key("batos_actors_live"));
}
