//! Client kinds and envelopes: REQ and DEALER, mirrored envelope frames, pipelining, per-object ordering, concurrent clients.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::*;

#[test]
fn req_client_round_trips() {
    let k = Kernel::start();
    let c = k.req();
    assert_eq!(c.kind, Kind::Req);
    assert_eq!(uint(must(&c.ping(), "objects")), 6);
    let o = c.create(&[("a", Value::from(1))]);
    c.set(o, "b", s("two"));
    assert_same(&c.get(o, "b"), &s("two"), "REQ get");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("nope"))],
        "no_such_slot",
    );
    // A REQ client receives just the body (ZeroMQ strips the delimiter).
    c.send_body(&encode_request("ping", Some(&Value::from(5)), &[]));
    let frames = c.recv_frames();
    assert_eq!(frames.len(), 1, "REQ reply frames");
}

#[test]
fn req_client_extra_frames_are_mirrored() {
    let k = Kernel::start();
    let c = k.req();
    // On the wire: [identity, "", "extra", body].
    let body = encode_request("ping", Some(&Value::from(1)), &[]);
    c.send_frames(&[&b"extra"[..], &body[..]]);
    let mut frames = c.recv_frames();
    let body = frames.pop().expect("body");
    assert_eq!(frames, vec![b"extra".to_vec()], "envelope mirrored");
    assert!(Reply::parse(frames, &body).is_ok());
}

#[test]
fn dealer_without_delimiter_gets_a_bare_reply() {
    let k = Kernel::start();
    let c = k.dealer();
    let body = encode_request("ping", Some(&Value::from(1)), &[]);
    c.send_frames(&[&body[..]]);
    let frames = c.recv_frames();
    assert_eq!(frames.len(), 1, "reply mirrors an empty envelope");
    let r = Reply::parse(Vec::new(), &frames[0]);
    assert!(r.is_ok());
}

#[test]
fn dealer_with_delimiter_gets_it_back() {
    let k = Kernel::start();
    let c = k.dealer();
    let body = encode_request("ping", Some(&Value::from(1)), &[]);
    c.send_frames(&[&b""[..], &body[..]]);
    let r = c.recv_reply();
    assert_eq!(
        r.envelope,
        vec![Vec::<u8>::new()],
        "the empty delimiter comes back"
    );
    assert!(r.is_ok());
}

#[test]
fn extra_envelope_frames_are_mirrored() {
    let k = Kernel::start();
    let c = k.dealer();
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![&b"extra"[..], &b""[..]],
        vec![&b"a"[..], &b"b"[..]],
        vec![&b"one"[..], &b"two"[..], &b"three"[..], &b""[..]],
        vec![&b"\x00\xff binary"[..], &b""[..]],
    ];
    for envelope in &cases {
        let body = encode_request("ping", Some(&Value::from(1)), &[]);
        let mut frames = envelope.clone();
        frames.push(&body[..]);
        c.send_frames(&frames);
        let r = c.recv_reply();
        let want: Vec<Vec<u8>> = envelope.iter().map(|f| f.to_vec()).collect();
        assert_eq!(r.envelope, want, "envelope mirrored for ok");
        assert!(r.is_ok());

        // Errors (even undecodable bodies) mirror it too.
        let mut frames = envelope.clone();
        frames.push(&b"\xc1"[..]);
        c.send_frames(&frames);
        let r = c.recv_reply();
        assert_eq!(r.envelope, want, "envelope mirrored for an error");
        r.assert_error("bad_request");
    }
}

#[test]
fn pipelined_requests_each_get_exactly_one_reply() {
    let k = Kernel::start();
    let c = k.dealer();
    let objects: Vec<u64> = (0..10)
        .map(|i| c.create(&[("i", Value::from(i))]))
        .collect();
    const N: u64 = 500;
    // Remember what each id must answer.
    let mut expected: HashMap<u64, &str> = HashMap::new();
    for id in 0..N {
        let o = objects[(id % 10) as usize];
        let idv = Value::from(id);
        match id % 4 {
            0 => {
                c.send_request("ping", &idv, &[]);
                expected.insert(id, "ping");
            }
            1 => {
                c.send_request(
                    "set_slot",
                    &idv,
                    &[
                        ("oid", Value::from(o)),
                        ("slot", s(&format!("w{id}"))),
                        ("value", Value::from(id)),
                    ],
                );
                expected.insert(id, "set");
            }
            2 => {
                c.send_request(
                    "get_slot",
                    &idv,
                    &[("oid", Value::from(o)), ("slot", s("i"))],
                );
                expected.insert(id, "get");
            }
            _ => {
                c.send_request(
                    "get_slot",
                    &idv,
                    &[("oid", Value::from(o)), ("slot", s("missing"))],
                );
                expected.insert(id, "missing");
            }
        }
    }
    for _ in 0..N {
        let r = c.recv_reply();
        let id = uint(
            r.id.as_ref()
                .unwrap_or_else(|| panic!("reply without id: {:?}", r.raw)),
        );
        let kind = expected
            .remove(&id)
            .unwrap_or_else(|| panic!("unexpected or duplicate reply for id {id}"));
        match kind {
            "ping" => assert!(field(r.result(), "version").is_some()),
            "set" => assert_same(r.result(), &empty_map(), "set_slot result"),
            "get" => assert_same(
                r.result(),
                &Value::from((id % 10) as i64),
                "get_slot result",
            ),
            _ => r.assert_error("no_such_slot"),
        }
    }
    assert!(expected.is_empty());
    c.assert_silent(Duration::from_millis(300));
    // Every pipelined write landed.
    for id in (0..N).filter(|i| i % 4 == 1) {
        let o = objects[(id % 10) as usize];
        assert_same(
            &c.get(o, &format!("w{id}")),
            &Value::from(id),
            "pipelined write",
        );
    }
}

#[test]
fn writes_to_one_object_take_effect_in_order() {
    let k = Kernel::start();
    let c = k.dealer();
    let a = c.create(&[]);
    let b = c.create(&[]);
    const N: u64 = 300;
    for i in 0..N {
        c.send_request(
            "set_slot",
            &Value::from(i),
            &[
                ("oid", Value::from(a)),
                ("slot", s("n")),
                ("value", Value::from(i)),
            ],
        );
        c.send_request(
            "set_slot",
            &Value::from(N + i),
            &[
                ("oid", Value::from(b)),
                ("slot", s("n")),
                ("value", Value::from(i)),
            ],
        );
    }
    // Pipelined right behind the writes, on the same connection.
    c.send_request(
        "get_slot",
        &s("get-a"),
        &[("oid", Value::from(a)), ("slot", s("n"))],
    );
    c.send_request(
        "get_slot",
        &s("get-b"),
        &[("oid", Value::from(b)), ("slot", s("n"))],
    );
    let mut acked = 0;
    let mut got = HashMap::new();
    for _ in 0..(2 * N + 2) {
        let r = c.recv_reply();
        match r.id.as_ref().expect("id") {
            Value::String(name) => {
                got.insert(
                    name.as_str().expect("utf8 id").to_owned(),
                    r.result().clone(),
                );
            }
            _ => {
                assert_same(r.result(), &empty_map(), "set_slot result");
                acked += 1;
            }
        }
    }
    assert_eq!(acked, 2 * N);
    assert_same(
        &got["get-a"],
        &Value::from(N - 1),
        "pipelined get on a sees every earlier write",
    );
    assert_same(
        &got["get-b"],
        &Value::from(N - 1),
        "pipelined get on b sees every earlier write",
    );
    assert_same(&c.get(a, "n"), &Value::from(N - 1), "last write wins on a");
    assert_same(&c.get(b, "n"), &Value::from(N - 1), "last write wins on b");
}

#[test]
fn concurrent_clients_do_not_see_each_others_replies() {
    let k = Kernel::start();
    let endpoint = k.endpoint.clone();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let endpoint = endpoint.clone();
            scope.spawn(move || {
                let kind = if t % 2 == 0 { Kind::Dealer } else { Kind::Req };
                let c = Client::connect(&endpoint, kind);
                let o = c.create(&[("thread", Value::from(t))]);
                for i in 0..100u64 {
                    c.set(o, "i", Value::from(i));
                    assert_same(&c.get(o, "i"), &Value::from(i), "own write");
                }
                assert_same(&c.get(o, "thread"), &Value::from(t), "own object");
            });
        }
    });
    k.dealer().ping();
}

#[test]
fn a_client_vanishing_mid_pipeline_does_not_hurt_others() {
    let k = Kernel::start();
    let other = k.dealer();
    let o = other.create(&[]);
    {
        let gone = k.dealer();
        for i in 0..200u64 {
            gone.send_request(
                "set_slot",
                &Value::from(i),
                &[
                    ("oid", Value::from(o)),
                    ("slot", s("g")),
                    ("value", Value::from(i)),
                ],
            );
        }
        // Dropped here with its replies unread (linger 0).
    }
    other.ping();
    other.set(o, "x", Value::from(1));
    assert_same(&other.get(o, "x"), &Value::from(1), "still serving");
    other.assert_silent(Duration::from_millis(200));
}

/// A large body is decoded off the bridge's task, and the connection's later
/// requests wait behind it: each connection's writes still take effect in
/// the order it sent them, and another connection is served meanwhile.
#[test]
fn requests_after_a_large_one_keep_their_order() {
    let k = Kernel::start();
    let (c, other) = (k.dealer(), k.dealer());
    let o = c.create(&[]);
    let big = Value::Binary(vec![1u8; 1 << 20]);
    const ROUNDS: u64 = 20;
    for round in 0..ROUNDS {
        let slot = s(&format!("x{round}"));
        c.send_request(
            "set_slot",
            &Value::from(2 * round),
            &[
                ("oid", Value::from(o)),
                ("slot", slot.clone()),
                ("value", big.clone()),
            ],
        );
        c.send_request(
            "set_slot",
            &Value::from(2 * round + 1),
            &[
                ("oid", Value::from(o)),
                ("slot", slot),
                ("value", Value::from(round)),
            ],
        );
    }
    other.ping();
    let mut ids: Vec<u64> = c
        .recv_replies(2 * ROUNDS as usize)
        .into_iter()
        .map(|r| {
            assert!(r.is_ok(), "{:?}", r.outcome);
            uint(r.id.as_ref().expect("id"))
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..2 * ROUNDS).collect::<Vec<_>>());
    for round in 0..ROUNDS {
        assert_same(
            &c.get(o, &format!("x{round}")),
            &Value::from(round),
            "the small write, sent after the large one, is the one kept",
        );
    }
}

/// Writes `exploded`, then traps: nothing may be kept.
const EXPLODE: &str = r#"(module
  (import "uvm" "set_slot_i64" (func $set (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "exploded")
  (func (export "invoke")
    (drop (call $set (i32.const 0) (i32.const 8) (i64.const 1)))
    unreachable))"#;

/// What a request of the burst must answer.
enum Expect {
    Empty,
    Value(Value),
    NoSuchSlot,
    Code(&'static str),
    /// A `forward` through to the shared counter, by its sender.
    Bump(u64),
}

/// One connection pipelines a burst over many objects: writes, reads of
/// what was just written, sends that read data slots, methods that all
/// increment one shared object (so their transactions conflict and re-run),
/// methods that write then trap, and malformed requests. Every request is
/// answered exactly once; each object sees its requests in the order sent;
/// every increment counted once, none lost to a conflict; nothing of a
/// trapped method kept.
#[test]
fn a_burst_of_many_objects_conflicts_and_errors_keeps_order_and_answers_once() {
    // Room for the whole burst: back-pressure (`overloaded`) is tested elsewhere.
    let k = Kernel::start_with(Options::config(
        "[bridge]\nmax_inflight = 8192\nmax_inflight_per_peer = 8192\n",
    ));
    let c = k.dealer();
    let shared = c.create(&[]);
    c.ok(
        "create_method",
        &[
            ("oid", Value::from(shared)),
            ("selector", s("increment")),
            ("wasm", Value::Binary(guest_example("counter"))),
        ],
    );
    let base = c.create(&[]);
    for (selector, code) in [
        ("forward", ("wasm", Value::Binary(guest_example("forward")))),
        ("explode", ("wat", s(EXPLODE))),
    ] {
        c.ok(
            "create_method",
            &[("oid", Value::from(base)), ("selector", s(selector)), code],
        );
    }
    let objects: Vec<u64> = (0..24)
        .map(|_| c.create(&[("parent*", parents(&[base]))]))
        .collect();

    const N: u64 = 3000;
    let mut expected: HashMap<u64, Expect> = HashMap::new();
    let mut seq: HashMap<u64, u64> = HashMap::new();
    for id in 0..N {
        let o = objects[(id % objects.len() as u64) as usize];
        let at = *seq.get(&o).unwrap_or(&0);
        let current = if at == 0 {
            Expect::NoSuchSlot
        } else {
            Expect::Value(Value::from(at))
        };
        let oid = ("oid", Value::from(o));
        let (command, fields, expect) = match (id / objects.len() as u64) % 7 {
            0 | 3 => {
                seq.insert(o, at + 1);
                let value = ("value", Value::from(at + 1));
                (
                    "set_slot",
                    vec![oid, ("slot", s("seq")), value],
                    Expect::Empty,
                )
            }
            1 => ("get_slot", vec![oid, ("slot", s("seq"))], current),
            2 => (
                "send",
                vec![
                    oid,
                    ("selector", s("forward")),
                    ("args", Value::Array(vec![Value::from(shared)])),
                ],
                Expect::Bump(o),
            ),
            4 => (
                "send",
                vec![oid, ("selector", s("seq"))],
                match current {
                    Expect::Value(v) => {
                        Expect::Value(map(&[("value", v), ("generated", Value::Boolean(false))]))
                    }
                    _ => Expect::Code("does_not_understand"),
                },
            ),
            5 => (
                "send",
                vec![oid, ("selector", s("explode"))],
                Expect::Code("method_trap"),
            ),
            _ => match id % 3 {
                0 => (
                    "get_slot",
                    vec![("oid", Value::from(u64::MAX)), ("slot", s("x"))],
                    Expect::Code("no_such_object"),
                ),
                1 => (
                    "set_slot",
                    vec![oid, ("slot", s("seq"))],
                    Expect::Code("bad_request"),
                ),
                _ => (
                    "no_such_command",
                    vec![oid],
                    Expect::Code("unknown_command"),
                ),
            },
        };
        c.send_request(command, &Value::from(id), &fields);
        expected.insert(id, expect);
    }

    let mut bumps: HashMap<u64, Vec<u64>> = HashMap::new();
    for _ in 0..N {
        let r = c
            .try_recv_reply(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} requests were never answered", expected.len()));
        let id = uint(
            r.id.as_ref()
                .unwrap_or_else(|| panic!("no id: {:?}", r.raw)),
        );
        let expect = expected
            .remove(&id)
            .unwrap_or_else(|| panic!("a second reply, or one never asked, for id {id}"));
        match expect {
            Expect::Empty => assert_same(r.result(), &empty_map(), "set_slot"),
            Expect::Value(v) => assert_same(r.result(), &v, &format!("request {id}")),
            Expect::NoSuchSlot => r.assert_error("no_such_slot"),
            Expect::Code(code) => r.assert_error(code),
            Expect::Bump(sender) => {
                // Replies may come in any order; ids are in send order.
                let n = must(r.result(), "value").as_u64().expect("a count");
                bumps.entry(sender).or_default().push(id << 32 | n);
            }
        }
    }
    assert!(expected.is_empty());
    c.assert_silent(Duration::from_millis(200));

    // Each increment counted exactly once, whatever re-ran.
    let mut counts: Vec<u64> = bumps.values().flatten().map(|v| v & 0xffff_ffff).collect();
    counts.sort_unstable();
    let total = counts.len() as u64;
    assert_eq!(counts, (1..=total).collect::<Vec<_>>());
    assert_same(
        &c.get(shared, "count"),
        &Value::from(total),
        "the shared count",
    );
    // One sender's increments took effect in the order it sent them.
    for (sender, mut sent) in bumps {
        sent.sort_unstable();
        let values: Vec<u64> = sent.iter().map(|v| v & 0xffff_ffff).collect();
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "object {sender}: {values:?}"
        );
    }
    for o in &objects {
        assert_same(&c.get(*o, "seq"), &Value::from(seq[o]), "the last write");
        c.expect_err(
            "get_slot",
            &[("oid", Value::from(*o)), ("slot", s("exploded"))],
            "no_such_slot",
        );
    }
    let m = k.scrape();
    assert!(
        m.count("batos_store_commit_conflicts_total", &[]) >= 1.0,
        "the shared object made transactions conflict"
    );
}
