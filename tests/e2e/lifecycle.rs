//! Process lifecycle: the ready line, SIGTERM/SIGINT drain and exit 0, config handling, and refusal of non-loopback endpoints.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn sigterm_with_requests_in_flight_answers_them_and_exits_0() {
    let k = Kernel::start_with(Options::durability("sync"));
    let c = k.dealer();
    let o = c.create(&[]);
    const N: u64 = 200;
    for i in 0..N {
        c.send_request(
            "set_slot",
            &Value::from(i),
            &[
                ("oid", Value::from(o)),
                ("slot", s(&format!("s{i}"))),
                ("value", Value::from(i)),
            ],
        );
    }
    // The kernel is demonstrably working through the burst: stop it now.
    let mut replies = vec![c.recv_reply()];
    k.signal(libc::SIGTERM);

    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(r) = c.try_recv_reply(Duration::from_millis(200)) {
            replies.push(r);
            continue;
        }
        if k.has_exited() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batos did not exit within {EXIT_TIMEOUT:?} of SIGTERM"
        );
    }
    while let Some(r) = c.try_recv_reply(Duration::from_millis(100)) {
        replies.push(r);
    }
    let status = k.wait_exit(EXIT_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}\n{}",
        k.log_tail()
    );

    let mut outcome: HashMap<u64, bool> = HashMap::new(); // id -> acknowledged
    for r in &replies {
        let id = uint(
            r.id.as_ref()
                .unwrap_or_else(|| panic!("reply without id: {:?}", r.raw)),
        );
        let ok = match &r.outcome {
            Ok(v) => {
                assert_same(v, &empty_map(), "set_slot result");
                true
            }
            Err((code, _)) if code == "overloaded" || code == "unavailable" => false,
            Err((code, m)) => panic!("id {id}: unexpected error during shutdown: {code}: {m}"),
        };
        assert!(outcome.insert(id, ok).is_none(), "two replies for id {id}");
    }
    assert!(
        outcome.values().any(|&ok| ok),
        "at least the first write was acknowledged"
    );

    // Restart: every acknowledged write is there, and every write that was
    // carried out was answered (in-flight requests are finished, not dropped).
    let k2 = Kernel::start_on(k.root(), Options::durability("sync"));
    let c2 = k2.dealer();
    let st = c2.slots(o);
    for i in 0..N {
        let present = field(&st, &format!("s{i}")).is_some();
        let acked = outcome.get(&i).copied().unwrap_or(false);
        assert!(!acked || present, "acknowledged write s{i} was lost");
        assert!(
            !present || acked,
            "write s{i} was carried out but its reply was never sent"
        );
    }
    drop(c2);
    k2.stop();
}

#[test]
fn sigint_exits_0() {
    let k = Kernel::start();
    k.dealer().ping();
    k.signal(libc::SIGINT);
    let status = k.wait_exit(EXIT_TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGINT: {status:?}\n{}",
        k.log_tail()
    );
}

#[test]
fn sigterm_when_idle_exits_0_and_prints_only_the_ready_line() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("kept", Value::Boolean(true))]);
    drop(c);
    let lines = k.stdout_lines();
    let root = k.stop();
    assert_eq!(
        lines.len(),
        1,
        "stdout is exactly the ready line: {lines:?}"
    );
    assert!(parse_ready_line(&lines[0]).is_ok());

    let k = Kernel::start_on(root, Options::default());
    assert_same(
        &k.dealer().get(o, "kept"),
        &Value::Boolean(true),
        "kept across a clean stop",
    );
    k.stop();
}

#[test]
fn each_start_binds_fresh_real_ports() {
    let a = Kernel::start();
    let b = Kernel::start();
    assert_ne!(a.endpoint, b.endpoint);
    assert_ne!(a.events, b.events);
    assert_ne!(a.metrics, b.metrics);
    assert_ne!(a.endpoint, a.events);
}

/// The metrics endpoint has no authentication: an address other machines
/// can reach is refused at start, with what to set to allow it.
#[test]
fn a_non_loopback_metrics_address_is_refused_unless_allowed() {
    for metrics in ["0.0.0.0:0", "[::]:0"] {
        let opts = Options {
            metrics: Some(metrics.into()),
            ..Options::default()
        };
        let r = run_expecting_exit(&opts, Duration::from_secs(20));
        assert_eq!(r.status.code(), Some(1), "{metrics}: {r:?}");
        assert!(r.stderr.contains("allow_remote"), "{metrics}: {}", r.stderr);
        assert!(!r.stdout.contains("batos ready"), "{metrics}: {}", r.stdout);
    }
}

#[test]
fn non_loopback_endpoints_are_refused_without_curve() {
    let cases = [
        Options {
            endpoint: Some("tcp://0.0.0.0:*".into()),
            ..Options::default()
        },
        Options {
            endpoint: Some("tcp://*:*".into()),
            ..Options::default()
        },
        Options {
            events: Some("tcp://0.0.0.0:*".into()),
            ..Options::default()
        },
    ];
    for opts in &cases {
        let r = run_expecting_exit(opts, Duration::from_secs(20));
        assert!(
            r.status.code().is_some_and(|c| c != 0),
            "{opts:?}: must exit non-zero, got {:?}",
            r.status
        );
        assert!(
            r.stderr.to_lowercase().contains("curve"),
            "{opts:?}: stderr must mention CURVE: {}",
            r.stderr
        );
        assert!(
            !r.stdout.contains("batos ready"),
            "{opts:?}: must not become ready: {}",
            r.stdout
        );
    }
}

#[test]
fn invalid_config_files_are_refused() {
    let cases = [
        "[bridge]\nno_such_key = 1\n",
        "[no_such_section]\nx = 1\n",
        "[bridge]\nmax_request_bytes = \"lots\"\n",
        "[store]\ndurability = \"sometimes\"\n",
        "this is not toml",
    ];
    for text in cases {
        let r = run_expecting_exit(&Options::config(text), Duration::from_secs(20));
        assert!(
            r.status.code().is_some_and(|c| c != 0),
            "{text:?}: must exit non-zero, got {:?}",
            r.status
        );
        assert!(
            !r.stderr.trim().is_empty(),
            "{text:?}: must say why on stderr"
        );
        assert!(
            !r.stdout.contains("batos ready"),
            "{text:?}: must not become ready"
        );
    }
}

#[test]
fn flags_override_the_config_file() {
    let root = new_image_dir();
    let elsewhere = root.path().join("from-config");
    let config = format!(
        "[kernel]\ndata_dir = \"{}\"\n\n[bridge]\nendpoint = \"tcp://0.0.0.0:*\"\nevents = \"tcp://0.0.0.0:*\"\n\n[store]\ndurability = \"buffered\"\n",
        elsewhere.display()
    );
    // The harness passes loopback --endpoint/--events and --data: they win.
    let k = Kernel::start_on(
        root,
        Options {
            config: Some(config),
            durability: Some("sync"),
            ..Options::default()
        },
    );
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    assert!(k.data_dir().exists(), "--data was used");
    assert!(!elsewhere.exists(), "the config's data_dir was overridden");
    let k = k.restart();
    assert_same(
        &k.dealer().get(o, "x"),
        &Value::from(1),
        "image in --data survives",
    );
    k.stop();
}
