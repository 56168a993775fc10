//! The sizes the stream planner weighs: what each unit of a layout costs
//! to keep resident, to stream per token, and to hold in a ring slot.

use crate::limits::{ALIGN, HEAD_PIECE};
use crate::model::config::LlamaConfig;

use super::layout::{FfnKind, StreamLayout};
use super::plan::{bit, blocks, read_slot, spread_streamed, PlanBytes, StreamOptions};

/// A layout's units measured on a device of `block` bytes.
pub(super) struct Units<'a> {
    pub(super) layout: &'a StreamLayout,
    pub(super) cfg: &'a LlamaConfig,
    pub(super) block: usize,
    pub(super) sparse: bool,
}

/// What a plan keeps resident.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Residency {
    /// Bit `l`: layer `l`'s attention.
    pub(super) attn: u128,
    /// Bit `l`: layer `l`'s FFN.
    pub(super) ffn: u128,
    /// The whole output head.
    pub(super) head: bool,
    /// The head's first rows, when not the whole head.
    pub(super) head_part: usize,
}

impl Units<'_> {
    /// Bytes of layer `l`'s attention span.
    pub(super) fn attn_len(&self, l: usize) -> usize {
        self.layout.attn.get(l).map_or(0, |a| a.len)
    }

    /// The largest ring unit of a streamed FFN layer: the whole bundle
    /// region, a split layer's rows (and its down columns unless those are
    /// fetched sparsely), or a dense layer's largest matrix (its three
    /// stream one by one).
    fn ffn_unit(&self, l: usize) -> usize {
        self.layout.ffn.get(l).map_or(0, |f| match f.kind {
            FfnKind::Bundled => f.len,
            FfnKind::Split(r) if self.sparse => r.len,
            FfnKind::Split(r) => r.len.max(f.len),
            FfnKind::Dense(m) => m.gate.len.max(m.up.len).max(m.down.len),
        })
    }

    /// Bytes a streamed FFN layer reads per token (at most).
    fn ffn_streamed(&self, l: usize) -> usize {
        let block = self.block;
        self.layout.ffn.get(l).map_or(0, |f| match f.kind {
            FfnKind::Dense(m) => [m.gate, m.up, m.down].iter().fold(0usize, |a, t| {
                let skip = (t.offset % block as u64) as usize;
                a.saturating_add(blocks(t.len.saturating_add(skip), block))
            }),
            _ => blocks(f.len, block).saturating_add(f.split().map_or(0, |r| blocks(r.len, block))),
        })
    }

    /// A resident FFN layer's slot bytes and the room to align them (a
    /// split layer keeps two slots: rows and columns).
    fn ffn_slots(&self, l: usize) -> (usize, usize) {
        self.layout.ffn.get(l).map_or((usize::MAX, 0), |f| {
            let rows = f.split().map(|r| read_slot(r.len, self.block));
            (
                read_slot(f.len, self.block).saturating_add(rows.unwrap_or(0)),
                self.block * (1 + usize::from(rows.is_some())),
            )
        })
    }

    /// Bytes of a ring slot for what `res` leaves streaming. Two spare
    /// blocks: a head piece starts and ends inside blocks.
    pub(super) fn ring_slot(&self, res: &Residency) -> usize {
        let mut largest = 0usize;
        for l in 0..self.cfg.layers {
            if res.attn & bit(l) == 0 {
                largest = largest.max(self.attn_len(l));
            }
            if res.ffn & bit(l) == 0 {
                largest = largest.max(self.ffn_unit(l));
            }
        }
        if !res.head {
            let piece = if largest == 0 { HEAD_PIECE } else { largest };
            largest = largest.max(piece.min(self.layout.head.len));
        }
        read_slot(largest.saturating_add(2 * self.block), self.block)
    }

    /// Chooses what stays resident in `left` bytes, in the planner's order
    /// (attention lowest layer first, the head, FFN layers spread over the
    /// depth, the head's first rows), adding each unit's slot to `bytes`
    /// by purpose and its block of room to `bytes.alignment`. Returns what
    /// it kept and the bytes left.
    pub(super) fn choose(
        &self,
        bytes: &mut PlanBytes,
        mut left: usize,
        opts: &StreamOptions,
    ) -> (Residency, usize) {
        let block = self.block;
        let mut res = Residency::default();
        let take = |len: usize, left: &mut usize, pad: &mut usize| -> Option<usize> {
            let slot = read_slot(len, block);
            let cost = slot.saturating_add(block);
            (!opts.stream_all && cost <= *left).then(|| {
                *left -= cost;
                *pad += block;
                slot
            })
        };
        for l in 0..self.cfg.layers {
            if let Some(c) = take(self.attn_len(l), &mut left, &mut bytes.alignment) {
                res.attn |= bit(l);
                bytes.attention += c;
            }
        }
        if let Some(c) = take(self.layout.head.len, &mut left, &mut bytes.alignment) {
            res.head = true;
            bytes.head = c;
        }
        let ffn_cost = |l: usize| {
            let (slots, pad) = self.ffn_slots(l);
            slots.saturating_add(pad)
        };
        let spread = if opts.stream_all {
            0
        } else {
            spread_streamed(self.cfg.layers, left, ffn_cost)
        };
        for l in 0..self.cfg.layers {
            let cost = ffn_cost(l);
            let chosen = if spread != 0 {
                spread & bit(l) != 0
            } else {
                !opts.stream_all && cost <= left
            };
            if chosen {
                let (slots, pad) = self.ffn_slots(l);
                left -= cost;
                res.ffn |= bit(l);
                bytes.ffn += slots;
                bytes.alignment += pad;
            }
        }
        // What no whole unit fits keeps the head's first rows, each saving
        // its bytes every token (a sparse run gives it to the neuron cache).
        let rb = self.layout.head.row_bytes();
        if !res.head && !opts.sparse && !opts.stream_all && rb > 0 {
            let cost = |r: usize| read_slot(r.saturating_mul(rb), block).saturating_add(block);
            let mut r = (left.saturating_sub(2 * block + ALIGN) / rb).min(self.layout.head.rows);
            while r > 0 && cost(r) > left {
                r -= 1;
            }
            if r > 0 {
                res.head_part = r;
                left -= cost(r);
                bytes.head = cost(r) - block;
                bytes.alignment += block;
            }
        }
        (res, left)
    }

    /// Bytes a token reads from flash when `res` stays resident (a sparse
    /// run: at most, every down column).
    pub(super) fn streamed_per_token(&self, res: &Residency) -> u64 {
        let block = self.block;
        let mut streamed = 0u64;
        for l in 0..self.cfg.layers {
            if res.attn & bit(l) == 0 {
                streamed += blocks(self.attn_len(l), block) as u64;
            }
            if res.ffn & bit(l) == 0 {
                streamed += self.ffn_streamed(l) as u64;
            }
        }
        let head = &self.layout.head;
        if !res.head {
            let from = res.head_part.saturating_mul(head.row_bytes());
            let skip = from % block;
            streamed += blocks(skip + head.len.saturating_sub(from), block) as u64;
        }
        if self.row_streams(res) {
            streamed += blocks(self.layout.embed.row_bytes().saturating_add(block), block) as u64;
        }
        streamed
    }

    /// Whether embedding rows are read from flash (no resident tied head).
    pub(super) fn row_streams(&self, res: &Residency) -> bool {
        !(res.head && self.cfg.tied_embeddings)
    }
}
