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

/// Coded units a token streams (see [`Units::coded_streamed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodedStreamed {
    /// Coded FFN matrices streamed a token.
    pub units: usize,
    /// Their bytes as read.
    pub stored: u64,
    /// Their bytes decoded.
    pub decoded: u64,
}

/// What a plan keeps resident.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Residency {
    /// Bit `l`: layer `l`'s attention.
    pub(super) attn: u128,
    /// Bit `l`: layer `l`'s FFN.
    pub(super) ffn: u128,
    /// Bit `l`: a sparse run keeps split layer `l`'s gate and up rows
    /// (read whole every token) while its down columns are fetched per
    /// token; set with `ffn` too when the whole layer stays.
    pub(super) rows: u128,
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
    fn ffn_unit(&self, l: usize, rows_resident: bool) -> usize {
        self.layout.ffn.get(l).map_or(0, |f| match f.kind {
            FfnKind::Bundled => f.len,
            FfnKind::Split(_) if self.sparse && rows_resident => 0,
            FfnKind::Split(r) if self.sparse => r.len,
            FfnKind::Split(r) => r.len.max(f.len),
            // A coded matrix is read as its unit (and a block of skip),
            // decoded elsewhere.
            FfnKind::Dense(m) => [m.gate, m.up, m.down]
                .iter()
                .map(|t| match t.stored {
                    Some(s) => t.len.max(s.len.saturating_add(self.block)),
                    None => t.len,
                })
                .max()
                .unwrap_or(0),
        })
    }

    /// Bytes a streamed FFN layer reads per token (at most), as `(read
    /// whole, down columns a sparse run reads only for the kept neurons)`.
    fn ffn_streamed(&self, l: usize, rows_resident: bool) -> (usize, usize) {
        let block = self.block;
        self.layout.ffn.get(l).map_or((0, 0), |f| match f.kind {
            FfnKind::Dense(m) => {
                let whole = [m.gate, m.up, m.down].iter().fold(0usize, |a, t| {
                    let (at, len) = t.device();
                    let skip = (at % block as u64) as usize;
                    a.saturating_add(blocks(len.saturating_add(skip), block))
                });
                (whole, 0)
            }
            FfnKind::Split(r) if self.sparse => {
                let rows = if rows_resident {
                    0
                } else {
                    blocks(r.len, block)
                };
                (rows, blocks(f.len, block))
            }
            _ => (
                blocks(f.len, block).saturating_add(f.split().map_or(0, |r| blocks(r.len, block))),
                0,
            ),
        })
    }

    /// A split layer's gate and up rows kept alone: the slot's bytes and
    /// its block of room, or `None` for another kind of layer.
    fn rows_slot(&self, l: usize) -> Option<(usize, usize)> {
        let r = self.layout.ffn.get(l)?.split()?;
        Some((read_slot(r.len, self.block), self.block))
    }

    /// A resident FFN layer's slot bytes and the room to align them (a
    /// split layer keeps two slots: rows and columns; only the columns'
    /// when its rows are resident already).
    fn ffn_slots(&self, l: usize, rows_resident: bool) -> (usize, usize) {
        self.layout.ffn.get(l).map_or((usize::MAX, 0), |f| {
            let rows = f
                .split()
                .filter(|_| !rows_resident)
                .map(|r| read_slot(r.len, self.block));
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
                largest = largest.max(self.ffn_unit(l, res.rows & bit(l) != 0));
            }
        }
        if !res.head {
            let piece = if largest == 0 { HEAD_PIECE } else { largest };
            largest = largest.max(piece.min(self.layout.head.len));
        }
        read_slot(largest.saturating_add(2 * self.block), self.block)
    }

    /// Chooses what stays resident in `left` bytes, in the planner's order,
    /// adding each unit's slot to `bytes` by purpose and its block of room
    /// to `bytes.alignment`. Returns what it kept and the bytes left.
    ///
    /// A resident byte saves one streamed byte a token when the unit is
    /// read whole, but only the kept share of one when a sparse run reads
    /// part of it. So a dense run keeps attention (lowest layer first),
    /// the head, FFN layers spread over the depth, then the head's first
    /// rows in what is left; a sparse run keeps everything a token reads
    /// whole first (attention, the head, the head's first rows, the split
    /// layers' gate and up rows) and only then whole FFN layers, whose
    /// down columns it would read sparsely.
    pub(super) fn choose(
        &self,
        bytes: &mut PlanBytes,
        mut left: usize,
        opts: &StreamOptions,
    ) -> (Residency, usize) {
        let mut res = Residency::default();
        if opts.stream_all {
            return (res, left);
        }
        let block = self.block;
        let take = |len: usize, left: &mut usize, pad: &mut usize| -> Option<usize> {
            let slot = read_slot(len, block);
            let cost = slot.saturating_add(block);
            (cost <= *left).then(|| {
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
        if opts.sparse {
            self.keep_head_rows(&mut res, bytes, &mut left);
            self.keep_split_rows(&mut res, bytes, &mut left);
        }
        self.keep_ffn_layers(&mut res, bytes, &mut left);
        if !opts.sparse {
            self.keep_head_rows(&mut res, bytes, &mut left);
        }
        (res, left)
    }

    /// As many split layers' gate and up rows as fit, lowest layer first.
    fn keep_split_rows(&self, res: &mut Residency, bytes: &mut PlanBytes, left: &mut usize) {
        for l in 0..self.cfg.layers {
            let Some((slot, pad)) = self.rows_slot(l) else {
                continue;
            };
            let cost = slot.saturating_add(pad);
            if cost <= *left {
                *left -= cost;
                res.rows |= bit(l);
                bytes.ffn += slot;
                bytes.alignment += pad;
            }
        }
    }

    /// As many whole FFN layers as fit, the streamed ones spread over the
    /// depth (so each one's read overlaps the resident layers before it).
    fn keep_ffn_layers(&self, res: &mut Residency, bytes: &mut PlanBytes, left: &mut usize) {
        let rows = res.rows;
        let ffn_cost = |l: usize| {
            let (slots, pad) = self.ffn_slots(l, rows & bit(l) != 0);
            slots.saturating_add(pad)
        };
        let spread = spread_streamed(self.cfg.layers, *left, ffn_cost);
        for l in 0..self.cfg.layers {
            let cost = ffn_cost(l);
            let chosen = if spread != 0 {
                spread & bit(l) != 0
            } else {
                cost <= *left
            };
            if chosen {
                let (slots, pad) = self.ffn_slots(l, rows & bit(l) != 0);
                *left -= cost;
                res.ffn |= bit(l);
                bytes.ffn += slots;
                bytes.alignment += pad;
            }
        }
    }

    /// The head's first rows in what is left when the whole head does not
    /// fit, each saving its bytes every token.
    fn keep_head_rows(&self, res: &mut Residency, bytes: &mut PlanBytes, left: &mut usize) {
        let (block, rb) = (self.block, self.layout.head.row_bytes());
        if res.head || rb == 0 {
            return;
        }
        let cost = |r: usize| read_slot(r.saturating_mul(rb), block).saturating_add(block);
        let mut r = (left.saturating_sub(2 * block + ALIGN) / rb).min(self.layout.head.rows);
        while r > 0 && cost(r) > *left {
            r -= 1;
        }
        if r > 0 {
            res.head_part = r;
            *left -= cost(r);
            bytes.head = cost(r) - block;
            bytes.alignment += block;
        }
    }

    /// Bytes a token reads from flash when `res` stays resident, as `(at
    /// most, of which down columns a sparse run reads only for its kept
    /// neurons)`.
    pub(super) fn streamed_per_token(&self, res: &Residency) -> (u64, u64) {
        let block = self.block;
        let (mut streamed, mut columns) = (0u64, 0u64);
        for l in 0..self.cfg.layers {
            if res.attn & bit(l) == 0 {
                streamed += blocks(self.attn_len(l), block) as u64;
            }
            if res.ffn & bit(l) == 0 {
                let (whole, cols) = self.ffn_streamed(l, res.rows & bit(l) != 0);
                streamed += (whole + cols) as u64;
                columns += cols as u64;
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
        (streamed, columns)
    }

    /// The coded FFN matrices a token streams (left streaming by `res`):
    /// how many, their bytes as read and decoded.
    pub(super) fn coded_streamed(&self, res: &Residency) -> CodedStreamed {
        let mut c = CodedStreamed::default();
        for (l, f) in self.layout.ffn.iter().enumerate() {
            let Some(m) = f.dense().filter(|_| res.ffn & bit(l) == 0) else {
                continue;
            };
            for t in [m.gate, m.up, m.down] {
                if let Some(s) = t.stored {
                    c.units += 1;
                    c.stored += s.len as u64;
                    c.decoded += t.len as u64;
                }
            }
        }
        c
    }

    /// Whether embedding rows are read from flash (no resident tied head).
    pub(super) fn row_streams(&self, res: &Residency) -> bool {
        !(res.head && self.cfg.tied_embeddings)
    }
}
