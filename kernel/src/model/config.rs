//! The shape of a llama model and the limits of one run.
//!
//! [`LlamaConfig`] is plain numbers, so a model can come from a GGUF file, a
//! lode image or a test without the forward pass knowing which: it is the
//! formats' [`ModelShape`], the one struct of hyper-parameters the GGUF
//! reader, the image geometry and the kernel share. [`LlamaConfigExt`] is
//! the kernel's side of it: which shapes this forward pass runs.
//! [`Limits`] bound everything a run sizes up front (context, batch, logit
//! rows), so the memory a run needs is known before the first token.

use lode_formats::gguf::LlamaParams;
use lode_formats::ModelShape;

use super::error::LoadError;

pub use crate::limits::{CHUNK_TOKENS, MAX_CHUNKS, MAX_CONTEXT, MAX_CONTEXTS, MAX_LAYERS};

/// The hyper-parameters of a dense llama-architecture model (the formats'
/// [`ModelShape`]).
pub type LlamaConfig = ModelShape;

/// What the kernel asks of a [`LlamaConfig`]: whether its forward pass can
/// run the shape.
pub trait LlamaConfigExt: Sized {
    /// The configuration of a GGUF llama model that
    /// [`check_llama`](lode_formats::gguf::Gguf::check_llama) accepted.
    /// Fails for what lode's forward pass does not do: RoPE over part of a
    /// head only.
    fn from_gguf(p: &LlamaParams) -> Result<Self, LoadError>;

    /// Checks that the numbers describe a model this forward pass can run.
    fn validate(&self) -> Result<(), LoadError>;
}

impl LlamaConfigExt for LlamaConfig {
    fn from_gguf(p: &LlamaParams) -> Result<LlamaConfig, LoadError> {
        if p.rope_dims != p.shape.head_dim {
            return Err(LoadError::Config(
                "RoPE over part of each head (rope.dimension_count < head size) is not supported",
            ));
        }
        let cfg = p.shape;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), LoadError> {
        let bad = |why| Err(LoadError::Config(why));
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return bad("layers must be 1 to 128");
        }
        if self.hidden == 0 || self.ffn == 0 || self.vocab == 0 || self.context == 0 {
            return bad("hidden, ffn, vocab and context must be at least 1");
        }
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad("kv_heads must be at least 1 and divide heads");
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad("head_dim must be even and at least 2 (RoPE rotates pairs)");
        }
        // Gemma's heads are wider than `hidden / heads` (4 x 256 over 640),
        // so only the product's size is bounded; GGUF llama files still
        // have `heads * head_dim == hidden` (check_llama derives head_dim).
        if self.heads.checked_mul(self.head_dim).is_none() {
            return bad("heads * head_dim overflows");
        }
        if u32::try_from(self.vocab).is_err() {
            return bad("vocab must fit 32-bit token ids");
        }
        if !(self.rope_base.is_finite() && self.rope_base > 0.0) {
            return bad("rope_base must be positive and finite");
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad("rms_eps must be positive and finite");
        }
        Ok(())
    }
}

/// Bounds of one run, fixed when the model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most positions the context may reach (prompt plus generated tokens);
    /// at most the model's trained context and [`MAX_CONTEXT`].
    pub max_context: usize,
    /// Most positions one forward pass processes together (prompt
    /// batching); 1 means strictly one position at a time.
    pub max_batch: usize,
    /// Positions whose logits are computed together. Logits are
    /// `vocab` floats per position, so this bounds that scratch; 1 suffices
    /// for generation, a few speed up scoring every position of a text.
    pub logit_rows: usize,
    /// Contexts (conversations) whose KV caches the arena holds at once,
    /// each up to `max_context` positions: what the memory plans reserve.
    pub contexts: usize,
}

impl Limits {
    /// Limits for generation: `max_context` positions, prompts processed
    /// `max_batch` positions at a time, one row of logits.
    pub const fn new(max_context: usize, max_batch: usize) -> Limits {
        Limits {
            max_context,
            max_batch,
            logit_rows: 1,
            contexts: 1,
        }
    }

    /// The same with room for `contexts` full contexts at once.
    pub const fn with_contexts(self, contexts: usize) -> Limits {
        Limits { contexts, ..self }
    }

    /// The same with `logit_rows` rows of logits per output-head pass.
    pub const fn with_logit_rows(self, logit_rows: usize) -> Limits {
        Limits { logit_rows, ..self }
    }

    /// Checks the limits against the model.
    pub fn validate(&self, cfg: &LlamaConfig) -> Result<(), LoadError> {
        let bad = |why| Err(LoadError::Config(why));
        if self.max_context == 0 || self.max_context > MAX_CONTEXT {
            return bad("max_context must be 1 to 8192 (MAX_CONTEXT)");
        }
        if self.max_context > cfg.context {
            return bad("max_context exceeds the context the model was trained for");
        }
        if self.max_batch == 0 || self.max_batch > self.max_context {
            return bad("max_batch must be 1 to max_context");
        }
        if self.logit_rows == 0 || self.logit_rows > self.max_batch {
            return bad("logit_rows must be 1 to max_batch");
        }
        if self.contexts == 0 || self.contexts > MAX_CONTEXTS {
            return bad("contexts must be 1 to 64 (MAX_CONTEXTS)");
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn smol() -> LlamaConfig {
        LlamaConfig {
            layers: 30,
            hidden: 576,
            ffn: 1536,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            vocab: 49152,
            rope_base: 100_000.0,
            rms_eps: 1e-5,
            context: 8192,
            tied_embeddings: true,
        }
    }

    #[test]
    fn smollm2_is_valid_and_broken_shapes_are_not() {
        let c = smol();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.kv_dim(), 192);
        for broken in [
            LlamaConfig { layers: 0, ..c },
            LlamaConfig { layers: 129, ..c },
            LlamaConfig { kv_heads: 4, ..c },
            LlamaConfig { kv_heads: 0, ..c },
            LlamaConfig { head_dim: 63, ..c },
            LlamaConfig { vocab: 0, ..c },
            LlamaConfig {
                rope_base: f32::NAN,
                ..c
            },
            LlamaConfig { rms_eps: 0.0, ..c },
        ] {
            assert!(
                matches!(broken.validate(), Err(LoadError::Config(_))),
                "{broken:?}"
            );
        }
    }

    #[test]
    fn limits_are_bounded_by_the_model() {
        let c = smol();
        assert_eq!(Limits::new(512, 64).validate(&c), Ok(()));
        assert_eq!(Limits::new(512, 64).with_logit_rows(8).validate(&c), Ok(()));
        for bad in [
            Limits::new(0, 1),
            Limits::new(MAX_CONTEXT + 16, 1),
            Limits::new(64, 0),
            Limits::new(64, 65),
            Limits::new(64, 8).with_logit_rows(9),
            Limits::new(64, 8).with_logit_rows(0),
            Limits::new(64, 8).with_contexts(0),
            Limits::new(64, 8).with_contexts(MAX_CONTEXTS + 1),
        ] {
            assert!(bad.validate(&c).is_err(), "{bad:?}");
        }
        let short = LlamaConfig { context: 100, ..c };
        assert!(Limits::new(128, 1).validate(&short).is_err());
    }
}
