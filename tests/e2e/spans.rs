//! Every request runs in a `request` span that follows it from the bridge
//! to its object's actor, the sandbox threads and the committer, so each
//! log line of the request carries its fields.

use crate::harness::*;

#[test]
fn a_requests_span_follows_it_to_the_sandbox_and_the_committer() {
    let k = Kernel::start_with(Options {
        env: vec![(
            "RUST_LOG".to_string(),
            "warn,batos_sandbox=info,batos::request=debug".to_string(),
        )],
        ..Options::default()
    });
    let c = k.dealer();
    let o = c.create(&[]);
    c.ok(
        "create_method",
        &[
            ("oid", o.into()),
            ("selector", s("shout")),
            (
                "wat",
                s(r#"(module
  (import "uvm" "log" (func $log (param i32 i32)))
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "span-check")
  (data (i32.const 16) "shouted")
  (func (export "invoke")
    (call $log (i32.const 0) (i32.const 10))
    (drop (call $set_slot_i64 (i32.const 16) (i32.const 7) (i64.const 1)))))"#),
            ),
        ],
    );
    c.send_value(o, "shout", vec![]);

    // The method's log line, written on a sandbox thread before the reply,
    // and the commit, written before the reply too, both name the request.
    let log = k.log_tail();
    let request = "request{command=\"send\" peer=";
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(request)).collect();
    let target = format!("oid={o} member=\"shout\"}}");
    let method_log = lines
        .iter()
        .find(|l| l.contains("method log: span-check"))
        .unwrap_or_else(|| panic!("no method log line in the request's span:\n{log}"));
    assert!(method_log.contains(&target), "{method_log}");
    let committed = lines
        .iter()
        .find(|l| l.contains("committed") && l.contains(&target))
        .unwrap_or_else(|| panic!("no commit line in the request's span:\n{log}"));
    assert!(committed.contains("tx="), "{committed}");
    // The span is the request's alone: the method's creation had its own.
    assert!(
        log.lines().any(|l| l.contains("command=\"create_method\"")),
        "{log}"
    );
}

#[test]
fn spans_are_off_at_the_default_level() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", 1.into())]);
    c.ok(
        "set_slot",
        &[("oid", o.into()), ("slot", s("x")), ("value", 2.into())],
    );
    assert!(!k.log_tail().contains("request{"), "{}", k.log_tail());
}
