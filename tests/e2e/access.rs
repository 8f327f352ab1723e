//! Who may change what, from outside: the kernel's own objects refuse every
//! client (`forbidden`) by any path (set_slot, remove_slot, create_method,
//! primitives, synthesized setters, a method's host call), and a client's
//! role bounds what it may do. Nothing refused changes the image.

use crate::harness::*;

/// Writes `flag` = 1 on `self`: a method an admin installs on `traits_obj`,
/// so every object (the kernel's too) answers it.
const MARK: &str = r#"(module
  (import "uvm" "set_slot_i64" (func $set (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $ret (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "flag")
  (func (export "invoke")
    (drop (call $set (i32.const 0) (i32.const 4) (i64.const 1)))
    (call $ret (i64.const 7))))"#;

fn install(
    c: &Client,
    oid: impl Into<Value>,
    selector: &str,
    wat: &str,
) -> Result<Value, (String, String)> {
    c.call(
        "create_method",
        &[
            ("oid", oid.into()),
            ("selector", s(selector)),
            ("wat", s(wat)),
        ],
    )
}

fn forbidden(outcome: Result<Value, (String, String)>, what: &str) -> String {
    match outcome {
        Ok(v) => panic!("{what}: expected forbidden, got ok: {v}"),
        Err((code, message)) => {
            assert_eq!(code, "forbidden", "{what}: {message}");
            message
        }
    }
}

fn set(
    c: &Client,
    oid: impl Into<Value>,
    slot: &str,
    value: Value,
) -> Result<Value, (String, String)> {
    c.call(
        "set_slot",
        &[("oid", oid.into()), ("slot", s(slot)), ("value", value)],
    )
}

fn remove(c: &Client, oid: impl Into<Value>, slot: &str) -> Result<Value, (String, String)> {
    c.call("remove_slot", &[("oid", oid.into()), ("slot", s(slot))])
}

#[test]
fn the_kernels_objects_refuse_every_client_write_by_every_path() {
    let k = Kernel::start();
    let c = k.dealer();
    c.ok(
        "ingest",
        &[(
            "documents",
            Value::Array(vec![map(&[
                ("source", s("zoo.txt")),
                ("text", s("The zebra grazes at dawn.")),
            ])]),
        )],
    );
    let hits = c.ok(
        "search_memory",
        &[("query", s("zebra")), ("kind", s("chunk"))],
    );
    let chunk = uint(must(&must(&hits, "hits").as_array().unwrap()[0], "chunk"));
    // Once summarized, the kernel leaves these objects alone.
    k.wait_for_slot(&c, ref_oid(&c.get(chunk, "source_object")), "summary");
    let catalog = c.root("knowledge_catalog_obj");
    let shards = c.get(catalog, "shards");
    let shard = ref_oid(&shards.as_array().unwrap()[0]);
    let before = (c.slots(catalog), c.slots(chunk), c.slots(shard));

    // The bridge's own writes, on the catalog, a shard and a chunk.
    let m = forbidden(
        set(&c, catalog, "memory_seq", Value::from(0)),
        "catalog seq",
    );
    assert!(m.contains("kernel's own"), "{m}");
    forbidden(
        set(&c, "knowledge_catalog_obj", "note", s("x")),
        "new slot on the catalog",
    );
    forbidden(remove(&c, catalog, "shards"), "remove the catalog's shards");
    forbidden(
        set(&c, shard, "sources", map(&[])),
        "empty a directory shard",
    );
    forbidden(
        set(&c, chunk, "source_text", s("forged")),
        "rewrite a chunk",
    );
    forbidden(
        remove(&c, chunk, "source_object"),
        "cut a chunk from its source",
    );
    forbidden(install(&c, chunk, "forge", MARK), "a method on a chunk");
    forbidden(
        set(&c, "orchestrator_obj", "cycles", Value::Array(vec![])),
        "the cycle list",
    );
    // Messages: a primitive, a synthesized setter, a method's host call.
    forbidden(
        c.send(
            catalog,
            "setSlot_value_",
            vec![s("memory_seq"), Value::from(0)],
        ),
        "setSlot_value_ on the catalog",
    );
    forbidden(
        c.send(chunk, "setSource_text:", vec![s("forged")]),
        "a synthesized setter",
    );
    install(&c, "traits_obj", "mark", MARK).expect("admin installs on traits_obj");
    let m = forbidden(
        c.send(catalog, "mark", vec![]),
        "a method writing the catalog",
    );
    assert!(m.contains("\"flag\""), "{m}");
    // The same method on the user's own object works.
    let mine = c.create(&[]);
    assert_eq!(
        must(&c.send(mine, "mark", vec![]).unwrap(), "value").as_u64(),
        Some(7)
    );
    // Built-in primitives stay.
    forbidden(remove(&c, "traits_obj", "clone"), "remove a primitive");
    forbidden(
        set(&c, "traits_obj", "clone", Value::from(1)),
        "overwrite a primitive",
    );
    forbidden(
        install(&c, "traits_obj", "setSlot_value_", MARK),
        "replace a primitive",
    );

    assert_same(&c.slots(catalog), &before.0, "the catalog is unchanged");
    assert_same(&c.slots(chunk), &before.1, "the chunk is unchanged");
    assert_same(&c.slots(shard), &before.2, "the shard is unchanged");
    let root = k.stop();
    let k = Kernel::start_on(root, Options::default());
    let c = k.dealer();
    let hits = c.ok("search_memory", &[("query", s("zebra"))]);
    assert!(
        !must(&hits, "hits").as_array().unwrap().is_empty(),
        "still searchable"
    );
}

#[test]
fn a_cycle_states_settings_take_admin_and_its_machinery_nobody() {
    let k = Kernel::start();
    let c = k.dealer();
    let cycle = uint(must(
        &c.ok("start_cycle", &[("kind", s("display_yourself"))]),
        "cycle",
    ));
    let states = c.get("orchestrator_obj", "display_yourself_states");
    let reasoning = ref_oid(&states.as_array().unwrap()[4]);
    set(&c, reasoning, "queries", map(&[("about", s("image"))])).expect("a setting");
    forbidden(
        set(&c, reasoning, "next_state", Value::from(1)),
        "next_state",
    );
    forbidden(
        set(&c, reasoning, "parent*", Value::Array(vec![])),
        "a state's parent*",
    );
    forbidden(set(&c, cycle, "status", s("done")), "a cycle's status");
    forbidden(
        set(&c, cycle, "parent*", Value::Array(vec![])),
        "a cycle's state",
    );
}

fn with_role(role: &str) -> Options {
    Options::config(&format!("[bridge]\nanonymous_role = \"{role}\"\n"))
}

#[test]
fn a_read_client_reads_and_changes_nothing() {
    let k = Kernel::start_with(with_role("read"));
    let c = k.dealer();
    let genesis = c.root("genesis_obj");
    c.get("traits_obj", "clone");
    c.slots(genesis);
    c.ok("search_memory", &[("query", s("anything"))]);
    let objects = c.object_count();
    let m = forbidden(set(&c, genesis, "x", Value::from(1)), "set_slot");
    assert!(m.contains("write role") && m.contains("has read"), "{m}");
    forbidden(
        c.call("create_object", &[("slots", map(&[]))]),
        "create_object",
    );
    forbidden(c.call("clone", &[("oid", Value::from(genesis))]), "clone");
    forbidden(c.send(genesis, "clone", vec![]), "clone by message");
    forbidden(
        c.send(genesis, "setX:", vec![Value::from(1)]),
        "a synthesized setter",
    );
    forbidden(c.call("snapshot", &[]), "snapshot");
    let doc = map(&[("source", s("a")), ("text", s("b"))]);
    forbidden(
        c.call("ingest", &[("documents", Value::Array(vec![doc]))]),
        "ingest",
    );
    forbidden(
        c.call("start_cycle", &[("kind", s("display_yourself"))]),
        "start_cycle",
    );
    assert_eq!(c.object_count(), objects, "nothing was created");
}

#[test]
fn a_write_client_changes_the_users_objects_but_not_the_roots_methods() {
    let k = Kernel::start_with(with_role("write"));
    let c = k.dealer();
    let o = c.create(&[("n", Value::from(1))]);
    c.set(o, "n", Value::from(2));
    c.set("genesis_obj", "note", s("mine"));
    install(&c, o, "mark", MARK).expect("a method on the user's object");
    assert_eq!(
        must(&c.send(o, "mark", vec![]).unwrap(), "value").as_u64(),
        Some(7)
    );
    let m = forbidden(
        install(&c, "genesis_obj", "mark", MARK),
        "a method on a root",
    );
    assert!(m.contains("admin role"), "{m}");
    forbidden(
        set(&c, "traits_obj", "x", Value::from(1)),
        "a slot every object inherits",
    );
    forbidden(
        c.send("genesis_obj", "getNote", vec![]),
        "a getter synthesized on a root",
    );
    forbidden(c.call("snapshot", &[]), "snapshot");
    let m = forbidden(
        c.send(
            "orchestrator_obj",
            "requestUpgrade_",
            vec![map(&[("id", s("u1"))])],
        ),
        "requestUpgrade_",
    );
    assert!(m.contains("requestUpgrade_"), "{m}");
}

#[test]
fn an_unknown_anonymous_role_refuses_to_start() {
    let refusal = run_expecting_exit(&with_role("root"), EXIT_TIMEOUT);
    assert!(!refusal.status.success());
    assert!(
        refusal.stderr.contains("anonymous_role") && refusal.stderr.contains("read, write, admin"),
        "{}",
        refusal.stderr
    );
}
