//! `batos-model-bench`: the cognitive core on this machine, measured.
//!
//! - The small model (SmolLM2-135M GGUF, `scripts/fetch-model.sh`): load
//!   time, tokens/s and time to first token called directly through the
//!   mistral.rs backend, then the same generations through the bridge
//!   (`infer`), as a ratio in one run; and a doesNotUnderstand round trip
//!   (grammar-constrained generation, audit, install or refusal).
//! - Experts (mistral.rs 0.8.1 applies PEFT adapters to safetensors models
//!   only): on the tiny generated Llama, tokens/s with no expert and with
//!   one, and the cost of switching experts when only one fits the hot budget.
//!
//! ```sh
//! cargo build --release -p batos-kernel --bin batos && cargo build --release -p batos-bench && target/release/batos-model-bench --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf
//! ```

#[cfg(not(feature = "mistral"))]
fn main() {
    eprintln!("batos-model-bench needs the `mistral` feature");
    std::process::exit(2);
}

#[cfg(feature = "mistral")]
fn main() -> anyhow::Result<()> {
    bench::main()
}

#[cfg(feature = "mistral")]
#[path = "support/kernel.rs"]
mod support;

#[cfg(feature = "mistral")]
mod bench {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _, Result};
    use batos_client::Client;
    use batos_cognition::inference::mistral::MistralEngine;
    use batos_cognition::inference::{CallControl, Engine, EngineRequest, ModelSource, ModelSpec};
    use batos_cognition::tiny_model::{write_lora_adapter, write_tiny_llama};
    use clap::Parser;
    use rmpv::Value;

    use crate::support::{field, Kernel};

    #[derive(Parser, Debug)]
    #[command(name = "batos-model-bench", about = "Benchmark the cognitive core")]
    struct Args {
        /// The GGUF model.
        #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
        gguf: PathBuf,
        /// The kernel binary [default: `batos` next to this binary].
        #[arg(long)]
        batos: Option<PathBuf>,
        /// Generations per measurement.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Tokens per generation.
        #[arg(long, default_value_t = 64)]
        tokens: usize,
    }

    const PROMPT: &str = "Write a short story about a robot who learns to paint.";

    /// Median of the samples.
    fn median(mut xs: Vec<f64>) -> f64 {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        xs[xs.len() / 2]
    }

    fn infer(client: &mut Client, expert: Option<&str>, tokens: usize) -> Result<(Duration, u64)> {
        let mut fields = vec![
            ("prompt", Value::from(PROMPT)),
            ("max_tokens", Value::from(tokens as u64)),
        ];
        if let Some(e) = expert {
            fields.push(("expert", Value::from(e)));
        }
        let t = Instant::now();
        let out = client.call("infer", fields)?;
        let elapsed = t.elapsed();
        let out = out.map_err(|e| anyhow::anyhow!("infer: {} {}", e.code.as_str(), e.message))?;
        Ok((
            elapsed,
            field(&out, "tokens").and_then(Value::as_u64).unwrap_or(0),
        ))
    }

    pub fn main() -> Result<()> {
        let args = Args::parse();
        let batos = match &args.batos {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("batos"),
        };
        if !args.gguf.is_file() {
            bail!(
                "{} is missing: run scripts/fetch-model.sh",
                args.gguf.display()
            );
        }
        let hf = tempfile::tempdir()?;
        println!("| measure | value |\n|---|---|");

        // Direct: the backend in this process.
        let spec = ModelSpec {
            source: ModelSource::Gguf(args.gguf.canonicalize()?),
            isq: None,
            name: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        };
        let t = Instant::now();
        let engine = MistralEngine::load(&spec, hf.path())?;
        println!(
            "| load SmolLM2-135M Q4_1 GGUF (direct) | {:.2} s |",
            t.elapsed().as_secs_f64()
        );
        let request = EngineRequest {
            prompt: PROMPT.into(),
            expert: None,
            max_tokens: args.tokens,
            constraint: None,
            temperature: None,
        };
        let _ = engine.generate(&request, &CallControl::new(Duration::from_secs(300)))?;
        let (mut direct, mut ttft, mut tps) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            let out = engine.generate(&request, &CallControl::new(Duration::from_secs(300)))?;
            let s = t.elapsed().as_secs_f64();
            direct.push(s);
            tps.push(out.tokens as f64 / s);
            if let Some(f) = out.first_token {
                ttft.push(f.as_secs_f64());
            }
        }
        drop(engine);
        let direct_s = median(direct);
        println!(
            "| generate {} tokens, direct (median of {}) | {:.3} s, **{:.1} tokens/s**, time to first token {:.0} ms |",
            args.tokens,
            args.runs,
            direct_s,
            median(tps),
            median(ttft) * 1e3
        );

        // Through the bridge: the same generations as `infer` requests.
        let config = format!("[inference]\nmodel = {:?}\n", spec_path(&spec));
        let t = Instant::now();
        let kernel = Kernel::start(&batos, &config)?;
        println!(
            "| kernel start with the model (to the ready line) | {:.2} s |",
            t.elapsed().as_secs_f64()
        );
        let mut client = Client::connect(&kernel.endpoint, 300_000)?;
        infer(&mut client, None, args.tokens)?;
        let mut bridge = Vec::new();
        for _ in 0..args.runs {
            bridge.push(infer(&mut client, None, args.tokens)?.0.as_secs_f64());
        }
        let bridge_s = median(bridge);
        println!(
            "| generate {} tokens through the bridge (`infer`, median of {}) | {:.3} s: **{:+.1}%** against direct |",
            args.tokens,
            args.runs,
            bridge_s,
            (bridge_s / direct_s - 1.0) * 100.0
        );

        // doesNotUnderstand with the model.
        let o = match client.call(
            "create_object",
            vec![(
                "slots",
                Value::Map(vec![(Value::from("count"), Value::from(3))]),
            )],
        )? {
            Ok(v) => field(&v, "oid").and_then(Value::as_u64).context("oid")?,
            Err(e) => bail!("create_object: {}", e.message),
        };
        let t = Instant::now();
        let r = client.call(
            "send",
            vec![
                ("oid", Value::from(o)),
                ("selector", Value::from("answer")),
                ("args", Value::Array(vec![])),
            ],
        )?;
        let outcome = match r {
            Ok(v) => format!(
                "installed (generated: {})",
                field(&v, "generated")
                    .map(|g| g.to_string())
                    .unwrap_or_default()
            ),
            Err(e) => format!(
                "{} ({})",
                e.code.as_str(),
                e.message.chars().take(80).collect::<String>()
            ),
        };
        println!(
            "| doesNotUnderstand round trip, small model, 3 attempts × ≤ 512 tokens | {:.1} s: {} |",
            t.elapsed().as_secs_f64(),
            outcome
        );
        drop(kernel);

        // Experts on the tiny generated Llama (safetensors).
        let dir = tempfile::tempdir()?;
        write_tiny_llama(&dir.path().join("model"), 1);
        write_lora_adapter(&dir.path().join("adapters/ALFRED"), 2, 8);
        write_lora_adapter(&dir.path().join("adapters/BRICK"), 3, 8);
        let model_bytes = std::fs::metadata(dir.path().join("model/model.safetensors"))?.len();
        let config = format!(
            "[inference]\nmodel = {:?}\nadapters_dir = {:?}\nhot_bytes = {}\n",
            dir.path().join("model").display().to_string(),
            dir.path().join("adapters").display().to_string(),
            model_bytes * 3 / 2
        );
        let kernel = Kernel::start(&batos, &config)?;
        let mut client = Client::connect(&kernel.endpoint, 300_000)?;
        let tokens = 128;
        infer(&mut client, None, tokens)?;
        let base = median(
            (0..args.runs)
                .map(|_| infer(&mut client, None, tokens).map(|r| r.1 as f64 / r.0.as_secs_f64()))
                .collect::<Result<Vec<_>>>()?,
        );
        infer(&mut client, Some("ALFRED"), tokens)?;
        let with = median(
            (0..args.runs)
                .map(|_| {
                    infer(&mut client, Some("ALFRED"), tokens)
                        .map(|r| r.1 as f64 / r.0.as_secs_f64())
                })
                .collect::<Result<Vec<_>>>()?,
        );
        println!("| tiny Llama ({} KB), {tokens} tokens through the bridge | {:.0} tokens/s no expert, {:.0} tokens/s with an expert |", model_bytes / 1024, base, with);
        // Only one expert fits hot: alternating forces a switch (evict + build) each time.
        let mut switch = Vec::new();
        let mut steady = Vec::new();
        for i in 0..args.runs * 2 {
            let e = if i % 2 == 0 { "BRICK" } else { "ALFRED" };
            switch.push(infer(&mut client, Some(e), 1)?.0.as_secs_f64());
            steady.push(infer(&mut client, Some(e), 1)?.0.as_secs_f64());
        }
        println!(
            "| expert switch (one hot slot; 1-token infer that must load the other expert, minus one that need not) | {:.1} ms |",
            (median(switch) - median(steady)) * 1e3
        );
        Ok(())
    }

    fn spec_path(spec: &ModelSpec) -> String {
        match &spec.source {
            ModelSource::Gguf(p) | ModelSource::Safetensors(p) => p.display().to_string(),
        }
    }
}
