//! Reading a Gemma 3 GGUF's hyper-parameters (`general.architecture =
//! gemma3`).
//!
//! Gemma 3 is llama's decoder with a few changes (norms after attention and
//! the FFN, per-head Q/K norms, a GELU gate, sliding-window attention on
//! most layers); those are the kernel's business. What the file must tell
//! is the shape, as for llama, plus the window. Two numbers the GGUF does
//! not carry are fixed here as llama.cpp fixes them for this architecture:
//! every sixth layer attends globally, and local layers rotate with RoPE
//! base 10000.

use super::error::{GgufError, Name};
use super::file::Gguf;
use super::llama::MAX_LAYERS;
use super::ARCHITECTURE_KEY;
use crate::ModelShape;

/// The architecture name in `general.architecture`.
pub const GEMMA3_ARCH: &str = "gemma3";

/// Layers per period of the local/global pattern: in each run of six layers
/// the first five attend within the window and the sixth to everything
/// (llama.cpp's `set_swa_pattern(6)` for gemma3; the GGUF has no key).
pub const GEMMA3_SWA_PERIOD: usize = 6;

/// RoPE base of the local (sliding-window) layers; the global layers use
/// `gemma3.rope.freq_base`. Fixed by the architecture, not in the GGUF.
pub const GEMMA3_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// What [`Gguf::check_gemma3`] reads.
///
/// `shape` comes from the `gemma3.*` keys as [`LlamaParams`] does from
/// `llama.*`, except that `head_dim` is `gemma3.attention.key_length`
/// (Gemma's heads are wider than `hidden / heads`), and the output head is
/// always tied.
///
/// [`LlamaParams`]: super::LlamaParams
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemma3Params {
    /// The hyper-parameters; `rope_base` is the global layers' base.
    pub shape: ModelShape,
    /// Positions a local layer's query sees, itself included
    /// (`gemma3.attention.sliding_window`).
    pub window: usize,
    /// RoPE base of the local layers ([`GEMMA3_LOCAL_ROPE_BASE`]).
    pub local_rope_base: f32,
    /// Layers per local/global period ([`GEMMA3_SWA_PERIOD`]).
    pub swa_period: usize,
}

impl Gguf<'_> {
    /// Reads and checks a Gemma 3 model's hyper-parameters. Refuses what
    /// lode's Gemma pass does not do: RoPE scaling (the larger Gemma 3
    /// models scale their global layers' positions) and the 62-layer 27B,
    /// whose attention scale is not `1/sqrt(key_length)`. Tensor shapes are
    /// checked when the kernel plans its memory, before any work.
    pub fn check_gemma3(&self) -> Result<Gemma3Params, GgufError> {
        let arch = self.get_str(ARCHITECTURE_KEY)?;
        if arch != GEMMA3_ARCH {
            return Err(GgufError::NotLlama {
                found: Name::new(arch),
            });
        }
        let bad = |key: &str, reason: &'static str| GgufError::BadValue {
            key: Name::new(key),
            reason,
        };
        let positive = |key: &str| -> Result<usize, GgufError> {
            match self.get_u32(key)? {
                0 => Err(bad(key, "must be at least 1")),
                v => Ok(v as usize),
            }
        };
        let layers = positive("gemma3.block_count")?;
        if layers > MAX_LAYERS as usize {
            return Err(bad("gemma3.block_count", "more than 256 layers"));
        }
        if layers == 62 {
            return Err(bad(
                "gemma3.block_count",
                "62 layers is Gemma 3 27B, whose attention scale lode does not implement",
            ));
        }
        let hidden = positive("gemma3.embedding_length")?;
        let heads = positive("gemma3.attention.head_count")?;
        let kv_heads = match self.get("gemma3.attention.head_count_kv") {
            None => heads,
            Some(_) => positive("gemma3.attention.head_count_kv")?,
        };
        if !heads.is_multiple_of(kv_heads) {
            return Err(bad(
                "gemma3.attention.head_count_kv",
                "does not divide gemma3.attention.head_count",
            ));
        }
        let head_dim = positive("gemma3.attention.key_length")?;
        if positive("gemma3.attention.value_length")? != head_dim {
            return Err(bad(
                "gemma3.attention.value_length",
                "differs from key_length, which lode requires",
            ));
        }
        if let Some(v) = self.get("gemma3.rope.dimension_count") {
            if v.as_u64() != Some(head_dim as u64) {
                return Err(bad(
                    "gemma3.rope.dimension_count",
                    "RoPE over part of each head is not supported",
                ));
            }
        }
        self.refuse_rope_scaling()?;
        let rope_base = match self.get("gemma3.rope.freq_base") {
            None => 10_000.0,
            Some(_) => self.get_f32("gemma3.rope.freq_base")?,
        };
        let rms_eps = self.get_f32("gemma3.attention.layer_norm_rms_epsilon")?;
        for (key, v) in [
            ("gemma3.rope.freq_base", rope_base),
            ("gemma3.attention.layer_norm_rms_epsilon", rms_eps),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(key, "must be a positive finite number"));
            }
        }
        let tokens = self.get_array("tokenizer.ggml.tokens")?;
        let vocab = usize::try_from(tokens.len())
            .ok()
            .filter(|&n| n > 0 && u32::try_from(n).is_ok())
            .ok_or_else(|| bad("tokenizer.ggml.tokens", "must hold 1 to 2^32-1 tokens"))?;
        if self.tensor("output.weight").is_some() {
            return Err(bad(
                GEMMA3_ARCH,
                "an untied output.weight: Gemma 3's head is the embedding",
            ));
        }
        Ok(Gemma3Params {
            shape: ModelShape {
                layers,
                hidden,
                ffn: positive("gemma3.feed_forward_length")?,
                heads,
                kv_heads,
                head_dim,
                vocab,
                rope_base,
                rms_eps,
                context: positive("gemma3.context_length")?,
                tied_embeddings: true,
            },
            window: positive("gemma3.attention.sliding_window")?,
            local_rope_base: GEMMA3_LOCAL_ROPE_BASE,
            swa_period: GEMMA3_SWA_PERIOD,
        })
    }

    /// Fails when the file asks for RoPE scaling other than none or a
    /// factor of 1.
    fn refuse_rope_scaling(&self) -> Result<(), GgufError> {
        let bad = |key: &str| GgufError::BadValue {
            key: Name::new(key),
            reason: "RoPE scaling is not supported for gemma3",
        };
        const TYPE: &str = "gemma3.rope.scaling.type";
        const FACTOR: &str = "gemma3.rope.scaling.factor";
        if self.get(TYPE).is_some() && !matches!(self.get_str(TYPE)?, "none" | "") {
            return Err(bad(TYPE));
        }
        if self.get(FACTOR).is_some() {
            let f = self.get_f32(FACTOR)?;
            if f != 0.0 && f != 1.0 {
                return Err(bad(FACTOR));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::builder::{Builder, Enc};
    use super::super::ErrorKind;
    use super::*;

    /// The keys of a tiny Gemma 3 (no tensors: `check_gemma3` reads keys),
    /// with `extra` replacing or adding keys.
    fn gemma(extra: &[(&str, Enc)]) -> Builder {
        let tokens = Enc::Arr(8, (0..10).map(|i| Enc::Str(std::format!("t{i}"))).collect());
        let base = [
            ("general.architecture", Enc::str("gemma3")),
            ("gemma3.block_count", Enc::U32(6)),
            ("gemma3.context_length", Enc::U32(1024)),
            ("gemma3.embedding_length", Enc::U32(64)),
            ("gemma3.feed_forward_length", Enc::U32(128)),
            ("gemma3.attention.head_count", Enc::U32(4)),
            ("gemma3.attention.head_count_kv", Enc::U32(1)),
            ("gemma3.attention.key_length", Enc::U32(32)),
            ("gemma3.attention.value_length", Enc::U32(32)),
            ("gemma3.rope.freq_base", Enc::F32(1_000_000.0)),
            ("gemma3.attention.layer_norm_rms_epsilon", Enc::F32(1e-6)),
            ("gemma3.attention.sliding_window", Enc::U32(16)),
            ("tokenizer.ggml.tokens", tokens),
        ];
        let mut b = Builder::default();
        for (k, v) in base {
            if !extra.iter().any(|(e, _)| *e == k) {
                b = b.kv(k, v);
            }
        }
        for (k, v) in extra {
            b = b.kv(k, v.clone());
        }
        b
    }

    #[test]
    fn reads_gemma3_keys() {
        let bytes = gemma(&[]).build();
        let p = Gguf::parse(&bytes).unwrap().check_gemma3().unwrap();
        assert_eq!(p.shape.head_dim, 32);
        assert_eq!((p.shape.heads, p.shape.kv_heads, p.shape.vocab), (4, 1, 10));
        assert_eq!(p.window, 16);
        assert_eq!(p.shape.rope_base, 1_000_000.0);
        assert_eq!(p.local_rope_base, 10_000.0);
        assert_eq!(p.swa_period, 6);
        assert!(p.shape.tied_embeddings);
    }

    #[test]
    fn refuses_what_lode_does_not_run() {
        let kind = |b: Builder| {
            let bytes = b.build();
            Gguf::parse(&bytes)
                .unwrap()
                .check_gemma3()
                .unwrap_err()
                .kind()
        };
        let scaled = gemma(&[("gemma3.rope.scaling.type", Enc::str("linear"))]);
        assert_eq!(kind(scaled), ErrorKind::BadValue);
        let factor = gemma(&[("gemma3.rope.scaling.factor", Enc::F32(8.0))]);
        assert_eq!(kind(factor), ErrorKind::BadValue);
        let odd_v = gemma(&[("gemma3.attention.value_length", Enc::U32(16))]);
        assert_eq!(kind(odd_v), ErrorKind::BadValue);
        let llama = Builder::default().kv("general.architecture", Enc::str("llama"));
        assert_eq!(kind(llama), ErrorKind::NotLlama);
        let no_window = Builder::default()
            .kv("general.architecture", Enc::str("gemma3"))
            .kv("gemma3.block_count", Enc::U32(6));
        assert_eq!(kind(no_window), ErrorKind::MissingKey);
    }
}
