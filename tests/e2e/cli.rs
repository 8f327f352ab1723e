//! The `batos` CLI client: JSON in and out, root names, and exit codes 0 (ok), 1 (kernel error), 2 (usage), 3 (unreachable).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

#[test]
fn ping_prints_json() {
    let k = Kernel::start();
    let out = k.cli(&["ping"]).json();
    assert_eq!(out["protocol"], json!(1), "{out}");
    assert!(out["version"].is_string(), "{out}");
    assert!(out["uptime_s"].is_number(), "{out}");
    assert_eq!(out["objects"], json!(6), "{out}");
}

#[test]
fn set_then_get_round_trips_json() {
    let k = Kernel::start();
    let out = k.cli(&["new", r#"{"name": "cli"}"#]).json();
    let oid = out["oid"]
        .as_u64()
        .unwrap_or_else(|| panic!("new prints {{\"oid\": n}}: {out}"));
    let oid_text = oid.to_string();
    let o = oid_text.as_str();

    assert_eq!(k.cli(&["get", o, "name"]).json(), json!("cli"));
    assert_eq!(
        k.cli(&["set", o, "color", r#""red""#]).json(),
        json!({}),
        "set prints {{}}"
    );
    assert_eq!(k.cli(&["get", o, "color"]).json(), json!("red"));

    let doc = json!({
        "a": [1, 2.5, "x", null, true, false, -3],
        "b": {"c": {"d": []}, "e": {}},
        "big": u64::MAX,
        "neg": i64::MIN,
        "unicode": "héllo ✓"
    });
    let doc_text = doc.to_string();
    k.cli(&["set", o, "doc", doc_text.as_str()]).json();
    assert_eq!(k.cli(&["get", o, "doc"]).json(), doc);

    // The CLI and the wire agree.
    let c = k.dealer();
    assert_same(&c.get(oid, "color"), &s("red"), "set via CLI, read via ZMQ");
    c.set(
        oid,
        "from_zmq",
        map(&[("n", Value::from(7)), ("f", Value::F64(0.5))]),
    );
    assert_eq!(
        k.cli(&["get", o, "from_zmq"]).json(),
        json!({"n": 7, "f": 0.5})
    );
}

#[test]
fn root_names_refs_state_send_and_clone() {
    let k = Kernel::start();
    let c = k.dealer();
    let roots = c.roots();

    let parents_json = k.cli(&["get", "genesis_obj", "parent*"]).json();
    assert_eq!(
        parents_json,
        json!([{"$ref": roots["pLLM_obj"]}, {"$ref": roots["traits_obj"]}])
    );

    let state = k.cli(&["state"]).json();
    assert_eq!(state["objects"], json!(6), "{state}");
    for name in ROOTS {
        assert_eq!(state["roots"][name], json!(roots[name]), "{state}");
    }
    let genesis = k.cli(&["state", "genesis_obj"]).json();
    assert_eq!(genesis["oid"], json!(roots["genesis_obj"]), "{genesis}");
    assert!(genesis["slots"]["parent*"].is_array(), "{genesis}");

    let new = k
        .cli(&["new", r#"{"parent*": [{"$ref": "genesis_obj"}], "k": 1}"#])
        .json();
    let o_text = new["oid"].as_u64().expect("oid").to_string();
    let o = o_text.as_str();
    assert_eq!(
        k.cli(&["get", o, "parent*"]).json(),
        json!([{"$ref": roots["genesis_obj"]}])
    );

    let sent = k
        .cli(&["send", o, "setSlot_value_", r#""mood""#, r#""calm""#])
        .json();
    assert_eq!(sent, json!({"value": null, "generated": false}));
    assert_eq!(k.cli(&["get", o, "mood"]).json(), json!("calm"));
    assert_eq!(
        k.cli(&["send", o, "k"]).json(),
        json!({"value": 1, "generated": false})
    );

    let cloned = k.cli(&["send", o, "clone"]).json();
    assert_eq!(cloned["generated"], json!(false));
    let copy = cloned["value"]["$ref"]
        .as_u64()
        .unwrap_or_else(|| panic!("clone returns a $ref: {cloned}"));
    let copy_text = copy.to_string();
    assert_eq!(
        k.cli(&["get", copy_text.as_str(), "mood"]).json(),
        json!("calm")
    );

    let cloned = k.cli(&["clone", o]).json();
    let copy2 = cloned["oid"]
        .as_u64()
        .unwrap_or_else(|| panic!("clone prints {{\"oid\": n}}: {cloned}"));
    assert_ne!(copy2, copy);
    let copy2_text = copy2.to_string();
    assert_eq!(k.cli(&["get", copy2_text.as_str(), "k"]).json(), json!(1));
}

#[test]
fn kernel_errors_exit_1_with_the_code_on_stderr() {
    let k = Kernel::start();
    let out = k.cli(&["get", "genesis_obj", "no_such_slot_here"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("error: no_such_slot: "),
        "stderr: {:?}",
        out.stderr
    );

    let out = k.cli(&["get", "1000000007", "x"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("error: no_such_object: "),
        "stderr: {:?}",
        out.stderr
    );

    let out = k.cli(&["send", "genesis_obj", "zzqNoSuchSelector"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("error: does_not_understand: "),
        "stderr: {:?}",
        out.stderr
    );

    let out = k.cli(&["set", "genesis_obj", "parent*", "5"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("error: bad_request: "),
        "stderr: {:?}",
        out.stderr
    );
}

#[test]
fn usage_errors_exit_2() {
    let k = Kernel::start();
    let cases: [&[&str]; 6] = [
        &["set", "genesis_obj", "x", "{bad json"],
        &["set", "genesis_obj", "x", "'single'"],
        &["new", "[1, 2"],
        &["get", "genesis_obj"],
        &["frobnicate"],
        &[],
    ];
    for args in cases {
        let out = k.cli(args);
        assert_eq!(out.code, Some(2), "batos {args:?}: {out:?}");
    }
    // Nothing was written by the rejected invocations.
    k.dealer().expect_err(
        "get_slot",
        &[("oid", s("genesis_obj")), ("slot", s("x"))],
        "no_such_slot",
    );
}

#[test]
fn unreachable_kernel_exits_3() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = cli(&[
        "--endpoint",
        endpoint.as_str(),
        "--timeout-ms",
        "500",
        "ping",
    ]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeout is honoured"
    );
}

#[test]
fn ingest_search_cycle_and_experts_from_the_command_line() {
    let k = Kernel::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("owls.txt");
    std::fs::write(&file, "Owls hunt at night. Their feathers are silent.").unwrap();
    let path = file.display().to_string();
    let out = k.cli(&["ingest", &path]).json();
    assert_eq!(out["documents"], json!(1), "{out}");
    let out = k.cli(&["search", "silent feathers", "--limit", "5"]).json();
    let hits = out["hits"].as_array().expect("hits");
    assert_eq!(hits[0]["source"], json!(path), "{out}");
    assert!(hits[0]["snippet"].as_str().unwrap().contains("**"), "{out}");

    let out = k.cli(&["cycle", "start", "display_yourself"]).json();
    let cycle = out["cycle"].as_u64().expect("cycle oid").to_string();
    let out = k.cli(&["cycle", "get", &cycle]).json();
    assert_eq!(out["kind"], json!("display_yourself"), "{out}");

    assert_eq!(k.cli(&["experts"]).json(), json!({"experts": []}));
    let out = k.cli(&["infer", "hello"]);
    assert_eq!(out.code, Some(1), "no model: a kernel error");
    assert!(out.stderr.contains("unavailable"), "{}", out.stderr);
    assert_eq!(k.cli(&["ingest"]).code, Some(2), "files are required");
}

/// `batos method` installs from a file or standard input (WAT or a
/// binary); `batos source` prints what each version was written in, kept
/// in the image with the version (across a restart too), and
/// `get_full_state` shows it.
#[test]
fn methods_install_from_files_and_their_sources_are_kept() {
    let k = Kernel::start();
    let dir = tempfile::tempdir().unwrap();
    let wat = |step: u32| {
        format!(
            "(module\n  (import \"uvm\" \"slot_i64\" (func $get (param i32 i32 i32) (result i32)))\n  \
             (import \"uvm\" \"set_slot_i64\" (func $set (param i32 i32 i64) (result i32)))\n  \
             (import \"uvm\" \"return_i64\" (func $ret (param i64)))\n  \
             (memory (export \"memory\") 1)\n  (data (i32.const 0) \"count\")\n  \
             (func (export \"invoke\") (local $n i64)\n    \
             (if (i32.eqz (call $get (i32.const 0) (i32.const 5) (i32.const 16)))\n      \
             (then (local.set $n (i64.load (i32.const 16)))))\n    \
             (local.set $n (i64.add (local.get $n) (i64.const {step})))\n    \
             (drop (call $set (i32.const 0) (i32.const 5) (local.get $n)))\n    \
             (call $ret (local.get $n))))\n"
        )
    };
    let first = dir.path().join("counter.wat");
    std::fs::write(&first, wat(1)).unwrap();
    let oid = k.cli(&["new"]).json()["oid"].as_u64().unwrap().to_string();
    let o = oid.as_str();
    let path = first.to_str().unwrap();
    let installed = k.cli(&["method", o, "increment", path]).json();
    assert_eq!(installed["version"], json!(1), "{installed}");
    assert_eq!(k.cli(&["send", o, "increment"]).json()["value"], json!(1));
    assert_eq!(k.cli(&["source", o, "increment"]).stdout, wat(1));

    // From standard input (WAT unless told otherwise).
    let script = format!(
        "{} --endpoint {} method {o} increment - < {}",
        batos_bin().display(),
        k.endpoint,
        dir.path().join("ten.wat").display()
    );
    std::fs::write(dir.path().join("ten.wat"), wat(10)).unwrap();
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(k.cli(&["send", o, "increment"]).json()["value"], json!(11));
    assert_eq!(k.cli(&["source", o, "increment"]).stdout, wat(10));
    assert_eq!(
        k.cli(&["source", o, "increment", "--version", "1"]).stdout,
        wat(1)
    );

    // A binary keeps no source, and says so.
    let binary = dir.path().join("counter.wasm");
    std::fs::write(
        &binary,
        std::fs::read(format!("{}/counter.wasm", env!("BATOS_GUEST_EXAMPLES"))).unwrap(),
    )
    .unwrap();
    k.cli(&["method", o, "increment", binary.to_str().unwrap()])
        .json();
    let none = k.cli(&["source", o, "increment"]);
    assert_eq!(none.code, Some(1), "{none:?}");
    assert!(none.stderr.contains("no source was kept"), "{none:?}");
    let usage = k.cli(&["method", o, "x", dir.path().join("x.txt").to_str().unwrap()]);
    assert_eq!(usage.code, Some(2), "{usage:?}");

    // Synthesized accessors keep the WAT they were written as.
    k.cli(&["send", o, "setColor_", "\"teal\""]).json();
    assert!(k
        .cli(&["source", o, "setColor_"])
        .stdout
        .starts_with("(module"));

    // Kept in the image, shown by get_full_state with its hash.
    let k = k.restart();
    assert_eq!(
        k.cli(&["source", o, "increment", "--version", "2"]).stdout,
        wat(10)
    );
    let state = k.cli(&["state", o]).json();
    let source = &state["methods"]["increment"][0]["source"];
    assert_eq!(source["language"], json!("wat"), "{state}");
    assert_eq!(source["text"], json!(wat(1)), "{state}");
    assert_eq!(source["hash"].as_str().map(str::len), Some(64), "{state}");
    assert!(
        state["methods"]["increment"][2].get("source").is_none(),
        "{state}"
    );
}
