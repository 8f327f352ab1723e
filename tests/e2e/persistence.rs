//! The image survives: a clean restart keeps everything, and SIGKILL at random points loses no acknowledged write.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::harness::*;

fn restart_keeps_everything(durability: &'static str) {
    let k = Kernel::start_with(Options::durability(durability));
    let c = k.dealer();
    let roots = c.roots();

    let a = c.create(&[("name", s("a")), ("n", Value::from(42))]);
    let b = c.create(&[
        ("parent*", parents(&[a])),
        ("peer", oref(a)),
        ("neg_zero", Value::F64(-0.0)),
        ("nan", Value::F64(f64::NAN)),
        ("big", Value::from(u64::MAX)),
        ("bin", Value::Binary(vec![0, 1, 255])),
        (
            "deep",
            map(&[(
                "list",
                Value::Array(vec![Value::Nil, Value::Boolean(true), s("x")]),
            )]),
        ),
    ]);
    c.set(b, "tmp", s("gone soon"));
    c.remove(b, "tmp");
    c.set(b, "n", Value::from(1));
    c.set(b, "n", Value::from(2)); // overwritten
    c.set("genesis_obj", "note", s("kept")); // a root, changed
    let copy = uint(must(&c.ok("clone", &[("oid", Value::from(b))]), "oid"));
    let via_send = ref_oid(&c.send_value(b, "clone", vec![]));
    c.send_value(
        copy,
        "setSlot_value_",
        vec![s("set_by_method"), Value::from(7)],
    );

    let count = c.object_count();
    let mut watched: Vec<u64> = vec![a, b, copy, via_send];
    watched.extend(roots.values().copied());
    let states: Vec<(u64, Value)> = watched.iter().map(|&o| (o, c.slots(o))).collect();
    drop(c);

    let k = k.restart(); // asserts exit status 0 on SIGTERM
    let c = k.dealer();
    assert_eq!(
        c.roots(),
        roots,
        "roots are not re-created: same names, same oids"
    );
    assert_eq!(c.object_count(), count, "object count unchanged");
    assert_eq!(uint(must(&c.ping(), "objects")), count);
    for (oid, before) in &states {
        assert_same(
            &c.slots(*oid),
            before,
            &format!("object {oid} after restart"),
        );
    }
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(b)), ("slot", s("tmp"))],
        "no_such_slot",
    );
    assert_same(&c.get(b, "n"), &Value::from(2), "last write wins");
    assert_same(
        &c.get(copy, "set_by_method"),
        &Value::from(7),
        "method write kept",
    );

    // Behaviour survives too: delegation and primitives.
    assert_same(
        &c.send_value(b, "name", vec![]),
        &s("a"),
        "delegation after restart",
    );
    let fresh = ref_oid(&c.send_value(b, "clone", vec![]));
    assert!(
        !states.iter().any(|(o, _)| *o == fresh),
        "new oids are never reused"
    );
    let new = c.create(&[]);
    assert!(
        new != fresh && !states.iter().any(|(o, _)| *o == new),
        "new oids are never reused"
    );

    // A second restart, for good measure.
    drop(c);
    let k = k.restart();
    let c = k.dealer();
    assert_eq!(c.object_count(), count + 2);
    assert_same(&c.slots(b), &states[1].1, "object b after two restarts");
    drop(c);
    k.stop();
}

#[test]
fn restart_keeps_everything_sync() {
    restart_keeps_everything("sync");
}

#[test]
fn restart_keeps_everything_buffered() {
    restart_keeps_everything("buffered");
}

/// One write sent during a crash round.
#[derive(Clone)]
struct Write {
    oid: u64,
    slot: String,
    value: Value,
}

fn value_for(round: usize, n: u64) -> Value {
    match n % 4 {
        0 => Value::from(n),
        1 => s(&format!("round {round} write {n}")),
        2 => Value::F64(n as f64 + 0.25),
        _ => Value::Array(vec![
            Value::from(round as u64),
            Value::from(n),
            Value::Binary(n.to_be_bytes().to_vec()),
        ]),
    }
}

/// Every acknowledged object and write is present; any unacknowledged write
/// that is present holds exactly what was sent (no torn writes).
fn verify(c: &Client, objects: &[u64], acked: &[Write], sent: &HashMap<(u64, String), Value>) {
    let states: HashMap<u64, Value> = objects.iter().map(|&o| (o, c.slots(o))).collect();
    for w in acked {
        let got = field(&states[&w.oid], &w.slot)
            .unwrap_or_else(|| panic!("acknowledged write {}.{} was lost", w.oid, w.slot));
        assert_same(
            got,
            &w.value,
            &format!("acknowledged write {}.{}", w.oid, w.slot),
        );
    }
    for (oid, slots) in &states {
        for name in keys(slots) {
            if let Some(want) = sent.get(&(*oid, name.clone())) {
                assert_same(
                    must(slots, &name),
                    want,
                    &format!("unacknowledged write {oid}.{name}"),
                );
            }
        }
    }
}

#[test]
fn sigkill_never_loses_acknowledged_writes() {
    const ROUNDS: usize = 5;
    const MAX_IN_FLIGHT: usize = 32;
    let mut rng = rand::rng();
    let mut objects: Vec<u64> = Vec::new();
    let mut acked: Vec<Write> = Vec::new();
    let mut sent: HashMap<(u64, String), Value> = HashMap::new();
    let mut image = new_image_dir();

    for round in 0..ROUNDS {
        let durability = if round % 2 == 0 { "buffered" } else { "sync" };
        let k = Kernel::start_on(image, Options::durability(durability));
        let c = k.dealer();
        verify(&c, &objects, &acked, &sent);

        for _ in 0..4 {
            objects.push(c.create(&[("round", Value::from(round as u64))]));
        }
        let targets = &objects[objects.len() - 4..];

        // Writes with up to 32 in flight, for a random while; then SIGKILL
        // right there, with writes still in flight.
        let run_for = Duration::from_millis(rng.random_range(20..400));
        let deadline = Instant::now() + run_for;
        let mut in_flight: HashMap<u64, Write> = HashMap::new();
        let mut n: u64 = 0;
        let mut acked_this_round = 0usize;
        while Instant::now() < deadline {
            while in_flight.len() < MAX_IN_FLIGHT {
                let w = Write {
                    oid: targets[rng.random_range(0..targets.len())],
                    slot: format!("r{round}_w{n}"),
                    value: value_for(round, n),
                };
                c.send_request(
                    "set_slot",
                    &Value::from(n),
                    &[
                        ("oid", Value::from(w.oid)),
                        ("slot", s(&w.slot)),
                        ("value", w.value.clone()),
                    ],
                );
                sent.insert((w.oid, w.slot.clone()), w.value.clone());
                in_flight.insert(n, w);
                n += 1;
            }
            if let Some(r) = c.try_recv_reply(Duration::from_millis(20)) {
                let id = uint(
                    r.id.as_ref()
                        .unwrap_or_else(|| panic!("reply without id: {:?}", r.raw)),
                );
                let w = in_flight
                    .remove(&id)
                    .unwrap_or_else(|| panic!("unexpected or duplicate reply for id {id}"));
                match &r.outcome {
                    Ok(v) => assert_same(v, &empty_map(), "set_slot result"),
                    Err((code, m)) => panic!("set_slot {}.{} failed: {code}: {m}", w.oid, w.slot),
                }
                acked.push(w);
                acked_this_round += 1;
            }
        }
        drop(c);
        image = k.kill();
        eprintln!(
            "crash round {round} ({durability}): killed after {run_for:?}, {acked_this_round} acknowledged, {} in flight",
            in_flight.len()
        );
    }

    let k = Kernel::start_on(image, Options::default());
    let c = k.dealer();
    verify(&c, &objects, &acked, &sent);
    assert!(!acked.is_empty(), "no write was acknowledged in any round");
    drop(c);
    k.stop();
}

/// Idle objects passivate (their actors stop, slots leave memory) and come
/// back from the image, with every slot, when next used.
#[test]
fn idle_objects_passivate_and_reactivate_from_the_image() {
    let k = Kernel::start_with(Options::config(
        "[actors]\npassivate_after_ms = 100\npassivate_check_ms = 20\n",
    ));
    let c = k.dealer();
    let oids: Vec<u64> = (0..20)
        .map(|i| c.create(&[("n", Value::from(i))]))
        .collect();
    for &o in &oids {
        c.get(o, "n");
    }
    eventually("idle objects to passivate", Duration::from_secs(10), || {
        k.scrape().count("batos_actors_passivations_total", &[]) >= oids.len() as f64
    });
    for (i, &o) in oids.iter().enumerate() {
        assert_eq!(
            c.get(o, "n").as_u64(),
            Some(i as u64),
            "object {o} came back"
        );
    }
    let m = k.scrape();
    assert!(
        m.count("batos_actors_activations_total", &[]) >= 2.0 * oids.len() as f64,
        "{}",
        m.text
    );
}
