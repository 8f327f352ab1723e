//! Methods as sandboxed WebAssembly through the bridge: create_method, the
//! uvm ABI, transactions, the audit, limits, history, synthesis, the cache.

use std::time::{Duration, Instant};

use crate::harness::*;

fn install_wat(c: &Client, oid: impl Into<Value>, selector: &str, wat: &str) -> Value {
    c.ok(
        "create_method",
        &[
            ("oid", oid.into()),
            ("selector", s(selector)),
            ("wat", s(wat)),
        ],
    )
}

fn install_wasm(c: &Client, oid: impl Into<Value>, selector: &str, wasm: Vec<u8>) -> Value {
    c.ok(
        "create_method",
        &[
            ("oid", oid.into()),
            ("selector", s(selector)),
            ("wasm", Value::Binary(wasm)),
        ],
    )
}

fn value(result: &Value) -> &Value {
    must(result, "value")
}

const COUNTER: &str = r#"(module
  (import "uvm" "slot_i64" (func $slot_i64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (local $n i64)
    (if (i32.eqz (call $slot_i64 (i32.const 0) (i32.const 5) (i32.const 16)))
      (then (local.set $n (i64.load (i32.const 16)))))
    (local.set $n (i64.add (local.get $n) (i64.const 1)))
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (local.get $n)))
    (call $return_i64 (local.get $n))))"#;

#[test]
fn create_method_reports_version_and_sha256_hash() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let r = install_wat(&c, o, "increment", COUNTER);
    assert_eq!(must(&r, "selector").as_str(), Some("increment"));
    assert_eq!(uint(must(&r, "version")), 1);
    let hash = must(&r, "hash").as_str().unwrap().to_string();
    assert_eq!(hash.len(), 64, "sha-256 hex: {r}");
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // The slot shows the $method shape.
    let want = map(&[(
        "$method",
        map(&[
            ("selector", s("increment")),
            ("version", Value::from(1)),
            ("hash", s(&hash)),
        ]),
    )]);
    assert_same(must(&c.slots(o), "increment"), &want, "method slot");
}

#[test]
fn scalar_abi_calls_work_through_the_bridge() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::F64(1.5)), ("name", s("ada"))]);
    // counter: slot_i64 (absent → 0), set_slot_i64, return_i64
    install_wat(&c, o, "increment", COUNTER);
    for want in 1..=3 {
        assert_eq!(
            value(&c.send(o, "increment", vec![]).unwrap()).as_i64(),
            Some(want)
        );
    }
    assert_eq!(c.get(o, "count").as_i64(), Some(3));
    // add: arg_count, arg_i64
    install_wat(
        &c,
        o,
        "add_to_",
        r#"(module
  (import "uvm" "arg_count" (func $arg_count (result i32)))
  (import "uvm" "arg_i64" (func $arg_i64 (param i32 i32) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (func (export "invoke")
    (if (i32.ne (call $arg_count) (i32.const 2)) (then unreachable))
    (drop (call $arg_i64 (i32.const 0) (i32.const 0)))
    (drop (call $arg_i64 (i32.const 1) (i32.const 8)))
    (call $return_i64 (i64.add (i64.load (i32.const 0)) (i64.load (i32.const 8))))))"#,
    );
    let r = c
        .send(o, "add_to_", vec![Value::from(40), Value::from(2)])
        .unwrap();
    assert_eq!(value(&r).as_i64(), Some(42));
    assert_eq!(must(&r, "generated"), &Value::Boolean(false));
    // arg_count guard: wrong arity traps
    let (code, _) = c.send(o, "add_to_", vec![Value::from(1)]).unwrap_err();
    assert_eq!(code, "method_trap");
    // scale: arg_f64, slot_f64, set_slot_f64, return_f64
    install_wat(
        &c,
        o,
        "scale_",
        r#"(module
  (import "uvm" "arg_f64" (func $arg_f64 (param i32 i32) (result i32)))
  (import "uvm" "slot_f64" (func $slot_f64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_f64" (func $set_slot_f64 (param i32 i32 f64) (result i32)))
  (import "uvm" "return_f64" (func $return_f64 (param f64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x")
  (func (export "invoke")
    (local $v f64)
    (drop (call $arg_f64 (i32.const 0) (i32.const 8)))
    (drop (call $slot_f64 (i32.const 0) (i32.const 1) (i32.const 16)))
    (local.set $v (f64.mul (f64.load (i32.const 8)) (f64.load (i32.const 16))))
    (drop (call $set_slot_f64 (i32.const 0) (i32.const 1) (local.get $v)))
    (call $return_f64 (local.get $v))))"#,
    );
    let r = c.send(o, "scale_", vec![Value::F64(4.0)]).unwrap();
    assert_same(value(&r), &Value::F64(6.0), "scale result");
    assert_same(&c.get(o, "x"), &Value::F64(6.0), "x written");
    // greet: slot_str, set_slot_str, return_str, log
    install_wat(
        &c,
        o,
        "greet",
        r#"(module
  (import "uvm" "slot_str" (func $slot_str (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_str" (func $set_slot_str (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "return_str" (func $return_str (param i32 i32) (result i32)))
  (import "uvm" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "name")
  (data (i32.const 8) "nobody")
  (data (i32.const 16) "greeted")
  (func (export "invoke")
    (local $len i32)
    (local.set $len (call $slot_str (i32.const 0) (i32.const 4) (i32.const 64) (i32.const 256)))
    (call $log (i32.const 16) (i32.const 7))
    (if (i32.lt_s (local.get $len) (i32.const 0))
      (then (drop (call $return_str (i32.const 8) (i32.const 6))))
      (else
        (drop (call $set_slot_str (i32.const 16) (i32.const 7) (i32.const 64) (local.get $len)))
        (drop (call $return_str (i32.const 64) (local.get $len)))))))"#,
    );
    assert_eq!(
        value(&c.send(o, "greet", vec![]).unwrap()).as_str(),
        Some("ada")
    );
    assert_eq!(c.get(o, "greeted").as_str(), Some("ada"));
    c.remove(o, "name");
    assert_eq!(
        value(&c.send(o, "greet", vec![]).unwrap()).as_str(),
        Some("nobody"),
        "NO_SUCH_SLOT is a value"
    );
}

#[test]
fn value_abi_calls_round_trip_any_value() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(
        &c,
        o,
        "remember_",
        r#"(module
  (import "uvm" "arg_msgpack" (func $arg (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_msgpack" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "slot_msgpack" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "return_msgpack" (func $ret (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "memo")
  (func (export "invoke")
    (local $len i32)
    (local.set $len (call $arg (i32.const 0) (i32.const 64) (i32.const 4096)))
    (drop (call $set (i32.const 0) (i32.const 4) (i32.const 64) (local.get $len)))
    (local.set $len (call $get (i32.const 0) (i32.const 4) (i32.const 8192) (i32.const 4096)))
    (drop (call $ret (i32.const 8192) (local.get $len)))))"#,
    );
    let v = map(&[
        (
            "list",
            Value::Array(vec![
                Value::from(1),
                Value::F64(-0.0),
                Value::Nil,
                Value::Binary(vec![0, 255]),
            ]),
        ),
        ("who", oref(c.root("genesis_obj"))),
    ]);
    let r = c.send(o, "remember_", vec![v.clone()]).unwrap();
    assert_same(value(&r), &v, "returned value");
    assert_same(&c.get(o, "memo"), &v, "stored value");
    // self_oid + send to self + last_result
    install_wat(
        &c,
        o,
        "whoami",
        r#"(module
  (import "uvm" "self_oid" (func $self (result i64)))
  (import "uvm" "return_i64" (func $ret (param i64)))
  (memory (export "memory") 1)
  (func (export "invoke") (call $ret (call $self))))"#,
    );
    assert_eq!(
        value(&c.send(o, "whoami", vec![]).unwrap()).as_u64(),
        Some(o)
    );
}

const POKE: &str = r#"(module
  (import "uvm" "arg_i64" (func $arg_i64 (param i32 i32) (result i32)))
  (import "uvm" "self_oid" (func $self (result i64)))
  (import "uvm" "send" (func $send (param i64 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "uvm" "last_result" (func $last (param i32 i32) (result i32)))
  (import "uvm" "return_msgpack" (func $ret (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "increment")
  (data (i32.const 16) "\90")
  (func (export "invoke")
    (local $len i32)
    (drop (call $arg_i64 (i32.const 0) (i32.const 32)))
    (drop (call $send (i64.load (i32.const 32)) (i32.const 0) (i32.const 9) (i32.const 16) (i32.const 1)
                      (i32.const 64) (i32.const 0)))
    (drop (call $send (call $self) (i32.const 0) (i32.const 9) (i32.const 16) (i32.const 1)
                      (i32.const 64) (i32.const 0)))
    (local.set $len (call $last (i32.const 64) (i32.const 1024)))
    (drop (call $ret (i32.const 64) (local.get $len)))))"#;

#[test]
fn cross_object_and_reentrant_sends_share_one_transaction() {
    let k = Kernel::start();
    let c = k.dealer();
    let base = c.create(&[]);
    install_wat(&c, base, "increment", COUNTER);
    install_wat(&c, base, "poke_", POKE);
    let a = c.create(&[("parent*", parents(&[base]))]);
    let b = c.create(&[("parent*", parents(&[base]))]);
    // a pokes b (cross-object), then itself (re-entrant: a is mid-method).
    let r = c.send(a, "poke_", vec![Value::from(b)]).unwrap();
    assert_eq!(value(&r).as_i64(), Some(1));
    assert_eq!(c.get(b, "count").as_i64(), Some(1), "b's own slot");
    assert_eq!(c.get(a, "count").as_i64(), Some(1), "a's own slot");
    // The SDK's forward example sends `increment` to the object in arg 0.
    install_wasm(&c, base, "forward", guest_example("forward"));
    let r = c.send(a, "forward", vec![Value::from(b)]).unwrap();
    assert_eq!(value(&r).as_i64(), Some(2));
    assert_eq!(c.get(b, "count").as_i64(), Some(2));
    // The inherited method ran with self = the receiver: the base is untouched.
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(base)), ("slot", s("count"))],
        "no_such_slot",
    );
}

#[test]
fn a_method_that_writes_then_traps_keeps_nothing() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("count", Value::from(7))]);
    install_wat(
        &c,
        o,
        "spoil",
        r#"(module
  (import "uvm" "set_slot_i64" (func $set (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "countfresh")
  (func (export "invoke")
    (drop (call $set (i32.const 0) (i32.const 5) (i64.const 99)))
    (drop (call $set (i32.const 5) (i32.const 5) (i64.const 1)))
    unreachable))"#,
    );
    let before = c.slots(o);
    let msg = c.expect_err(
        "send",
        &[("oid", Value::from(o)), ("selector", s("spoil"))],
        "method_trap",
    );
    assert!(msg.contains("unreachable"), "{msg}");
    assert_same(&c.slots(o), &before, "nothing kept");
}

#[test]
fn counter_example_persists_across_restart() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install_wasm(&c, o, "increment", guest_example("counter"));
    for _ in 0..3 {
        c.send(o, "increment", vec![]).unwrap();
    }
    let k = k.restart();
    let c = k.dealer();
    assert_eq!(
        value(&c.send(o, "increment", vec![]).unwrap()).as_i64(),
        Some(4)
    );
}

#[test]
fn transfer_example_is_all_or_nothing() {
    let k = Kernel::start();
    let c = k.dealer();
    let account = c.create(&[]);
    install_wasm(&c, account, "deposit_", guest_example("account_deposit"));
    install_wasm(&c, account, "withdraw_", guest_example("account_withdraw"));
    install_wasm(&c, account, "transfer", guest_example("transfer"));
    let alice = c.create(&[
        ("parent*", parents(&[account])),
        ("balance", Value::from(100)),
    ]);
    let bob = c.create(&[
        ("parent*", parents(&[account])),
        ("balance", Value::from(5)),
    ]);
    let r = c
        .send(
            alice,
            "transfer",
            vec![Value::from(alice), Value::from(bob), Value::from(30)],
        )
        .unwrap();
    assert_eq!(
        value(&r),
        &Value::Array(vec![Value::from(70), Value::from(35)])
    );
    // Overdraft: the deposit to bob happens first, then the withdrawal traps.
    let (code, _) = c
        .send(
            alice,
            "transfer",
            vec![Value::from(alice), Value::from(bob), Value::from(500)],
        )
        .unwrap_err();
    assert_eq!(code, "method_trap");
    assert_eq!(c.get(alice, "balance").as_i64(), Some(70));
    assert_eq!(
        c.get(bob, "balance").as_i64(),
        Some(35),
        "the deposit was rolled back"
    );
}

#[test]
fn send_depth_limit_stops_runaway_recursion() {
    let k = Kernel::start_with(Options::config("[sandbox]\nmax_send_depth = 8\n"));
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(
        &c,
        o,
        "recurse",
        r#"(module
  (import "uvm" "self_oid" (func $self (result i64)))
  (import "uvm" "set_slot_i64" (func $set (param i32 i32 i64) (result i32)))
  (import "uvm" "send" (func $send (param i64 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "recurse")
  (data (i32.const 8) "marker")
  (data (i32.const 16) "\90")
  (func (export "invoke")
    (drop (call $set (i32.const 8) (i32.const 6) (i64.const 1)))
    (drop (call $send (call $self) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 1) (i32.const 32) (i32.const 0)))))"#,
    );
    let msg = c.expect_err(
        "send",
        &[("oid", Value::from(o)), ("selector", s("recurse"))],
        "method_trap",
    );
    assert!(msg.contains("depth"), "{msg}");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("marker"))],
        "no_such_slot",
    );
}

fn assert_traps_while_others_are_served(k: &Kernel, wat: &str, expect: &str) {
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(&c, o, "bad", wat);
    let id = c.fresh_id();
    c.send_request(
        "send",
        &id,
        &[("oid", Value::from(o)), ("selector", s("bad"))],
    );
    // Another client is answered while the bad method runs.
    let other = k.dealer();
    other.ping();
    let started = Instant::now();
    let reply = c.recv_reply();
    reply.assert_error("method_trap");
    let msg = format!("{:?}", reply);
    assert!(msg.contains(expect), "expected {expect:?} in {msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "trapped within its limit"
    );
    other.ping();
}

#[test]
fn infinite_loop_runs_out_of_fuel_or_time() {
    let k = Kernel::start_with(Options::config(
        "[sandbox]\nfuel_per_call = 1000000000000\nwall_clock_ms = 300\n",
    ));
    assert_traps_while_others_are_served(
        &k,
        r#"(module (memory (export "memory") 1) (func (export "invoke") (loop $l (br $l))))"#,
        "wall-clock",
    );
    let k = Kernel::start_with(Options::config("[sandbox]\nfuel_per_call = 100000\n"));
    assert_traps_while_others_are_served(
        &k,
        r#"(module (memory (export "memory") 1) (func (export "invoke") (loop $l (br $l))))"#,
        "fuel",
    );
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let k = Kernel::start_with(Options::config("[sandbox]\nmax_memory_bytes = 4194304\n"));
    assert_traps_while_others_are_served(
        &k,
        r#"(module (memory (export "memory") 1)
  (func (export "invoke") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#,
        "memory limit",
    );
}

#[test]
fn deep_recursion_overflows_the_stack_safely() {
    let k = Kernel::start();
    assert_traps_while_others_are_served(
        &k,
        r#"(module (memory (export "memory") 1)
  (func $f (param i64) (result i64) (i64.add (call $f (local.get 0)) (i64.const 1)))
  (func (export "invoke") (drop (call $f (i64.const 0)))))"#,
        "stack overflow",
    );
}

#[test]
fn audit_refusals_name_the_rule_and_install_nothing() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let cases = [
        ("(module (func", "wat-syntax"),
        (
            r#"(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "invoke")))"#,
            "imports",
        ),
        (r#"(module (func (export "invoke")))"#, "exports"),
        (
            r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "invoke")))"#,
            "start-function",
        ),
        (
            r#"(module (memory (export "memory") 1000) (func (export "invoke")))"#,
            "memory-pages",
        ),
    ];
    // One function body over 128 KiB: the compiler's time grows faster than
    // a function's size, so the audit bounds each one.
    let long = format!(
        r#"(module (memory (export "memory") 1) (func (export "invoke") {}))"#,
        "(nop)".repeat(128 * 1024 + 1)
    );
    let cases = cases
        .into_iter()
        .map(|(wat, rule)| (wat.to_string(), rule))
        .chain([(long, "function-size")]);
    for (wat, rule) in cases {
        let msg = c.expect_err(
            "create_method",
            &[
                ("oid", Value::from(o)),
                ("selector", s("m")),
                ("wat", s(&wat)),
            ],
            "covenant_violation",
        );
        assert!(msg.contains(rule), "{rule}: {msg}");
    }
    let msg = c.expect_err(
        "create_method",
        &[
            ("oid", Value::from(o)),
            ("selector", s("m")),
            ("wasm", Value::Binary(b"\0asm garbage".to_vec())),
        ],
        "covenant_violation",
    );
    assert!(msg.contains("validation"), "{msg}");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("m"))],
        "no_such_slot",
    );
    assert!(keys(must(
        &c.ok("get_full_state", &[("oid", Value::from(o))]),
        "methods"
    ))
    .is_empty());
}

#[test]
fn versions_are_kept_and_a_selector_can_roll_back() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let ret = |n: i64| {
        format!(
            r#"(module (import "uvm" "return_i64" (func $r (param i64))) (memory (export "memory") 1)
               (func (export "invoke") (call $r (i64.const {n}))))"#
        )
    };
    assert_eq!(
        uint(must(&install_wat(&c, o, "answer", &ret(1)), "version")),
        1
    );
    assert_eq!(
        uint(must(&install_wat(&c, o, "answer", &ret(2)), "version")),
        2
    );
    assert_eq!(
        value(&c.send(o, "answer", vec![]).unwrap()).as_i64(),
        Some(2)
    );
    let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
    let history = must(must(&state, "methods"), "answer")
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(history.len(), 2);
    for (i, record) in history.iter().enumerate() {
        assert_eq!(uint(must(record, "version")), i as u64 + 1);
        assert_eq!(
            must(must(record, "provenance"), "kind").as_str(),
            Some("client")
        );
    }
    let r = c
        .send(
            o,
            "rollbackMethod_toVersion_",
            vec![s("answer"), Value::from(1)],
        )
        .unwrap();
    assert_eq!(value(&r), &Value::Nil);
    assert_eq!(
        value(&c.send(o, "answer", vec![]).unwrap()).as_i64(),
        Some(1)
    );
    let slot = c.get(o, "answer");
    assert_eq!(uint(must(must(&slot, "$method"), "version")), 1);
    // Unknown versions are refused; history survives a restart.
    c.send(
        o,
        "rollbackMethod_toVersion_",
        vec![s("answer"), Value::from(9)],
    )
    .unwrap_err();
    let k = k.restart();
    let c = k.dealer();
    let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
    assert_eq!(
        must(must(&state, "methods"), "answer")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        value(&c.send(o, "answer", vec![]).unwrap()).as_i64(),
        Some(1)
    );
}

#[test]
fn accessor_synthesis_generates_installs_and_resends() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let r = c.send(o, "setColor_", vec![s("teal")]).unwrap();
    assert_eq!(must(&r, "generated"), &Value::Boolean(true));
    assert_eq!(c.get(o, "color").as_str(), Some("teal"));
    let r = c.send(o, "getColor", vec![]).unwrap();
    assert_eq!(must(&r, "generated"), &Value::Boolean(true));
    assert_eq!(value(&r).as_str(), Some("teal"));
    // Installed: the second time nothing is generated.
    let r = c.send(o, "setColor_", vec![s("red")]).unwrap();
    assert_eq!(must(&r, "generated"), &Value::Boolean(false));
    assert_eq!(
        value(&c.send(o, "getColor", vec![]).unwrap()).as_str(),
        Some("red")
    );
    let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
    let record = &must(must(&state, "methods"), "setColor_")
        .as_array()
        .unwrap()[0];
    assert_eq!(
        must(must(record, "provenance"), "kind").as_str(),
        Some("synthesis")
    );
    // `foo_` is a setter only of a data slot found along parent*: of an
    // inherited one it writes the receiver's own slot; with none anywhere
    // (`deposit_` is a message, not a guess at a slot) nothing is written.
    let child = c.create(&[("parent*", parents(&[o]))]);
    let r = c.send(child, "color_", vec![s("blue")]).unwrap();
    assert_eq!(must(&r, "generated"), &Value::Boolean(true));
    assert_eq!(c.get(child, "color").as_str(), Some("blue"));
    assert_eq!(
        c.get(o, "color").as_str(),
        Some("red"),
        "the parent keeps its own"
    );
    c.expect_err(
        "send",
        &[
            ("oid", Value::from(o)),
            ("selector", s("deposit_")),
            ("args", Value::Array(vec![Value::from(5)])),
        ],
        "does_not_understand",
    );
    assert!(field(
        &c.ok("get_full_state", &[("oid", Value::from(o))]),
        "methods"
    )
    .is_some_and(|m| field(m, "deposit_").is_none()));
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("deposit"))],
        "no_such_slot",
    );
    // No slot to read: no getter, the image is unchanged.
    let before = c.object_count();
    c.expect_err(
        "send",
        &[("oid", Value::from(o)), ("selector", s("getShape"))],
        "does_not_understand",
    );
    assert_eq!(c.object_count(), before);
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("getShape"))],
        "no_such_slot",
    );
}

#[test]
fn compiled_modules_are_cached_in_the_image() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(&c, o, "increment", COUNTER);
    c.send(o, "increment", vec![]).unwrap();
    let k = k.restart();
    let c = k.dealer();
    c.send(o, "increment", vec![]).unwrap();
    let m = k.scrape();
    let loads = "batos_sandbox_module_loads_total";
    assert!(
        m.count(loads, &[("source", "image")]) >= 1.0,
        "a cache hit after restart"
    );
    assert_eq!(
        m.count(loads, &[("source", "compiled")]),
        0.0,
        "no recompilation after restart"
    );
}

/// The compiled cache holds native code: a kernel loads only modules sealed
/// with its own key (kept beside the image, not in it). With another key,
/// as an image copied to another machine or planted would have, every
/// cached module is refused and compiled again, and methods still work.
#[test]
fn cached_modules_sealed_with_another_key_are_recompiled() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(&c, o, "increment", COUNTER);
    c.send(o, "increment", vec![]).unwrap();
    let root = k.stop();
    let key = root.path().join("data/compiled-cache.key");
    let mine = std::fs::read(&key).expect("the kernel's cache key");
    assert_eq!(mine.len(), 32);
    std::fs::remove_file(&key).unwrap();
    let k = Kernel::start_on(root, Options::default());
    let c = k.dealer();
    assert_eq!(
        must(&c.send(o, "increment", vec![]).unwrap(), "value").as_u64(),
        Some(2)
    );
    let m = k.scrape();
    let loads = "batos_sandbox_module_loads_total";
    assert_eq!(
        m.count(loads, &[("source", "image")]),
        0.0,
        "nothing foreign loaded"
    );
    assert!(m.count(loads, &[("source", "rejected")]) >= 1.0);
    assert!(m.count(loads, &[("source", "compiled")]) >= 1.0);
    assert_ne!(
        std::fs::read(k.data_dir().join("compiled-cache.key")).unwrap(),
        mine
    );
}

/// Two clients race on one object: one through a method on another object
/// that sends to it (a cross-object transaction), one directly. Optimistic
/// validation keeps them serializable: no increment is lost.
#[test]
fn concurrent_transactions_across_objects_lose_no_update() {
    let k = Kernel::start_with(Options::durability("buffered"));
    let setup = k.dealer();
    let base = setup.create(&[]);
    install_wat(&setup, base, "increment", COUNTER);
    install_wat(&setup, base, "poke_", POKE);
    let a = setup.create(&[("parent*", parents(&[base]))]);
    let b = setup.create(&[("parent*", parents(&[base]))]);
    const N: usize = 100;
    let (c1, c2) = (k.dealer(), k.dealer());
    for _ in 0..N {
        c1.send_request(
            "send",
            &c1.fresh_id(),
            &[
                ("oid", Value::from(a)),
                ("selector", s("poke_")),
                ("args", Value::Array(vec![Value::from(b)])),
            ],
        );
        c2.send_request(
            "send",
            &c2.fresh_id(),
            &[("oid", Value::from(b)), ("selector", s("increment"))],
        );
    }
    for reply in c1.recv_replies(N).into_iter().chain(c2.recv_replies(N)) {
        assert!(reply.is_ok(), "{:?}", reply.raw);
    }
    assert_eq!(setup.get(a, "count").as_i64(), Some(N as i64));
    assert_eq!(
        setup.get(b, "count").as_i64(),
        Some(2 * N as i64),
        "no increment of b was lost"
    );
}

/// A method's `log` lines are escaped (a newline cannot forge a log line)
/// and a message writes at most 16 of them, then one saying the rest were
/// dropped, however often the method calls `log`.
#[test]
fn method_logs_are_escaped_and_bounded_per_message() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(
        &c,
        o,
        "chatter",
        r#"(module
  (import "uvm" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "chatter\0aINFO forged kernel line")
  (func (export "invoke")
    (local $i i32)
    (loop $again
      (call $log (i32.const 0) (i32.const 31))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))))"#,
    );
    c.send_value(o, "chatter", vec![]);
    let log = k.log_tail();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("method log:")).collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("chatter\\nINFO forged"))
            .count(),
        16,
        "{log}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("further lines of this message dropped"))
            .count(),
        1,
        "{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a guest's newline started a log line:\n{log}"
    );
}

/// Writes a 64 KiB string to slot `s` as many times as its argument says.
const WRITE_MANY: &str = r#"(module
  (import "uvm" "arg_i64" (func $arg (param i32 i32) (result i32)))
  (import "uvm" "set_slot_str" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "return_i64" (func $ret (param i64)))
  (memory (export "memory") 2)
  (data (i32.const 0) "s")
  (func (export "invoke") (local $n i64) (local $i i64)
    (drop (call $arg (i32.const 0) (i32.const 16)))
    (local.set $n (i64.load (i32.const 16)))
    (block $done
      (loop $again
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (drop (call $set (i32.const 0) (i32.const 1) (i32.const 1024) (i32.const 65536)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $again)))
    (call $ret (local.get $i))))"#;

/// One message's writes are capped in bytes (`[sandbox]
/// max_transaction_bytes`), every write counted: past the cap the message
/// fails with `too_large` and keeps nothing; under it, it commits.
#[test]
fn a_message_writing_past_the_transaction_cap_is_too_large_and_keeps_nothing() {
    let k = Kernel::start_with(Options::config(
        "[sandbox]\nmax_transaction_bytes = 1048576\n",
    ));
    let c = k.dealer();
    let o = c.create(&[]);
    install_wat(&c, o, "write", WRITE_MANY);
    let r = c.send(o, "write", vec![Value::from(8)]).unwrap();
    assert_eq!(value(&r).as_u64(), Some(8));
    c.remove(o, "s");
    let (code, message) = c.send(o, "write", vec![Value::from(32)]).unwrap_err();
    assert_eq!(code, "too_large", "{message}");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("s"))],
        "no_such_slot",
    );
}

/// Reads `limit` (through `parent*`), spins a few milliseconds, then writes
/// `done` on the receiver and answers the limit.
const READ_SPIN_WRITE: &str = r#"(module
  (import "uvm" "slot_i64" (func $slot_i64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_i64" (func $set (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $ret (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "limit")
  (data (i32.const 8) "done")
  (func (export "invoke") (local $i i64) (local $n i64)
    (drop (call $slot_i64 (i32.const 0) (i32.const 5) (i32.const 16)))
    (local.set $n (i64.load (i32.const 16)))
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $again (i64.lt_u (local.get $i) (i64.const 4000000))))
    (drop (call $set (i32.const 8) (i32.const 4) (local.get $n)))
    (call $ret (local.get $n))))"#;

/// Runs `spin` on a child of a shared parent while another client keeps
/// writing `slot` of that parent until the reply comes; the commit
/// conflicts the kernel counted meanwhile.
fn conflicts_while_a_parent_changes(slot: &str) -> f64 {
    let k = Kernel::start();
    let (c, writer) = (k.dealer(), k.dealer());
    let parent = c.create(&[("limit", Value::from(5)), ("other", Value::from(0))]);
    let child = c.create(&[("parent*", parents(&[parent]))]);
    install_wat(&c, child, "spin", READ_SPIN_WRITE);
    let conflicts = || k.scrape().count("batos_store_commit_conflicts_total", &[]);
    let before = conflicts();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            let mut n = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                writer.set(parent, slot, Value::from(n));
            }
        });
        let reply = c.request(
            "send",
            &[
                ("oid", Value::from(child)),
                ("selector", s("spin")),
                ("args", Value::Array(vec![])),
            ],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if slot != "limit" {
            assert_same(
                must(reply.result(), "value"),
                &Value::from(5),
                "the method's answer",
            );
        }
    });
    conflicts() - before
}

/// A method's read of one slot through a shared parent conflicts only with
/// writes to that slot: a client writing another slot of the parent
/// without pause does not make the method re-run (before, any write to an
/// object conflicted with every message that looked anything up through
/// it). The same run with the writer on the slot the method reads does
/// conflict, which shows the writes landed while the method ran.
#[test]
fn a_write_to_another_slot_of_a_shared_parent_does_not_conflict() {
    assert_eq!(conflicts_while_a_parent_changes("other"), 0.0);
    assert!(conflicts_while_a_parent_changes("limit") > 0.0);
}
