//! CURVE on the bridge, from outside: keys made with `batos keys new`, an
//! allow-list of clients by role, only listed keys admitted (on commands
//! and events), a `read` client refused writes, and a non-loopback endpoint
//! reached from another network namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::*;

/// Keys for one kernel: its pair, and clients `alice` (admin), `bob`
/// (read) and `mallory` (not listed).
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["kernel", "alice", "bob", "mallory"] {
            let out = cli(&["keys", "new", name, "--dir", dir.path().to_str().unwrap()]);
            assert_eq!(out.code, Some(0), "batos keys new {name}: {}", out.stderr);
            let printed: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
            assert_eq!(printed["public"].as_str().map(str::len), Some(40));
        }
        for (name, role) in [("alice", "admin"), ("bob", "read")] {
            let role_dir = dir.path().join("clients").join(role);
            std::fs::create_dir_all(&role_dir).unwrap();
            std::fs::copy(
                dir.path().join(format!("{name}.pub")),
                role_dir.join(format!("{name}.pub")),
            )
            .unwrap();
        }
        Keys { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn config(&self) -> String {
        format!(
            "[bridge]\ncurve_key = {:?}\ncurve_clients = {:?}\n",
            self.path("kernel.key"),
            self.path("clients")
        )
    }

    fn client(&self, name: &str) -> Curve {
        Curve::load(&self.path("kernel.pub"), &self.path(&format!("{name}.key")))
            .expect("client keys")
    }
}

/// Connects a DEALER with `curve` (or none), sends a ping and waits for the
/// connection's handshake on the socket's monitor: the first handshake
/// event, then whether a reply came.
fn handshake(endpoint: &str, curve: Option<&Curve>) -> (zmq::SocketEvent, Option<Vec<u8>>) {
    static N: AtomicUsize = AtomicUsize::new(0);
    // A context of its own: the refused connections keep retrying, and the
    // monitor's sockets live in it, apart from every other test's clients.
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::DEALER).unwrap();
    if let Some(curve) = curve {
        curve.apply(&sock).unwrap();
    }
    sock.set_linger(0).unwrap();
    let monitor = format!(
        "inproc://curve-monitor-{}",
        N.fetch_add(1, Ordering::Relaxed)
    );
    sock.monitor(&monitor, zmq::SocketEvent::ALL as i32)
        .unwrap();
    let events = ctx.socket(zmq::PAIR).unwrap();
    events
        .set_rcvtimeo(REPLY_TIMEOUT.as_millis() as i32)
        .unwrap();
    events.connect(&monitor).unwrap();
    sock.connect(endpoint).unwrap();
    let ping = encode(&map(&[
        ("v", Value::from(1)),
        ("id", Value::from(1)),
        ("command", s("ping")),
    ]));
    sock.send(ping, 0).unwrap();
    let event = loop {
        let frames = events
            .recv_multipart(0)
            .expect("a handshake event within the reply timeout");
        let code = u16::from_le_bytes([frames[0][0], frames[0][1]]);
        let event = zmq::SocketEvent::from_raw(code);
        if matches!(
            event,
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED
                | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH
                | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL
                | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL
                | zmq::SocketEvent::DISCONNECTED
        ) {
            break event;
        }
    };
    let reply = if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED {
        sock.set_rcvtimeo(REPLY_TIMEOUT.as_millis() as i32).unwrap();
        sock.recv_bytes(0).ok()
    } else {
        // A failed handshake delivers nothing: nothing can be waiting.
        sock.recv_bytes(zmq::DONTWAIT).ok()
    };
    (event, reply)
}

fn refused(outcome: (zmq::SocketEvent, Option<Vec<u8>>), who: &str) {
    assert_ne!(
        outcome.0,
        zmq::SocketEvent::HANDSHAKE_SUCCEEDED,
        "{who} was admitted"
    );
    assert!(outcome.1.is_none(), "{who} got a reply");
}

#[test]
fn only_listed_keys_are_admitted_each_with_its_role() {
    let keys = Keys::new();
    let k = Kernel::start_with(Options::config(&keys.config()));
    let (alice, bob, mallory) = (
        keys.client("alice"),
        keys.client("bob"),
        keys.client("mallory"),
    );

    // The listed keys get answers, within their roles.
    let admin = Client::connect_with(&k.endpoint, Kind::Dealer, Some(&alice));
    let o = admin.create(&[("n", Value::from(1))]);
    admin.set(o, "n", Value::from(2));
    let reader = Client::connect_with(&k.endpoint, Kind::Dealer, Some(&bob));
    assert_eq!(reader.get(o, "n").as_u64(), Some(2));
    let (code, message) = reader
        .call(
            "set_slot",
            &[
                ("oid", Value::from(o)),
                ("slot", s("n")),
                ("value", Value::from(3)),
            ],
        )
        .unwrap_err();
    assert_eq!(code, "forbidden", "{message}");
    assert!(message.contains("has read"), "{message}");

    // An unknown key, no key at all, and the right key for the wrong server
    // are refused in the handshake and never answered.
    let (event, _) = handshake(&k.endpoint, Some(&alice));
    assert_eq!(event, zmq::SocketEvent::HANDSHAKE_SUCCEEDED);
    let unknown = handshake(&k.endpoint, Some(&mallory));
    assert_eq!(unknown.0, zmq::SocketEvent::HANDSHAKE_FAILED_AUTH);
    refused(unknown, "mallory");
    refused(handshake(&k.endpoint, None), "a client without CURVE");
    let mut impostor = alice.clone();
    impostor.server = keys.client("mallory").pair.public;
    refused(
        handshake(&k.endpoint, Some(&impostor)),
        "alice with the wrong server key",
    );
    let m = k.scrape();
    assert!(
        m.sum("batos_bridge_refused_connections_total", &[])
            .unwrap_or(0.0)
            >= 1.0,
        "the ZAP refusal is counted"
    );

    // Events: a listed key receives them, and `batos` talks CURVE too.
    let events = Subscriber::connect_with(&k.events, "uvm_state_update", Some(&alice));
    events.sync(&admin);
    let out = cli(&[
        "--endpoint",
        &k.endpoint,
        "--server-key",
        keys.path("kernel.pub").to_str().unwrap(),
        "--key",
        keys.path("bob.key").to_str().unwrap(),
        "get",
        &o.to_string(),
        "n",
    ]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (Some(0), "2"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_key_settings_refuse_to_start_with_the_reason() {
    let keys = Keys::new();
    // A key pair others can read.
    let loose = keys.path("loose.key");
    std::fs::copy(keys.path("kernel.key"), &loose).unwrap();
    set_mode(&loose, 0o644);
    let config = format!(
        "[bridge]\ncurve_key = {loose:?}\ncurve_clients = {:?}\n",
        keys.path("clients")
    );
    let refusal = run_expecting_exit(&Options::config(&config), EXIT_TIMEOUT);
    assert!(refusal.stderr.contains("chmod 600"), "{}", refusal.stderr);
    // No allow-list.
    let config = format!("[bridge]\ncurve_key = {:?}\n", keys.path("kernel.key"));
    let refusal = run_expecting_exit(&Options::config(&config), EXIT_TIMEOUT);
    assert!(
        refusal.stderr.contains("curve_clients"),
        "{}",
        refusal.stderr
    );
    // Non-loopback without keys.
    let opts = Options {
        endpoint: Some("tcp://0.0.0.0:*".into()),
        ..Options::default()
    };
    let refusal = run_expecting_exit(&opts, EXIT_TIMEOUT);
    assert!(refusal.stderr.contains("curve_key"), "{}", refusal.stderr);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A network namespace joined to this one by a veth pair: this side
/// `10.213.N.1`, the namespace's side `10.213.N.2`. Removed on drop.
struct Netns {
    name: String,
    peer_address: String,
}

impl Netns {
    fn create() -> Netns {
        let pid = std::process::id();
        let name = format!("batos-e2e-{pid}");
        let (host, peer) = (
            format!("bth{}", pid % 10_000_000),
            format!("btn{}", pid % 10_000_000),
        );
        let net = pid % 250 + 1;
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            peer_address: format!("10.213.{net}.2"),
        };
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("10.213.{net}.1/30"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("10.213.{net}.2/30"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so both.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_non_loopback_endpoint_serves_another_namespace_with_keys() {
    let keys = Keys::new();
    let ns = Netns::create();
    let endpoint = format!("tcp://{}:*", ns.peer_address);
    let k = Kernel::start_with(Options {
        config: Some(keys.config()),
        netns: Some(ns.name.clone()),
        endpoint: Some(endpoint.clone()),
        events: Some(endpoint),
        ..Options::default()
    });
    assert!(
        k.endpoint
            .starts_with(&format!("tcp://{}:", ns.peer_address)),
        "{}",
        k.endpoint
    );
    // From this namespace, across the veth pair.
    let alice = keys.client("alice");
    let c = Client::connect_with(&k.endpoint, Kind::Dealer, Some(&alice));
    let o = c.create(&[("from", s("another host"))]);
    assert_eq!(c.get(o, "from").as_str(), Some("another host"));
    let events = Subscriber::connect_with(&k.events, "uvm_state_update", Some(&alice));
    events.sync(&c);
    refused(
        handshake(&k.endpoint, Some(&keys.client("mallory"))),
        "mallory",
    );
    refused(handshake(&k.endpoint, None), "a client without CURVE");
    k.stop();
}
