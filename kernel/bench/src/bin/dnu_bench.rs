//! `batos-dnu-bench`: how often doesNotUnderstand writes a method that is
//! right. Each intent of `kernel/bench/dnu/intents.json` is a receiver's
//! slots, a message nobody understands, and what the re-sent message must
//! answer and leave in the slots; the kernel's model tier writes the
//! method, the bench checks the reply and the slots. Reported per backend
//! and per language (the WAT-writing tier, the baseline, first), with the
//! held-out intents apart.
//!
//! ```sh
//! target/release/batos-dnu-bench [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--scripted]
//! ```

#[path = "support/kernel.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use batos_client::Client;
use clap::Parser;
use rmpv::Value;
use serde_json::Value as Json;

use support::{field, Kernel};

#[derive(Parser, Debug)]
#[command(name = "batos-dnu-bench", about = "doesNotUnderstand success rate")]
struct Args {
    /// The kernel binary [default: `batos` next to this binary].
    #[arg(long)]
    batos: Option<PathBuf>,
    /// A model (GGUF file or safetensors folder); repeat for several.
    #[arg(long)]
    model: Vec<PathBuf>,
    /// Also run the scripted backend answering each intent's reference
    /// method (checks the checker, not a model).
    #[arg(long)]
    scripted: bool,
    /// The intents file.
    #[arg(long, default_value = "kernel/bench/dnu/intents.json")]
    intents: PathBuf,
    /// Languages, in order ("wat" is the baseline).
    #[arg(long, value_delimiter = ',', default_value = "wat,python")]
    languages: Vec<String>,
    /// Generation attempts per intent.
    #[arg(long, default_value_t = 2)]
    attempts: u32,
    /// Tokens per attempt.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
}

struct Intent {
    id: String,
    heldout: bool,
    slots: Json,
    selector: String,
    args: Vec<Json>,
    expect: Json,
    expect_slots: Json,
    reference: String,
}

fn load(path: &Path) -> Result<Vec<Intent>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let doc: Json = serde_json::from_str(&text)?;
    doc["intents"]
        .as_array()
        .context("intents")?
        .iter()
        .map(|i| {
            Ok(Intent {
                id: i["id"].as_str().context("id")?.to_string(),
                heldout: i["split"] == "heldout",
                slots: i["slots"].clone(),
                selector: i["selector"].as_str().context("selector")?.to_string(),
                args: i["args"].as_array().cloned().unwrap_or_default(),
                expect: i["expect"].clone(),
                expect_slots: i["expect_slots"].clone(),
                reference: i["reference"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::from)
            .unwrap_or_else(|| Value::F64(n.as_f64().unwrap_or(0.0))),
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Json::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
                .collect(),
        ),
    }
}

/// Whether the kernel's `got` is the expected JSON value (numbers by value).
fn same(got: &Value, want: &Json) -> bool {
    match (got, want) {
        (Value::Nil, Json::Null) => true,
        (Value::Boolean(a), Json::Bool(b)) => a == b,
        (Value::Integer(_) | Value::F64(_) | Value::F32(_), Json::Number(n)) => {
            let g = match got {
                Value::Integer(i) => i.as_f64().unwrap_or(f64::NAN),
                Value::F64(f) => *f,
                Value::F32(f) => f64::from(*f),
                _ => f64::NAN,
            };
            (g - n.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        }
        (Value::String(a), Json::String(b)) => a.as_str() == Some(b.as_str()),
        (Value::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Map(_), Json::Object(b)) => b
            .iter()
            .all(|(k, v)| field(got, k).is_some_and(|g| same(g, v))),
        _ => false,
    }
}

fn oid_of(v: &Value) -> Result<u64> {
    field(v, "oid").and_then(Value::as_u64).context("an oid")
}

/// The receiver's slots as values: `{"$obj": {...}}` becomes a new object.
fn slots_of(client: &mut Client, slots: &Json) -> Result<Value> {
    let mut out = Vec::new();
    for (k, v) in slots.as_object().context("slots")? {
        let value = match v.get("$obj") {
            Some(inner) => {
                let made = client
                    .call("create_object", vec![("slots", to_value(inner))])?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                Value::Map(vec![(Value::from("$ref"), Value::from(oid_of(&made)?))])
            }
            None => to_value(v),
        };
        out.push((Value::from(k.as_str()), value));
    }
    Ok(Value::Map(out))
}

/// Runs one intent: true when the reply and the slots are as expected.
fn run(client: &mut Client, intent: &Intent) -> Result<bool> {
    let slots = slots_of(client, &intent.slots)?;
    let made = client
        .call("create_object", vec![("slots", slots)])?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let oid = oid_of(&made)?;
    let reply = client.call(
        "send",
        vec![
            ("oid", Value::from(oid)),
            ("selector", Value::from(intent.selector.as_str())),
            (
                "args",
                Value::Array(intent.args.iter().map(to_value).collect()),
            ),
        ],
    )?;
    let Ok(result) = reply else {
        return Ok(false);
    };
    if !field(&result, "value").is_some_and(|v| same(v, &intent.expect)) {
        return Ok(false);
    }
    let state = client
        .call("get_full_state", vec![("oid", Value::from(oid))])?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let slots = field(&state, "slots").cloned().unwrap_or(Value::Nil);
    Ok(same(&slots, &intent.expect_slots))
}

struct Row {
    backend: String,
    language: String,
    correct: usize,
    total: usize,
    heldout_correct: usize,
    heldout_total: usize,
    seconds: f64,
    failed: Vec<String>,
}

fn measure(
    batos: &Path,
    config: &str,
    intents: &[Intent],
) -> Result<(usize, usize, f64, Vec<String>)> {
    let kernel = Kernel::start(batos, config)?;
    let mut client = Client::connect(&kernel.endpoint, 600_000)?;
    let (mut correct, mut heldout_correct) = (0, 0);
    let mut failed = Vec::new();
    let started = Instant::now();
    for intent in intents {
        if run(&mut client, intent)? {
            correct += 1;
            heldout_correct += usize::from(intent.heldout);
        } else {
            failed.push(intent.id.clone());
        }
    }
    let per = started.elapsed().as_secs_f64() / intents.len().max(1) as f64;
    Ok((correct, heldout_correct, per, failed))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let batos = match &args.batos {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("batos"),
    };
    let intents = load(&args.intents)?;
    if intents.len() < 30 {
        bail!("the suite has {} intents, fewer than 30", intents.len());
    }
    let heldout_total = intents.iter().filter(|i| i.heldout).count();
    let models = if args.model.is_empty() && !args.scripted {
        vec![PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    } else {
        args.model.clone()
    };
    let mut rows = Vec::new();
    for model in &models {
        for language in &args.languages {
            let config = format!(
                "[inference]\nmodel = {:?}\ndnu_attempts = {}\ndnu_max_tokens = {}\ndnu_language = {language:?}\ntimeout_ms = 300000\n",
                model.display().to_string(),
                args.attempts,
                args.max_tokens
            );
            let (correct, heldout_correct, seconds, failed) = measure(&batos, &config, &intents)?;
            rows.push(Row {
                backend: model
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                language: language.clone(),
                correct,
                total: intents.len(),
                heldout_correct,
                heldout_total,
                seconds,
                failed,
            });
        }
    }
    if args.scripted {
        // The scripted backend answers each intent's reference, in order.
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("script.json");
        let responses: Vec<&str> = intents.iter().map(|i| i.reference.as_str()).collect();
        std::fs::write(
            &script,
            serde_json::json!({"model": "scripted-reference", "responses": responses}).to_string(),
        )?;
        let config = format!(
            "[inference]\nengine = \"scripted\"\nmodel = {:?}\ndnu_attempts = 1\ndnu_language = \"python\"\n",
            script.display().to_string()
        );
        let (correct, heldout_correct, seconds, failed) = measure(&batos, &config, &intents)?;
        rows.push(Row {
            backend: "scripted (reference answers)".into(),
            language: "python".into(),
            correct,
            total: intents.len(),
            heldout_correct,
            heldout_total,
            seconds,
            failed,
        });
    }
    println!("| backend | language | correct / total | held-out correct | s per intent | failed |");
    println!("|---|---|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} / {} ({:.0}%) | {} / {} | {:.1} | {} |",
            r.backend,
            r.language,
            r.correct,
            r.total,
            100.0 * r.correct as f64 / r.total as f64,
            r.heldout_correct,
            r.heldout_total,
            r.seconds,
            r.failed.join(", ")
        );
    }
    Ok(())
}
