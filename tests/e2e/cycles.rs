//! Cognitive cycles: display_yourself on a fresh image with no model, its
//! artifacts, `cycle_update` events, resuming after kill -9, and state
//! behaviour changed live.

use std::time::{Duration, Instant};

use crate::harness::*;

const STATES: [&str; 7] = [
    "IDLE",
    "INGESTING",
    "CHUNKING",
    "INDEXING",
    "REASONING",
    "SYNTHESIZING",
    "COMPLETE",
];

/// A SUB socket on `cycle_update` (and `uvm_state_update`, to join).
struct CycleEvents {
    events: batos_client::Subscriber,
}

impl CycleEvents {
    /// Subscribed and joined: a scratch write's state event arrived on this
    /// very socket, so every later event will too (the slow-joiner problem).
    fn connect(k: &Kernel, c: &Client) -> CycleEvents {
        let subscriber = batos_client::Connect::new(&k.events)
            .queues(0)
            .subscribe(b"cycle_update")
            .expect("subscribe");
        subscriber
            .socket()
            .set_subscribe(b"uvm_state_update")
            .unwrap();
        let events = CycleEvents { events: subscriber };
        let scratch = c.create(&[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut n = 0u64;
        'join: loop {
            assert!(Instant::now() < deadline, "never joined the events socket");
            n += 1;
            c.set(scratch, "__sync", Value::from(n));
            while let Some(frames) = events.recv(Duration::from_millis(100)) {
                if frames[0] == b"uvm_state_update" {
                    let body = decode(&frames[1]).expect("msgpack body");
                    if uint(must(&body, "oid")) == scratch {
                        break 'join;
                    }
                }
            }
        }
        events
    }

    fn recv(&self, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        self.events.recv_within(timeout).expect("zmq recv")
    }

    /// The next (cycle, state), or `None` after `timeout`.
    fn next(&self, timeout: Duration) -> Option<(u64, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frames = self.recv(left)?;
            if frames[0] != b"cycle_update" {
                continue;
            }
            let body = decode(&frames[1]).expect("msgpack body");
            assert_eq!(must(&body, "event").as_str(), Some("cycle_update"));
            return Some((
                uint(must(&body, "cycle")),
                must(&body, "state").as_str().unwrap().to_string(),
            ));
        }
    }

    /// Waits for `cycle` to report `state`.
    fn wait_for(&self, cycle: u64, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some((c, s)) = self.next(Duration::from_secs(1)) {
                if c == cycle && s == state {
                    return;
                }
                assert_ne!(s, "FAILED", "cycle {c} failed");
            }
        }
        panic!("cycle {cycle} never reached {state}");
    }
}

fn get_cycle(c: &Client, cycle: u64) -> Value {
    c.ok("get_cycle", &[("cycle", Value::from(cycle))])
}

fn history_states(view: &Value) -> Vec<String> {
    must(view, "history")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| must(e, "state").as_str().unwrap().to_string())
        .collect()
}

/// Waits (on events, after checking) until the cycle is complete.
fn wait_complete(k: &Kernel, c: &Client, cycle: u64) -> Value {
    let events = CycleEvents::connect(k, c);
    let view = get_cycle(c, cycle);
    if must(&view, "status").as_str() != Some("complete") {
        assert_eq!(must(&view, "status").as_str(), Some("running"), "{view}");
        events.wait_for(cycle, "COMPLETE");
    }
    get_cycle(c, cycle)
}

fn assert_completed(view: &Value) {
    assert_eq!(must(view, "state").as_str(), Some("COMPLETE"), "{view}");
    assert_eq!(must(view, "status").as_str(), Some("complete"), "{view}");
    assert_eq!(history_states(view), STATES, "each state once, in order");
    let experts: Vec<&str> = must(view, "history")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| must(e, "expert").as_str().unwrap())
        .collect();
    assert_eq!(
        experts,
        ["", "BABS", "BABS", "BABS", "BRICK", "ROBIN", "ALFRED"]
    );
}

#[test]
fn display_yourself_completes_on_a_fresh_image_without_a_model() {
    let opts = Options {
        first_conversation: true,
        ..Options::default()
    };
    let k = Kernel::start_with(opts);
    let c = k.dealer();
    let orchestrator = c.root("orchestrator_obj");
    let cycle = ref_oid(&c.get(orchestrator, "first_conversation"));
    let view = wait_complete(&k, &c, cycle);
    assert_completed(&view);

    // Its artifacts: memory of the system's own documents, and ui_code.
    let hits = must(
        &c.ok(
            "search_memory",
            &[("query", s("prototype delegation parent"))],
        ),
        "hits",
    )
    .as_array()
    .unwrap()
    .clone();
    assert!(
        hits.iter()
            .any(|h| must(h, "source").as_str() == Some("ARCHITECTURE.md")),
        "{hits:?}"
    );
    let ui = c.get(c.root("genesis_obj"), "ui_code");
    assert_eq!(uint(must(&ui, "version")), 1);
    let kinds: Vec<&str> = must(&ui, "panes")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| must(p, "kind").as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["memory_search", "object_browser", "events"]);
    let provenance = must(&ui, "provenance");
    assert_eq!(must(provenance, "written_by").as_str(), Some("template"));
    assert_eq!(ref_oid(must(provenance, "cycle")), cycle);
    // The help texts come from memory: each is a snippet of an ingested chunk.
    let evidence = must(provenance, "evidence").as_array().unwrap();
    assert!(!evidence.is_empty());
    for e in evidence {
        let slots = c.slots(ref_oid(e));
        assert!(
            field(&slots, "source_text").is_some() || field(&slots, "summary_text").is_some(),
            "evidence is a memory object: {slots}"
        );
    }
    // The prompt is built from what memory returned: every hit is quoted.
    let reasoning = must(must(&view, "results"), "intermediate_results");
    let prompt = must(reasoning, "prompt").as_str().unwrap();
    let parts = must(reasoning, "evidence").as_array().unwrap();
    assert_eq!(parts.len(), 4, "one part per default query");
    for part in parts {
        for hit in must(part, "hits").as_array().unwrap() {
            let source = must(hit, "source").as_str().unwrap();
            let snippet = must(hit, "snippet").as_str().unwrap();
            assert!(
                prompt.contains(&format!("- {source}: {snippet}")),
                "the prompt quotes {source}: {snippet}"
            );
        }
    }

    // Once per image: a restart does not start another.
    let k = k.restart();
    let c = k.dealer();
    let cycles = c.get(orchestrator, "cycles");
    assert_eq!(cycles.as_array().unwrap().len(), 1, "{cycles}");
}

#[test]
fn a_cycle_killed_midway_resumes_after_restart() {
    let opts = Options::config("[orchestrator]\nstep_pause_ms = 400\n");
    let k = Kernel::start_with(opts.clone());
    let c = k.dealer();
    let events = CycleEvents::connect(&k, &c);
    let cycle = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    events.wait_for(cycle, "CHUNKING");
    let root = k.kill();

    let k = Kernel::start_on(root, opts);
    let c = k.dealer();
    let view = get_cycle(&c, cycle);
    let before = history_states(&view);
    assert!(
        before.len() >= 2 && before[..2] == ["IDLE", "INGESTING"],
        "history survives the crash: {before:?}"
    );
    let view = wait_complete(&k, &c, cycle);
    assert_completed(&view);
}

#[test]
fn cycles_are_validated_and_state_behaviour_changes_live() {
    let k = Kernel::start();
    let c = k.dealer();
    c.expect_err("start_cycle", &[("kind", s("nonsense"))], "bad_request");
    c.expect_err(
        "get_cycle",
        &[("cycle", Value::from(999_999u64))],
        "no_such_object",
    );
    c.expect_err(
        "get_cycle",
        &[("cycle", Value::from(c.root("genesis_obj")))],
        "bad_request",
    );

    let first = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    assert_completed(&wait_complete(&k, &c, first));

    // The cycle delegates to its state: the state's slots answer through it.
    let state = ref_oid(must(&get_cycle(&c, first), "state_object"));
    assert_eq!(
        c.send_value(first, "state_name", vec![]).as_str(),
        Some("COMPLETE")
    );
    assert_eq!(c.get(state, "state_name").as_str(), Some("COMPLETE"));

    // Change REASONING's behaviour: the next cycle asks memory other questions.
    let states = c.get(c.root("orchestrator_obj"), "display_yourself_states");
    let reasoning = ref_oid(&states.as_array().unwrap()[4]);
    assert_eq!(c.get(reasoning, "state_name").as_str(), Some("REASONING"));
    c.set(
        reasoning,
        "queries",
        map(&[("about", s("steward upgrade channel"))]),
    );
    let second = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    let view = wait_complete(&k, &c, second);
    assert_completed(&view);
    let evidence = must(
        must(must(&view, "results"), "intermediate_results"),
        "evidence",
    );
    let queries: Vec<&str> = evidence
        .as_array()
        .unwrap()
        .iter()
        .map(|e| must(e, "query").as_str().unwrap())
        .collect();
    assert_eq!(queries, ["steward upgrade channel"]);
}

/// Each cycle runs steps, searches memory and may generate: at most
/// `[orchestrator] max_running` run at once, and one more is `overloaded`
/// until one completes.
#[test]
fn cycles_running_at_once_are_capped() {
    let k = Kernel::start_with(Options::config(
        "[orchestrator]\nstep_pause_ms = 200\nmax_running = 1\n",
    ));
    let c = k.dealer();
    let first = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    let message = c.expect_err(
        "start_cycle",
        &[("kind", s("display_yourself"))],
        "overloaded",
    );
    assert!(message.contains("the limit"), "{message}");
    assert_completed(&wait_complete(&k, &c, first));
    let second = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    assert_ne!(first, second);
}

/// One connection may have `[orchestrator] max_running_per_client` cycles
/// running: past that its `start_cycle` is `overloaded`, while another
/// connection still starts one.
#[test]
fn one_connection_cannot_take_every_running_cycle() {
    let k = Kernel::start_with(Options::config(
        "[orchestrator]\nstep_pause_ms = 200\nmax_running = 8\nmax_running_per_client = 1\n",
    ));
    let (greedy, other) = (k.dealer(), k.dealer());
    let start = |c: &Client| c.request("start_cycle", &[("kind", s("display_yourself"))]);
    let first = uint(must(start(&greedy).result(), "cycle"));
    let refused = start(&greedy);
    refused.assert_error("overloaded");
    let (_, message) = refused.outcome.unwrap_err();
    assert!(message.contains("this connection"), "{message}");
    let theirs = uint(must(start(&other).result(), "cycle"));
    assert_completed(&wait_complete(&k, &greedy, first));
    assert_completed(&wait_complete(&k, &other, theirs));
    // Its cycle done, the first connection may start another.
    assert!(start(&greedy).is_ok());
}
