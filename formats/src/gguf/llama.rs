//! Checking that a GGUF file is a llama model lode can run.
//!
//! [`Gguf::check_llama`] reads the hyper-parameters a llama forward pass
//! needs, checks that they are consistent with each other, and checks that
//! every weight tensor is present with the shape they imply, so that a
//! runtime can trust [`LlamaParams`] and index tensors without re-checking.

use core::fmt::{self, Write};

use super::error::{GgufError, Name, NAME_CAPACITY};
use super::file::Gguf;
use super::tensor::{Dims, TensorInfo};
use super::ARCHITECTURE_KEY;
use crate::ModelShape;

/// What [`Gguf::check_llama`] reads: the model's hyper-parameters, and how
/// much of each head RoPE rotates (which the shape alone does not say).
///
/// The shape's numbers come from these keys: `layers` from
/// `llama.block_count`, `hidden` from `llama.embedding_length`, `ffn` from
/// `llama.feed_forward_length`, `heads` from `llama.attention.head_count`,
/// `kv_heads` from `llama.attention.head_count_kv` (default `heads`),
/// `head_dim` is `hidden / heads`, `rope_base` from `llama.rope.freq_base`
/// (default 10000), `rms_eps` from `llama.attention.layer_norm_rms_epsilon`,
/// `vocab` from `llama.vocab_size` (else the length of
/// `tokenizer.ggml.tokens`), `context` from `llama.context_length`, and
/// `tied_embeddings` is true when there is no `output.weight` and the
/// logits reuse `token_embd.weight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaParams {
    /// The hyper-parameters.
    pub shape: ModelShape,
    /// Dimensions rotated by RoPE (`llama.rope.dimension_count`, default
    /// `head_dim`).
    pub rope_dims: usize,
}

/// Most transformer blocks `check_llama` accepts. The largest llama models
/// have about 130; the bound keeps the presence check a fixed-size bitmap.
pub const MAX_LAYERS: u32 = 256;

/// Per-layer weights, as `blk.{i}.{suffix}`,
/// with the shape each must have.
const LAYER_TENSORS: [(&str, Shape); 9] = [
    ("attn_norm.weight", Shape::Embd),
    ("attn_q.weight", Shape::EmbdEmbd),
    ("attn_k.weight", Shape::EmbdKv),
    ("attn_v.weight", Shape::EmbdKv),
    ("attn_output.weight", Shape::EmbdEmbd),
    ("ffn_norm.weight", Shape::Embd),
    ("ffn_gate.weight", Shape::EmbdFf),
    ("ffn_up.weight", Shape::EmbdFf),
    ("ffn_down.weight", Shape::FfEmbd),
];

/// Shapes of per-layer tensors, in file order (`dims[0]` first).
#[derive(Clone, Copy)]
enum Shape {
    /// `[embd]`: the norms.
    Embd,
    /// `[embd, embd]`: query and attention output.
    EmbdEmbd,
    /// `[embd, kv_heads * head_dim]`: key and value.
    EmbdKv,
    /// `[embd, ff]`: gate and up (one row per neuron).
    EmbdFf,
    /// `[ff, embd]`: down (one column per neuron).
    FfEmbd,
}

impl<'a> Gguf<'a> {
    /// Check that this is a dense llama model with consistent
    /// hyper-parameters and every weight tensor present and shaped as they
    /// imply. Errors name the key or tensor at fault. Linear in the size of
    /// the header.
    pub fn check_llama(&self) -> Result<LlamaParams, GgufError> {
        let arch = self.get_str(ARCHITECTURE_KEY)?;
        if arch != "llama" {
            return Err(GgufError::NotLlama {
                found: Name::new(arch),
            });
        }
        let p = self.llama_params()?;
        self.check_llama_tensors(&p)?;
        Ok(p)
    }

    fn llama_params(&self) -> Result<LlamaParams, GgufError> {
        let bad = |key: &str, reason: &'static str| GgufError::BadValue {
            key: Name::new(key),
            reason,
        };
        let positive = |key: &str| -> Result<u32, GgufError> {
            match self.get_u32(key)? {
                0 => Err(bad(key, "must be at least 1")),
                v => Ok(v),
            }
        };
        let optional = |key: &str, default: u32| -> Result<u32, GgufError> {
            match self.get(key) {
                None => Ok(default),
                Some(_) => positive(key),
            }
        };

        if let Some(v) = self.get("llama.expert_count") {
            if v.as_u64() != Some(0) {
                return Err(bad(
                    "llama.expert_count",
                    "mixture-of-experts llama models are not supported",
                ));
            }
        }

        let n_layer = positive("llama.block_count")?;
        if n_layer > MAX_LAYERS {
            return Err(bad(
                "llama.block_count",
                "more than 256 layers (MAX_LAYERS), which lode does not support",
            ));
        }
        let n_ctx_train = positive("llama.context_length")?;
        let n_embd = positive("llama.embedding_length")?;
        let n_ff = positive("llama.feed_forward_length")?;
        let n_head = positive("llama.attention.head_count")?;
        if n_embd % n_head != 0 {
            return Err(bad(
                "llama.attention.head_count",
                "does not divide llama.embedding_length",
            ));
        }
        let head_dim = n_embd / n_head;
        let n_head_kv = optional("llama.attention.head_count_kv", n_head)?;
        if n_head % n_head_kv != 0 {
            return Err(bad(
                "llama.attention.head_count_kv",
                "does not divide llama.attention.head_count",
            ));
        }
        for key in ["llama.attention.key_length", "llama.attention.value_length"] {
            if optional(key, head_dim)? != head_dim {
                return Err(bad(
                    key,
                    "differs from embedding_length / head_count, which lode requires",
                ));
            }
        }
        let rope_dims = optional("llama.rope.dimension_count", head_dim)?;
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(bad(
                "llama.rope.dimension_count",
                "must be even and at most the head size (it defaults to the head size)",
            ));
        }
        let rope_freq_base = match self.get("llama.rope.freq_base") {
            None => 10_000.0,
            Some(_) => self.get_f32("llama.rope.freq_base")?,
        };
        if !(rope_freq_base.is_finite() && rope_freq_base > 0.0) {
            return Err(bad(
                "llama.rope.freq_base",
                "must be a positive finite number",
            ));
        }
        let rms_norm_eps = self.get_f32("llama.attention.layer_norm_rms_epsilon")?;
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(bad(
                "llama.attention.layer_norm_rms_epsilon",
                "must be a positive finite number",
            ));
        }

        let tokens = self.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
        let n_vocab = match (self.get("llama.vocab_size"), tokens) {
            (Some(_), _) => positive("llama.vocab_size")?,
            (None, Some(t)) => u32::try_from(t.len())
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad("tokenizer.ggml.tokens", "must hold 1 to 2^32-1 tokens"))?,
            (None, None) => {
                return Err(GgufError::MissingKey {
                    key: Name::new("llama.vocab_size"),
                })
            }
        };
        if let Some(t) = tokens {
            if t.len() != u64::from(n_vocab) {
                return Err(bad(
                    "tokenizer.ggml.tokens",
                    "length differs from llama.vocab_size",
                ));
            }
        }

        let n = |v: u32| v as usize;
        Ok(LlamaParams {
            shape: ModelShape {
                layers: n(n_layer),
                hidden: n(n_embd),
                ffn: n(n_ff),
                heads: n(n_head),
                kv_heads: n(n_head_kv),
                head_dim: n(head_dim),
                vocab: n(n_vocab),
                rope_base: rope_freq_base,
                rms_eps: rms_norm_eps,
                context: n(n_ctx_train),
                tied_embeddings: self.tensor("output.weight").is_none(),
            },
            rope_dims: n(rope_dims),
        })
    }

    fn check_llama_tensors(&self, p: &LlamaParams) -> Result<(), GgufError> {
        let s = &p.shape;
        let (embd, vocab, ff) = (s.hidden as u64, s.vocab as u64, s.ffn as u64);
        let kv = s.kv_dim() as u64;
        // At most MAX_LAYERS: `llama_params` refused more.
        let n_layer = s.layers as u32;

        expect_shape(self.require_tensor("token_embd.weight")?, &[embd, vocab])?;
        expect_shape(self.require_tensor("output_norm.weight")?, &[embd])?;
        if let Some(out) = self.tensor("output.weight") {
            expect_shape(out, &[embd, vocab])?;
        }
        // One pass over the table: shape-check every per-layer tensor and
        // mark it present, then report the first absent one. Linear in the
        // table, whatever the file claims, where a lookup per expected name
        // would be quadratic.
        let mut seen = [[0u64; MAX_LAYERS as usize / 64]; LAYER_TENSORS.len()];
        for info in self.tensors() {
            let Some((layer, kind)) = split_layer_name(info.name) else {
                continue;
            };
            if layer >= n_layer {
                continue;
            }
            let Some(&(_, shape)) = LAYER_TENSORS.get(kind) else {
                continue;
            };
            let shape: &[u64] = match shape {
                Shape::Embd => &[embd],
                Shape::EmbdEmbd => &[embd, embd],
                Shape::EmbdKv => &[embd, kv],
                Shape::EmbdFf => &[embd, ff],
                Shape::FfEmbd => &[ff, embd],
            };
            expect_shape(info, shape)?;
            if let Some(word) = seen
                .get_mut(kind)
                .and_then(|bits| bits.get_mut(layer as usize / 64))
            {
                *word |= 1 << (layer % 64);
            }
        }
        for layer in 0..n_layer {
            for (kind, (suffix, _)) in LAYER_TENSORS.iter().enumerate() {
                let word = seen
                    .get(kind)
                    .and_then(|bits| bits.get(layer as usize / 64))
                    .copied()
                    .unwrap_or(0);
                if word & (1 << (layer % 64)) == 0 {
                    let name = layer_tensor_name(layer, suffix)?;
                    return Err(GgufError::MissingTensor {
                        tensor: Name::new(name.as_str()),
                    });
                }
            }
        }
        Ok(())
    }

    /// The tensor named `name`, or [`GgufError::MissingTensor`].
    pub fn require_tensor(&self, name: &str) -> Result<TensorInfo<'a>, GgufError> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            tensor: Name::new(name),
        })
    }
}

/// Split `blk.{layer}.{suffix}` into the layer and the suffix's index in
/// [`LAYER_TENSORS`]. The layer must be written canonically (decimal, no sign,
/// no leading zero), because lookups elsewhere build names that way.
fn split_layer_name(name: &str) -> Option<(u32, usize)> {
    let rest = name.strip_prefix("blk.")?;
    let (digits, suffix) = rest.split_once('.')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    let layer = digits.parse::<u32>().ok()?;
    let kind = LAYER_TENSORS.iter().position(|(s, _)| *s == suffix)?;
    Some((layer, kind))
}

/// The name of layer `layer`'s tensor `suffix`: `blk.{layer}.{suffix}`.
pub fn layer_tensor_name(layer: u32, suffix: &str) -> Result<NameBuf, GgufError> {
    let mut buf = NameBuf::default();
    write!(buf, "blk.{layer}.{suffix}").map_err(|_| GgufError::MissingTensor {
        tensor: Name::new(suffix),
    })?;
    Ok(buf)
}

fn expect_shape(info: TensorInfo<'_>, expected: &[u64]) -> Result<(), GgufError> {
    let want = Dims::new(expected).map(|d| d.padded()).unwrap_or_default();
    let found = info.dims.padded();
    for (dim, (&f, &e)) in found.iter().zip(want.iter()).enumerate() {
        if f != e {
            return Err(GgufError::BadShape {
                tensor: Name::new(info.name),
                // `dim < MAX_DIMS = 4`.
                dim: dim as u8,
                found: f,
                expected: e,
            });
        }
    }
    Ok(())
}

/// A tensor name built without an allocator (at most 64 bytes).
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [u8; NAME_CAPACITY],
    len: usize,
}

impl Default for NameBuf {
    fn default() -> Self {
        NameBuf {
            bytes: [0; NAME_CAPACITY],
            len: 0,
        }
    }
}

impl NameBuf {
    /// The name written so far.
    pub fn as_str(&self) -> &str {
        self.bytes
            .get(..self.len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

impl Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
