//! The working buffers of a forward pass, each an arena slot of f32.
//!
//! Sized once from the configuration and the run's limits, so a step never
//! allocates: activations for `max_batch` positions, the attention scores
//! for a full context in every head (so a backend can run heads in
//! parallel; at least two contexts' worth, which the attention weights each
//! position receives need), the sums of those weights, and `logit_rows`
//! rows of logits.

use crate::arena::{DramArena, Slot, SlotKind};

use super::arena_use::Footprint;
use super::config::{Limits, LlamaConfig};
use super::error::LoadError;
use super::weights::ALIGN;

/// The buffers; every one holds f32 values.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// Residual stream, `max_batch x hidden`.
    pub x: Slot,
    /// Normalized residual (attention and FFN input), `max_batch x hidden`.
    pub xb: Slot,
    /// Queries, `max_batch x heads * head_dim`.
    pub q: Slot,
    /// New keys, `max_batch x kv_dim`.
    pub k: Slot,
    /// New values, `max_batch x kv_dim`.
    pub v: Slot,
    /// Attention output, `max_batch x heads * head_dim`.
    pub att: Slot,
    /// Projection and FFN output before the residual add, `max_batch x hidden`.
    pub tmp: Slot,
    /// Attention scores, `max(heads, 2) x max_context`.
    pub scores: Slot,
    /// Attention each position received in this pass, summed over heads,
    /// layers and the batch's rows: `max_context` (added to the KV chunks'
    /// tallies at the end of the pass).
    pub received: Slot,
    /// Logits, `logit_rows x vocab`.
    pub logits: Slot,
}

/// Floats of each buffer, in the field order of [`Buffers`].
fn floats(c: &LlamaConfig, l: &Limits) -> [usize; 10] {
    let b = l.max_batch;
    let qd = c.heads * c.head_dim;
    [
        b * c.hidden,
        b * c.hidden,
        b * qd,
        b * c.kv_dim(),
        b * c.kv_dim(),
        b * qd,
        b * c.hidden,
        c.heads.max(2) * l.max_context,
        l.max_context,
        l.logit_rows * c.vocab,
    ]
}

impl Buffers {
    /// The slots [`Buffers::alloc`] takes.
    pub fn arena_bytes(cfg: &LlamaConfig, limits: &Limits) -> Footprint {
        let mut f = Footprint::default();
        for n in floats(cfg, limits) {
            f.add(n.saturating_mul(4));
        }
        f
    }

    /// Allocates every buffer as a scratch slot.
    pub fn alloc<A: DramArena>(
        arena: &mut A,
        cfg: &LlamaConfig,
        limits: &Limits,
    ) -> Result<Buffers, LoadError> {
        let mut s = [None; 10];
        for (slot, n) in s.iter_mut().zip(floats(cfg, limits)) {
            let bytes = n
                .checked_mul(4)
                .ok_or(LoadError::Config("buffer size overflows"))?;
            *slot = Some(
                arena
                    .alloc(bytes, ALIGN, SlotKind::Scratch)
                    .map_err(LoadError::arena)?,
            );
        }
        let [Some(x), Some(xb), Some(q), Some(k), Some(v), Some(att), Some(tmp), Some(scores), Some(received), Some(logits)] =
            s
        else {
            return Err(LoadError::Internal("buffer allocation incomplete"));
        };
        Ok(Buffers {
            x,
            xb,
            q,
            k,
            v,
            att,
            tmp,
            scores,
            received,
            logits,
        })
    }
}
