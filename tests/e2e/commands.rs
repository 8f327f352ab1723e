//! Happy paths of the commands, checked against protocol.md: result shapes, delegation, `self`, roots, values.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn ping_reports_version_protocol_uptime_and_objects() {
    let k = Kernel::start();
    let c = k.dealer();
    let r = c.ping();
    let version = must(&r, "version");
    assert!(
        version.as_str().is_some_and(|v| !v.is_empty()),
        "version must be a non-empty string: {r}"
    );
    assert!(
        matches!(must(&r, "protocol"), Value::Integer(n) if n.as_u64() == Some(1)),
        "protocol: 1, got {r}"
    );
    let up = must(&r, "uptime_s");
    let up_ok = match up {
        Value::F64(x) => *x >= 0.0,
        Value::F32(x) => *x >= 0.0,
        _ => false,
    };
    assert!(up_ok, "uptime_s must be a non-negative float: {r}");
    assert_eq!(
        uint(must(&r, "objects")),
        6,
        "a fresh image has 6 objects (the roots)"
    );
}

#[test]
fn fresh_image_has_the_six_roots() {
    let k = Kernel::start();
    let c = k.dealer();
    let image = c.image();
    let roots = must(&image, "roots");
    let mut names = keys(roots);
    names.sort();
    let mut want: Vec<String> = ROOTS.iter().map(|r| r.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    let oids: HashSet<u64> = names.iter().map(|n| uint(must(roots, n))).collect();
    assert_eq!(oids.len(), 6, "root oids are distinct: {image}");
    assert_eq!(uint(must(&image, "objects")), 6);

    // Each root is a real object, reachable by oid and by name.
    for name in ROOTS {
        let by_name = c.slots(name);
        let by_oid = c.slots(uint(must(roots, name)));
        assert_same(&by_name, &by_oid, name);
    }
}

#[test]
fn genesis_delegates_to_pllm_then_traits() {
    let k = Kernel::start();
    let c = k.dealer();
    let roots = c.roots();
    let st = c.slots("genesis_obj");
    assert_same(
        must(&st, "parent*"),
        &parents(&[roots["pLLM_obj"], roots["traits_obj"]]),
        "genesis_obj parent*",
    );
    let via_get = c.get("genesis_obj", "parent*");
    assert_same(
        &via_get,
        must(&st, "parent*"),
        "get_slot genesis_obj parent*",
    );
}

#[test]
fn traits_holds_the_primitive_methods() {
    let k = Kernel::start();
    let c = k.dealer();
    let st = c.slots("traits_obj");
    for sel in ["clone", "setSlot_value_"] {
        let want = map(&[(
            "$method",
            map(&[
                ("selector", s(sel)),
                ("version", Value::from(0)),
                ("hash", s("primitive")),
            ]),
        )]);
        assert_same(must(&st, sel), &want, sel);
    }
}

#[test]
fn create_object_defaults_to_traits_parent() {
    let k = Kernel::start();
    let c = k.dealer();
    let traits = c.root("traits_obj");
    let before = c.object_count();

    let a = c.create(&[("name", s("a"))]);
    let st = c.slots(a);
    let mut ks = keys(&st);
    ks.sort();
    assert_eq!(ks, ["name", "parent*"]);
    assert_same(must(&st, "parent*"), &parents(&[traits]), "default parent*");
    assert_same(must(&st, "name"), &s("a"), "name");

    // No `slots` field at all.
    let r = c.ok("create_object", &[]);
    let b = uint(must(&r, "oid"));
    assert_same(
        &c.slots(b),
        &map(&[("parent*", parents(&[traits]))]),
        "bare object",
    );

    assert_ne!(a, b);
    assert!(
        !c.roots().values().any(|&o| o == a || o == b),
        "new oids are not root oids"
    );
    assert_eq!(c.object_count(), before + 2);
    assert_eq!(uint(must(&c.ping(), "objects")), before + 2);
}

#[test]
fn root_names_are_accepted_wherever_an_oid_is() {
    let k = Kernel::start();
    let c = k.dealer();
    let roots = c.roots();
    let (genesis, traits, pllm, orch) = (
        roots["genesis_obj"],
        roots["traits_obj"],
        roots["pLLM_obj"],
        roots["orchestrator_obj"],
    );

    // get_full_state by name answers the integer oid.
    let st = c.ok("get_full_state", &[("oid", s("genesis_obj"))]);
    assert_same(must(&st, "oid"), &Value::from(genesis), "state oid");

    // set / get / remove by name.
    c.set("genesis_obj", "note", s("by name"));
    assert_same(
        &c.get(genesis, "note"),
        &s("by name"),
        "set by name, get by oid",
    );
    c.remove("genesis_obj", "note");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(genesis)), ("slot", s("note"))],
        "no_such_slot",
    );

    // send and clone by name.
    let copy = ref_oid(&c.send_value("traits_obj", "clone", vec![]));
    assert_same(
        &c.slots(copy),
        &c.slots(traits),
        "clone of traits_obj via send",
    );
    let r = c.ok("clone", &[("oid", s("pLLM_obj"))]);
    let copy2 = uint(must(&r, "oid"));
    assert_same(&c.slots(copy2), &c.slots(pllm), "clone of pLLM_obj");

    // A $ref naming a root is stored as the integer oid, at any depth.
    let o = c.create(&[
        ("parent*", Value::Array(vec![oref_name("genesis_obj")])),
        ("friend", oref_name("traits_obj")),
    ]);
    let st = c.slots(o);
    assert_same(
        must(&st, "parent*"),
        &parents(&[genesis]),
        "parent* from a root name",
    );
    assert_same(must(&st, "friend"), &oref(traits), "$ref from a root name");
    c.set(
        o,
        "list",
        Value::Array(vec![
            oref_name("pLLM_obj"),
            map(&[("inner", oref_name("orchestrator_obj"))]),
        ]),
    );
    assert_same(
        &c.get(o, "list"),
        &Value::Array(vec![oref(pllm), map(&[("inner", oref(orch))])]),
        "nested root-name $refs",
    );
    ref_oid(&c.get(o, "friend"));
}

#[test]
fn set_get_remove_slot() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    c.set(o, "k", s("v1"));
    assert_same(&c.get(o, "k"), &s("v1"), "first write");
    c.set(o, "k", Value::from(2));
    assert_same(&c.get(o, "k"), &Value::from(2), "overwrite");
    assert_same(
        must(&c.slots(o), "k"),
        &Value::from(2),
        "state shows the slot",
    );
    c.remove(o, "k");
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("k"))],
        "no_such_slot",
    );
    assert!(
        field(&c.slots(o), "k").is_none(),
        "removed slot is gone from state"
    );
}

#[test]
fn clone_is_shallow_and_keeps_parents() {
    let k = Kernel::start();
    let c = k.dealer();
    let p = c.create(&[("inherited", s("from p"))]);
    let target = c.create(&[("x", Value::from(1))]);
    let a = c.create(&[
        ("parent*", parents(&[p])),
        ("n", Value::from(7)),
        (
            "nested",
            map(&[("list", Value::Array(vec![Value::from(1), s("two")]))]),
        ),
        ("link", oref(target)),
    ]);
    let before = c.object_count();
    let r = c.ok("clone", &[("oid", Value::from(a))]);
    let b = uint(must(&r, "oid"));
    assert_ne!(a, b);
    assert_eq!(
        c.object_count(),
        before + 1,
        "shallow: referenced objects are not copied"
    );
    assert_same(&c.slots(b), &c.slots(a), "clone has the same slots");
    assert_eq!(
        ref_oid(&c.get(b, "link")),
        target,
        "the clone refers to the same object"
    );
    assert_same(
        &c.send_value(b, "inherited", vec![]),
        &s("from p"),
        "same parents",
    );

    // Independent from then on.
    c.set(b, "n", Value::from(8));
    assert_same(&c.get(a, "n"), &Value::from(7), "original unchanged");
}

#[test]
fn send_clone_primitive_returns_a_ref_to_a_copy() {
    let k = Kernel::start();
    let c = k.dealer();
    let a = c.create(&[("n", Value::from(1)), ("s", s("x"))]);
    let before = c.object_count();
    let copy = ref_oid(&c.send_value(a, "clone", vec![]));
    assert_ne!(copy, a);
    assert_eq!(c.object_count(), before + 1);
    assert_same(&c.slots(copy), &c.slots(a), "clone via send");
}

#[test]
fn get_slot_does_not_delegate_but_send_does() {
    let k = Kernel::start();
    let c = k.dealer();
    let p = c.create(&[("color", s("blue"))]);
    let child = c.create(&[("parent*", parents(&[p]))]);
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(child)), ("slot", s("color"))],
        "no_such_slot",
    );
    assert_same(
        &c.send_value(child, "color", vec![]),
        &s("blue"),
        "send finds the inherited slot",
    );

    // The primitive `clone` lives on traits_obj: inherited, not an own slot.
    let plain = c.create(&[]);
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(plain)), ("slot", s("clone"))],
        "no_such_slot",
    );
}

#[test]
fn send_data_slot_returns_its_value_and_rejects_arguments() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("color", s("red"))]);
    assert_same(&c.send_value(o, "color", vec![]), &s("red"), "args: []");
    let r = c.ok("send", &[("oid", Value::from(o)), ("selector", s("color"))]);
    assert_same(must(&r, "value"), &s("red"), "no args field");
    assert_eq!(must(&r, "generated").as_bool(), Some(false));
    c.expect_err(
        "send",
        &[
            ("oid", Value::from(o)),
            ("selector", s("color")),
            ("args", Value::Array(vec![s("x")])),
        ],
        "bad_request",
    );
    assert_same(&c.get(o, "color"), &s("red"), "unchanged");
}

#[test]
fn send_looks_up_depth_first_in_parent_order() {
    let k = Kernel::start();
    let c = k.dealer();
    let empty = Value::Array(vec![]);
    // x -> [a, b]; a -> [deep]; deep and b both hold `who`.
    let deep = c.create(&[("parent*", empty.clone()), ("who", s("deep"))]);
    let a = c.create(&[("parent*", parents(&[deep]))]);
    let b = c.create(&[
        ("parent*", empty.clone()),
        ("who", s("b")),
        ("only_b", s("b!")),
    ]);
    let x = c.create(&[("parent*", parents(&[a, b]))]);
    assert_same(
        &c.send_value(x, "who", vec![]),
        &s("deep"),
        "depth-first: a's ancestors before b",
    );
    let y = c.create(&[("parent*", parents(&[b, a]))]);
    assert_same(&c.send_value(y, "who", vec![]), &s("b"), "parents in order");
    assert_same(
        &c.send_value(x, "only_b", vec![]),
        &s("b!"),
        "falls through to the second parent",
    );
    // The receiver's own slot comes first.
    c.set(x, "who", s("x"));
    assert_same(&c.send_value(x, "who", vec![]), &s("x"), "own slot first");

    // A single $ref is a valid parent*; an empty array means no parents.
    let single = c.create(&[("parent*", oref(b))]);
    assert_same(
        &c.send_value(single, "who", vec![]),
        &s("b"),
        "single $ref parent*",
    );
    let orphan = c.create(&[("parent*", empty), ("mine", Value::from(1))]);
    c.expect_err(
        "send",
        &[
            ("oid", Value::from(orphan)),
            ("selector", s("zzqNotHereAtAll")),
            ("args", Value::Array(vec![])),
        ],
        "does_not_understand",
    );
}

#[test]
fn send_through_a_parent_cycle_terminates() {
    let k = Kernel::start();
    let c = k.dealer();
    let a = c.create(&[("on_a", s("A"))]);
    let b = c.create(&[("parent*", parents(&[a])), ("on_b", s("B"))]);
    c.set(a, "parent*", parents(&[b])); // a -> b -> a
    assert_same(
        &c.send_value(a, "on_b", vec![]),
        &s("B"),
        "found through the cycle",
    );
    assert_same(
        &c.send_value(b, "on_a", vec![]),
        &s("A"),
        "found through the cycle",
    );

    let before = c.object_count();
    let started = Instant::now();
    c.expect_err(
        "send",
        &[
            ("oid", Value::from(a)),
            ("selector", s("zzqMissingSelector")),
            ("args", Value::Array(vec![])),
        ],
        "does_not_understand",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "lookup through a cycle must not hang"
    );
    assert_eq!(c.object_count(), before);

    // A diamond-shaped cycle through several paths, too.
    let d = c.create(&[("parent*", parents(&[a, b, a]))]);
    c.expect_err(
        "send",
        &[
            ("oid", Value::from(d)),
            ("selector", s("zzqMissingSelector")),
            ("args", Value::Array(vec![])),
        ],
        "does_not_understand",
    );
}

#[test]
fn primitive_methods_run_with_self_as_the_receiver() {
    let k = Kernel::start();
    let c = k.dealer();
    let child = c.create(&[]); // inherits setSlot_value_ from traits_obj
    let r = c
        .send(child, "setSlot_value_", vec![s("color"), s("red")])
        .expect("setSlot_value_");
    assert_same(
        &r,
        &map(&[("value", Value::Nil), ("generated", Value::Boolean(false))]),
        "setSlot_value_ result",
    );
    assert_same(&c.get(child, "color"), &s("red"), "written on the receiver");
    c.expect_err(
        "get_slot",
        &[("oid", s("traits_obj")), ("slot", s("color"))],
        "no_such_slot",
    );

    // Two levels down: still the receiver, not the intermediate parent.
    let grandchild = c.create(&[("parent*", parents(&[child]))]);
    c.send_value(grandchild, "setSlot_value_", vec![s("color"), s("green")]);
    assert_same(
        &c.get(grandchild, "color"),
        &s("green"),
        "grandchild written",
    );
    assert_same(&c.get(child, "color"), &s("red"), "child untouched");

    // `clone` sent to a grandchild copies the grandchild.
    let copy = ref_oid(&c.send_value(grandchild, "clone", vec![]));
    assert_same(
        &c.slots(copy),
        &c.slots(grandchild),
        "clone copies the receiver",
    );
}

#[test]
fn parent_star_must_hold_refs() {
    let k = Kernel::start();
    let c = k.dealer();
    let traits = c.root("traits_obj");
    let o = c.create(&[("x", Value::from(1))]);
    let before = c.slots(o);
    let bad = [
        Value::from(5),
        s("traits_obj"),
        Value::Nil,
        map(&[("a", Value::from(1))]),
        Value::Array(vec![Value::from(5)]),
        Value::Array(vec![oref(traits), Value::from(2)]),
    ];
    for value in &bad {
        c.expect_err(
            "set_slot",
            &[
                ("oid", Value::from(o)),
                ("slot", s("parent*")),
                ("value", value.clone()),
            ],
            "bad_request",
        );
    }
    assert_same(&c.slots(o), &before, "rejected writes change nothing");

    let count = c.object_count();
    c.expect_err(
        "create_object",
        &[("slots", map(&[("parent*", Value::from(5))]))],
        "bad_request",
    );
    assert_eq!(
        c.object_count(),
        count,
        "rejected create_object creates nothing"
    );
}

#[test]
fn reserved_dollar_maps_are_refused_as_slot_values() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let bad = [
        map(&[(
            "$method",
            map(&[
                ("selector", s("x")),
                ("version", Value::from(1)),
                ("hash", s("00")),
            ]),
        )]),
        map(&[(
            "$method",
            map(&[
                ("selector", s("clone")),
                ("version", Value::from(0)),
                ("hash", s("primitive")),
            ]),
        )]),
        map(&[("$foo", Value::from(1))]),
        map(&[("$", Value::Nil)]),
    ];
    for value in &bad {
        c.expect_err(
            "set_slot",
            &[
                ("oid", Value::from(o)),
                ("slot", s("m")),
                ("value", value.clone()),
            ],
            "bad_request",
        );
        c.expect_err(
            "get_slot",
            &[("oid", Value::from(o)), ("slot", s("m"))],
            "no_such_slot",
        );
    }
    // Not reserved: a `$` key among others, and `$ref`.
    let ok = map(&[("a", Value::from(1)), ("$b", Value::from(2))]);
    c.set(o, "m", ok.clone());
    assert_same(&c.get(o, "m"), &ok, "map with a $ key among others");
    c.set(o, "r", oref(o));
    assert_eq!(ref_oid(&c.get(o, "r")), o);
}

fn round_trip_cases() -> Vec<(&'static str, Value)> {
    let mut nested = Value::from("bottom");
    for i in 0..20 {
        nested = if i % 2 == 0 {
            Value::Array(vec![nested, Value::from(i)])
        } else {
            map(&[("d", nested)])
        };
    }
    vec![
        ("nil", Value::Nil),
        ("true", Value::Boolean(true)),
        ("false", Value::Boolean(false)),
        ("zero", Value::from(0)),
        ("minus_one", Value::from(-1)),
        ("i64_min", Value::from(i64::MIN)),
        ("i64_max", Value::from(i64::MAX)),
        ("u64_max", Value::from(u64::MAX)),
        ("u32_max_plus_1", Value::from(1u64 << 32)),
        ("nan", Value::F64(f64::NAN)),
        ("inf", Value::F64(f64::INFINITY)),
        ("neg_inf", Value::F64(f64::NEG_INFINITY)),
        ("neg_zero", Value::F64(-0.0)),
        ("pos_zero", Value::F64(0.0)),
        ("subnormal", Value::F64(f64::from_bits(1))),
        ("f64_max", Value::F64(f64::MAX)),
        ("third", Value::F64(1.0 / 3.0)),
        ("float_one", Value::F64(1.0)),
        ("empty_str", s("")),
        ("unicode", s("héllo ✓ 𝄞 日本")),
        ("nul_inside", s("a\0b")),
        ("bin", Value::Binary(vec![0, 1, 2, 0x7f, 0x80, 0xff])),
        ("empty_bin", Value::Binary(vec![])),
        ("empty_array", Value::Array(vec![])),
        ("empty_map", Value::Map(vec![])),
        (
            "mixed",
            Value::Array(vec![
                Value::Nil,
                Value::Boolean(true),
                Value::from(-5),
                Value::F64(2.5),
                s("s"),
                Value::Binary(vec![9]),
                Value::Array(vec![]),
                map(&[("k", Value::from(1))]),
            ]),
        ),
        (
            "map",
            map(&[
                ("a", Value::from(1)),
                (
                    "b",
                    map(&[(
                        "c",
                        Value::Array(vec![Value::F64(-0.0), Value::F64(f64::NAN)]),
                    )]),
                ),
                ("empty", Value::Map(vec![])),
            ]),
        ),
        ("nested", nested),
        ("big_str", s(&"x".repeat(100_000))),
        ("big_bin", Value::Binary(vec![7; 65_536])),
        (
            "long_array",
            Value::Array((0..1000u64).map(Value::from).collect()),
        ),
    ]
}

#[test]
fn values_round_trip_exactly() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let cases = round_trip_cases();
    for (slot, value) in &cases {
        c.set(o, slot, value.clone());
    }
    for (slot, value) in &cases {
        assert_same(&c.get(o, slot), value, slot);
    }
    let st = c.slots(o);
    for (slot, value) in &cases {
        assert_same(must(&st, slot), value, &format!("state {slot}"));
        assert_same(
            &c.send_value(o, slot, vec![]),
            value,
            &format!("send {slot}"),
        );
    }
    // Values given at creation time, too.
    let pairs: Vec<(&str, Value)> = cases.iter().map(|(k, v)| (*k, v.clone())).collect();
    let o2 = c.create(&pairs);
    for (slot, value) in &cases {
        assert_same(&c.get(o2, slot), value, &format!("create_object {slot}"));
    }
}

#[test]
fn snapshot_returns_an_id() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let r = c.ok("snapshot", &[]);
    let id = must(&r, "id")
        .as_str()
        .unwrap_or_else(|| panic!("snapshot id must be a string: {r}"));
    assert!(!id.is_empty(), "snapshot id is empty");
    // The image is untouched and still writable.
    assert_same(&c.get(o, "x"), &Value::from(1), "after snapshot");
    c.set(o, "x", Value::from(2));
    assert_same(&c.get(o, "x"), &Value::from(2), "write after snapshot");
}

/// Snapshots are capped: with `keep_snapshots = 2`, five snapshots leave
/// the newest two on disk, each still an openable image.
#[test]
fn only_the_newest_snapshots_are_kept() {
    let k = Kernel::start_with(Options::config("[store]\nkeep_snapshots = 2\n"));
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(0))]);
    let mut ids = Vec::new();
    for i in 1..=5 {
        c.set(o, "x", Value::from(i));
        let r = c.ok("snapshot", &[]);
        ids.push(must(&r, "id").as_str().expect("id").to_string());
    }
    let mut left: Vec<String> = std::fs::read_dir(k.data_dir().join("snapshots"))
        .expect("snapshots directory")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .collect();
    left.sort();
    let mut want = ids[3..].to_vec();
    want.sort();
    assert_eq!(left, want, "the two newest of {ids:?}");
}
