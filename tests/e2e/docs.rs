//! The examples in the README and `docs/` are checked: each one here runs
//! as written (shell lines through bash with the real `batos` on `PATH`,
//! WAT through `create_method`) against a real kernel, and its output is
//! what the text says. The Python examples are checked by the Python
//! client's tests (`clients/python/tests/test_docs.py`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

pub(crate) fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The indented (four-space) code block of `text` whose first line is
/// `first`, without its indentation.
pub(crate) fn indented_block(text: &str, first: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.strip_prefix("    ") == Some(first))
        .unwrap_or_else(|| panic!("no code block starts with {first:?}"));
    lines[start..]
        .iter()
        .map_while(|l| l.strip_prefix("    "))
        .map(str::to_owned)
        .collect()
}

/// The fenced blocks of `text` in language `lang`.
fn fenced_blocks(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    text.split(open.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

/// Runs `lines` as one bash script in `dir`, `batos` on `PATH` being the
/// binary under test, and returns each line's stdout.
fn run_lines(dir: &Path, env: &[(&str, &str)], lines: &[String]) -> Vec<String> {
    let bin = dir.join(".bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let link = bin.join("batos");
    if !link.exists() {
        std::os::unix::fs::symlink(batos_bin(), &link).expect("link batos");
    }
    const MARK: &str = "@@line-done@@";
    let mut script = String::from("set -euo pipefail\n");
    for line in lines {
        script.push_str(&format!("{line}\necho {MARK}\n"));
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-c", &script])
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the example failed ({}):\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: Vec<String> = stdout
        .split(&format!("{MARK}\n"))
        .map(|s| s.trim().to_owned())
        .collect();
    assert_eq!(
        outputs.len(),
        lines.len() + 1,
        "one output per line: {stdout}"
    );
    outputs[..lines.len()].to_vec()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn the_readme_walk_through_runs_on_a_fresh_image() {
    // A fresh image as a new user has it: its first conversation made
    // objects before the walk-through's first `new`.
    let k = Kernel::start_with(Options {
        first_conversation: true,
        ..Options::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let lines = indented_block(&repo_file("README.md"), "batos ping");
    assert!(lines.len() >= 9, "{lines:?}");
    let out = run_lines(dir.path(), &[("BATOS_ENDPOINT", &k.endpoint)], &lines);
    let at = |prefix: &str| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}"));
        out[i].clone()
    };
    assert_eq!(json(&at("batos ping"))["protocol"], 1);
    assert!(json(&at("batos state "))["roots"]["genesis_obj"].is_u64());
    assert_eq!(at("batos get $ada age"), "36");
    assert_eq!(json(&at("batos send $ada name"))["value"], "ada");
    assert!(json(&at("batos clone $ada"))["oid"].is_u64());
    let ada = json(&at("batos state $ada"));
    let slots = &ada["slots"];
    assert_eq!(
        (&slots["name"], &slots["age"], &slots["mood"]),
        (&json("\"ada\""), &json("36"), &json("\"curious\"")),
        "{ada}"
    );
}

#[test]
fn the_readme_model_example_runs() {
    let readme = repo_file("README.md");
    let block = indented_block(
        &readme,
        "scripts/fetch-model.sh            # SmolLM2-135M-Instruct GGUF into models/",
    );
    // The fetch, as the model tests do it (offline after the first time).
    let gguf = crate::smollm2::model();
    let run: Vec<&str> = block[1].split_whitespace().collect();
    assert_eq!(run[..3], ["batos", "run", "--model"], "{block:?}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    assert_eq!(
        root.join(run[3]).canonicalize().unwrap(),
        gguf.canonicalize().unwrap()
    );
    let k = Kernel::start_with(Options {
        args: vec!["--model".into(), gguf.display().to_string()],
        ..Options::default()
    });
    let out = k
        .cli(&[
            "--timeout-ms",
            "60000",
            "infer",
            "What is the capital of France? Answer in one sentence.",
            "--max-tokens",
            "24",
        ])
        .json();
    assert!(out["text"].as_str().unwrap().contains("Paris"), "{out}");
    assert_eq!(k.cli(&["experts"]).json()["experts"], serde_json::json!([]));
}

#[test]
fn the_readme_memory_example_runs() {
    let k = Kernel::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    std::fs::write(
        dir.path().join("notes/prototypes.md"),
        "Every object delegates what it lacks to its parent, along parent*.",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("notes/other.md"),
        "Nothing about that here.",
    )
    .unwrap();
    let lines: Vec<String> = indented_block(
        &repo_file("README.md"),
        "batos ingest notes/*.md           # each file's path is its source",
    )
    .into_iter()
    .filter(|l| !l.starts_with("batos inspect")) // interactive: tests/e2e/inspector.rs drives it
    .collect();
    let out = run_lines(dir.path(), &[("BATOS_ENDPOINT", &k.endpoint)], &lines);
    assert_eq!(json(&out[0])["documents"], 2);
    let hits = json(&out[1]);
    assert_eq!(hits["hits"][0]["source"], "notes/prototypes.md", "{hits}");
}

#[test]
fn the_readme_curve_walk_through_runs() {
    if !batos_client::keys::curve_available() {
        eprintln!("skipped: this libzmq has no CURVE");
        return;
    }
    let readme = repo_file("README.md");
    let dir = tempfile::tempdir().unwrap();
    // The two clients of the walk-through make their keys first.
    run_lines(
        dir.path(),
        &[],
        &["batos keys new alice".into(), "batos keys new bob".into()],
    );
    let setup = indented_block(
        &readme,
        "batos keys new kernel --dir keys          # keys/kernel.key (0600), keys/kernel.pub",
    );
    let run_at = setup
        .iter()
        .position(|l| l.starts_with("BATOS_BRIDGE_CURVE_KEY="))
        .expect("the block starts the kernel");
    run_lines(dir.path(), &[], &setup[..run_at]);
    // The kernel as the block starts it, its keys from the block's own
    // variables; on loopback ports (no test binds every address).
    let vars: Vec<(String, String)> = setup[run_at]
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), dir.path().join(v).display().to_string()))
        .collect();
    assert_eq!(vars.len(), 2, "{:?}", setup[run_at]);
    let k = Kernel::start_with(Options {
        env: vars,
        ..Options::default()
    });
    std::fs::copy(
        dir.path().join("keys/kernel.pub"),
        dir.path().join("kernel.pub"),
    )
    .unwrap();
    let client = indented_block(
        &readme,
        "batos --endpoint tcp://kernel-host:5555 --server-key kernel.pub --key alice.key ping",
    )
    .join("\n")
    .replace("tcp://kernel-host:5555", &k.endpoint);
    let bob_writes = format!(
        "batos --endpoint {} --server-key kernel.pub --key bob.key set genesis_obj x 1 || echo refused=$?",
        k.endpoint
    );
    let out = run_lines(dir.path(), &[], &[client, bob_writes]);
    assert_eq!(json(&out[0])["protocol"], 1);
    assert_eq!(out[1], "refused=1", "bob is listed as read");
}

/// What each example of `docs/method-abi.md` does, by its first comment.
#[test]
fn the_method_abi_examples_install_and_do_what_they_say() {
    let k = Kernel::start();
    let c = k.dealer();
    let blocks = fenced_blocks(&repo_file("docs/method-abi.md"), "wat");
    let named = |name: &str| -> String {
        blocks
            .iter()
            .find(|b| b.starts_with(&format!(";; {name}:")))
            .unwrap_or_else(|| panic!("no example {name:?}"))
            .clone()
    };
    let install = |oid: u64, selector: &str, wat: &str| {
        c.ok(
            "create_method",
            &[
                ("oid", Value::from(oid)),
                ("selector", s(selector)),
                ("wat", s(wat)),
            ],
        );
    };
    let obj = c.create(&[]);

    let first = blocks
        .iter()
        .find(|b| b.starts_with("(module"))
        .expect("the minimal example");
    install(obj, "answer", first);
    assert_eq!(c.send_value(obj, "answer", vec![]), Value::from(42));

    install(obj, "increment", &named("counter"));
    assert_eq!(c.send_value(obj, "increment", vec![]), Value::from(1));
    assert_eq!(c.send_value(obj, "increment", vec![]), Value::from(2));

    install(obj, "add", &named("add"));
    assert_eq!(
        c.send_value(obj, "add", vec![Value::from(2), Value::from(3)]),
        Value::from(5)
    );

    install(obj, "scale", &named("scale"));
    c.set(obj, "x", Value::F64(2.0));
    assert_eq!(
        c.send_value(obj, "scale", vec![Value::F64(3.0)]),
        Value::F64(6.0)
    );
    assert_eq!(c.get(obj, "x"), Value::F64(6.0));

    install(obj, "greet", &named("greet"));
    assert_eq!(c.send_value(obj, "greet", vec![]), s("nobody"));
    c.set(obj, "name", s("ada"));
    assert_eq!(c.send_value(obj, "greet", vec![]), s("ada"));
    assert_eq!(c.get(obj, "greeted"), s("ada"));

    install(obj, "echo", &named("echo"));
    let any = map(&[("list", Value::Array(vec![Value::Nil, Value::from(-1)]))]);
    assert_same(&c.send_value(obj, "echo", vec![any.clone()]), &any, "echo");

    install(obj, "remember", &named("remember"));
    assert_same(
        &c.send_value(obj, "remember", vec![any.clone()]),
        &any,
        "remember",
    );
    assert_same(&c.get(obj, "memo"), &any, "memo");

    let other = c.create(&[]);
    install(other, "increment", &named("counter"));
    install(obj, "poke", &named("poke"));
    assert_eq!(
        c.send_value(obj, "poke", vec![Value::from(other)]),
        Value::from(3)
    );
    assert_eq!(c.get(other, "count"), Value::from(1));

    assert_eq!(
        blocks.len(),
        8,
        "every example of the page is checked above"
    );
}
