//! The cognitive core on a real mistral.rs model, offline: a tiny
//! random-weight Llama and LoRA adapters written by the test, loaded by the
//! real kernel inside a network namespace with no network (`unshare -n`).
//! Greedy decoding makes outputs deterministic: the same expert gives the
//! same text, different experts give different texts, whatever runs
//! beside them.

use crate::harness::*;
use crate::reference::{chat_prompt, Reference};
use batos_cognition::tiny_model::{decode, write_lora_adapter, write_tiny_llama};

/// A kernel on the tiny model with experts ALFRED and BRICK; `extra` is
/// appended to the `[inference]` section.
fn tiny_kernel(extra: &str) -> Kernel {
    let root = new_image_dir();
    let model = root.path().join("model");
    write_tiny_llama(&model, 1);
    let adapters = root.path().join("adapters");
    write_lora_adapter(&adapters.join("ALFRED"), 2, 8);
    write_lora_adapter(&adapters.join("BRICK"), 3, 8);
    let config = format!(
        "[inference]\nmodel = {:?}\nadapters_dir = {:?}\ndefault_max_tokens = 12\n{extra}\n",
        model.display().to_string(),
        adapters.display().to_string()
    );
    let opts = Options {
        no_network: true,
        ..Options::config(&config)
    };
    Kernel::start_on(root, opts)
}

fn infer(c: &Client, expert: Option<&str>) -> String {
    let mut fields = vec![("prompt", s("Tell me about the image."))];
    if let Some(e) = expert {
        fields.push(("expert", s(e)));
    }
    let out = c.ok("infer", &fields);
    assert_eq!(uint(must(&out, "tokens")), 12, "{out}");
    must(&out, "text").as_str().unwrap().to_string()
}

fn tiers(c: &Client) -> Vec<(String, String)> {
    c.experts()
        .into_iter()
        .map(|(name, tier, _)| (name, tier))
        .collect()
}

#[test]
fn experts_switch_per_request_on_one_model_offline() {
    let k = tiny_kernel("");
    let c = k.dealer();
    let base = infer(&c, None);
    let alfred = infer(&c, Some("ALFRED"));
    let brick = infer(&c, Some("BRICK"));
    assert_ne!(alfred, brick, "different adapters, different greedy output");
    assert_ne!(base, alfred);
    assert_eq!(
        infer(&c, Some("ALFRED")),
        alfred,
        "same adapter, same output"
    );
    assert_eq!(
        infer(&c, None),
        base,
        "the base model is untouched by adapters"
    );
    assert_eq!(
        tiers(&c),
        [
            ("ALFRED".into(), "hot".into()),
            ("BRICK".into(), "hot".into())
        ]
    );

    // Pipelined requests with different experts each get their own output.
    let order = [None, Some("BRICK"), Some("ALFRED"), None, Some("BRICK")];
    for expert in order {
        let mut fields = vec![("prompt", s("Tell me about the image."))];
        if let Some(e) = expert {
            fields.push(("expert", s(e)));
        }
        c.send_request("infer", &c.fresh_id(), &fields);
    }
    let replies = c.recv_replies(order.len());
    for r in replies {
        let result = r
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("infer failed: {e:?}"));
        let text = must(result, "text").as_str().unwrap();
        let want = match must(result, "expert").as_str() {
            None => &base,
            Some("ALFRED") => &alfred,
            Some("BRICK") => &brick,
            Some(other) => panic!("unexpected expert {other}"),
        };
        assert_eq!(text, want, "each request ran with exactly its own expert");
    }
}

/// mistral.rs's greedy tokens, with no expert and with each expert, are
/// exactly those of an independent f64 forward pass with the adapter merged
/// as PEFT defines it: the model runs, and runs with the right adapter at
/// the right scale, not merely with some difference.
#[test]
fn greedy_tokens_match_an_independent_reference_forward_pass() {
    let k = tiny_kernel("");
    let c = k.dealer();
    let root = k.root();
    let prompt = chat_prompt("Tell me about the image.");
    for expert in [None, Some("ALFRED"), Some("BRICK")] {
        let adapter = expert.map(|e| root.path().join("adapters").join(e));
        let reference = Reference::load(&root.path().join("model"), adapter.as_deref());
        let want = decode(&reference.greedy(&prompt, 12));
        assert_eq!(want.chars().count(), 12, "twelve ordinary tokens: {want:?}");
        assert_eq!(infer(&c, expert), want, "expert {expert:?}");
    }
    // Longer, through many steps of mistral.rs's KV cache.
    let reference = Reference::load(&root.path().join("model"), None);
    let message = "Describe every object you hold, slot by slot.";
    let want = decode(&reference.greedy(&chat_prompt(message), 64));
    let out = c.ok(
        "infer",
        &[("prompt", s(message)), ("max_tokens", Value::from(64))],
    );
    assert_eq!(must(&out, "text").as_str(), Some(want.as_str()), "{out}");
}

#[test]
fn the_hot_budget_evicts_and_a_reloaded_expert_answers_as_before() {
    // Room for one hot expert only (each costs the base weights plus its adapter).
    let k = tiny_kernel("hot_bytes = 600000");
    let c = k.dealer();
    let alfred = infer(&c, Some("ALFRED"));
    assert_eq!(
        tiers(&c),
        [
            ("ALFRED".into(), "hot".into()),
            ("BRICK".into(), "cold".into())
        ]
    );
    let brick = infer(&c, Some("BRICK"));
    assert_eq!(
        tiers(&c),
        [
            ("ALFRED".into(), "warm".into()),
            ("BRICK".into(), "hot".into())
        ],
        "ALFRED evicted to RAM"
    );
    // Built again after BRICK: no adapter leaks from one build into another.
    assert_eq!(infer(&c, Some("ALFRED")), alfred);
    assert_eq!(infer(&c, Some("BRICK")), brick);
}

#[test]
fn does_not_understand_with_the_model_installs_or_refuses_cleanly() {
    let k = tiny_kernel("dnu_attempts = 2\ndnu_max_tokens = 48");
    let c = k.dealer();
    let o = c.create(&[("balance", Value::from(10))]);
    let before = c.slots(o);
    match c.send(o, "doubledBalance", vec![]) {
        Ok(r) => {
            // A random model rarely writes a valid module, but if it does, it is installed.
            assert_eq!(must(&r, "generated").as_bool(), Some(true), "{r}");
            let state = c.ok("get_full_state", &[("oid", Value::from(o))]);
            let versions = must(must(&state, "methods"), "doubledBalance");
            let provenance = must(&versions.as_array().unwrap()[0], "provenance");
            assert_eq!(must(provenance, "kind").as_str(), Some("model"));
        }
        Err((code, message)) => {
            assert_eq!(code, "does_not_understand", "{message}");
            assert!(message.contains("2 attempt"), "{message}");
            assert_same(&c.slots(o), &before, "nothing kept");
        }
    }
}

#[test]
fn with_a_model_memory_counts_tokens_with_its_tokenizer() {
    let k = tiny_kernel("");
    let c = k.dealer();
    // The tiny tokenizer is byte-level with no merges: one token per ASCII byte.
    let text = "Owls hunt at night.";
    c.ok(
        "ingest",
        &[(
            "documents",
            Value::Array(vec![map(&[("source", s("owls")), ("text", s(text))])]),
        )],
    );
    let hits = must(
        &c.ok(
            "search_memory",
            &[("query", s("owls")), ("kind", s("chunk"))],
        ),
        "hits",
    )
    .clone();
    let chunk = uint(must(&hits.as_array().unwrap()[0], "chunk"));
    let slots = c.slots(chunk);
    assert_eq!(
        uint(must(&slots, "token_count")),
        text.len() as u64,
        "{slots}"
    );
    let tokenizer = must(must(&slots, "metadata"), "tokenizer")
        .as_str()
        .unwrap();
    assert!(tokenizer.starts_with("tokenizer:"), "{tokenizer}");

    // The model writes the summaries.
    let source = ref_oid(must(&slots, "source_object"));
    let top = ref_oid(&k.wait_for_slot(&c, source, "summary"));
    let summary = c.slots(top);
    let by = must(&summary, "summarizer").as_str().unwrap();
    assert!(by.starts_with("model:"), "{summary}");
    assert_same(
        must(&summary, "child_chunks*"),
        &parents(&[chunk]),
        "one chunk under it",
    );
}

/// mistral.rs's real generation loop honours the deadline: the stream is
/// dropped mid-generation, the caller gets `unavailable`, and the model
/// then answers exactly as before.
#[test]
fn a_generation_past_its_deadline_stops_and_the_model_answers_as_before() {
    let k = tiny_kernel("timeout_ms = 500");
    let c = k.dealer();
    let before = infer(&c, None);
    // The tiny model never ends early, so this runs all 4000 tokens
    // unless stopped: seconds on a CPU, against a 500 ms deadline.
    let message = c.expect_err(
        "infer",
        &[
            ("prompt", s("Tell me about the image.")),
            ("max_tokens", Value::from(4000)),
        ],
        "unavailable",
    );
    assert!(message.contains("deadline"), "{message}");
    assert_eq!(
        infer(&c, None),
        before,
        "nothing left over from the stopped one"
    );
}

/// In-situ quantization of the safetensors model at load.
#[test]
fn in_situ_quantization_loads_the_model_and_it_answers_deterministically() {
    let k = tiny_kernel("isq = \"Q8_0\"");
    let c = k.dealer();
    let first = infer(&c, None);
    assert_eq!(infer(&c, None), first, "greedy decoding is deterministic");
    let log = k.log_tail();
    assert!(
        log.contains("Applying ISQ to Some(Q8_0)"),
        "mistral.rs (pinned 0.8.1) reports the quantization: {log}"
    );
}
