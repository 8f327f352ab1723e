//! A tiny random-weight Llama and LoRA adapters for it, written to disk for
//! offline tests of the mistral.rs backend (no download, loads in a blink).
//!
//! [`write_tiny_llama`] writes the plain Hugging Face layout that
//! mistral.rs 0.8.1's `TextModelBuilder` loads (architecture detected from
//! `config.json`: `LlamaForCausalLM`), and [`write_lora_adapter`] a PEFT
//! LoRA adapter for it (`adapter_config.json` + `adapter_model.safetensors`).
//! Everything is a pure function of the seed. The writers are fixtures for
//! tests and benchmarks: they panic on I/O errors.
//!
//! The vocabulary is byte-level BPE (GPT-2 style, no merges) over tab,
//! newline and printable ASCII, plus the ChatML specials at ids 0..=2
//! (`<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, as in SmolLM2). Every
//! ordinary token is one ASCII character, so any output is valid UTF-8 and
//! every prompt byte outside that set is simply dropped by the tokenizer.
//! The `lm_head` rows of the specials are zero, so unconstrained greedy
//! generation never ends early: it always runs to `max_tokens` (under a
//! grammar, llguidance still forces `<|endoftext|>` once the grammar is done).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

/// Hidden size.
pub const HIDDEN: usize = 64;
/// MLP width.
pub const INTERMEDIATE: usize = 128;
/// Decoder layers.
pub const LAYERS: usize = 2;
/// Attention heads.
pub const HEADS: usize = 4;
/// Key/value heads (grouped-query attention).
pub const KV_HEADS: usize = 2;
/// Per-head dimension.
pub const HEAD_DIM: usize = HIDDEN / HEADS;
/// The special tokens, by id.
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// The end-of-text token id.
pub const EOS_ID: u32 = 0;
/// The end-of-turn token id (the chat template's `eos_token`).
pub const IM_END_ID: u32 = 2;

/// The bytes that are tokens (one token each), after the specials.
fn token_bytes() -> Vec<u8> {
    let mut bytes = vec![b'\t', b'\n'];
    bytes.extend(b' '..=b'~');
    bytes
}

/// The token ids of `text`'s bytes (one each; bytes outside the vocabulary
/// are dropped, as the tokenizer drops them). Specials are not recognized.
pub fn encode(text: &str) -> Vec<u32> {
    let bytes = token_bytes();
    text.bytes()
        .filter_map(|b| bytes.iter().position(|&t| t == b))
        .map(|i| (SPECIALS.len() + i) as u32)
        .collect()
}

/// The text of ordinary token ids (specials and unknown ids are skipped).
pub fn decode(ids: &[u32]) -> String {
    let bytes = token_bytes();
    ids.iter()
        .filter_map(|&id| (id as usize).checked_sub(SPECIALS.len()))
        .filter_map(|i| bytes.get(i).map(|&b| char::from(b)))
        .collect()
}

/// Vocabulary size: the specials plus one token per byte of [`token_bytes`].
pub fn vocab_size() -> usize {
    SPECIALS.len() + token_bytes().len()
}

/// The character GPT-2's byte-level BPE uses for `byte` (its
/// `bytes_to_unicode` table): printable bytes stand for themselves, the
/// others are shifted to U+0100 and up in byte order.
fn byte_char(byte: u8) -> char {
    let code = match byte {
        b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF => u32::from(byte),
        _ => {
            // Rank of `byte` among the bytes not in the printable ranges.
            let rank = (0..byte)
                .filter(|&b| !matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
                .count() as u32;
            256 + rank
        }
    };
    char::from_u32(code).expect("a valid byte-level character")
}

/// SplitMix64: a tiny deterministic generator (no `rand` needed).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64, stream: u64) -> Self {
        SplitMix64(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`.
    fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * scale
    }

    fn tensor(&mut self, shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor {
            shape: shape.to_vec(),
            data: (0..n).map(|_| self.uniform(scale)).collect(),
        }
    }
}

/// An f32 tensor to be written.
struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    fn filled(shape: &[usize], value: f32) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: vec![value; shape.iter().product()],
        }
    }
}

/// Uniform scale giving standard deviation `1/sqrt(fan_in)`.
fn init_scale(fan_in: usize) -> f32 {
    (3.0 / fan_in as f32).sqrt()
}

fn write_safetensors(path: &Path, tensors: Vec<(String, Tensor)>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, t.shape, raw)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, raw)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), raw)
                .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
            (name.clone(), view)
        })
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize_to_file(views, Some(metadata), path)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON serializes");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The ChatML template (as SmolLM2's, without its default system prompt).
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Writes a tiny random-weight Llama into `dir` (created if missing):
/// `config.json`, `model.safetensors` (f32), `tokenizer.json`,
/// `tokenizer_config.json` (ChatML template, eos `<|im_end|>`) and
/// `generation_config.json`. The same seed writes the same files.
pub fn write_tiny_llama(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let vocab = vocab_size();
    write_json(
        &dir.join("config.json"),
        &json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "vocab_size": vocab,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": null,
            "tie_word_embeddings": false,
            "attention_bias": false,
            "mlp_bias": false,
            "bos_token_id": 1,
            "eos_token_id": IM_END_ID,
            "torch_dtype": "float32",
        }),
    );
    write_json(
        &dir.join("generation_config.json"),
        &json!({ "bos_token_id": 1, "eos_token_id": IM_END_ID }),
    );
    write_json(&dir.join("tokenizer.json"), &tokenizer_json());
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config_json());

    let mut rng = SplitMix64::new(seed, 1);
    let kv = KV_HEADS * HEAD_DIM;
    let mut tensors = vec![(
        "model.embed_tokens.weight".to_string(),
        rng.tensor(&[vocab, HIDDEN], 1.0),
    )];
    for layer in 0..LAYERS {
        let p = format!("model.layers.{layer}");
        let hidden_in = init_scale(HIDDEN);
        let mlp_in = init_scale(INTERMEDIATE);
        tensors.extend([
            (
                format!("{p}.input_layernorm.weight"),
                Tensor::filled(&[HIDDEN], 1.0),
            ),
            (
                format!("{p}.post_attention_layernorm.weight"),
                Tensor::filled(&[HIDDEN], 1.0),
            ),
            (
                format!("{p}.self_attn.q_proj.weight"),
                rng.tensor(&[HIDDEN, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.self_attn.k_proj.weight"),
                rng.tensor(&[kv, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.self_attn.v_proj.weight"),
                rng.tensor(&[kv, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.self_attn.o_proj.weight"),
                rng.tensor(&[HIDDEN, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.mlp.gate_proj.weight"),
                rng.tensor(&[INTERMEDIATE, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.mlp.up_proj.weight"),
                rng.tensor(&[INTERMEDIATE, HIDDEN], hidden_in),
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                rng.tensor(&[HIDDEN, INTERMEDIATE], mlp_in),
            ),
        ]);
    }
    tensors.push((
        "model.norm.weight".to_string(),
        Tensor::filled(&[HIDDEN], 1.0),
    ));
    // A wide output spread makes greedy choices clear-cut; zero rows for
    // the specials keep them from ever winning unconstrained.
    let mut lm_head = rng.tensor(&[vocab, HIDDEN], 4.0 * init_scale(HIDDEN));
    lm_head.data[..SPECIALS.len() * HIDDEN].fill(0.0);
    tensors.push(("lm_head.weight".to_string(), lm_head));
    write_safetensors(&dir.join("model.safetensors"), tensors);
}

/// Writes a PEFT LoRA adapter for the tiny Llama into `dir` (created if
/// missing): `adapter_config.json` (`r` = `rank`, `lora_alpha` = 2·rank,
/// targets `q_proj` and `v_proj`) and `adapter_model.safetensors` with
/// `base_model.model.model.layers.N.self_attn.{q,v}_proj.lora_{A,B}.weight`.
///
/// Unlike a freshly initialized PEFT adapter (B = 0), both matrices are
/// random and large: the merged update (2·B·A) outweighs the base
/// projections several times over, so adapters of different seeds steer
/// greedy output apart.
pub fn write_lora_adapter(dir: &Path, seed: u64, rank: usize) {
    assert!(rank > 0, "a LoRA rank is at least 1");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    write_json(
        &dir.join("adapter_config.json"),
        &json!({
            "base_model_name_or_path": "batos-tiny-llama",
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": rank,
            "lora_alpha": 2 * rank,
            "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"],
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "modules_to_save": null,
        }),
    );
    let mut rng = SplitMix64::new(seed, 2);
    let mut tensors = Vec::new();
    for layer in 0..LAYERS {
        for (module, out_dim) in [("q_proj", HIDDEN), ("v_proj", KV_HEADS * HEAD_DIM)] {
            let p = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            // lora_A: (r, in); lora_B: (out, r), as mistral.rs reads them.
            tensors.push((
                format!("{p}.lora_A.weight"),
                rng.tensor(&[rank, HIDDEN], 0.9),
            ));
            tensors.push((
                format!("{p}.lora_B.weight"),
                rng.tensor(&[out_dim, rank], 0.9),
            ));
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), tensors);
}

/// A byte-level BPE `tokenizer.json` (tokenizers 0.21 format, no merges).
fn tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    for (id, special) in SPECIALS.iter().enumerate() {
        vocab.insert((*special).to_string(), json!(id));
    }
    for (i, byte) in token_bytes().into_iter().enumerate() {
        vocab.insert(byte_char(byte).to_string(), json!(SPECIALS.len() + i));
    }
    let added_tokens: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true,
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": true,
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": true,
            "use_regex": true,
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": Value::Object(vocab),
            "merges": [],
        },
    })
}

/// `tokenizer_config.json`: the chat template and the special tokens.
fn tokenizer_config_json() -> Value {
    let decoder: serde_json::Map<String, Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, content)| {
            (
                id.to_string(),
                json!({
                    "content": content,
                    "lstrip": false,
                    "normalized": false,
                    "rstrip": false,
                    "single_word": false,
                    "special": true,
                }),
            )
        })
        .collect();
    json!({
        "add_bos_token": false,
        "add_eos_token": false,
        "added_tokens_decoder": Value::Object(decoder),
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": 1024,
        "tokenizer_class": "GPT2Tokenizer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_match_gpt2() {
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(b' '), '\u{120}'); // 'Ġ'
        assert_eq!(byte_char(b'\n'), '\u{10A}'); // 'Ċ'
        assert_eq!(byte_char(b'\t'), '\u{109}');
        assert_eq!(vocab_size(), 100);
        let text = "Hi there!\n\tok~";
        assert_eq!(decode(&encode(text)), text);
        assert_eq!(encode("é"), Vec::<u32>::new(), "outside the vocabulary");
    }

    #[test]
    fn writers_are_deterministic() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        write_tiny_llama(a.path(), 7);
        write_tiny_llama(b.path(), 7);
        write_lora_adapter(&a.path().join("lora"), 1, 4);
        write_lora_adapter(&b.path().join("lora"), 1, 4);
        for file in [
            "model.safetensors",
            "tokenizer.json",
            "lora/adapter_model.safetensors",
        ] {
            let x = std::fs::read(a.path().join(file)).expect("read");
            let y = std::fs::read(b.path().join(file)).expect("read");
            assert_eq!(x, y, "{file} differs between identical seeds");
        }
    }
}
