//! The PUB socket: one `uvm_state_update` per committed transaction and object, after the commit, with increasing tx ids; none for refused requests.

use crate::harness::*;

#[test]
fn set_slot_publishes_the_change() {
    let k = Kernel::start();
    let c = k.dealer();
    let sub = k.subscriber();
    sub.sync(&c);

    let o = c.create(&[]);
    let created = sub.next();
    assert_eq!(
        created.oid, o,
        "create_object publishes for the new object: {:?}",
        created.raw
    );
    assert_same(
        created
            .value_of("parent*")
            .unwrap_or_else(|| panic!("new object's parent* in changed: {:?}", created.raw)),
        &parents(&[c.root("traits_obj")]),
        "created parent*",
    );

    c.set(o, "color", s("red"));
    let ev = sub.next();
    assert_eq!(ev.oid, o);
    assert_eq!(ev.changed.len(), 1, "{:?}", ev.raw);
    assert_same(
        ev.value_of("color").expect("color in changed"),
        &s("red"),
        "changed value",
    );
    assert!(ev.removed.is_empty(), "{:?}", ev.raw);
    assert!(
        ev.tx > created.tx,
        "tx ids increase: {} then {}",
        created.tx,
        ev.tx
    );

    // The event is published after the commit: the write is visible once it arrives.
    assert_same(&c.get(o, "color"), &s("red"), "committed");
}

#[test]
fn remove_slot_publishes_the_removal() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("gone", Value::from(1))]);
    let sub = k.subscriber();
    sub.sync(&c);
    c.remove(o, "gone");
    let ev = sub.next();
    assert_eq!(ev.oid, o);
    assert!(ev.changed.is_empty(), "{:?}", ev.raw);
    assert_eq!(ev.removed, vec!["gone".to_string()]);
}

#[test]
fn tx_ids_increase_across_writes_and_objects() {
    let k = Kernel::start();
    let c = k.dealer();
    let a = c.create(&[]);
    let b = c.create(&[]);
    let sub = k.subscriber();
    sub.sync(&c);
    let mut last = 0;
    for i in 0..50u64 {
        let o = if i % 2 == 0 { a } else { b };
        c.set(o, "i", Value::from(i));
        let ev = sub.next();
        assert_eq!(ev.oid, o);
        assert_same(
            ev.value_of("i").expect("i in changed"),
            &Value::from(i),
            "event value",
        );
        assert!(ev.tx > last, "tx ids increase: {last} then {}", ev.tx);
        last = ev.tx;
    }
}

#[test]
fn primitive_writes_publish_for_the_receiver() {
    let k = Kernel::start();
    let c = k.dealer();
    let child = c.create(&[]);
    let sub = k.subscriber();
    sub.sync(&c);
    c.send_value(child, "setSlot_value_", vec![s("mood"), s("curious")]);
    let ev = sub.next();
    assert_eq!(
        ev.oid, child,
        "the receiver changed, not traits_obj: {:?}",
        ev.raw
    );
    assert_same(
        ev.value_of("mood").expect("mood in changed"),
        &s("curious"),
        "event value",
    );

    let copy = ref_oid(&c.send_value(child, "clone", vec![]));
    let ev = sub.next();
    assert_eq!(ev.oid, copy, "clone publishes the new object: {:?}", ev.raw);
    assert_same(
        ev.value_of("mood").expect("cloned slot in changed"),
        &s("curious"),
        "clone event",
    );
}

#[test]
fn event_values_show_integer_refs() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[]);
    let sub = k.subscriber();
    sub.sync(&c);
    c.set(o, "home", oref_name("genesis_obj"));
    let ev = sub.next();
    assert_eq!(
        ref_oid(ev.value_of("home").expect("home in changed")),
        c.root("genesis_obj")
    );
}

#[test]
fn refused_requests_publish_nothing() {
    let k = Kernel::start();
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let marker = c.create(&[]);
    let sub = k.subscriber();
    sub.sync(&c);

    c.expect_err(
        "send",
        &[
            ("oid", Value::from(o)),
            ("selector", s("zzqNoSuchSelector")),
            ("args", Value::Array(vec![])),
        ],
        "does_not_understand",
    );
    c.expect_err(
        "set_slot",
        &[
            ("oid", Value::from(o)),
            ("slot", s("parent*")),
            ("value", Value::from(5)),
        ],
        "bad_request",
    );
    c.expect_err(
        "set_slot",
        &[
            ("oid", Value::from(o)),
            ("slot", s("m")),
            ("value", map(&[("$foo", Value::from(1))])),
        ],
        "bad_request",
    );
    c.expect_err(
        "get_slot",
        &[("oid", Value::from(o)), ("slot", s("nope"))],
        "no_such_slot",
    );
    c.get(o, "x");
    c.ping();

    // Events are in commit order, so the marker's event must be the next one.
    c.set(marker, "after", Value::Boolean(true));
    let ev = sub.next();
    assert_eq!(
        ev.oid, marker,
        "an event was published for a refused or read-only request: {:?}",
        ev.raw
    );
}

/// Each topic's events are numbered (`seq`): a subscriber that keeps up
/// sees consecutive numbers; one that stops reading loses its own events
/// past `[bridge] max_queued_events` (ZeroMQ drops them silently) and sees
/// the loss as a gap, while the other loses nothing.
#[test]
fn event_numbers_show_a_subscriber_what_it_lost() {
    let k = Kernel::start_with(Options::config("[bridge]\nmax_queued_events = 16\n"));
    let c = k.dealer();
    let reader = k.subscriber();
    let scratch = reader.sync(&c);
    // A subscriber that holds one event on its side, joined (it has seen
    // an event), then left unread.
    let slow = batos_client::Connect::new(&k.events)
        .queues(1)
        .subscribe(b"uvm_state_update")
        .expect("subscribe");
    let mut n = 0u64;
    while slow
        .recv_within(std::time::Duration::from_millis(100))
        .expect("recv")
        .is_none()
    {
        n += 1;
        c.set(scratch, "__slow", Value::from(n));
    }
    // Drain what the reader got while the slow one joined.
    while reader
        .next_timeout(std::time::Duration::from_millis(200))
        .is_some()
    {}
    const N: usize = 200;
    let o = c.create(&[]);
    let big = Value::Binary(vec![3u8; 64 * 1024]);
    let mut seen = Vec::new();
    for _ in 0..N {
        c.set(o, "big", big.clone());
        // The reader keeps up: one event per write.
        while let Some(event) = reader.next_timeout(std::time::Duration::ZERO) {
            if event.oid == o && event.value_of("big").is_some() {
                seen.push(event.seq);
            }
        }
    }
    while seen.len() < N {
        let event = reader.next();
        if event.oid == o && event.value_of("big").is_some() {
            seen.push(event.seq);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "a subscriber that reads sees consecutive numbers: {seen:?}"
    );
    let mut slow_seen = Vec::new();
    while let Some(frames) = slow
        .recv_within(std::time::Duration::from_millis(200))
        .expect("recv")
    {
        let body = decode(&frames[1]).expect("event body");
        slow_seen.push(uint(must(&body, "seq")));
    }
    // Its queue drained, the next event arrives: after the gap.
    c.set(o, "after", Value::from(1));
    let frames = slow
        .recv_within(std::time::Duration::from_secs(10))
        .expect("recv")
        .expect("the next event reaches the slow subscriber");
    slow_seen.push(uint(must(&decode(&frames[1]).expect("event body"), "seq")));
    assert!(
        slow_seen.windows(2).all(|w| w[1] > w[0]),
        "numbers only grow: {slow_seen:?}"
    );
    assert_eq!(*slow_seen.last().unwrap(), seen.last().unwrap() + 1);
    assert!(
        slow_seen.windows(2).any(|w| w[1] > w[0] + 1),
        "the subscriber that stopped reading sees its losses as a gap: {slow_seen:?}"
    );
}
