//! Dense generation with a llama-architecture model whose weights are
//! resident in a [`DramArena`].
//!
//! - [`LlamaConfig`] and [`Limits`] say what model and how long a context;
//! - [`MemoryPlan`] says how many arena bytes that takes, before anything is
//!   allocated, so the arena (the DRAM budget) can be sized exactly;
//! - [`Model::load`] copies the weights from a [`TensorSource`] (a GGUF
//!   file) into resident slots and allocates the working buffers;
//! - [`Model::eval`] runs positions of one [`Context`] (a conversation:
//!   its KV cache) through the model: a prompt in batches (each weight
//!   read once per batch), then one token at a time, with the KV cache
//!   growing in [`CHUNK_TOKENS`]-position chunks. One model serves many
//!   contexts; each holds only its own KV chunks.
//!
//! Planning and loading fail with a [`LoadError`], evaluating (and every
//! operation on a context's KV cache) with an [`EvalError`]; both report
//! one [`ErrorKind`].
//!
//! The FFN goes through the [`FfnSource`] seam so a streaming source can
//! replace the resident [`DenseFfn`] without touching the loop. Nothing here
//! allocates from the heap or uses `unsafe`; every buffer is an arena slot
//! and every bound ([`MAX_LAYERS`], [`MAX_CHUNKS`]) is fixed at compile time.
//!
//! ```no_run
//! # use lode_kernel::arena::DramArena;
//! # use lode_kernel::compute::Compute;
//! use lode_kernel::formats::gguf::Gguf;
//! use lode_kernel::model::{Limits, LlamaConfig, LlamaConfigExt, MemoryPlan, Model, WantLogits};
//!
//! # fn run<A: DramArena, C: Compute>(bytes: &[u8], make_arena: impl Fn(usize) -> A, cpu: &mut C)
//! #     -> Result<(), Box<dyn core::error::Error>> {
//! let file = Gguf::parse(bytes)?;
//! let cfg = LlamaConfig::from_gguf(&file.check_llama()?)?;
//! let limits = Limits::new(256, 32);
//! let plan = MemoryPlan::dense(&file, &cfg, &limits)?;
//! let mut arena = make_arena(plan.total());
//! let mut model = Model::load(&file, cfg, limits, &mut arena)?;
//! let mut chat = model.new_context();
//! let mut best = 0u32;
//! model.eval(&mut chat, &mut arena, cpu, &[504, 3575, 282], WantLogits::Last, |_, logits| {
//!     best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap_or(0) as u32;
//! })?;
//! # Ok(()) }
//! ```

mod arch;
mod arena_use;
mod budget;
mod buffers;
mod bundle_ffn;
mod config;
mod context;
mod error;
mod eval;
mod ffn;
mod forward;
mod gemma;
mod head_refine;
pub mod kv;
pub mod stream;
mod tensor;
mod view;
mod weight_source;
mod weights;

#[cfg(test)]
pub(crate) mod tests;

use crate::arena::DramArena;

pub use arch::{Arch, Gate, Gemma3};
pub use arena_use::{ArenaUse, Footprint, Mismatch};
pub use budget::MemoryPlan;
pub use buffers::Buffers;
pub use bundle_ffn::{BundleFfn, BundleTypes};
pub use config::{
    Limits, LlamaConfig, LlamaConfigExt, CHUNK_TOKENS, MAX_CHUNKS, MAX_CONTEXT, MAX_CONTEXTS,
    MAX_LAYERS,
};
pub use context::Context;
pub use error::{ErrorKind, EvalError, LoadError};
pub use eval::WantLogits;
pub use ffn::{DenseFfn, DenseLayer, FfnIo, FfnSource};
pub use gemma::{neox_to_adjacent, GemmaNorms};
pub use kv::{ChunkViews, Growth, KvBytes, KvCache, KvLayout};
pub use tensor::{RawTensor, TensorRef, TensorSource};
pub use view::{split, Shared};
pub use weight_source::{Resident, WeightSource};
pub use weights::{Attention, LayerWeights, Weights, ALIGN};

/// A loaded model: its weights (a [`WeightSource`]: resident, or streamed)
/// and the working buffers of one forward pass. Conversations are
/// [`Context`]s of their own, so one model serves any number of them.
#[derive(Debug, Clone)]
pub struct Model<W: WeightSource = Resident<DenseFfn>> {
    cfg: LlamaConfig,
    limits: Limits,
    weights: W,
    buf: Buffers,
    /// Layers the forward pass skips (bit `l` for layer `l`): a pruning
    /// search scores masks on the loaded model before any layer is cut
    /// from an image.
    skipped: u128,
    /// The decoder variant: llama's, or Gemma 3's.
    arch: Arch,
    /// Gemma's extra norms per layer (empty for llama).
    gemma: heapless::Vec<GemmaNorms, MAX_LAYERS>,
    /// Logits per position recomputed exactly from the embedding table
    /// (0: the head's logits as they are); see [`Model::refine_head`].
    refine: usize,
}

impl Model<Resident<DenseFfn>> {
    /// Loads a dense model: every weight resident in `arena`, working
    /// buffers for `limits`. Size the arena with [`MemoryPlan::dense`].
    pub fn load<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: LlamaConfig,
        limits: Limits,
        arena: &mut A,
    ) -> Result<Self, LoadError> {
        cfg.validate()?;
        limits.validate(&cfg)?;
        let weights = Weights::load(src, &cfg, arena)?;
        let ffn = DenseFfn::load(src, &cfg, &limits, arena)?;
        Self::new(cfg, limits, Resident::new(weights, ffn), arena)
    }
}

impl Model<Resident<DenseFfn>> {
    /// [`Model::load`] for a model of architecture `arch` (a Gemma 3 GGUF:
    /// see [`Arch::from_gemma3`]). Size the arena with
    /// [`MemoryPlan::dense_for`].
    pub fn load_for<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: LlamaConfig,
        arch: Arch,
        limits: Limits,
        arena: &mut A,
    ) -> Result<Self, LoadError> {
        cfg.validate()?;
        arch.validate()?;
        limits.validate(&cfg)?;
        let weights = Weights::load_for(src, &cfg, &arch, arena)?;
        let ffn = DenseFfn::load(src, &cfg, &limits, arena)?.with_gate(arch.gate());
        let gemma = if arch.is_gemma() {
            gemma::load_norms(src, &cfg, arena)?
        } else {
            heapless::Vec::new()
        };
        let mut model = Self::new(cfg, limits, Resident::new(weights, ffn), arena)?;
        model.arch = arch;
        model.gemma = gemma;
        Ok(model)
    }
}

impl<F: FfnSource> Model<Resident<F>> {
    /// A model whose FFN is `ffn` and whose other weights are loaded from
    /// `src` here.
    pub fn with_ffn<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: LlamaConfig,
        limits: Limits,
        arena: &mut A,
        ffn: F,
    ) -> Result<Self, LoadError> {
        cfg.validate()?;
        limits.validate(&cfg)?;
        let weights = Weights::load(src, &cfg, arena)?;
        Self::new(cfg, limits, Resident::new(weights, ffn), arena)
    }
}

impl<W: WeightSource> Model<W> {
    /// A model over `weights` (loaded by the caller: a streaming source
    /// loads what its plan keeps resident); allocates the working buffers.
    pub fn new<A: DramArena>(
        cfg: LlamaConfig,
        limits: Limits,
        weights: W,
        arena: &mut A,
    ) -> Result<Self, LoadError> {
        cfg.validate()?;
        limits.validate(&cfg)?;
        if weights.layers() != cfg.layers {
            return Err(LoadError::Config(
                "the weights have another number of layers",
            ));
        }
        let buf = Buffers::alloc(arena, &cfg, &limits)?;
        Ok(Model {
            cfg,
            limits,
            weights,
            buf,
            skipped: 0,
            arch: Arch::Llama,
            gemma: heapless::Vec::new(),
            refine: 0,
        })
    }

    /// [`Model::new`] for a model of architecture `arch` whose weights hold
    /// what the architecture adds (a streamed Gemma image's extra norms:
    /// [`WeightSource::extra_norms`] of every layer).
    pub fn new_for<A: DramArena>(
        cfg: LlamaConfig,
        arch: Arch,
        limits: Limits,
        weights: W,
        arena: &mut A,
    ) -> Result<Self, LoadError> {
        arch.validate()?;
        if arch.is_gemma() && (0..cfg.layers).any(|l| weights.extra_norms(l).is_none()) {
            return Err(LoadError::Layout(
                "a Gemma model's weights lack the extra norms of a layer",
            ));
        }
        let mut model = Self::new(cfg, limits, weights, arena)?;
        model.arch = arch;
        Ok(model)
    }

    /// Skips the layers whose bits are set in `mask` (bit `l` for layer
    /// `l`) from the next evaluation on: their residual stream passes
    /// through unchanged, as if the layers were cut. A context started
    /// under one mask continues only under the same mask (another is
    /// [`EvalError::ForeignContext`]). Every layer may be skipped (the
    /// hidden rows are then the embedding rows, the first layer's input);
    /// a bit past the last layer is refused.
    pub fn set_skipped_layers(&mut self, mask: u128) -> Result<(), LoadError> {
        let all = match self.cfg.layers {
            n if n >= 128 => u128::MAX,
            n => (1u128 << n) - 1,
        };
        if mask & !all != 0 {
            return Err(LoadError::Config("a skipped layer past the last layer"));
        }
        self.skipped = mask;
        Ok(())
    }

    /// Treats the output head as an approximation of the embedding table
    /// (an image packed with `--head`, a re-quantized copy of a tied head)
    /// and recomputes the `k` largest logits of every position exactly
    /// from the table's rows (see `head_refine.rs`); 0 turns it off. Only
    /// a model with a separate head can; `k` is at most
    /// [`MAX_REFINED_LOGITS`](crate::limits::MAX_REFINED_LOGITS).
    pub fn refine_head(&mut self, k: usize) -> Result<(), LoadError> {
        if k > crate::limits::MAX_REFINED_LOGITS {
            return Err(LoadError::Config(
                "at most MAX_REFINED_LOGITS logits a position are refined",
            ));
        }
        if k > 0 && self.cfg.tied_embeddings {
            return Err(LoadError::Config(
                "only a separate (re-quantized) head is refined from the embedding table",
            ));
        }
        self.refine = k;
        Ok(())
    }

    /// The layers skipped (bit `l` for layer `l`).
    pub fn skipped_layers(&self) -> u128 {
        self.skipped
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The model's architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The run's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new, empty conversation for this model, up to the limits'
    /// `max_context` positions. Its KV chunks come from the arena as it
    /// grows; the memory plans reserve room for `limits.contexts` of them.
    pub fn new_context(&self) -> Context {
        Context::new(&self.cfg, &self.arch, &self.limits)
    }

    /// The weights.
    pub fn weights(&self) -> &W {
        &self.weights
    }

    /// The weights, mutably (a streaming source's counters and quiesce).
    pub fn weights_mut(&mut self) -> &mut W {
        &mut self.weights
    }
}
