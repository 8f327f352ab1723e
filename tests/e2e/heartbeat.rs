//! The autotelic heartbeat: a trap-rate rule rolls a bad method version
//! back and records a finding object; checkpoints happen on schedule.

use std::time::{Duration, Instant};

use crate::harness::*;

fn returning(n: i64) -> String {
    format!(
        r#"(module (import "uvm" "return_i64" (func $r (param i64))) (memory (export "memory") 1)
           (func (export "invoke") (call $r (i64.const {n}))))"#
    )
}

const TRAPS: &str = r#"(module (memory (export "memory") 1) (func (export "invoke") unreachable))"#;

#[test]
fn a_trapping_method_version_is_rolled_back_and_the_finding_recorded() {
    let k = Kernel::start_with(Options::config(
        "[heartbeat]\ninterval_ms = 100\ncheckpoint_every_ms = 0\ntrap_rollback_min_calls = 3\n",
    ));
    let c = k.dealer();
    let genesis = c.root("genesis_obj");
    let holder = c.create(&[]);
    let child = c.create(&[("parent*", parents(&[holder]))]);
    for wat in [returning(1), TRAPS.to_string()] {
        c.ok(
            "create_method",
            &[
                ("oid", Value::from(holder)),
                ("selector", s("answer")),
                ("wat", s(&wat)),
            ],
        );
    }
    let events = k.subscriber();
    events.sync(&c);
    for _ in 0..3 {
        let (code, _) = c.send(child, "answer", vec![]).unwrap_err();
        assert_eq!(code, "method_trap");
    }
    // The rollback and the finding arrive as committed changes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let findings = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let event = events
            .next_timeout(remaining)
            .expect("the heartbeat recorded a finding within 10 s");
        if event.oid == genesis {
            if let Some(list) = event.value_of("findings") {
                break list.clone();
            }
        }
    };
    let finding = ref_oid(findings.as_array().unwrap().last().unwrap());
    let f = c.slots(finding);
    assert_eq!(must(&f, "kind").as_str(), Some("trap_rate_rollback"));
    assert_eq!(ref_oid(must(&f, "holder")), holder);
    assert_eq!(must(&f, "selector").as_str(), Some("answer"));
    assert_eq!(uint(must(&f, "version")), 2);
    assert_eq!(
        must(&f, "action").as_str(),
        Some("rolled back to version 1")
    );
    // The inherited method answers again, from version 1.
    assert_eq!(
        must(&c.send(child, "answer", vec![]).unwrap(), "value").as_i64(),
        Some(1)
    );
    assert!(
        k.scrape()
            .count("batos_heartbeat_actions_total", &[("kind", "rollback")])
            >= 1.0
    );
}

#[test]
fn checkpoints_are_taken_on_schedule_and_pruned() {
    let k = Kernel::start_with(Options::config(
        "[heartbeat]\ninterval_ms = 50\ncheckpoint_every_ms = 50\nkeep_checkpoints = 2\n",
    ));
    let snapshots = k.data_dir().join("snapshots");
    eventually(
        "three scheduled checkpoints",
        Duration::from_secs(10),
        || {
            k.scrape()
                .count("batos_heartbeat_actions_total", &[("kind", "checkpoint")])
                >= 3.0
        },
    );
    let kept = std::fs::read_dir(&snapshots).unwrap().count();
    assert!(
        (1..=3).contains(&kept),
        "{kept} checkpoints kept in {}",
        snapshots.display()
    );
}
