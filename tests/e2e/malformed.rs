//! Malformed input never crashes the kernel: property tests (random bytes, random MessagePack, mistyped requests) and hand-made nasty bodies.
//!
//! Every body must get exactly one reply, an error unless the body happened
//! to be a valid request, and the kernel must still answer a ping after it.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use proptest::collection::vec as pvec;
use proptest::prelude::{any, BoxedStrategy, Just, ProptestConfig, Strategy, TestCaseError};
use proptest::sample::{select, Index};
use proptest::test_runner::{TestError, TestRunner};
use proptest::{prop_assert, prop_assert_eq, prop_oneof};
use rand::{Rng, SeedableRng};

use crate::harness::*;

const FIELDS: [&str; 17] = [
    "oid",
    "slot",
    "value",
    "slots",
    "selector",
    "args",
    "wat",
    "wasm",
    "documents",
    "query",
    "limit",
    "source",
    "prompt",
    "expert",
    "max_tokens",
    "kind",
    "cycle",
];

const OTHER_WORDS: [&str; 14] = [
    "$ref",
    "$method",
    "parent*",
    "clone",
    "setSlot_value_",
    "v",
    "id",
    "command",
    "",
    "selector",
    "version",
    "hash",
    "display_yourself",
    "BRICK",
];

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn words() -> Vec<&'static str> {
    let mut w: Vec<&'static str> = Vec::new();
    w.extend(COMMANDS);
    w.extend(FIELDS);
    w.extend(ROOTS);
    w.extend(OTHER_WORDS);
    w
}

/// Strings the kernel cares about, and arbitrary ones.
fn interesting_str() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(words()).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..12).prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        interesting_str().prop_map(Value::from),
        pvec(any::<u8>(), 0..24).prop_map(Value::Binary),
        (any::<i8>(), pvec(any::<u8>(), 0..12)).prop_map(|(t, d)| Value::Ext(t, d)),
    ]
    .boxed()
}

/// Any MessagePack value (string-keyed maps and others, `$ref`s, nesting).
fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                pvec(inner.clone(), 0..6).prop_map(Value::Array),
                pvec(
                    (interesting_str().prop_map(Value::from), inner.clone()),
                    0..6
                )
                .prop_map(Value::Map),
                pvec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
        .boxed()
}

/// Values for request fields: real oids and root names, refs, or anything.
fn field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => select(ROOTS.to_vec()).prop_map(Value::from),
        1 => (0u64..12).prop_map(Value::from),
        1 => (0u64..12).prop_map(oref),
        3 => value(),
    ]
    .boxed()
}

/// The parts of a request-like map: `v`, `command`, `id` (each possibly
/// missing or wrong) and fields with arbitrary (often mistyped) values.
#[derive(Debug, Clone)]
struct RequestLike {
    v: Option<Value>,
    command: Option<Value>,
    id: Option<Value>,
    fields: Vec<(&'static str, Value)>,
}

impl RequestLike {
    fn to_value(&self) -> Value {
        let mut pairs = Vec::new();
        if let Some(v) = &self.v {
            pairs.push((s("v"), v.clone()));
        }
        if let Some(id) = &self.id {
            pairs.push((s("id"), id.clone()));
        }
        if let Some(c) = &self.command {
            pairs.push((s("command"), c.clone()));
        }
        for (k, v) in &self.fields {
            pairs.push((s(k), v.clone()));
        }
        Value::Map(pairs)
    }
}

fn request_like() -> BoxedStrategy<RequestLike> {
    let v = prop_oneof![
        8 => Just(Some(Value::from(1))),
        1 => Just(None),
        1 => scalar().prop_map(Some),
    ];
    let command = prop_oneof![
        8 => select(COMMANDS.to_vec()).prop_map(|c| Some(Value::from(c))),
        1 => Just(None),
        1 => value().prop_map(Some),
    ];
    let id = prop_oneof![
        2 => Just(None),
        6 => scalar().prop_map(Some),
        1 => value().prop_map(Some),
    ];
    let fields = pvec((select(FIELDS.to_vec()), field_value()), 0..5);
    (v, command, id, fields)
        .prop_map(|(v, command, id, fields)| RequestLike {
            v,
            command,
            id,
            fields,
        })
        .boxed()
}

/// Arbitrary bytes, map-looking bytes, and valid requests with bytes
/// overwritten or cut short.
fn garbage() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        pvec(any::<u8>(), 0..512),
        (0x80u8..=0x8f, pvec(any::<u8>(), 0..256)).prop_map(|(h, mut rest)| {
            rest.insert(0, h);
            rest
        }),
        (
            request_like(),
            pvec((any::<Index>(), any::<u8>()), 1..4),
            any::<Index>(),
            any::<bool>()
        )
            .prop_map(|(req, edits, cut, do_cut)| {
                let mut b = encode(&req.to_value());
                for (i, byte) in edits {
                    let at = i.index(b.len());
                    b[at] = byte;
                }
                if do_cut {
                    b.truncate(cut.index(b.len()));
                }
                b
            }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// Running properties against one kernel
// ---------------------------------------------------------------------------

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    })
}

/// One kernel and one DEALER client shared by all the cases of a property.
struct Session {
    k: Kernel,
    c: Client,
    pings: Cell<u64>,
    /// The first body after which the kernel died or went silent. Shrinking
    /// against a dead kernel means nothing, so this is what gets reported.
    culprit: RefCell<Option<Vec<u8>>>,
}

impl Session {
    fn start() -> Session {
        let k = Kernel::start();
        let c = k.dealer();
        Session {
            k,
            c,
            pings: Cell::new(0),
            culprit: RefCell::new(None),
        }
    }

    /// The next reply, failing fast if the kernel process is gone.
    fn reply_or_death(&self, body: &[u8], what: &str) -> Result<Reply, TestCaseError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(r) = self.c.try_recv_reply(Duration::from_millis(50)) {
                return Ok(r);
            }
            let exited = self.k.has_exited();
            if exited || Instant::now() >= deadline {
                self.culprit
                    .borrow_mut()
                    .get_or_insert_with(|| body.to_vec());
                return Err(TestCaseError::fail(format!(
                    "{what} (kernel exited: {exited})"
                )));
            }
        }
    }

    /// Sends `body`, takes its one reply, then proves the kernel is alive and
    /// sent nothing else: the next message must be the reply to a fresh ping.
    fn exchange(&self, body: &[u8]) -> Result<Reply, TestCaseError> {
        prop_assert!(
            self.culprit.borrow().is_none(),
            "the kernel already died on an earlier body"
        );
        self.c.send_body(body);
        let reply = self.reply_or_death(body, "no reply to the body")?;
        let n = self.pings.get();
        self.pings.set(n + 1);
        let tag = s(&format!("alive-{n}"));
        self.c.send_request("ping", &tag, &[]);
        let pong = self.reply_or_death(body, "the kernel stopped answering after the body")?;
        prop_assert!(
            pong.id.as_ref().is_some_and(|id| same(id, &tag)) && pong.is_ok(),
            "expected the ping's reply, got {:?} (a second reply to the body?)",
            pong.raw
        );
        Ok(reply)
    }

    /// Reports the outcome of a property run.
    fn finish<T: std::fmt::Debug>(self, result: Result<(), TestError<T>>) {
        if let Some(body) = self.culprit.borrow().as_ref() {
            panic!(
                "the kernel died or stopped answering after this body ({} bytes): {:02x?}",
                body.len(),
                body
            );
        }
        if let Err(e) = result {
            panic!("{e}");
        }
        self.c.assert_silent(Duration::from_millis(200));
    }
}

/// Does the kernel's `id` echo match what was sent (same type; an `f32`
/// may come back widened to `f64`)?
fn id_echoed(sent: &Value, got: Option<&Value>) -> bool {
    match (sent, got) {
        (Value::F32(x), Some(Value::F64(y))) => {
            (x.is_nan() && y.is_nan()) || f64::from(*x).to_bits() == y.to_bits()
        }
        (_, Some(got)) => same(sent, got),
        (_, None) => false,
    }
}

fn is_scalar_id(v: &Value) -> bool {
    matches!(
        v,
        Value::Nil
            | Value::Boolean(_)
            | Value::Integer(_)
            | Value::F32(_)
            | Value::F64(_)
            | Value::String(_)
            | Value::Binary(_)
    )
}

#[test]
fn random_bytes_always_get_one_error_reply() {
    let session = Session::start();
    let result = runner(192).run(&garbage(), |body| {
        let reply = session.exchange(&body)?;
        prop_assert!(
            reply.code() != Some("internal"),
            "internal error for malformed input: {:?}",
            reply.raw
        );
        let map_marker = matches!(body.first(), Some(0x80..=0x8f | 0xde | 0xdf));
        if !map_marker {
            prop_assert_eq!(
                reply.code(),
                Some("bad_request"),
                "not a map: {:?}",
                reply.raw
            );
            prop_assert!(
                reply.id.is_none(),
                "a reply to a non-map body has no id: {:?}",
                reply.raw
            );
        }
        Ok(())
    });
    session.finish(result);
}

#[test]
fn random_values_always_get_one_reply() {
    let session = Session::start();
    let result = runner(128).run(&value(), |v| {
        let reply = session.exchange(&encode(&v))?;
        prop_assert!(
            reply.code() != Some("internal"),
            "internal error for malformed input: {:?}",
            reply.raw
        );
        // A random map is almost never a valid request (and the id rules are
        // covered by the request-shaped property below).
        if !matches!(&v, Value::Map(_)) {
            prop_assert_eq!(
                reply.code(),
                Some("bad_request"),
                "not a map: {:?}",
                reply.raw
            );
            prop_assert!(
                reply.id.is_none(),
                "a reply to a non-map body has no id: {:?}",
                reply.raw
            );
        }
        Ok(())
    });
    session.finish(result);
}

#[test]
fn mistyped_requests_get_the_right_error() {
    let session = Session::start();
    let result = runner(256).run(&request_like(), |req| {
        let reply = session.exchange(&encode(&req.to_value()))?;
        prop_assert!(
            reply.code() != Some("internal"),
            "internal error for {req:?}: {:?}",
            reply.raw
        );

        let id_ext = matches!(&req.id, Some(Value::Ext(..)));
        let command = req.command.as_ref().and_then(Value::as_str);

        // The id of a map body is echoed with its type.
        if let Some(id) = &req.id {
            if is_scalar_id(id) {
                prop_assert!(
                    id_echoed(id, reply.id.as_ref()),
                    "id {id:?} not echoed: {:?}",
                    reply.raw
                );
            }
        } else {
            prop_assert!(
                reply.id.is_none(),
                "no id sent, but one came back: {:?}",
                reply.raw
            );
        }
        if id_ext {
            return Ok(()); // not a listed scalar: any clear error will do
        }
        // Envelope rules this request breaks, and the codes they call for;
        // the protocol does not order them, so any of those codes will do.
        let mut allowed: Vec<&str> = Vec::new();
        match &req.v {
            None => allowed.push("bad_request"),
            Some(Value::Integer(n)) if n.as_u64() == Some(1) => {}
            Some(Value::Integer(_)) => allowed.push("unsupported_version"),
            Some(_) => allowed.extend(["unsupported_version", "bad_request"]),
        }
        if matches!(&req.id, Some(Value::Array(_) | Value::Map(_))) {
            allowed.push("bad_request");
        }
        match command {
            None => allowed.push("bad_request"),
            Some(cmd) if !COMMANDS.contains(&cmd) => allowed.push("unknown_command"),
            Some(_) => {}
        }
        if !allowed.is_empty() {
            prop_assert!(
                reply.code().is_some_and(|code| allowed.contains(&code)),
                "expected one of {allowed:?} for {req:?}, got {:?}",
                reply.raw
            );
        }
        Ok(())
    });
    session.finish(result);
}

// ---------------------------------------------------------------------------
// Hand-made bodies
// ---------------------------------------------------------------------------

/// Sends `body`, asserts one `bad_request` reply (without `id` when
/// `no_id`), then a working ping.
#[track_caller]
fn assert_rejected(c: &Client, body: &[u8], no_id: bool, what: &str) {
    let r = c.request_raw(body);
    assert_eq!(r.code(), Some("bad_request"), "{what}: {:?}", r.raw);
    if no_id {
        assert!(
            r.id.is_none(),
            "{what}: undecodable body, reply must have no id: {:?}",
            r.raw
        );
    }
    c.ping();
}

fn enc(v: Value) -> Vec<u8> {
    encode(&v)
}

/// A set_slot request whose `value` is the given raw bytes.
fn set_slot_raw(oid: u64, slot_raw: &[u8], value_raw: &[u8]) -> Vec<u8> {
    raw_map(&[
        ("v", enc(Value::from(1))),
        ("id", enc(Value::from(1))),
        ("command", enc(s("set_slot"))),
        ("oid", enc(Value::from(oid))),
        ("slot", slot_raw.to_vec()),
        ("value", value_raw.to_vec()),
    ])
}

#[test]
fn deep_nesting_is_refused_without_crashing() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    const DEPTH: usize = 100_000;

    let mut arrays = vec![0x91u8; DEPTH];
    arrays.push(0xc0);
    assert_rejected(&c, &arrays, true, "100000 nested arrays as the body");

    let mut maps = Vec::with_capacity(DEPTH * 3 + 1);
    for _ in 0..DEPTH {
        maps.extend_from_slice(&[0x81, 0xa1, b'a']);
    }
    maps.push(0xc0);
    assert_rejected(&c, &maps, false, "100000 nested maps as the body");

    assert_rejected(
        &c,
        &set_slot_raw(o, &enc(s("deep")), &arrays),
        false,
        "100000 nested arrays as a slot value",
    );
    assert_rejected(
        &c,
        &set_slot_raw(o, &enc(s("deep")), &maps),
        false,
        "100000 nested maps as a slot value",
    );
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("deep"))],
        "no_such_slot",
    );
}

#[test]
fn lying_length_headers_are_refused_without_allocating() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let liars: [(&str, Vec<u8>); 6] = [
        (
            "array32 of 2^32-1 elements, no data",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "array32 of 2^32-1 elements, some nils",
            [vec![0xdd, 0xff, 0xff, 0xff, 0xff], vec![0xc0; 1000]].concat(),
        ),
        (
            "str32 of 4 GiB",
            vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a', b'b'],
        ),
        (
            "bin32 of 4 GiB",
            vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        ("map32 of 2^32-1 pairs", vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
        ("ext32 of 4 GiB", vec![0xc9, 0xff, 0xff, 0xff, 0xff, 5, 0]),
    ];
    for (what, raw) in &liars {
        let map_body = raw[0] == 0xdf;
        assert_rejected(&c, raw, !map_body, what);
        assert_rejected(
            &c,
            &set_slot_raw(o, &enc(s("x")), raw),
            false,
            &format!("{what} as a slot value"),
        );
    }
    assert_same(
        &c.slots(o),
        &map(&[("parent*", parents(&[c.root("traits_obj")]))]),
        "nothing written",
    );
}

#[test]
fn slot_values_must_be_protocol_values() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let bad = [
        ("int key", Value::Map(vec![(Value::from(1), s("a"))])),
        (
            "nil key",
            map(&[("ok", Value::Map(vec![(Value::Nil, Value::from(1))]))]),
        ),
        (
            "bool key in an array",
            Value::Array(vec![Value::Map(vec![(
                Value::Boolean(true),
                Value::from(1),
            )])]),
        ),
        (
            "bin key",
            Value::Map(vec![(Value::Binary(b"k".to_vec()), Value::from(1))]),
        ),
        ("ext", Value::Ext(5, vec![1, 2, 3])),
        ("timestamp ext", Value::Ext(-1, vec![0, 0, 0, 0])),
        (
            "ext in an array",
            Value::Array(vec![Value::from(1), Value::Ext(7, vec![])]),
        ),
    ];
    for (what, value) in &bad {
        let m = c.expect_err(
            "set_slot",
            &[
                ("oid", Value::from(o)),
                ("slot", s("x")),
                ("value", value.clone()),
            ],
            "bad_request",
        );
        assert!(!m.is_empty(), "{what}");
        c.expect_err(
            "create_object",
            &[("slots", map(&[("x", value.clone())]))],
            "bad_request",
        );
    }
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("x"))],
        "no_such_slot",
    );
    // An ext body is not a map.
    assert_rejected(&c, &enc(Value::Ext(3, vec![1])), true, "ext body");
}

#[test]
fn invalid_utf8_strings_are_refused() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let bad_str: &[u8] = &[0xa3, 0xff, 0xfe, b'x'];
    assert_rejected(
        &c,
        &set_slot_raw(o, &enc(s("x")), bad_str),
        false,
        "invalid UTF-8 slot value",
    );
    assert_rejected(
        &c,
        &set_slot_raw(o, bad_str, &enc(Value::from(1))),
        false,
        "invalid UTF-8 slot name",
    );
    let bad_command = raw_map(&[
        ("v", enc(Value::from(1))),
        ("id", enc(Value::from(2))),
        ("command", bad_str.to_vec()),
    ]);
    assert_rejected(&c, &bad_command, false, "invalid UTF-8 command");
    // A valid ping, plus one key that is not a string.
    let bad_key = raw_map(&[
        ("v", enc(Value::from(1))),
        ("command", enc(s("ping"))),
        ("ok", enc(Value::Nil)),
    ]);
    let ok_key: &[u8] = &[0xa2, b'o', b'k'];
    let at = bad_key
        .windows(3)
        .position(|w| w == ok_key)
        .expect("key bytes");
    let bad_key = [&bad_key[..at], bad_str, &bad_key[at + 3..]].concat();
    assert_rejected(&c, &bad_key, false, "invalid UTF-8 key");
    assert_same(
        &c.slots(o),
        &map(&[("parent*", parents(&[c.root("traits_obj")]))]),
        "nothing written",
    );
}

#[test]
fn ten_thousand_garbage_requests_in_a_row() {
    let k = Kernel::start();
    let c = k.dealer();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xBA7_0505);
    const N: usize = 10_000;
    const WINDOW: usize = 256;
    let mut sent = 0;
    let mut received = 0;
    while received < N {
        while sent < N && sent - received < WINDOW {
            let len = rng.random_range(0..64usize);
            let mut body: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
            match sent % 4 {
                0 => body.insert(0, 0xc1),                            // never-used marker
                1 => body.insert(0, rng.random_range(0x00..=0x7fu8)), // an int, then junk
                2 => body = vec![0x83, 0xa1, b'v', 0x01, 0xa2, b'i'], // truncated map
                _ => body = enc(Value::Array(vec![Value::from(sent as u64)])), // not a map
            }
            c.send_body(&body);
            sent += 1;
        }
        let r = c.recv_reply();
        assert_eq!(
            r.code(),
            Some("bad_request"),
            "garbage reply {received}: {:?}",
            r.raw
        );
        assert!(
            r.id.is_none(),
            "garbage reply {received} has an id: {:?}",
            r.raw
        );
        received += 1;
    }
    c.assert_silent(Duration::from_millis(300));
    assert_eq!(uint(must(&c.ping(), "objects")), 6);
}
