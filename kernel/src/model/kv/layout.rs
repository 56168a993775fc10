//! Which layers keep the whole context and which only a sliding window,
//! and what the KV cache of a context costs.
//!
//! Gemma 3 attends over the last `window` positions on most of its layers
//! (five of every six) and over the whole context on the rest. Keeping
//! every layer's keys and values for every position would make a long
//! context cost about six times what it needs, so a chunk is two slots:
//!
//! - the **main part**: the K and V of every full-context layer for the
//!   chunk's 16 positions, then the 16 attention tallies (what the KV
//!   lifecycle compresses, swaps and restores for as long as the context
//!   lives);
//! - the **window part** (only when the model has local layers): the K and
//!   V of every local layer, then 16 tallies kept at zero so the part has
//!   the chunk codec's layout (64 bytes on a part of half a MiB for Gemma
//!   3 270M). It is given up once no later query can see the chunk, and
//!   its slot is reused by the next chunk, so at most [`KvLayout::window_parts`]
//!   exist at a time.
//!
//! A llama model has no local layers: its chunks are one main part that
//! holds every layer, exactly the layout of [`super::KvCache`]'s docs.

use super::super::arch::Arch;
use super::super::config::{LlamaConfig, CHUNK_TOKENS};
use super::super::weights::aligned;
use super::codec::ChunkShape;

/// How one model's KV chunks are split between the parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// Layers of the model.
    pub layers: usize,
    /// Keys (and values) per position.
    pub kv_dim: usize,
    /// Layers that see only the last `window` positions (bit `l`).
    pub local: u128,
    /// Positions a local layer's query sees (0 without local layers).
    pub window: usize,
}

/// Arena slots a cache allocates at most to grow ([`KvLayout::growth`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Growth {
    /// Main parts, one per new chunk.
    pub mains: usize,
    /// Window parts allocated afresh (expired ones are reused first).
    pub windows: usize,
}

/// What the KV caches of a plan cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KvBytes {
    /// Bytes of the slots.
    pub exact: usize,
    /// The same with every slot rounded up to the arena alignment.
    pub aligned: usize,
    /// Slots.
    pub slots: usize,
}

impl KvLayout {
    /// The layout of `cfg`'s model under `arch`.
    pub fn new(cfg: &LlamaConfig, arch: &Arch) -> KvLayout {
        let mut local = 0u128;
        let mut window = 0;
        for l in 0..cfg.layers.min(128) {
            if let Some(w) = arch.window(l) {
                local |= 1 << l;
                window = w;
            }
        }
        KvLayout {
            layers: cfg.layers,
            kv_dim: cfg.kv_dim(),
            local,
            window,
        }
    }

    /// Local layers.
    pub const fn local_layers(&self) -> usize {
        self.local.count_ones() as usize
    }

    /// Whether layer `layer` keeps only a window.
    pub const fn is_local(&self, layer: usize) -> bool {
        layer < 128 && self.local >> layer & 1 == 1
    }

    /// Layer `layer`'s index among the layers of its part.
    pub const fn index_in_part(&self, layer: usize) -> usize {
        let below = if layer >= 128 {
            self.local
        } else {
            self.local & ((1u128 << layer) - 1)
        };
        let locals = below.count_ones() as usize;
        if self.is_local(layer) {
            locals
        } else {
            layer - locals
        }
    }

    /// The codec shape of the main part.
    pub const fn main_shape(&self) -> ChunkShape {
        ChunkShape {
            layers: self.layers - self.local_layers(),
            kv_dim: self.kv_dim,
        }
    }

    /// The codec shape of the window part, `None` without local layers.
    pub const fn window_shape(&self) -> Option<ChunkShape> {
        if self.local == 0 {
            return None;
        }
        Some(ChunkShape {
            layers: self.local_layers(),
            kv_dim: self.kv_dim,
        })
    }

    /// Bytes of a main part's slot.
    pub const fn main_bytes(&self) -> usize {
        self.main_shape().slot_bytes()
    }

    /// Bytes of a window part's slot (0 without local layers).
    pub const fn window_bytes(&self) -> usize {
        match self.window_shape() {
            Some(s) => s.slot_bytes(),
            None => 0,
        }
    }

    /// Bytes of the largest chunk payload (f32, both parts): what a swap
    /// area must be able to read back, and what a room estimate may assume
    /// a chunk costs.
    pub const fn max_payload(&self) -> usize {
        self.main_bytes() + self.window_bytes()
    }

    /// Whether chunk `index` is past every window once the context holds
    /// `len` positions: no query at position `len` or later sees any of its
    /// positions (the query at `p` sees `p + 1 - window ..= p`).
    pub const fn expired(&self, index: usize, len: usize) -> bool {
        self.local != 0 && (index + 1) * CHUNK_TOKENS + self.window <= len + 1
    }

    /// Window parts alive at once at most, in passes of up to `max_batch`
    /// positions: the chunks a pass's first query can see, plus those its
    /// positions fill (0 without local layers).
    pub const fn window_parts(&self, max_batch: usize) -> usize {
        if self.local == 0 {
            return 0;
        }
        (self.window + max_batch).div_ceil(CHUNK_TOKENS) + 1
    }

    /// What one context of up to `positions` positions, evaluated in
    /// passes of up to `max_batch`, costs at most.
    pub fn context_bytes(&self, positions: usize, max_batch: usize) -> KvBytes {
        let chunks = positions.div_ceil(CHUNK_TOKENS);
        let windows = if self.local == 0 {
            0
        } else {
            chunks.min(self.window_parts(max_batch))
        };
        let (m, w) = (self.main_bytes(), self.window_bytes());
        KvBytes {
            exact: chunks
                .saturating_mul(m)
                .saturating_add(windows.saturating_mul(w)),
            aligned: chunks
                .saturating_mul(aligned(m))
                .saturating_add(windows.saturating_mul(aligned(w))),
            slots: chunks + windows,
        }
    }

    /// What `contexts` contexts of `positions` cost at most.
    pub fn plan_bytes(&self, positions: usize, max_batch: usize, contexts: usize) -> KvBytes {
        let one = self.context_bytes(positions, max_batch);
        KvBytes {
            exact: one.exact.saturating_mul(contexts),
            aligned: one.aligned.saturating_mul(contexts),
            slots: one.slots.saturating_mul(contexts),
        }
    }

    /// Slots a cache that holds `chunks` chunks and `windows` window parts
    /// (live or spare) allocates at most to grow to `positions` positions in
    /// passes of up to `max_batch`. Every new chunk needs a main part; a
    /// fresh window part is allocated only when no spare is left, that is
    /// while every window part is live, and at most
    /// [`KvLayout::window_parts`] are ever live, so the window parts never
    /// outnumber that (or what the cache holds already).
    pub fn growth(
        &self,
        (chunks, windows): (usize, usize),
        positions: usize,
        max_batch: usize,
    ) -> Growth {
        let mains = positions.div_ceil(CHUNK_TOKENS).saturating_sub(chunks);
        let windows = if self.local == 0 {
            0
        } else {
            mains.min(self.window_parts(max_batch).saturating_sub(windows))
        };
        Growth { mains, windows }
    }

    /// Bytes of the slots of `g`.
    pub const fn growth_bytes(&self, g: Growth) -> usize {
        g.mains
            .saturating_mul(self.main_bytes())
            .saturating_add(g.windows.saturating_mul(self.window_bytes()))
    }

    /// Bytes of chunk `index`'s payload at `level` in a context of `len`
    /// positions: the main part's, and the window part's unless it has
    /// expired.
    pub fn payload_bytes(
        &self,
        index: usize,
        len: usize,
        level: super::codec::ChunkLevel,
    ) -> Option<usize> {
        let main = self.main_shape().payload_bytes(level)?;
        match self.window_shape() {
            Some(w) if !self.expired(index, len) => main.checked_add(w.payload_bytes(level)?),
            _ => Some(main),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::Gemma3;
    use crate::model::config::tests::smol;

    fn gemma() -> (LlamaConfig, Arch) {
        let mut c = smol();
        c.layers = 18;
        let arch = Arch::Gemma3(Gemma3 {
            window: 512,
            local_rope_base: 10_000.0,
            swa_period: 6,
        });
        (c, arch)
    }

    #[test]
    fn layers_are_numbered_within_their_part() {
        let (c, arch) = gemma();
        let k = KvLayout::new(&c, &arch);
        assert_eq!(k.local_layers(), 15);
        assert_eq!(k.window, 512);
        assert_eq!(k.main_shape().layers, 3);
        // Layers 5, 11, 17 see everything; 0-4, 6-10, 12-16 a window.
        assert_eq!([5, 11, 17].map(|l| k.index_in_part(l)), [0, 1, 2]);
        assert_eq!([0, 4, 6, 16].map(|l| k.index_in_part(l)), [0, 4, 5, 14]);
        assert!(k.is_local(16) && !k.is_local(17));
        let llama = KvLayout::new(&c, &Arch::Llama);
        assert_eq!(llama.window_shape(), None);
        assert_eq!(llama.index_in_part(17), 17);
        assert_eq!(llama.main_bytes(), (18 * 2 * 16 * c.kv_dim() + 16) * 4);
        assert!(!llama.expired(0, 1 << 20));
    }

    #[test]
    fn a_chunk_expires_when_no_later_query_sees_it() {
        let (c, arch) = gemma();
        let k = KvLayout::new(&c, &arch);
        // Chunk 0 holds positions 0..16; the query at 527 sees 16..=527.
        assert!(!k.expired(0, 526));
        assert!(k.expired(0, 527));
        assert!(!k.expired(1, 527));
    }

    #[test]
    fn a_long_context_costs_its_window_on_local_layers() {
        let (c, arch) = gemma();
        let k = KvLayout::new(&c, &arch);
        let all = KvLayout::new(&c, &Arch::Llama);
        let short = k.context_bytes(256, 64);
        assert_eq!(short.slots, 32, "16 chunks, each with its window part");
        assert_eq!(
            short.exact,
            all.context_bytes(256, 64).exact + 16 * 64,
            "a short context keeps every layer (plus the window parts' tallies)"
        );
        let long = k.context_bytes(8192, 64);
        assert_eq!(k.window_parts(64), 37);
        assert_eq!(long.slots, 512 + 37);
        assert!(long.exact * 4 < all.context_bytes(8192, 64).exact);
    }
}
