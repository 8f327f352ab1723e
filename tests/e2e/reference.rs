//! An independent reference forward pass of the tiny Llama, to check the
//! tokens mistral.rs generates against: plain loops in f64 over the
//! weights read back from the files the fixture wrote, with a PEFT LoRA
//! adapter merged the textbook way (`W + (alpha / r) · B·A`). Nothing here
//! shares code with mistral.rs or with the writer beyond the file formats.

use std::path::Path;

use batos_cognition::tiny_model::{encode, SPECIALS};
use safetensors::SafeTensors;

/// A row-major matrix: `rows` outputs of `cols` inputs.
struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.cols, "matrix input width");
        self.data
            .chunks(self.cols)
            .map(|row| row.iter().zip(x).map(|(w, v)| w * v).sum())
            .collect()
    }

    /// `self += scale · b·a`.
    fn add_product(&mut self, b: &Matrix, a: &Matrix, scale: f64) {
        assert_eq!((b.rows, a.cols, b.cols), (self.rows, self.cols, a.rows));
        for i in 0..self.rows {
            for j in 0..self.cols {
                let dot: f64 = (0..b.cols)
                    .map(|k| b.data[i * b.cols + k] * a.data[k * a.cols + j])
                    .sum();
                self.data[i * self.cols + j] += scale * dot;
            }
        }
    }
}

struct Layer {
    input_norm: Vec<f64>,
    post_norm: Vec<f64>,
    q: Matrix,
    k: Matrix,
    v: Matrix,
    o: Matrix,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

/// The tiny Llama, loaded for reference decoding.
pub struct Reference {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f64,
    theta: f64,
    embed: Matrix,
    layers: Vec<Layer>,
    norm: Vec<f64>,
    lm_head: Matrix,
}

fn json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn number(config: &serde_json::Value, key: &str) -> f64 {
    config[key]
        .as_f64()
        .unwrap_or_else(|| panic!("config has no number {key}"))
}

fn tensor(file: &SafeTensors<'_>, name: &str) -> Matrix {
    let view = file
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    let data: Vec<f64> = view
        .data()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    let shape = view.shape();
    let (rows, cols) = match shape {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        other => panic!("tensor {name}: unexpected shape {other:?}"),
    };
    Matrix { rows, cols, data }
}

fn rms_norm(x: &[f64], weight: &[f64], eps: f64) -> Vec<f64> {
    let mean = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let scale = 1.0 / (mean + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v * scale * w).collect()
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

impl Reference {
    /// Loads the model in `model` with the LoRA adapter in `adapter` merged in.
    pub fn load(model: &Path, adapter: Option<&Path>) -> Reference {
        let config = json(&model.join("config.json"));
        let bytes = std::fs::read(model.join("model.safetensors")).expect("read model");
        let file = SafeTensors::deserialize(&bytes).expect("parse model.safetensors");
        let heads = number(&config, "num_attention_heads") as usize;
        let hidden = number(&config, "hidden_size") as usize;
        let mut layers: Vec<Layer> = (0..number(&config, "num_hidden_layers") as usize)
            .map(|i| {
                let t = |name: &str| tensor(&file, &format!("model.layers.{i}.{name}.weight"));
                Layer {
                    input_norm: t("input_layernorm").data,
                    post_norm: t("post_attention_layernorm").data,
                    q: t("self_attn.q_proj"),
                    k: t("self_attn.k_proj"),
                    v: t("self_attn.v_proj"),
                    o: t("self_attn.o_proj"),
                    gate: t("mlp.gate_proj"),
                    up: t("mlp.up_proj"),
                    down: t("mlp.down_proj"),
                }
            })
            .collect();
        if let Some(dir) = adapter {
            let peft = json(&dir.join("adapter_config.json"));
            let scale = number(&peft, "lora_alpha") / number(&peft, "r");
            let bytes = std::fs::read(dir.join("adapter_model.safetensors")).expect("read adapter");
            let file = SafeTensors::deserialize(&bytes).expect("parse adapter");
            for module in peft["target_modules"].as_array().expect("target_modules") {
                let module = module.as_str().expect("a module name");
                for (i, layer) in layers.iter_mut().enumerate() {
                    let p = format!("base_model.model.model.layers.{i}.self_attn.{module}");
                    let a = tensor(&file, &format!("{p}.lora_A.weight"));
                    let b = tensor(&file, &format!("{p}.lora_B.weight"));
                    let target = match module {
                        "q_proj" => &mut layer.q,
                        "v_proj" => &mut layer.v,
                        other => panic!("the reference merges q_proj and v_proj, not {other}"),
                    };
                    target.add_product(&b, &a, scale);
                }
            }
        }
        Reference {
            heads,
            kv_heads: number(&config, "num_key_value_heads") as usize,
            head_dim: hidden / heads,
            eps: number(&config, "rms_norm_eps"),
            theta: number(&config, "rope_theta"),
            embed: tensor(&file, "model.embed_tokens.weight"),
            layers,
            norm: tensor(&file, "model.norm.weight").data,
            lm_head: tensor(&file, "lm_head.weight"),
        }
    }

    /// Rotates each head of `x` (non-interleaved halves, as Hugging Face
    /// Llama) for position `pos`.
    fn rope(&self, x: &mut [f64], pos: usize) {
        let d = self.head_dim;
        for head in x.chunks_mut(d) {
            for i in 0..d / 2 {
                let freq = self.theta.powf(-2.0 * i as f64 / d as f64);
                let (sin, cos) = (pos as f64 * freq).sin_cos();
                let (a, b) = (head[i], head[i + d / 2]);
                head[i] = a * cos - b * sin;
                head[i + d / 2] = b * cos + a * sin;
            }
        }
    }

    /// The logits after the last of `tokens` (causal attention over all of them).
    fn logits(&self, tokens: &[u32]) -> Vec<f64> {
        let d = self.head_dim;
        let group = self.heads / self.kv_heads;
        let mut xs: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                let row = self.embed.cols;
                self.embed.data[t as usize * row..(t as usize + 1) * row].to_vec()
            })
            .collect();
        for layer in &self.layers {
            let mut qs = Vec::with_capacity(xs.len());
            let mut ks = Vec::with_capacity(xs.len());
            let mut vs = Vec::with_capacity(xs.len());
            for (pos, x) in xs.iter().enumerate() {
                let h = rms_norm(x, &layer.input_norm, self.eps);
                let mut q = layer.q.apply(&h);
                let mut k = layer.k.apply(&h);
                self.rope(&mut q, pos);
                self.rope(&mut k, pos);
                qs.push(q);
                ks.push(k);
                vs.push(layer.v.apply(&h));
            }
            for (pos, x) in xs.iter_mut().enumerate() {
                let mut attended = vec![0.0; self.heads * d];
                for head in 0..self.heads {
                    let kv = head / group;
                    let q = &qs[pos][head * d..(head + 1) * d];
                    let scores: Vec<f64> = (0..=pos)
                        .map(|s| {
                            let k = &ks[s][kv * d..(kv + 1) * d];
                            q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for (s, w) in weights.iter().enumerate() {
                        let v = &vs[s][kv * d..(kv + 1) * d];
                        for i in 0..d {
                            attended[head * d + i] += w / total * v[i];
                        }
                    }
                }
                for (xi, oi) in x.iter_mut().zip(layer.o.apply(&attended)) {
                    *xi += oi;
                }
                let h = rms_norm(x, &layer.post_norm, self.eps);
                let gate = layer.gate.apply(&h);
                let up = layer.up.apply(&h);
                let mixed: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
                for (xi, di) in x.iter_mut().zip(layer.down.apply(&mixed)) {
                    *xi += di;
                }
            }
        }
        let last = xs.last().expect("at least one token");
        self.lm_head.apply(&rms_norm(last, &self.norm, self.eps))
    }

    /// Greedy decoding: `count` tokens after `prompt`.
    pub fn greedy(&self, prompt: &[u32], count: usize) -> Vec<u32> {
        let mut tokens = prompt.to_vec();
        for _ in 0..count {
            let logits = self.logits(&tokens);
            let best = (0..logits.len())
                .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                .expect("a vocabulary");
            tokens.push(best as u32);
        }
        tokens.split_off(prompt.len())
    }
}

/// The tokens of one user message in the tiny model's ChatML template,
/// with the assistant's turn opened (what the model sees for `infer`).
pub fn chat_prompt(message: &str) -> Vec<u32> {
    let special = |name: &str| SPECIALS.iter().position(|s| *s == name).expect("special") as u32;
    let (start, end) = (special("<|im_start|>"), special("<|im_end|>"));
    let mut ids = vec![start];
    ids.extend(encode(&format!("user\n{message}")));
    ids.push(end);
    ids.extend(encode("\n"));
    ids.push(start);
    ids.extend(encode("assistant\n"));
    ids
}
