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

use super::arch::Arch;
use super::config::{Limits, LlamaConfig, CHUNK_TOKENS};
use super::error::EvalError;
use super::kv::codec::{decode_chunk, encode_chunk, ChunkLevel};
use super::kv::{KvCache, KvLayout};

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
    /// An empty context for a model of `cfg` under `arch` that may grow
    /// to `limits.max_context` positions. Allocates nothing: chunks are
    /// taken from the arena as positions are evaluated.
    pub fn new(cfg: &LlamaConfig, arch: &Arch, limits: &Limits) -> Context {
        Context {
            kv: KvCache::new(cfg, arch, limits),
            skipped: 0,
        }
    }

    /// A context that keeps every layer whole whatever the model's
    /// windows: the reference the windowed cache is tested against.
    #[cfg(test)]
    pub(crate) fn whole_for_tests(cfg: &LlamaConfig, limits: &Limits) -> Context {
        Context::new(cfg, &Arch::Llama, limits)
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

    /// How this context's chunks are split (see
    /// [`kv::layout`](super::kv::layout)).
    pub fn kv_layout(&self) -> &KvLayout {
        self.kv.layout()
    }

    /// Bytes of chunk `index`'s payload at `level` as the context stands:
    /// its main part, and its window part unless that has expired.
    pub fn payload_bytes(&self, index: usize, level: ChunkLevel) -> Option<usize> {
        self.kv.layout().payload_bytes(index, self.len(), level)
    }

    /// LLMS's information density of chunk `index` (the attention its
    /// positions received so far; see [`kv::density`](super::kv::density)).
    pub fn density<A: DramArena>(&self, arena: &A, index: usize) -> Result<f32, EvalError> {
        self.kv.density(arena, index)
    }

    /// Encodes chunk `index` at `level` into `out`
    /// (`payload_bytes(index, level)` bytes): what parking and swapping
    /// out store. The main part's payload comes first, then the window
    /// part's while it lives. A partly filled chunk only at
    /// [`ChunkLevel::F32`] (see [`codec`](super::kv::codec)).
    pub fn encode_chunk<A: DramArena, C: Compute>(
        &self,
        arena: &A,
        compute: &mut C,
        index: usize,
        level: ChunkLevel,
        out: &mut [u8],
    ) -> Result<(), EvalError> {
        let (main, part) = self.parts_to_encode(index, level, out.len())?;
        let main = arena.bytes(main).map_err(EvalError::arena)?;
        let part = match part {
            Some(p) => Some(arena.bytes(p).map_err(EvalError::arena)?),
            None => None,
        };
        self.encode_parts(compute, level, (main, part), out)
    }

    /// [`Context::encode_chunk`] into the first `payload_bytes(index,
    /// level)` bytes of the arena's slot `dst` (a parked copy).
    pub fn encode_chunk_to<A: DramArena, C: Compute>(
        &self,
        arena: &mut A,
        compute: &mut C,
        index: usize,
        level: ChunkLevel,
        dst: Slot,
    ) -> Result<(), EvalError> {
        let size = EvalError::Internal("KV chunk payload larger than its slot");
        let n = self.payload_bytes(index, level).ok_or(size)?;
        let (main, part) = self.parts_to_encode(index, level, n)?;
        match part {
            Some(p) => {
                let [m, p, d] = arena
                    .bytes_disjoint_mut([main, p, dst])
                    .map_err(EvalError::arena)?;
                let out = d.get_mut(..n).ok_or(size)?;
                self.encode_parts(compute, level, (m, Some(p)), out)
            }
            None => {
                let [m, d] = arena
                    .bytes_disjoint_mut([main, dst])
                    .map_err(EvalError::arena)?;
                let out = d.get_mut(..n).ok_or(size)?;
                self.encode_parts(compute, level, (m, None), out)
            }
        }
    }

    /// The slots of chunk `index` an encoding at `level` into `len` bytes
    /// reads, after checking that it may.
    fn parts_to_encode(
        &self,
        index: usize,
        level: ChunkLevel,
        len: usize,
    ) -> Result<(Slot, Option<Slot>), EvalError> {
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
        if self.payload_bytes(index, level) != Some(len) {
            return Err(EvalError::Internal("KV chunk payload of the wrong size"));
        }
        let live = !self.kv.layout().expired(index, self.len());
        match self.kv.layout().window_shape() {
            Some(_) if live => match self.kv.window_part(index) {
                Some(p) => Ok((slot, Some(p))),
                None => Err(EvalError::Internal(
                    "a live KV chunk without its window part",
                )),
            },
            _ => Ok((slot, None)),
        }
    }

    fn encode_parts<C: Compute>(
        &self,
        compute: &mut C,
        level: ChunkLevel,
        (main, part): (&[u8], Option<&[u8]>),
        out: &mut [u8],
    ) -> Result<(), EvalError> {
        let layout = self.kv.layout();
        let shape = layout.main_shape();
        let n = shape.payload_bytes(level).unwrap_or(0).min(out.len());
        let (head, rest) = out.split_at_mut(n);
        encode_chunk(compute, shape, level, main, head)?;
        match (layout.window_shape(), part) {
            (Some(shape), Some(part)) => encode_chunk(compute, shape, level, part, rest),
            _ => Ok(()),
        }
    }

    /// Appends a chunk decoded from `payload` (at `level`) holding `tokens`
    /// positions (16 unless it is the last): the inverse of
    /// [`Context::encode_chunk`], restoring a parked or swapped context
    /// chunk by chunk, in order. A payload without the window part (one
    /// encoded after the part expired) restores the main part only. Fails
    /// with nothing appended when the context does not end on a chunk
    /// boundary, the payload has neither size, the chunk would pass its
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
        let layout = *self.kv.layout();
        let size = EvalError::Internal("KV chunk payload of the wrong size");
        let main_len = layout.main_shape().payload_bytes(level).ok_or(size)?;
        let window = match layout.window_shape() {
            Some(w) if payload.len() > main_len => {
                let n = w.payload_bytes(level).ok_or(size)?;
                (payload.len() == main_len + n).then_some(w).ok_or(size)?;
                Some(w)
            }
            _ if payload.len() == main_len => None,
            _ => return Err(size),
        };
        self.kv.push_part(arena, tokens, window.is_some())?;
        let index = self.kv.chunks().len() - 1;
        let (head, rest) = payload.split_at(main_len);
        let decoded = self.decode_parts(arena, compute, index, level, (head, rest));
        if let Err(e) = decoded {
            self.kv.pop_part(arena)?;
            return Err(e);
        }
        self.kv.advance(tokens)
    }

    /// Decodes a pushed chunk's parts from their payloads.
    fn decode_parts<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        index: usize,
        level: ChunkLevel,
        (head, rest): (&[u8], &[u8]),
    ) -> Result<(), EvalError> {
        let layout = *self.kv.layout();
        let main = *self
            .kv
            .chunks()
            .get(index)
            .ok_or(EvalError::Internal("no such KV chunk"))?;
        let dst = arena.bytes_mut(main).map_err(EvalError::arena)?;
        decode_chunk(compute, layout.main_shape(), level, head, dst)?;
        if let (Some(shape), Some(part)) = (layout.window_shape(), self.kv.window_part(index)) {
            let dst = arena.bytes_mut(part).map_err(EvalError::arena)?;
            decode_chunk(compute, shape, level, rest, dst)?;
        }
        Ok(())
    }

    /// Whether this context was made for a model of `cfg` whose buffers
    /// hold `limits.max_context` positions.
    pub(super) fn fits(&self, cfg: &LlamaConfig, arch: &Arch, limits: &Limits) -> bool {
        let (have, want) = (self.kv.layout(), KvLayout::new(cfg, arch));
        // A cache may keep a local layer whole (it only costs memory), never
        // window a layer that sees the whole context.
        let windows =
            have.local & !want.local == 0 && (have.local == 0 || have.window == want.window);
        have.layers == want.layers
            && have.kv_dim == want.kv_dim
            && windows
            && self.max_positions() <= limits.max_context
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
