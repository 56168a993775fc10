//! How many arena bytes a run needs, computed before anything is allocated.
//!
//! The DRAM budget is one fixed region, so its size must be known up front:
//! [`MemoryPlan`] adds up exactly what loading and a full context allocate,
//! each slot rounded up to the model's alignment, from the same tensor table
//! and buffer sizes the loader uses.

use super::arch::Arch;
use super::arena_use::ArenaUse;
use super::buffers::Buffers;
use super::config::{Limits, LlamaConfig, LlamaConfigExt};
use super::error::LoadError;
use super::ffn::DenseFfn;
use super::kv::KvLayout;
use super::tensor::TensorSource;
use super::weights::{Weights, ALIGN};

/// Arena bytes (and slots) of one run, by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// What the arena holds by kind of slot once loaded (see
    /// [`ArenaUse::check`]).
    pub arena_use: ArenaUse,
    /// Resident embedding, output head, norms and attention weights.
    pub weights: usize,
    /// The FFN source: its matrices and activation scratch.
    pub ffn: usize,
    /// KV chunks for `limits.contexts` full contexts.
    pub kv: usize,
    /// Forward-pass buffers.
    pub scratch: usize,
    /// Slots of all of the above at a full context.
    pub slots: usize,
}

impl MemoryPlan {
    /// The plan of a dense model from `src` under `limits`; checks every
    /// tensor the loader will read.
    pub fn dense<S: TensorSource>(
        src: &S,
        cfg: &LlamaConfig,
        limits: &Limits,
    ) -> Result<MemoryPlan, LoadError> {
        Self::dense_for(src, cfg, &Arch::Llama, limits)
    }

    /// [`MemoryPlan::dense`] for a model of architecture `arch` (Gemma's
    /// extra norms are resident weights).
    pub fn dense_for<S: TensorSource>(
        src: &S,
        cfg: &LlamaConfig,
        arch: &Arch,
        limits: &Limits,
    ) -> Result<MemoryPlan, LoadError> {
        cfg.validate()?;
        arch.validate()?;
        limits.validate(cfg)?;
        let mut weights = Weights::arena_bytes(src, cfg)?;
        if arch.is_gemma() {
            let n = super::gemma::norms_bytes(src, cfg)?;
            weights.exact = weights.exact.saturating_add(n.exact);
            weights.aligned = weights.aligned.saturating_add(n.aligned);
            weights.slots += n.slots;
        }
        let (ffn, ffn_scratch) = DenseFfn::arena_bytes(src, cfg, limits)?;
        let buffers = Buffers::arena_bytes(cfg, limits);
        let kv = KvLayout::new(cfg, arch).plan_bytes(
            limits.max_context,
            limits.max_batch,
            limits.contexts,
        );
        let mut plan = MemoryPlan {
            arena_use: ArenaUse {
                resident: weights.exact.saturating_add(ffn.exact),
                scratch: buffers.exact.saturating_add(ffn_scratch.exact),
                kv: kv.exact,
                ..ArenaUse::default()
            },
            weights: weights.aligned,
            ffn: ffn.aligned.saturating_add(ffn_scratch.aligned),
            kv: kv.aligned,
            scratch: buffers.aligned,
            slots: weights.slots + ffn.slots + ffn_scratch.slots + buffers.slots + kv.slots,
        };
        plan.arena_use.capacity = plan.total();
        Ok(plan)
    }

    /// Arena capacity that holds the whole plan: the parts plus one
    /// alignment of slack for a region whose start is not aligned.
    pub fn total(&self) -> usize {
        self.weights
            .saturating_add(self.ffn)
            .saturating_add(self.kv)
            .saturating_add(self.scratch)
            .saturating_add(ALIGN)
    }
}
