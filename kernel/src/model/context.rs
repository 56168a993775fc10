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
use crate::compute::Compute;

use super::config::{Limits, LlamaConfig, CHUNK_TOKENS};
use super::error::EvalError;
use super::kv::codec::{decode_chunk, encode_chunk, ChunkLevel, ChunkShape};
use super::kv::KvCache;

/// The KV cache and length of one conversation.
#[derive(Debug, Clone)]
pub struct Context {
    kv: KvCache,
    /// The layers the model skipped when this context's first position
    /// was evaluated: its KV holds nothing for them, so it continues only
    /// under the same mask.
    skipped: u128,
}

impl Context {
    /// An empty context for a model of `cfg` that may grow to
    /// `limits.max_context` positions. Allocates nothing: chunks are
    /// taken from the arena as positions are evaluated.
    pub fn new(cfg: &LlamaConfig, limits: &Limits) -> Context {
        Context {
            kv: KvCache::new(cfg, limits),
            skipped: 0,
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
    pub fn clear<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        self.kv.clear(arena)
    }

    /// The shape of this context's chunks.
    pub fn chunk_shape(&self) -> ChunkShape {
        self.kv.chunk_shape()
    }

    /// LLMS's information density of chunk `index` (the attention its
    /// positions received so far; see [`kv::density`](super::kv::density)).
    pub fn density<A: DramArena>(&self, arena: &A, index: usize) -> Result<f32, EvalError> {
        self.kv.density(arena, index)
    }

    /// Encodes chunk `index` at `level` into `out`
    /// (`chunk_shape().payload_bytes(level)` bytes): what parking and
    /// swapping out store. A partly filled chunk only at
    /// [`ChunkLevel::F32`] (see [`codec`](super::kv::codec)).
    pub fn encode_chunk<A: DramArena, C: Compute>(
        &self,
        arena: &A,
        compute: &mut C,
        index: usize,
        level: ChunkLevel,
        out: &mut [u8],
    ) -> Result<(), EvalError> {
        let slot = *self
            .kv
            .chunks()
            .get(index)
            .ok_or(EvalError::Internal("no such KV chunk"))?;
        let full = (index + 1) * CHUNK_TOKENS <= self.len();
        if !full && level != ChunkLevel::F32 {
            return Err(EvalError::Internal(
                "a partial KV chunk is stored as f32 only",
            ));
        }
        let bytes = arena.bytes(slot).map_err(EvalError::arena)?;
        encode_chunk(compute, self.chunk_shape(), level, bytes, out)
    }

    /// Appends a chunk decoded from `payload` (at `level`) holding `tokens`
    /// positions (16 unless it is the last): the inverse of
    /// [`Context::encode_chunk`], restoring a parked or swapped context
    /// chunk by chunk, in order. Fails with nothing appended when the
    /// context does not end on a chunk boundary, the chunk would pass its
    /// limit, or the arena has no room.
    pub fn push_chunk<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        level: ChunkLevel,
        payload: &[u8],
        tokens: usize,
    ) -> Result<(), EvalError> {
        if !self.len().is_multiple_of(CHUNK_TOKENS) || tokens == 0 || tokens > CHUNK_TOKENS {
            return Err(EvalError::Internal(
                "restored KV chunks must follow whole chunks",
            ));
        }
        if self.chunk_shape().payload_bytes(level) != Some(payload.len()) {
            return Err(EvalError::Internal("KV chunk payload of the wrong size"));
        }
        self.kv.reserve(arena, tokens)?;
        let slot = *self
            .kv
            .chunks()
            .last()
            .ok_or(EvalError::Internal("no KV chunk after reserve"))?;
        let shape = self.chunk_shape();
        let dst = arena.bytes_mut(slot).map_err(EvalError::arena)?;
        decode_chunk(compute, shape, level, payload, dst)?;
        self.kv.advance(tokens)
    }

    /// Whether this context was made for a model of `cfg` whose buffers
    /// hold `limits.max_context` positions.
    pub(super) fn fits(&self, cfg: &LlamaConfig, limits: &Limits) -> bool {
        self.kv.shape() == (cfg.layers, cfg.kv_dim()) && self.max_positions() <= limits.max_context
    }

    /// Whether a model skipping the layers of `skipped` may evaluate this
    /// context: an empty context takes the mask, a started one only
    /// continues under the mask it was started with.
    pub(super) fn adopt_mask(&mut self, skipped: u128) -> bool {
        if self.is_empty() {
            self.skipped = skipped;
        }
        self.skipped == skipped
    }

    /// The KV cache, mutably (the forward pass extends it).
    pub(super) fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }
}
