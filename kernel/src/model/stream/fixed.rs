//! What every streaming plan pays whatever stays resident (forward
//! buffers, the KV cache, norms, activation scratch, the embedding-row
//! slot, the sparse read slot, the ring, the block checksums), and what
//! the arena then holds by kind of slot.

use crate::flash::BlockChecks;
use crate::model::arena_use::{ArenaUse, Footprint};
use crate::model::buffers::Buffers;
use crate::model::config::{Limits, LlamaConfig};
use crate::model::kv::{KvBytes, KvLayout};
use crate::model::weights::aligned;

use super::layout::StreamLayout;
use super::plan::{read_slot, PlanBytes, StreamOptions};
use super::units::Units;

/// Bytes of the FFN activation scratch a source over `layout` allocates:
/// (activations, up products), the second 0 when no layer needs it.
pub(super) fn act_lens(
    layout: &StreamLayout,
    cfg: &LlamaConfig,
    limits: &Limits,
) -> (usize, usize) {
    let split = layout.ffn.iter().any(|f| f.split().is_some());
    let dense = layout.ffn.iter().any(|f| f.dense().is_some());
    let row = cfg.ffn.saturating_mul(4);
    let batch = row.saturating_mul(limits.max_batch);
    match (split, dense) {
        (_, true) => (batch, batch),
        (true, false) => (batch, row),
        (false, false) => (row, 0),
    }
}

/// What every plan of a layout pays whatever stays resident: forward
/// buffers, the KV cache, norms, activation scratch and the embedding-row
/// slot, the sparse read slot, and the ring (sized by the caller).
pub(super) struct Fixed {
    buffers: Footprint,
    kv: KvBytes,
    norms: usize,
    act_len: usize,
    up_len: usize,
    row_slot: usize,
    sparse_io: usize,
    ring: usize,
    /// Bytes of the decode slot of coded units (0 without any).
    decode: usize,
    layers: usize,
    block: usize,
    /// Exact bytes of the block-checksum table (0 without one).
    checks: usize,
}

impl Fixed {
    pub(super) fn new(units: &Units<'_>, limits: &Limits, opts: &StreamOptions) -> Fixed {
        let (layout, cfg, block) = (units.layout, units.cfg, units.block);
        // Gemma's four extra norms of a layer: two of a head, two of the
        // hidden width, f32, each read into its own slot like the others.
        let extra = (read_slot(cfg.head_dim * 4, block).saturating_mul(2))
            .saturating_add(read_slot(cfg.hidden * 4, block).saturating_mul(2))
            .saturating_mul(layout.extra_norms.len());
        let norms = layout
            .attn
            .iter()
            .fold(read_slot(layout.output_norm.len, block), |a, s| {
                a.saturating_add(read_slot(s.attn_norm.len, block))
                    .saturating_add(read_slot(s.ffn_norm.len, block))
            })
            .saturating_add(extra);
        // Activations: one row's for bundled layers; split and dense
        // layers keep every row's (a split batch chooses the columns one
        // fetch reads, a dense one multiplies all rows at once). Split
        // layers also hold one row's up products, dense layers every row's.
        let (act_len, up_len) = act_lens(layout, cfg, limits);
        let down_max = layout.ffn.iter().map(|f| f.len).max().unwrap_or(0);
        Fixed {
            buffers: Buffers::arena_bytes(cfg, limits),
            kv: KvLayout::new(cfg, &layout.arch).plan_bytes(
                limits.max_context,
                limits.max_batch,
                limits.contexts,
            ),
            norms,
            act_len,
            up_len,
            row_slot: read_slot(layout.row_slot_len(block), block),
            sparse_io: if opts.sparse {
                read_slot(down_max.saturating_add(2 * block), block)
            } else {
                0
            },
            ring: opts.ring,
            decode: match layout.decode_slot_len(block) {
                0 => 0,
                n => read_slot(n, block),
            },
            layers: cfg.layers,
            block,
            checks: if opts.checked > 0 {
                BlockChecks::table_bytes(opts.checked, block)
            } else {
                0
            },
        }
    }

    /// The fixed costs with ring slots of `ring_slot` bytes. Slots reads
    /// land in start on a block: the norms, the ring, the embedding row
    /// (and, counted as they are kept, resident units).
    pub(super) fn bytes(&self, ring_slot: usize) -> PlanBytes {
        PlanBytes {
            buffers: self.buffers.aligned,
            kv: self.kv.aligned,
            norms: self.norms,
            scratch: aligned(self.act_len)
                .saturating_add(aligned(self.up_len))
                .saturating_add(self.row_slot),
            ring: ring_slot
                .saturating_mul(self.ring)
                .saturating_add(self.decode),
            sparse_io: self.sparse_io,
            alignment: self
                .block
                .saturating_mul(2 * self.layers + 3 + self.ring + usize::from(self.decode > 0)),
            checks: aligned(self.checks),
            ..PlanBytes::default()
        }
    }

    /// Bytes of the decode slot (0 when nothing is coded).
    pub(super) fn decode_bytes(&self) -> usize {
        self.decode
    }

    /// What the arena holds by kind once a plan of `bytes` is loaded.
    pub(super) fn arena_use(&self, bytes: &PlanBytes, row_streams: bool) -> ArenaUse {
        ArenaUse {
            resident: self
                .norms
                .saturating_add(self.checks)
                .saturating_add(bytes.attention)
                .saturating_add(bytes.head)
                .saturating_add(bytes.ffn),
            io: bytes
                .ring
                .saturating_add(bytes.sparse_io)
                .saturating_add(if row_streams { self.row_slot } else { 0 }),
            scratch: self
                .buffers
                .exact
                .saturating_add(self.act_len)
                .saturating_add(self.up_len),
            cache: bytes.cache,
            kv: self.kv.exact,
            capacity: 0,
        }
    }
}
