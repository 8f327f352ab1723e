//! Every error code the kernel can reach today, and the `id` echo rules, checked against protocol.md.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;

/// An oid no fresh test image will reach.
const MISSING: u64 = 1_000_000_007;

#[test]
fn bodies_that_are_not_maps_get_bad_request_without_id() {
    let k = Kernel::start();
    let c = k.dealer();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("never-used marker 0xc1", vec![0xc1]),
        ("empty body", vec![]),
        ("truncated map", vec![0x82, 0xa1, b'v']),
        ("text", b"\xc1hello, not msgpack".to_vec()),
        (
            "array",
            encode(&Value::Array(vec![Value::from(1), Value::from(2)])),
        ),
        ("string", encode(&s("ping"))),
        ("int", encode(&Value::from(42))),
        ("nil", encode(&Value::Nil)),
        (
            "request inside an array",
            encode(&Value::Array(vec![request_value(
                "ping",
                Some(&Value::from(1)),
                &[],
            )])),
        ),
    ];
    for (what, body) in &bodies {
        let r = c.request_raw(body);
        assert_eq!(r.code(), Some("bad_request"), "{what}: {:?}", r.raw);
        assert!(
            r.id.is_none(),
            "{what}: a reply to a non-map body has no id: {:?}",
            r.raw
        );
    }
    c.ping();
}

#[test]
fn envelope_errors_echo_the_id() {
    let k = Kernel::start();
    let c = k.dealer();
    let id = || ("id", Value::from(7));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing command",
            map(&[("v", Value::from(1)), id()]),
            "bad_request",
        ),
        (
            "int command",
            map(&[("v", Value::from(1)), id(), ("command", Value::from(5))]),
            "bad_request",
        ),
        (
            "nil command",
            map(&[("v", Value::from(1)), id(), ("command", Value::Nil)]),
            "bad_request",
        ),
        (
            "bin command",
            map(&[
                ("v", Value::from(1)),
                id(),
                ("command", Value::Binary(b"ping".to_vec())),
            ]),
            "bad_request",
        ),
        (
            "missing v",
            map(&[id(), ("command", s("ping"))]),
            "bad_request",
        ),
        (
            "v 2",
            map(&[("v", Value::from(2)), id(), ("command", s("ping"))]),
            "unsupported_version",
        ),
        (
            "v 0",
            map(&[("v", Value::from(0)), id(), ("command", s("ping"))]),
            "unsupported_version",
        ),
        (
            "v -1",
            map(&[("v", Value::from(-1)), id(), ("command", s("ping"))]),
            "unsupported_version",
        ),
        (
            "v 1000",
            map(&[("v", Value::from(1000)), id(), ("command", s("ping"))]),
            "unsupported_version",
        ),
        (
            "unknown command",
            map(&[("v", Value::from(1)), id(), ("command", s("frobnicate"))]),
            "unknown_command",
        ),
    ];
    for (what, body, code) in &cases {
        let r = c.request_raw(&encode(body));
        assert_eq!(r.code(), Some(*code), "{what}: {:?}", r.raw);
        match &r.id {
            Some(got) => assert_same(got, &Value::from(7), what),
            None => panic!("{what}: the id of a map body must be echoed: {:?}", r.raw),
        }
    }
    c.ping();
}

#[test]
fn unsupported_version_changes_nothing_and_the_kernel_keeps_serving() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let body = map(&[
        ("v", Value::from(2)),
        ("id", s("v2")),
        ("command", s("set_slot")),
        ("oid", Value::from(o)),
        ("slot", s("x")),
        ("value", Value::from(2)),
    ]);
    let r = c.request_raw(&encode(&body));
    r.assert_error("unsupported_version");
    assert_same(r.id.as_ref().expect("id echoed"), &s("v2"), "id");
    assert_same(&c.get(o, "x"), &Value::from(1), "a v2 write is not applied");
    c.ping();
}

#[test]
fn ids_are_echoed_with_their_type_on_ok_and_on_errors() {
    let k = Kernel::start();
    let c = k.dealer();
    let ids = [
        Value::from(1),
        Value::F64(1.0),
        s("1"),
        Value::Nil,
        Value::Boolean(true),
        Value::Boolean(false),
        Value::Binary(vec![1]),
        Value::from(0),
        Value::from(-42),
        Value::from(u64::MAX),
        Value::from(i64::MIN),
        Value::F64(-0.0),
        Value::F64(2.5),
        s(""),
        s("a longer id ✓"),
    ];
    for id in &ids {
        let check = |body: Vec<u8>, want_ok: bool, what: &str| {
            let r = c.request_raw(&body);
            assert_eq!(r.is_ok(), want_ok, "{what} with id {id:?}: {:?}", r.raw);
            match &r.id {
                Some(got) => assert_same(got, id, &format!("{what}: id echo")),
                None => panic!("{what}: id {id:?} not echoed: {:?}", r.raw),
            }
        };
        check(encode_request("ping", Some(id), &[]), true, "ping");
        check(
            encode_request("frobnicate", Some(id), &[]),
            false,
            "unknown_command",
        );
        check(
            encode_request("get_slot", Some(id), &[("oid", s("genesis_obj"))]),
            false,
            "missing field",
        );
        let v2 = map(&[
            ("v", Value::from(2)),
            ("id", id.clone()),
            ("command", s("ping")),
        ]);
        check(encode(&v2), false, "unsupported_version");
    }

    // No id in, no id out.
    let r = c.request_raw(&encode_request("ping", None, &[]));
    assert!(r.is_ok() && r.id.is_none(), "ping without id: {:?}", r.raw);
    let r = c.request_raw(&encode_request("frobnicate", None, &[]));
    assert!(
        r.code() == Some("unknown_command") && r.id.is_none(),
        "error without id: {:?}",
        r.raw
    );
}

#[test]
fn array_or_map_ids_are_bad_request() {
    let k = Kernel::start();
    let c = k.dealer();
    for id in [
        Value::Array(vec![Value::from(1)]),
        Value::Array(vec![]),
        map(&[("a", Value::from(1))]),
    ] {
        let r = c.request_raw(&encode_request("ping", Some(&id), &[]));
        assert_eq!(r.code(), Some("bad_request"), "id {id:?}: {:?}", r.raw);
    }
    c.ping();
}

#[test]
fn missing_or_mistyped_fields_are_bad_request() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let oid = || ("oid", Value::from(o));
    let slot = || ("slot", s("x"));
    let sel = || ("selector", s("m"));
    let wat = || ("wat", s("(module)"));
    let t = Value::Boolean(true);
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        // missing
        ("clone", vec![]),
        ("get_slot", vec![oid()]),
        ("get_slot", vec![slot()]),
        ("set_slot", vec![oid(), slot()]),
        ("set_slot", vec![oid(), ("value", Value::from(1))]),
        ("set_slot", vec![slot(), ("value", Value::from(1))]),
        ("remove_slot", vec![oid()]),
        ("remove_slot", vec![slot()]),
        ("send", vec![oid()]),
        ("send", vec![sel()]),
        ("create_method", vec![oid(), sel()]),
        ("create_method", vec![sel(), wat()]),
        ("create_method", vec![oid(), wat()]),
        ("ingest", vec![]),
        (
            "ingest",
            vec![("documents", Value::Array(vec![map(&[("source", s("a"))])]))],
        ),
        ("search_memory", vec![]),
        ("infer", vec![]),
        ("infer", vec![("expert", s("BRICK"))]),
        ("start_cycle", vec![]),
        ("get_cycle", vec![]),
        // mistyped
        ("get_full_state", vec![("oid", t.clone())]),
        ("get_slot", vec![oid(), ("slot", Value::from(5))]),
        ("get_slot", vec![("oid", t.clone()), slot()]),
        ("get_slot", vec![("oid", Value::F64(1.5)), slot()]),
        (
            "get_slot",
            vec![("oid", Value::Array(vec![Value::from(o)])), slot()],
        ),
        ("get_slot", vec![("oid", Value::Nil), slot()]),
        (
            "set_slot",
            vec![oid(), ("slot", Value::Nil), ("value", Value::from(1))],
        ),
        (
            "set_slot",
            vec![
                oid(),
                ("slot", Value::Binary(b"x".to_vec())),
                ("value", Value::from(1)),
            ],
        ),
        ("remove_slot", vec![oid(), ("slot", Value::from(1))]),
        ("send", vec![oid(), ("selector", Value::from(5))]),
        (
            "send",
            vec![oid(), ("selector", s("x")), ("args", s("not a list"))],
        ),
        (
            "send",
            vec![
                oid(),
                ("selector", s("x")),
                ("args", map(&[("a", Value::from(1))])),
            ],
        ),
        ("clone", vec![("oid", Value::Nil)]),
        ("create_object", vec![("slots", Value::from(5))]),
        (
            "create_object",
            vec![("slots", Value::Array(vec![Value::from(1)]))],
        ),
        (
            "create_object",
            vec![("slots", Value::Map(vec![(Value::from(1), Value::from(2))]))],
        ),
        (
            "create_method",
            vec![oid(), ("selector", Value::from(5)), wat()],
        ),
        ("create_method", vec![oid(), sel(), ("wat", Value::from(5))]),
        (
            "create_method",
            vec![oid(), sel(), ("wasm", s("not bytes"))],
        ),
        ("ingest", vec![("documents", s("x"))]),
        (
            "ingest",
            vec![(
                "documents",
                Value::Array(vec![map(&[("source", Value::from(1)), ("text", s("t"))])]),
            )],
        ),
        ("search_memory", vec![("query", Value::from(5))]),
        (
            "search_memory",
            vec![("query", s("x")), ("limit", s("ten"))],
        ),
        (
            "search_memory",
            vec![("query", s("x")), ("source", Value::from(5))],
        ),
        ("infer", vec![("prompt", Value::from(5))]),
        (
            "infer",
            vec![("prompt", s("hi")), ("max_tokens", s("many"))],
        ),
        (
            "infer",
            vec![("prompt", s("hi")), ("expert", Value::from(5))],
        ),
        ("start_cycle", vec![("kind", Value::from(5))]),
        ("get_cycle", vec![("cycle", t.clone())]),
    ];
    let count = c.object_count();
    let before = c.slots(o);
    for (command, fields) in &cases {
        c.expect_err(command, fields, "bad_request");
    }
    assert_eq!(c.object_count(), count, "rejected requests create nothing");
    assert_same(&c.slots(o), &before, "rejected requests change nothing");
}

#[test]
fn unknown_command_is_unknown_command() {
    let k = Kernel::start();
    let c = k.dealer();
    let m = c.expect_err("frobnicate", &[], "unknown_command");
    assert!(!m.is_empty());
    c.expect_err("PING", &[], "unknown_command");
    c.ping();
}

#[test]
fn missing_objects_are_no_such_object() {
    let k = Kernel::start();
    let c = k.dealer();
    let count = c.object_count();
    let m = || ("oid", Value::from(MISSING));
    let cases: Vec<(&str, Vec<(&str, Value)>)> = vec![
        ("get_full_state", vec![m()]),
        ("get_slot", vec![m(), ("slot", s("x"))]),
        (
            "set_slot",
            vec![m(), ("slot", s("x")), ("value", Value::from(1))],
        ),
        ("remove_slot", vec![m(), ("slot", s("x"))]),
        (
            "send",
            vec![
                m(),
                ("selector", s("clone")),
                ("args", Value::Array(vec![])),
            ],
        ),
        ("clone", vec![m()]),
    ];
    for (command, fields) in &cases {
        c.expect_err(command, fields, "no_such_object");
    }
    assert_eq!(
        c.object_count(),
        count,
        "set_slot on a missing object does not create it"
    );
    c.expect_err("get_full_state", &[m()], "no_such_object");
}

#[test]
fn missing_slots_are_no_such_slot() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let m = c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("nope"))],
        "no_such_slot",
    );
    assert!(!m.is_empty());
    c.expect_err(
        "get_slot",
        &[("oid", s("genesis_obj")), ("slot", s("nope"))],
        "no_such_slot",
    );
}

#[test]
fn unknown_selector_is_does_not_understand_and_changes_nothing() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let count = c.object_count();
    let before = c.slots(o);
    let traits_before = c.slots("traits_obj");
    for args in [vec![], vec![Value::from(1), s("a")]] {
        let m = c.expect_err(
            "send",
            &[
                ("oid", Value::from(o)),
                ("selector", s("zzqFrobnicateTheWidget")),
                ("args", Value::Array(args)),
            ],
            "does_not_understand",
        );
        assert!(!m.is_empty(), "the message says why");
    }
    assert_eq!(c.object_count(), count);
    assert_same(&c.slots(o), &before, "receiver unchanged");
    assert_same(
        &c.slots("traits_obj"),
        &traits_before,
        "traits_obj unchanged",
    );
}

#[test]
fn infer_is_unavailable_but_validated_first() {
    let k = Kernel::start();
    let c = k.dealer();
    c.expect_err("infer", &[("prompt", s("hello"))], "unavailable");
    c.expect_err(
        "infer",
        &[
            ("prompt", s("hello")),
            ("expert", s("BRICK")),
            ("max_tokens", Value::from(16)),
        ],
        "unavailable",
    );
    c.expect_err("infer", &[], "bad_request");
    c.expect_err("infer", &[("expert", s("BRICK"))], "bad_request");
}

#[test]
fn requests_over_the_configured_limit_are_too_large() {
    let k = Kernel::start_with(Options::config("[bridge]\nmax_request_bytes = 4096\n"));
    let c = k.dealer();
    let o = c.create(&[]);
    c.set(o, "small", s(&"a".repeat(1000)));

    let id = Value::from(99);
    let body = encode_request(
        "set_slot",
        Some(&id),
        &[
            ("oid", Value::from(o)),
            ("slot", s("big")),
            ("value", s(&"b".repeat(8000))),
        ],
    );
    let r = c.request_raw(&body);
    r.assert_error("too_large");
    if let Some(got) = &r.id {
        assert_same(got, &id, "too_large id echo");
    }
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("big"))],
        "no_such_slot",
    );
    assert_same(
        &c.get(o, "small"),
        &s(&"a".repeat(1000)),
        "small write kept",
    );
    c.ping();
}

#[test]
fn requests_over_the_default_16_mib_are_too_large() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let body = encode_request(
        "set_slot",
        Some(&Value::from(1)),
        &[
            ("oid", Value::from(o)),
            ("slot", s("huge")),
            ("value", Value::Binary(vec![0x5a; 17 << 20])),
        ],
    );
    c.request_raw(&body).assert_error("too_large");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("huge"))],
        "no_such_slot",
    );
    // One MiB is fine.
    c.set(o, "mib", Value::Binary(vec![0xa5; 1 << 20]));
    assert_same(
        &c.get(o, "mib"),
        &Value::Binary(vec![0xa5; 1 << 20]),
        "1 MiB value",
    );
}

/// Relies on the kernel receiving requests faster than it can make them
/// durable: with `max_inflight = 1` and `durability = "sync"`, a burst of
/// pipelined writes must find the one in-flight slot taken at least once.
#[test]
fn a_burst_beyond_max_inflight_is_overloaded() {
    let k = Kernel::start_with(Options::config(
        "[bridge]\nmax_inflight = 1\n\n[store]\ndurability = \"sync\"\n",
    ));
    let c = k.dealer();
    let o = c.create(&[]);
    const N: u64 = 300;
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
    let mut seen = HashSet::new();
    let mut acked = HashSet::new();
    let mut overloaded = 0;
    for _ in 0..N {
        let r = c.recv_reply();
        let id = uint(
            r.id.as_ref()
                .unwrap_or_else(|| panic!("reply without id: {:?}", r.raw)),
        );
        assert!(
            id < N && seen.insert(id),
            "unexpected or duplicate reply for id {id}"
        );
        match &r.outcome {
            Ok(v) => {
                assert_same(v, &empty_map(), "set_slot result");
                acked.insert(id);
            }
            Err((code, _)) if code == "overloaded" => overloaded += 1,
            Err((code, m)) => panic!("id {id}: expected ok or overloaded, got {code}: {m}"),
        }
    }
    c.assert_silent(Duration::from_millis(300));
    assert!(
        overloaded >= 1,
        "no request was refused with overloaded ({} acknowledged)",
        acked.len()
    );

    // Exactly the acknowledged writes happened.
    let st = c.slots(o);
    for i in 0..N {
        let present = field(&st, &format!("s{i}")).is_some();
        assert_eq!(
            present,
            acked.contains(&i),
            "slot s{i}: present={present}, acknowledged={}",
            acked.contains(&i)
        );
    }
    c.ping();
}

/// One `create_object` whose `slots` map has 200,000 keys and then one of
/// them again is refused, and a second client is answered while it is in
/// the kernel. The duplicate checks (the decoder's and the value rules')
/// used to scan every earlier key, so this one request held the bridge's
/// task, and every client, for far longer than a reply may take.
#[test]
fn many_slots_with_one_repeated_are_refused_without_stalling_other_clients() {
    let k = Kernel::start();
    let (attacker, other) = (k.dealer(), k.dealer());
    let mut slots: Vec<(Value, Value)> = (0..200_000)
        .map(|i| (s(&format!("slot{i}")), Value::from(i)))
        .collect();
    slots.push((s("slot0"), Value::Nil));
    let body = encode_request(
        "create_object",
        Some(&Value::from(1)),
        &[("slots", Value::Map(slots))],
    );
    attacker.send_body(&body);
    other.ok("ping", &[]);
    let reply = attacker.recv_reply();
    reply.assert_error("bad_request");
    let (_, message) = reply.outcome.unwrap_err();
    assert!(message.contains("\"slot0\" given twice"), "{message}");

    // A nested map value with many keys and one repeated: the value rules'
    // check, the same way.
    let o = other.create(&[]);
    let mut map: Vec<(Value, Value)> = (0..200_000)
        .map(|i| (s(&format!("k{i}")), Value::from(i)))
        .collect();
    map.push((s("k0"), Value::Nil));
    let message = other.expect_err(
        "set_slot",
        &[
            ("oid", Value::from(o)),
            ("slot", s("big")),
            ("value", Value::Map(map)),
        ],
        "bad_request",
    );
    assert!(message.contains("duplicate map key \"k0\""), "{message}");
}

/// Burns a few milliseconds of fuel, so requests stay in flight.
const SLOW: &str = r#"(module
  (import "uvm" "return_i64" (func $ret (param i64)))
  (memory (export "memory") 1)
  (func (export "invoke") (local $i i64)
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $again (i64.lt_u (local.get $i) (i64.const 2000000))))
    (call $ret (local.get $i))))"#;

/// A new object with the method `spin` (`SLOW`).
fn with_spin(c: &Client) -> u64 {
    let o = c.create(&[]);
    c.ok(
        "create_method",
        &[
            ("oid", Value::from(o)),
            ("selector", s("spin")),
            ("wat", s(SLOW)),
        ],
    );
    o
}

/// One connection pipelining slow requests gets `overloaded` once it holds
/// its share of the in-flight slots, while another connection's request,
/// sent while those are still running, is served: the limit is per
/// connection, not one counter the first client can fill.
#[test]
fn one_connection_cannot_take_every_in_flight_slot() {
    let k = Kernel::start_with(Options::config(
        "[bridge]\nmax_inflight = 8\nmax_inflight_per_peer = 4\n\n[sandbox]\nthreads = 1\n",
    ));
    let (greedy, other) = (k.dealer(), k.dealer());
    let o = with_spin(&greedy);
    const N: u64 = 40;
    for i in 0..N {
        greedy.send_request(
            "send",
            &Value::from(i),
            &[
                ("oid", Value::from(o)),
                ("selector", s("spin")),
                ("args", Value::Array(vec![])),
            ],
        );
    }
    // The first refusal proves the greedy client holds its whole share now
    // (its slow requests run one at a time on the one sandbox thread).
    let mut replies = Vec::new();
    let refusal = loop {
        let r = greedy.recv_reply();
        if let Err((code, message)) = &r.outcome {
            assert_eq!(code, "overloaded", "{message}");
            break message.clone();
        }
        replies.push(r);
    };
    assert!(refusal.contains("its share"), "{refusal}");
    other.ping();
    // Every greedy request is answered: ok, or overloaded.
    for r in greedy.recv_replies(N as usize - replies.len() - 1) {
        if let Err((code, message)) = &r.outcome {
            assert_eq!(code, "overloaded", "{message}");
        }
    }
}

/// A connection that sends without reading has at most
/// `max_queued_replies` replies queued for it; past that its replies are
/// dropped and counted, and another connection is served throughout.
#[test]
fn replies_to_a_connection_that_does_not_read_are_bounded() {
    let k = Kernel::start_with(Options::config("[bridge]\nmax_queued_replies = 4\n"));
    let other = k.dealer();
    let o = other.create(&[]);
    other.set(o, "big", Value::Binary(vec![7u8; 1 << 20]));
    // Its own receive queue holds one message, so the kernel's queue for it
    // fills once the sockets' buffers do.
    let silent = batos_client::Connect::new(&k.endpoint)
        .queues(1)
        .open()
        .expect("connect");
    let get = encode_request(
        "get_slot",
        Some(&Value::from(0)),
        &[("oid", Value::from(o)), ("slot", s("big"))],
    );
    for _ in 0..200 {
        silent.send(get.clone()).expect("send");
    }
    let dropped = || {
        k.scrape()
            .sum(
                "batos_bridge_replies_dropped_total",
                &[("reason", "not_reading")],
            )
            .unwrap_or(0.0)
    };
    eventually(
        "replies to the connection that does not read are dropped",
        Duration::from_secs(60),
        || {
            other.ping();
            // Far fewer than 200 fit in the queue and the sockets' buffers.
            dropped() >= 100.0
        },
    );
    assert_same(
        &other.get(o, "big"),
        &Value::Binary(vec![7u8; 1 << 20]),
        "still serving",
    );
}

/// The frames before the body (routing ids, delimiters) are kept until the
/// reply: more than 16 of them, or more than 4 KiB, get `too_large`
/// (answered by routing id alone), and the connection goes on.
#[test]
fn oversized_envelopes_are_refused() {
    let k = Kernel::start();
    let c = k.dealer();
    let body = encode_request("ping", Some(&Value::from(1)), &[]);
    let empty: &[u8] = b"";
    let mut frames = vec![empty; 20];
    frames.push(&body);
    c.send_frames(&frames);
    let r = c.recv_reply();
    assert_eq!(
        r.outcome.as_ref().unwrap_err().0,
        "too_large",
        "{:?}",
        r.raw
    );
    let big = vec![b'x'; 5000];
    c.send_frames(&[&big, &body]);
    let r = c.recv_reply();
    assert_eq!(
        r.outcome.as_ref().unwrap_err().0,
        "too_large",
        "{:?}",
        r.raw
    );
    // Within the limits, envelope frames come back as they were sent.
    c.send_frames(&[b"hop-1", b"hop-2", &body]);
    let frames = c.recv_frames();
    assert_eq!(&frames[..2], &[b"hop-1".to_vec(), b"hop-2".to_vec()]);
    c.ping();
}

/// Connections take turns on the sandbox threads: with one thread, a
/// connection that queued 60 slow methods (on 60 objects, so all wait at
/// once) does not make another connection's method wait behind all of
/// them; it runs after about one of them.
#[test]
fn connections_take_turns_on_the_sandbox_threads() {
    let k = Kernel::start_with(Options::config("[sandbox]\nthreads = 1\n"));
    let (greedy, other) = (k.dealer(), k.dealer());
    let parent = with_spin(&greedy);
    const N: usize = 60;
    let objects: Vec<u64> = (0..N)
        .map(|_| greedy.create(&[("parent*", parents(&[parent]))]))
        .collect();
    let spin = |oid: u64| {
        [
            ("oid", Value::from(oid)),
            ("selector", s("spin")),
            ("args", Value::Array(vec![])),
        ]
    };
    for (i, oid) in objects.iter().enumerate() {
        greedy.send_request("send", &Value::from(i as u64), &spin(*oid));
    }
    let mine = other.create(&[("parent*", parents(&[parent]))]);
    assert!(other.request("send", &spin(mine)).is_ok());
    // How many of the greedy connection's methods finished first.
    let mut before = 0;
    while greedy.try_recv_reply(Duration::ZERO).is_some() {
        before += 1;
    }
    assert!(
        before < N / 2,
        "{before} of {N} queued methods ran before the other connection's one"
    );
    let after = greedy.recv_replies(N - before);
    assert!(after.iter().all(Reply::is_ok));
}
