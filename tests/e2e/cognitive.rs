//! The cognitive core without a real model: persona adapters absorbed into
//! the image, expert tiers, `infer`, and the doesNotUnderstand model tier
//! driven by the scripted backend (retry on audit failure, provenance,
//! single generation under concurrency, atomic install, clean refusal).

use std::path::Path;

use crate::harness::*;

/// What the scripted model answers: a method in Python (with prose around
/// it, as models write).
const VALID: &str = "Here it is:\n```python\ndef answer(self):\n    return 42\n```";

/// Refused by the compiler: an import is outside the method subset.
const BREAKS_AUDIT: &str = "def answer(self):\n    import os\n    return 1\n";

fn write_adapter(dir: &Path, name: &str, weights: &[u8]) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("adapter_config.json"),
        r#"{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}"#,
    )
    .unwrap();
    std::fs::write(d.join("adapter_model.safetensors"), weights).unwrap();
}

/// A kernel on the scripted backend answering `responses` in order, with
/// persona adapters BRICK and ROBIN.
fn scripted_kernel(responses: &[&str], attempts: u32) -> Kernel {
    let root = new_image_dir();
    let script = root.path().join("script.json");
    let body = serde_json::json!({"model": "scripted-test", "responses": responses});
    std::fs::write(&script, body.to_string()).unwrap();
    let adapters = root.path().join("adapters");
    write_adapter(&adapters, "BRICK", b"brick weights");
    write_adapter(&adapters, "ROBIN", b"robin weights, longer");
    let config = format!(
        "[inference]\nengine = \"scripted\"\nmodel = {:?}\nadapters_dir = {:?}\ndnu_attempts = {attempts}\n",
        script.display().to_string(),
        adapters.display().to_string()
    );
    Kernel::start_on(root, Options::config(&config))
}

#[test]
fn adapters_are_absorbed_once_and_a_changed_file_is_a_new_version() {
    let root = new_image_dir();
    let adapters = root.path().join("adapters");
    write_adapter(&adapters, "BABS", b"v1");
    let opts = Options::config(&format!(
        "[inference]\nadapters_dir = {:?}\n",
        adapters.display().to_string()
    ));
    let k = Kernel::start_on(root, opts.clone());
    let c = k.dealer();
    let listed = c.experts();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1.as_str()),
        ("BABS", "cold")
    );
    let mm = c.root("memory_manager_obj");
    let expert = ref_oid(must(&c.get(mm, "experts"), "BABS"));
    assert_eq!(c.get(expert, "versions").as_array().unwrap().len(), 1);
    let objects = c.object_count();
    // No model: infer with or without an expert is unavailable.
    c.expect_err(
        "infer",
        &[("prompt", s("hi")), ("expert", s("BABS"))],
        "unavailable",
    );

    // Unchanged files are not absorbed again.
    let k = k.restart();
    let c = k.dealer();
    assert_eq!(c.object_count(), objects);
    assert_eq!(c.get(expert, "versions").as_array().unwrap().len(), 1);

    // A changed file becomes a new version; the old one stays in the image.
    let first_hash = c.get(expert, "hash");
    std::fs::write(adapters.join("BABS/adapter_model.safetensors"), b"v2").unwrap();
    let k = k.restart();
    let c = k.dealer();
    let versions = c.get(expert, "versions");
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert!(!same(&c.get(expert, "hash"), &first_hash));
    let old = ref_oid(&versions.as_array().unwrap()[0]);
    assert_same(&c.get(old, "hash"), &first_hash, "old version kept");
    // Weights live in the image's blob store; slots (and events) carry their hash.
    let weights = c.get(old, "adapter_weights");
    assert_eq!(weights.as_str().map(str::len), Some(64), "{weights}");
}

#[test]
fn infer_runs_with_the_requested_expert_made_hot() {
    let k = scripted_kernel(&["first answer", "second answer"], 3);
    let c = k.dealer();
    let tiers = c.experts();
    assert_eq!(
        tiers
            .iter()
            .map(|(n, t, _)| (n.as_str(), t.as_str()))
            .collect::<Vec<_>>(),
        [("BRICK", "cold"), ("ROBIN", "cold")]
    );
    let out = c.ok("infer", &[("prompt", s("hello"))]);
    assert_eq!(must(&out, "text").as_str(), Some("first answer"));
    assert!(matches!(must(&out, "expert"), Value::Nil));
    let out = c.ok("infer", &[("prompt", s("hello")), ("expert", s("ROBIN"))]);
    assert_eq!(must(&out, "text").as_str(), Some("second answer"));
    assert_eq!(must(&out, "expert").as_str(), Some("ROBIN"));
    let tiers = c.experts();
    assert_eq!(tiers[1].1, "hot", "{tiers:?}");
    assert_eq!(tiers[0].1, "cold", "{tiers:?}");
    c.expect_err(
        "infer",
        &[("prompt", s("x")), ("expert", s("NOBODY"))],
        "bad_request",
    );
    c.expect_err(
        "infer",
        &[("prompt", s("x")), ("max_tokens", Value::from(0))],
        "bad_request",
    );
    let m = k.scrape();
    assert!(
        m.count(
            "batos_expert_tier_moves_total",
            &[("from", "warm"), ("to", "hot")]
        ) >= 1.0
    );
}

fn method_history(c: &Client, oid: u64, selector: &str) -> Vec<Value> {
    let state = c.ok("get_full_state", &[("oid", Value::from(oid))]);
    field(must(&state, "methods"), selector)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_model_tier_retries_after_a_refusal_and_installs_python_with_provenance() {
    let k = scripted_kernel(&[BREAKS_AUDIT, VALID], 3);
    let c = k.dealer();
    let o = c.create(&[("note", s("asks for the answer"))]);
    let r = c.send(o, "answer", vec![]).expect("generated");
    assert_eq!(must(&r, "generated").as_bool(), Some(true), "{r}");
    assert_eq!(must(&r, "value").as_i64(), Some(42));
    let history = method_history(&c, o, "answer");
    assert_eq!(history.len(), 1, "{history:?}");
    let provenance = must(&history[0], "provenance");
    assert_eq!(must(provenance, "kind").as_str(), Some("model"));
    assert_eq!(must(provenance, "model").as_str(), Some("scripted-test"));
    assert_eq!(uint(must(provenance, "attempts")), 2, "{provenance}");
    let hash = must(provenance, "prompt_hash").as_str().unwrap();
    assert_eq!(hash.len(), 64, "sha-256 of the prompt: {hash}");
    // What the model wrote is kept with the version, to read and review.
    let source = must(&history[0], "source");
    assert_eq!(must(source, "language").as_str(), Some("python"));
    assert_eq!(
        must(source, "text").as_str(),
        Some("def answer(self):\n    return 42\n"),
        "the def, without the prose around it"
    );
    // Installed: the next send runs it without generating.
    let r = c.send(o, "answer", vec![]).expect("runs");
    assert_eq!(must(&r, "generated").as_bool(), Some(false));
    let m = k.scrape();
    assert_eq!(
        m.count("batos_dnu_generations_total", &[("outcome", "refused")]),
        1.0
    );
    assert_eq!(
        m.count("batos_dnu_generations_total", &[("outcome", "installed")]),
        1.0
    );
}

#[test]
fn a_failed_generation_leaves_the_image_unchanged() {
    let k = scripted_kernel(&[BREAKS_AUDIT, BREAKS_AUDIT], 2);
    let c = k.dealer();
    let o = c.create(&[("x", Value::from(1))]);
    let before = c.slots(o);
    let objects = c.object_count();
    let (code, message) = c.send(o, "answer", vec![]).expect_err("refused");
    assert_eq!(code, "does_not_understand", "{message}");
    assert!(message.contains("2 attempt"), "{message}");
    assert!(
        message.contains("python: import"),
        "the compiler's refusal: {message}"
    );
    assert_same(&c.slots(o), &before, "slots unchanged");
    assert!(method_history(&c, o, "answer").is_empty());
    assert_eq!(c.object_count(), objects);
}

#[test]
fn concurrent_does_not_understand_generates_once() {
    // One scripted answer: a second generation would fail.
    let k = scripted_kernel(&[VALID], 1);
    let c = k.dealer();
    let o = c.create(&[]);
    let n = 8;
    for _ in 0..n {
        let id = c.fresh_id();
        c.send_request(
            "send",
            &id,
            &[
                ("oid", Value::from(o)),
                ("selector", s("answer")),
                ("args", Value::Array(vec![])),
            ],
        );
    }
    let replies = c.recv_replies(n);
    let mut generated = 0;
    for r in &replies {
        let result = r
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("send failed: {e:?}"));
        assert_eq!(must(result, "value").as_i64(), Some(42));
        generated += usize::from(must(result, "generated").as_bool() == Some(true));
    }
    assert_eq!(generated, 1, "exactly one reply installed the method");
    assert_eq!(method_history(&c, o, "answer").len(), 1);
    let m = k.scrape();
    assert_eq!(
        m.count("batos_dnu_generations_total", &[("outcome", "installed")]),
        1.0
    );
}

#[test]
fn a_missing_model_is_a_clear_error_and_the_kernel_runs_without_one() {
    let k = Kernel::start_with(Options {
        no_network: true,
        ..Options::config("[inference]\nmodel = \"/nonexistent/model.gguf\"\n")
    });
    let c = k.dealer();
    let log = k.log_tail();
    assert!(
        log.contains("/nonexistent/model.gguf") && log.contains("does not exist"),
        "the log names the missing model: {log}"
    );
    let message = c.expect_err("infer", &[("prompt", s("hi"))], "unavailable");
    assert!(message.contains("no model"), "{message}");
    // Everything else works.
    let o = c.create(&[("x", Value::from(1))]);
    assert_eq!(c.get(o, "x").as_u64(), Some(1));
}
