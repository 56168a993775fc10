//! The KV cache in chunks of [`CHUNK_TOKENS`] positions.
//!
//! A chunk holds the keys and values of **every layer** for 16 consecutive
//! positions, in one arena slot of [`SlotKind::KvChunk`]:
//!
//! ```text
//! layer 0: K[16][kv_dim] V[16][kv_dim] | layer 1: K.. V.. | ... | R[16] (f32)
//! ```
//!
//! `R` is the chunk's attention tally: for each of its positions, the
//! attention weight it has received so far, summed over query heads, layers
//! and every later position (see [`density`]). It rides in the chunk so it
//! moves, and is freed, with the keys and values it describes.
//!
//! All layers in one chunk, because the chunk is the unit the later KV
//! lifecycle moves: a chunk is compressed, swapped to flash and read back
//! (or recomputed from its 16 tokens) as a whole, and a 16-token span of
//! text is exactly what recomputation needs; per-layer chunks would also
//! cost 30 slots per 16 tokens. Positions are row-major inside each block
//! so the first `t` rows of a partly filled chunk are a valid
//! [`KvChunk`] of `t` tokens.
//!
//! Chunks are allocated as the context grows, up to the run's
//! `max_context`; past it, evaluation fails with
//! [`EvalError::ContextFull`] before anything is written.

use crate::arena::{DramArena, Slot, SlotKind};
use crate::compute::KvChunk;

pub mod codec;
pub mod density;
pub mod tolerance;

use super::config::{Limits, LlamaConfig, CHUNK_TOKENS, MAX_CHUNKS};
use super::error::EvalError;
use super::view::{f32s, Shared};
use super::weights::ALIGN;

/// Chunk views of one layer, one per chunk, for one attention call.
pub type ChunkViews<'m> = heapless::Vec<KvChunk<'m>, MAX_CHUNKS>;

/// The KV cache of one context.
#[derive(Debug, Clone)]
pub struct KvCache {
    chunks: heapless::Vec<Slot, MAX_CHUNKS>,
    len: usize,
    max: usize,
    layers: usize,
    heads: usize,
    kv_dim: usize,
}

impl KvCache {
    /// An empty cache for `cfg` that may grow to `limits.max_context`.
    pub fn new(cfg: &LlamaConfig, limits: &Limits) -> KvCache {
        KvCache {
            chunks: heapless::Vec::new(),
            len: 0,
            max: limits.max_context,
            layers: cfg.layers,
            heads: cfg.heads,
            kv_dim: cfg.kv_dim(),
        }
    }

    /// Bytes of one chunk: K and V of every layer for 16 positions and
    /// the 16 attention tallies, f32.
    pub const fn chunk_bytes(cfg: &LlamaConfig) -> usize {
        Self::bytes_of(cfg.layers, cfg.kv_dim())
    }

    const fn bytes_of(layers: usize, kv_dim: usize) -> usize {
        (layers * 2 * CHUNK_TOKENS * kv_dim + CHUNK_TOKENS) * 4
    }

    /// Byte offset of the attention tally inside a chunk.
    const fn tally_at(&self) -> usize {
        self.layers * 2 * CHUNK_TOKENS * self.kv_dim * 4
    }

    /// Chunks a context of `positions` positions needs.
    pub const fn chunks_for(positions: usize) -> usize {
        positions.div_ceil(CHUNK_TOKENS)
    }

    /// Positions evaluated so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` before the first position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions this cache may hold.
    pub fn max_positions(&self) -> usize {
        self.max
    }

    /// The chunk slots, oldest first.
    pub fn chunks(&self) -> &[Slot] {
        &self.chunks
    }

    /// Allocates chunks so positions `len..len + n` have room, or fails with
    /// `ContextFull` (nothing allocated) when they exceed the limit.
    pub fn reserve<A: DramArena>(&mut self, arena: &mut A, n: usize) -> Result<(), EvalError> {
        let end = self
            .len
            .checked_add(n)
            .filter(|&e| e <= self.max)
            .ok_or(EvalError::ContextFull { max: self.max })?;
        let bytes = self.chunk_bytes_here();
        while self.chunks.len() < Self::chunks_for(end) {
            let s = arena
                .alloc(bytes, ALIGN, SlotKind::KvChunk)
                .map_err(EvalError::arena)?;
            // Tallies are summed into: a new chunk starts them at zero
            // (its keys and values are written before they are read).
            let tally = self.tally_at();
            if let Some(t) = arena
                .bytes_mut(s)
                .map_err(EvalError::arena)?
                .get_mut(tally..)
            {
                t.fill(0);
            }
            if let Err(s) = self.chunks.push(s) {
                // Unreachable with `max <= MAX_CONTEXT`; give the slot back.
                arena.free(s).map_err(EvalError::arena)?;
                return Err(EvalError::ContextFull { max: self.max });
            }
        }
        Ok(())
    }

    /// Marks `n` more positions as written (after [`KvCache::reserve`]).
    pub fn advance(&mut self, n: usize) -> Result<(), EvalError> {
        let end = self
            .len
            .checked_add(n)
            .filter(|&e| e <= self.chunks.len() * CHUNK_TOKENS)
            .ok_or(EvalError::ContextFull { max: self.max })?;
        self.len = end;
        Ok(())
    }

    /// Frees every chunk: the context is empty again.
    pub fn clear<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        while let Some(s) = self.chunks.pop() {
            arena.free(s).map_err(EvalError::arena)?;
        }
        self.len = 0;
        Ok(())
    }

    /// Adds `received[p]` to the attention tally of position `p`, for
    /// positions `0..received.len()` (all reserved): the end of a forward
    /// pass folds its per-pass sums into the chunks.
    pub fn add_received<A: DramArena>(
        &self,
        arena: &mut A,
        received: Slot,
        positions: usize,
    ) -> Result<(), EvalError> {
        let tally = self.tally_at();
        for (c, &slot) in self.chunks.iter().enumerate() {
            let first = c * CHUNK_TOKENS;
            if first >= positions {
                break;
            }
            let n = (positions - first).min(CHUNK_TOKENS);
            let (t, m) = arena.parts_mut();
            let ([dst], sh) = super::view::split(t, m, [slot])?;
            let add = sh.f32s(received)?.get(first..first + n);
            let sums = dst.get_mut(tally..tally + n * 4);
            let (Some(add), Some(sums)) = (add, sums) else {
                return Err(EvalError::Internal("attention tally outside its chunk"));
            };
            for (s, &a) in super::view::f32s_mut(sums)?.iter_mut().zip(add) {
                *s += a;
            }
        }
        Ok(())
    }

    /// The attention tallies of chunk `index` (its 16 positions; those not
    /// yet evaluated are 0).
    pub fn tallies<'a, A: DramArena>(
        &self,
        arena: &'a A,
        index: usize,
    ) -> Result<&'a [f32], EvalError> {
        let slot = *self
            .chunks
            .get(index)
            .ok_or(EvalError::Internal("no such KV chunk"))?;
        let tally = self.tally_at();
        let bytes = arena.bytes(slot).map_err(EvalError::arena)?;
        let tallies = bytes
            .get(tally..tally + CHUNK_TOKENS * 4)
            .ok_or(EvalError::Internal("attention tally outside its chunk"))?;
        Ok(f32s(tallies)?)
    }

    /// LLMS's information density of chunk `index` (see [`density`]).
    pub fn density<A: DramArena>(&self, arena: &A, index: usize) -> Result<f32, EvalError> {
        let shape = density::TallyShape {
            heads: self.heads,
            layers: self.layers,
        };
        let t = self.tallies(arena, index)?;
        Ok(density::chunk_density(t, index, self.len, shape))
    }

    /// Where layer `layer`'s keys (`values == false`) or values sit in a
    /// chunk slot: a byte range of `16 x kv_dim` f32, position-major. The
    /// compressor and the swap path move chunks block by block.
    pub fn block_bytes(&self, layer: usize, values: bool) -> Option<core::ops::Range<usize>> {
        if layer >= self.layers {
            return None;
        }
        let block = CHUNK_TOKENS * self.kv_dim * 4;
        let at = (2 * layer + usize::from(values)) * block;
        Some(at..at + block)
    }

    /// The shape of this cache's chunks (what [`codec`] encodes).
    pub fn chunk_shape(&self) -> codec::ChunkShape {
        codec::ChunkShape {
            layers: self.layers,
            kv_dim: self.kv_dim,
        }
    }

    /// Layers and elements per position of the model this cache is for.
    pub fn shape(&self) -> (usize, usize) {
        (self.layers, self.kv_dim)
    }

    fn chunk_bytes_here(&self) -> usize {
        Self::bytes_of(self.layers, self.kv_dim)
    }

    /// Where position `pos` of layer `layer` goes: the chunk, and the byte
    /// offsets of its key row and its value row inside the chunk.
    pub fn row(&self, layer: usize, pos: usize) -> Result<(Slot, usize, usize), EvalError> {
        let slot = *self
            .chunks
            .get(pos / CHUNK_TOKENS)
            .ok_or(EvalError::ContextFull { max: self.max })?;
        if layer >= self.layers {
            return Err(EvalError::Internal("KV layer index out of range"));
        }
        let block = CHUNK_TOKENS * self.kv_dim;
        let k = (2 * layer * block + (pos % CHUNK_TOKENS) * self.kv_dim) * 4;
        Ok((slot, k, k + block * 4))
    }

    /// Views of layer `layer`'s keys and values for positions `0..positions`
    /// (which must have been reserved), one per chunk, into `out`.
    pub fn views<'m>(
        &self,
        mem: &Shared<'m>,
        layer: usize,
        positions: usize,
        out: &mut ChunkViews<'m>,
    ) -> Result<(), EvalError> {
        out.clear();
        if layer >= self.layers || positions > self.chunks.len() * CHUNK_TOKENS {
            return Err(EvalError::Internal("KV view outside the reserved context"));
        }
        let block = CHUNK_TOKENS * self.kv_dim;
        for (c, &slot) in self.chunks.iter().enumerate() {
            let first = c * CHUNK_TOKENS;
            if first >= positions {
                break;
            }
            let tokens = (positions - first).min(CHUNK_TOKENS);
            let all = f32s(mem.get(slot)?)?;
            let keys_at = 2 * layer * block;
            let short = EvalError::Internal("KV chunk shorter than its layout");
            let keys = all
                .get(keys_at..keys_at + tokens * self.kv_dim)
                .ok_or(short)?;
            let values = all
                .get(keys_at + block..keys_at + block + tokens * self.kv_dim)
                .ok_or(short)?;
            out.push(KvChunk {
                tokens,
                keys,
                values,
            })
            .map_err(|_| EvalError::ContextFull { max: self.max })?;
        }
        Ok(())
    }
}
