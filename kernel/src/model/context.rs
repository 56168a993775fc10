//! One conversation's state: its KV cache and how many positions it holds.
//!
//! A loaded [`Model`](super::Model) holds weights and working buffers
//! only; every conversation is a [`Context`] of its own, so one model can
//! serve many of them in one arena, one evaluation at a time. That is the
//! split the multi-context service builds on: a context's KV chunks are
//! the part that is compressed, swapped to flash and restored, while the
//! weights stay shared.
//!
//! A context is made for one model's shape ([`Model::new_context`]
//! (super::Model::new_context)); evaluating it with a model of another
//! shape, or one whose buffers are sized for fewer positions, is refused
//! before anything is written.

use crate::arena::{DramArena, Slot};

use super::config::{Limits, LlamaConfig};
use super::error::ModelError;
use super::kv::KvCache;

/// The KV cache and length of one conversation.
#[derive(Debug, Clone)]
pub struct Context {
    kv: KvCache,
}

impl Context {
    /// An empty context for a model of `cfg` that may grow to
    /// `limits.max_context` positions. Allocates nothing: chunks are
    /// taken from the arena as positions are evaluated.
    pub fn new(cfg: &LlamaConfig, limits: &Limits) -> Context {
        Context {
            kv: KvCache::new(cfg, limits),
        }
    }

    /// Positions evaluated so far.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    /// `true` before the first position.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    /// Most positions this context may hold.
    pub fn max_positions(&self) -> usize {
        self.kv.max_positions()
    }

    /// The KV cache.
    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The KV chunk slots, oldest first.
    pub fn chunks(&self) -> &[Slot] {
        self.kv.chunks()
    }

    /// Empties the context, giving its KV chunks back to `arena`.
    pub fn clear<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
        self.kv.clear(arena)
    }

    /// Whether this context was made for a model of `cfg` whose buffers
    /// hold `limits.max_context` positions.
    pub(super) fn fits(&self, cfg: &LlamaConfig, limits: &Limits) -> bool {
        self.kv.shape() == (cfg.layers, cfg.kv_dim()) && self.max_positions() <= limits.max_context
    }

    /// The KV cache, mutably (the forward pass extends it).
    pub(super) fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }
}
