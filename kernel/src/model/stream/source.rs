//! The streaming weight source: resident units loaded once, streamed
//! units read through the ring each pass, the FFN computed over what was
//! read. The loader is `load.rs`, the FFN kernels per layout `kernels.rs`,
//! the sparsity rule `sparsity.rs`, the sparse run's buffers and cache
//! `sparse.rs`, and the device reads `io.rs`.
//!
//! A split layer (gate and up rows apart from the down columns, see
//! [`SplitRows`](super::SplitRows)) computes every neuron's activation
//! from its rows, keeps the strongest, and then needs the down columns of
//! only those: resident, streamed whole through the ring (dense), or, in a
//! sparse run, fetched per token with cache hits taken and the misses read
//! by the cost-model planner ([`fetch_layer`](crate::fetch::fetch_layer)).

use crate::arena::{DramArena, Slot};
use crate::cache::{CacheStats, Policy, S3Fifo};
use crate::compute::Compute;
use crate::flash::FlashDevice;
use crate::limits::MAX_REFINED_LOGITS;
use crate::model::config::MAX_LAYERS;
use crate::model::error::{EvalError, LoadError};
use crate::model::ffn::{checked_call, FfnIo};
use crate::model::gemma::GemmaNorms;
use crate::model::tensor::TensorRef;
use crate::model::weight_source::{rows_one_by_one, EachRow, WeightSource};
use crate::model::weights::{Attention, Weights};

use super::io::aligned_extent;
use super::layout::{FfnKind, StreamLayout};
use super::load::attention_in;
use super::plan::StreamPlan;
use super::ring::{IoStats, Ring};
use super::sparse::{Sparse, SparseBuffers, SparseScratch, SparseStats};

/// No unit (a resident part).
pub(super) const NONE: u16 = u16::MAX;

/// Every FFN (and whatever else the plan streams) read from flash.
#[derive(Debug)]
pub struct StreamSource<D, P: Policy = S3Fifo, B = SparseScratch<'static>> {
    /// The weights the plan keeps resident (the rest are `None` there).
    pub(super) resident: Weights,
    pub(super) ring: Ring<D>,
    pub(super) plan: StreamPlan,
    /// Schedule index of each layer's attention, or `NONE` when resident.
    pub(super) attn_unit: [u16; MAX_LAYERS],
    /// Schedule index of each layer's FFN bundles (a split layer's down
    /// columns), or `NONE` when resident or fetched sparsely.
    pub(super) ffn_unit: [u16; MAX_LAYERS],
    /// Schedule index of each split layer's gate and up rows, or `NONE`.
    pub(super) rows_unit: [u16; MAX_LAYERS],
    /// Resident rows of split layers (`None` for streamed or bundled ones).
    pub(super) rows_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// `ffn` f32 of scratch for a split layer's up products.
    pub(super) tmp: Option<Slot>,
    pub(super) sparse: Option<Sparse<P, B>>,
    /// Neurons of a split layer each token keeps: all (`ffn`) in a dense
    /// run, a sparse run's count whether its columns are read per token or
    /// whole ([`keep_strongest`](StreamSource::keep_strongest)).
    pub(super) keep: usize,
    /// Schedule index of the first streamed head piece.
    pub(super) head_first: usize,
    /// Streamed head pieces.
    pub(super) head_pieces: usize,
    /// The head's first rows when the plan keeps only them resident: piece
    /// 0, before the streamed ones.
    pub(super) head_part: Option<TensorRef>,
    /// Resident FFN slots (`None` for streamed layers).
    pub(super) ffn_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// Per-layer spans and regions (offsets into slots).
    pub(super) layout: StreamLayout,
    /// Activations: one row's (`ffn` f32) for bundled layers, `max_batch`
    /// rows' for split ones.
    pub(super) act: Slot,
    pub(super) clock: fn() -> u64,
    pub(super) hidden: usize,
    pub(super) ffn: usize,
    pub(super) max_rows: usize,
    pub(super) vocab: usize,
    pub(super) block: usize,
    pub(super) head_dim: usize,
    /// Gemma's extra norms of each layer, resident, in [`GemmaNorms`]
    /// field order (empty for llama).
    pub(super) gemma: heapless::Vec<[Slot; 4], MAX_LAYERS>,
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> StreamSource<D, P, B> {
    /// The plan this source follows.
    pub fn plan(&self) -> &StreamPlan {
        &self.plan
    }

    /// I/O measured so far.
    pub fn io_stats(&self) -> IoStats {
        self.ring.stats()
    }

    /// Has each token keep only its strongest `1 - sparsity` of every split
    /// layer's neurons ([`neurons_kept`](super::neurons_kept)) in a run
    /// whose plan reads the down columns whole
    /// ([`ColumnReads::Whole`](super::ColumnReads)): a sparse run's
    /// arithmetic (dropped neurons' columns are skipped) without per-token
    /// reads. Every layer must be split, as for a sparse plan.
    pub fn keep_strongest(&mut self, sparsity: f32) -> Result<(), LoadError> {
        if !(0.0..1.0).contains(&sparsity) {
            return Err(LoadError::Config("sparsity must be at least 0 and below 1"));
        }
        self.layout.require_split()?;
        self.keep = super::neurons_kept(sparsity, self.ffn);
        Ok(())
    }

    /// What the sparse fetches did (`None` in a dense run).
    pub fn sparse_stats(&self) -> Option<SparseStats> {
        self.sparse.as_ref().map(|s| s.stats)
    }

    /// The neuron cache's counters and slots (`None` without a cache).
    pub fn cache_stats(&self) -> Option<(CacheStats, u32)> {
        self.sparse
            .as_ref()
            .and_then(|s| s.cache.as_ref())
            .map(|c| (c.stats(), c.config().slots))
    }

    /// The device.
    pub fn device(&self) -> &D {
        self.ring.device()
    }

    /// Waits for every read in flight (call after an error, before
    /// dropping the arena).
    pub fn quiesce<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        self.ring.quiesce(arena)
    }

    /// The block-aligned read that holds `token`'s embedding row: its
    /// device offset, length, and where the row starts in it.
    fn row_extent(&self, token: u32) -> Result<(u64, usize, usize), EvalError> {
        let e = self.layout.embed;
        let t = token as usize;
        if t >= e.rows {
            return Err(EvalError::TokenOutOfRange {
                token,
                vocab: self.vocab,
            });
        }
        let rb = e.row_bytes();
        Ok(aligned_extent(e.offset + (t * rb) as u64, rb, self.block))
    }

    /// The embedding row at byte `offset` of `slot`.
    fn row_in(&self, slot: Slot, offset: usize) -> TensorRef {
        TensorRef {
            slot,
            offset,
            dtype: self.layout.embed.dtype,
            rows: 1,
            cols: self.layout.embed.cols,
        }
    }
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> WeightSource for StreamSource<D, P, B> {
    fn layers(&self) -> usize {
        self.resident.layers.len()
    }

    fn norms(&self, layer: usize) -> Result<(TensorRef, TensorRef), EvalError> {
        self.resident.norms(layer)
    }

    fn extra_norms(&self, layer: usize) -> Option<GemmaNorms> {
        let [q, k, post_attn, post_ffn] = *self.gemma.get(layer)?;
        let f32s = |slot, cols| TensorRef {
            slot,
            offset: 0,
            dtype: lode_formats::DType::F32,
            rows: 1,
            cols,
        };
        Some(GemmaNorms {
            q: f32s(q, self.head_dim),
            k: f32s(k, self.head_dim),
            post_attn: f32s(post_attn, self.hidden),
            post_ffn: f32s(post_ffn, self.hidden),
        })
    }

    fn output_norm(&self) -> TensorRef {
        self.resident.output_norm
    }

    fn ffn<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let region = checked_call(&self.layout.ffn, layer, &io, self.max_rows)?;
        match region.kind {
            FfnKind::Split(rows) => self.run_split(layer, region, rows, arena, compute, io),
            FfnKind::Dense(m) => self.run_dense(layer, region, m, arena, compute, io),
            FfnKind::Bundled => self.run_bundled(layer, region, arena, compute, io),
        }
    }

    fn begin_pass<A: DramArena>(&mut self, arena: &mut A, logits: bool) -> Result<(), EvalError> {
        if let Some(sp) = self.sparse.as_mut() {
            sp.pass = sp.pass.wrapping_add(1);
            if let Some(c) = sp.cache.as_mut() {
                c.end_token(arena, sp.pass)
                    .map_err(|_| EvalError::Internal("the neuron cache failed"))?;
            }
        }
        self.ring.begin_pass(arena, logits)
    }

    fn attention<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<Attention, EvalError> {
        if let Ok(a) = self.resident.attention(layer) {
            return Ok(a);
        }
        let span = *self
            .layout
            .attn
            .get(layer)
            .ok_or(EvalError::Internal("attention layer out of range"))?;
        let u = self.attn_unit.get(layer).copied().unwrap_or(NONE);
        let (slot, skip) = self.ring.acquire(arena, usize::from(u), compute)?;
        let mut a = attention_in(slot, span.start, &span.proj);
        for t in [&mut a.q, &mut a.k, &mut a.v, &mut a.o] {
            t.offset += skip;
        }
        Ok(a)
    }

    fn embedding_row<A: DramArena, C: Compute>(
        &mut self,
        token: u32,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<(TensorRef, usize), EvalError> {
        if let Some(e) = self.resident.embed {
            return Ok((e, token as usize));
        }
        let (start, len, skip) = self.row_extent(token)?;
        let slot = self.ring.read_row(arena, start, len, compute)?;
        Ok((self.row_in(slot, skip), 0))
    }

    fn embedding_rows<A: DramArena, C: Compute>(
        &mut self,
        tokens: &[u32],
        arena: &mut A,
        compute: &mut C,
        each: &mut EachRow<'_, A, C>,
    ) -> Result<(), EvalError> {
        if self.resident.embed.is_some() {
            return rows_one_by_one(self, tokens, arena, compute, each);
        }
        let stride = self.layout.row_stride(self.block);
        let per = self.layout.row_reads.clamp(1, MAX_REFINED_LOGITS);
        for (g, group) in tokens.chunks(per).enumerate() {
            let mut reads: heapless::Vec<(u64, usize), MAX_REFINED_LOGITS> = heapless::Vec::new();
            let mut skips: heapless::Vec<usize, MAX_REFINED_LOGITS> = heapless::Vec::new();
            for &t in group {
                let (start, len, skip) = self.row_extent(t)?;
                // Both fit: a group is at most `MAX_REFINED_LOGITS` rows.
                let _ = reads.push((start, len));
                let _ = skips.push(skip);
            }
            let slot = self.ring.read_rows(arena, &reads, stride, compute)?;
            for (j, &skip) in skips.iter().enumerate() {
                let row = self.row_in(slot, j * stride + skip);
                each(g * per + j, arena, compute, row, 0)?;
            }
        }
        Ok(())
    }

    fn head_piece<A: DramArena, C: Compute>(
        &mut self,
        piece: usize,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<Option<(TensorRef, usize)>, EvalError> {
        if let Some(h) = self.resident.output {
            return Ok((piece == 0).then_some((h, 0)));
        }
        // The resident first rows are piece 0, the streamed ones follow.
        let first = match self.head_part {
            Some(h) if piece == 0 => return Ok(Some((h, 0))),
            Some(h) => h.rows,
            None => 0,
        };
        let piece = piece - usize::from(self.head_part.is_some());
        if piece >= self.head_pieces {
            return Ok(None);
        }
        let head = self.layout.head;
        let rows = self.plan.head_rows.max(1);
        let r0 = first + piece * rows;
        let n = rows.min(head.rows.saturating_sub(r0));
        let (slot, skip) = self.ring.acquire(arena, self.head_first + piece, compute)?;
        Ok(Some((
            TensorRef {
                slot,
                offset: skip,
                dtype: head.dtype,
                rows: n,
                cols: head.cols,
            },
            r0,
        )))
    }
}
