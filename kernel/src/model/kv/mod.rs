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
//!
//! A model with sliding-window layers (Gemma 3) splits each chunk in two
//! slots, a main part for the layers that see the whole context and a
//! window part for the rest, and gives the window part up once no later
//! query can see it ([`layout`]): the layout above is then that of each
//! part, over its own layers.

use crate::arena::{DramArena, Slot, SlotKind};
use crate::compute::KvChunk;

pub mod codec;
pub mod density;
pub mod layout;
mod tallies;
pub mod tolerance;

pub use layout::{Growth, KvBytes, KvLayout};

use super::arch::Arch;
use super::config::{Limits, LlamaConfig, CHUNK_TOKENS, MAX_CHUNKS};
use super::error::EvalError;
use super::view::{f32s, Shared};
use super::weights::ALIGN;

/// Chunk views of one layer, one per chunk, for one attention call.
pub type ChunkViews<'m> = heapless::Vec<KvChunk<'m>, MAX_CHUNKS>;

/// The KV cache of one context.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Main parts, oldest first.
    chunks: heapless::Vec<Slot, MAX_CHUNKS>,
    /// Window parts, one per chunk: `None` once expired (always without
    /// local layers).
    windows: heapless::Vec<Option<Slot>, MAX_CHUNKS>,
    /// Expired window parts kept for the next chunks, so the window's slots
    /// are reused in place instead of freed and allocated again.
    spare: heapless::Vec<Slot, MAX_CHUNKS>,
    len: usize,
    max: usize,
    heads: usize,
    layout: KvLayout,
}

impl KvCache {
    /// An empty cache for `cfg` under `arch` that may grow to
    /// `limits.max_context`.
    pub fn new(cfg: &LlamaConfig, arch: &Arch, limits: &Limits) -> KvCache {
        KvCache {
            chunks: heapless::Vec::new(),
            windows: heapless::Vec::new(),
            spare: heapless::Vec::new(),
            len: 0,
            max: limits.max_context,
            heads: cfg.heads,
            layout: KvLayout::new(cfg, arch),
        }
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

    /// The chunks' main slots, oldest first.
    pub fn chunks(&self) -> &[Slot] {
        &self.chunks
    }

    /// Chunk `index`'s window part, if it has one.
    pub fn window_part(&self, index: usize) -> Option<Slot> {
        self.windows.get(index).copied().flatten()
    }

    /// How this cache splits its chunks.
    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    /// Bytes of the arena this cache holds (main and window parts, spares).
    pub fn bytes(&self) -> usize {
        self.chunks.len() * self.layout.main_bytes()
            + self.window_slots() * self.layout.window_bytes()
    }

    /// Window parts held, live or spare.
    fn window_slots(&self) -> usize {
        self.windows.iter().flatten().count() + self.spare.len()
    }

    /// Slots growing to `positions` positions in passes of up to
    /// `max_batch` allocates at most ([`KvLayout::growth`]): what a caller
    /// that must make room first needs free.
    pub fn growth(&self, positions: usize, max_batch: usize) -> Growth {
        let held = (self.chunks.len(), self.window_slots());
        self.layout.growth(held, positions, max_batch)
    }

    /// Allocates chunks so positions `len..len + n` have room, or fails with
    /// `ContextFull` (nothing allocated) when they exceed the limit.
    pub fn reserve<A: DramArena>(&mut self, arena: &mut A, n: usize) -> Result<(), EvalError> {
        let end = self
            .len
            .checked_add(n)
            .filter(|&e| e <= self.max)
            .ok_or(EvalError::ContextFull { max: self.max })?;
        while self.chunks.len() < Self::chunks_for(end) {
            self.push_slots(arena, true)?;
        }
        Ok(())
    }

    /// Appends the slots of a chunk that will hold `tokens` positions (a
    /// restored one: the cache must end on a chunk boundary), with its
    /// window part when `window` asks for one and the model has local
    /// layers; [`KvCache::pop_part`] takes it back.
    pub(crate) fn push_part<A: DramArena>(
        &mut self,
        arena: &mut A,
        tokens: usize,
        window: bool,
    ) -> Result<(), EvalError> {
        let start = self.chunks.len() * CHUNK_TOKENS;
        if start != self.len || start + tokens > self.max {
            return Err(EvalError::ContextFull { max: self.max });
        }
        self.push_slots(arena, window)
    }

    /// Removes the last chunk, which holds no position yet, giving its
    /// main part back to the arena and its window part to the spares.
    pub(crate) fn pop_part<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        if self.chunks.len() * CHUNK_TOKENS != self.len + CHUNK_TOKENS {
            return Err(EvalError::Internal("only an empty KV chunk is taken back"));
        }
        if let Some(s) = self.windows.pop().flatten() {
            let _ = self.spare.push(s);
        }
        match self.chunks.pop() {
            Some(s) => arena.free(s).map_err(EvalError::arena),
            None => Ok(()),
        }
    }

    /// Appends a chunk: its main part, and its window part when the model
    /// has local layers and `window` asks for it.
    fn push_slots<A: DramArena>(&mut self, arena: &mut A, window: bool) -> Result<(), EvalError> {
        if self.chunks.is_full() {
            // Unreachable with `max <= MAX_CONTEXT`.
            return Err(EvalError::ContextFull { max: self.max });
        }
        let main = new_part(arena, self.layout.main_bytes())?;
        let part = match self.layout.window_shape() {
            Some(_) if window => match self.spare.pop() {
                Some(s) => Some(s),
                None => match new_part(arena, self.layout.window_bytes()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        arena.free(main).map_err(EvalError::arena)?;
                        return Err(e);
                    }
                },
            },
            _ => None,
        };
        // Both fit: `chunks` was not full and `windows` is as long.
        let _ = self.chunks.push(main);
        let _ = self.windows.push(part);
        Ok(())
    }

    /// Marks `n` more positions as written (after [`KvCache::reserve`]),
    /// then sets aside the window parts no later query sees.
    pub fn advance(&mut self, n: usize) -> Result<(), EvalError> {
        let end = self
            .len
            .checked_add(n)
            .filter(|&e| e <= self.chunks.len() * CHUNK_TOKENS)
            .ok_or(EvalError::ContextFull { max: self.max })?;
        self.len = end;
        for (i, w) in self.windows.iter_mut().enumerate() {
            if !self.layout.expired(i, end) {
                break;
            }
            if let Some(s) = w.take() {
                // Fits: a spare is a window part, of which there are at
                // most as many as chunks.
                let _ = self.spare.push(s);
            }
        }
        Ok(())
    }

    /// Frees every chunk: the context is empty again.
    pub fn clear<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        let parts = self.windows.iter().flatten().chain(&self.spare);
        for &s in self.chunks.iter().chain(parts) {
            arena.free(s).map_err(EvalError::arena)?;
        }
        self.chunks.clear();
        self.windows.clear();
        self.spare.clear();
        self.len = 0;
        Ok(())
    }

    /// Where layer `layer`'s keys (`values == false`) or values of chunk
    /// `index` sit: the part's slot and a byte range of `16 x kv_dim` f32,
    /// position-major; `None` for a layer or chunk that is not there (a
    /// window part that expired).
    pub fn block(
        &self,
        index: usize,
        layer: usize,
        values: bool,
    ) -> Option<(Slot, core::ops::Range<usize>)> {
        if layer >= self.layout.layers {
            return None;
        }
        let slot = self.part(index, layer)?;
        let block = CHUNK_TOKENS * self.layout.kv_dim * 4;
        let at = (2 * self.layout.index_in_part(layer) + usize::from(values)) * block;
        Some((slot, at..at + block))
    }

    /// The slot holding layer `layer` of chunk `index`.
    fn part(&self, index: usize, layer: usize) -> Option<Slot> {
        if self.layout.is_local(layer) {
            self.window_part(index)
        } else {
            self.chunks.get(index).copied()
        }
    }

    /// Layers and elements per position of the model this cache is for.
    pub fn shape(&self) -> (usize, usize) {
        (self.layout.layers, self.layout.kv_dim)
    }

    /// Where position `pos` of layer `layer` goes: the part's slot, and the
    /// byte offsets of its key row and its value row inside it.
    pub fn row(&self, layer: usize, pos: usize) -> Result<(Slot, usize, usize), EvalError> {
        if layer >= self.layout.layers {
            return Err(EvalError::Internal("KV layer index out of range"));
        }
        let index = pos / CHUNK_TOKENS;
        if index >= self.chunks.len() {
            return Err(EvalError::ContextFull { max: self.max });
        }
        let slot = self.part(index, layer).ok_or(EvalError::Internal(
            "a KV window part written after it expired",
        ))?;
        let kv_dim = self.layout.kv_dim;
        let block = CHUNK_TOKENS * kv_dim;
        let k = (2 * self.layout.index_in_part(layer) * block + (pos % CHUNK_TOKENS) * kv_dim) * 4;
        Ok((slot, k, k + block * 4))
    }

    /// Views of layer `layer`'s keys and values for positions
    /// `from..positions` (which must have been reserved, and for a local
    /// layer be inside its window), one per chunk, into `out`.
    pub fn views<'m>(
        &self,
        mem: &Shared<'m>,
        layer: usize,
        (from, positions): (usize, usize),
        out: &mut ChunkViews<'m>,
    ) -> Result<(), EvalError> {
        out.clear();
        if layer >= self.layout.layers || positions > self.chunks.len() * CHUNK_TOKENS {
            return Err(EvalError::Internal("KV view outside the reserved context"));
        }
        let kv_dim = self.layout.kv_dim;
        let block = CHUNK_TOKENS * kv_dim;
        let keys_at = 2 * self.layout.index_in_part(layer) * block;
        let short = EvalError::Internal("KV chunk shorter than its layout");
        for c in from / CHUNK_TOKENS..positions.div_ceil(CHUNK_TOKENS) {
            let first = c * CHUNK_TOKENS;
            let skip = from.saturating_sub(first);
            let tokens = (positions - first).min(CHUNK_TOKENS);
            let slot = self.part(c, layer).ok_or(EvalError::Internal(
                "a KV window part read after it expired",
            ))?;
            let all = f32s(mem.get(slot)?)?;
            let keys = all
                .get(keys_at + skip * kv_dim..keys_at + tokens * kv_dim)
                .ok_or(short)?;
            let values = all
                .get(keys_at + block + skip * kv_dim..keys_at + block + tokens * kv_dim)
                .ok_or(short)?;
            out.push(KvChunk {
                tokens: tokens - skip,
                keys,
                values,
            })
            .map_err(|_| EvalError::ContextFull { max: self.max })?;
        }
        Ok(())
    }
}

/// A new part of `bytes`, its tallies zeroed: tallies are summed into (a
/// window part's stay zero), while keys and values are written before they
/// are read.
fn new_part<A: DramArena>(arena: &mut A, bytes: usize) -> Result<Slot, EvalError> {
    let s = arena
        .alloc(bytes, ALIGN, SlotKind::KvChunk)
        .map_err(EvalError::arena)?;
    match arena.bytes_mut(s) {
        Ok(b) => {
            let at = b.len().saturating_sub(CHUNK_TOKENS * 4);
            b[at..].fill(0);
            Ok(s)
        }
        Err(e) => {
            let _ = arena.free(s);
            Err(EvalError::arena(e))
        }
    }
}
