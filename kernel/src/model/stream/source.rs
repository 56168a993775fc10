//! The streaming FFN source: resident units loaded once, streamed units
//! read through the ring each pass, the FFN computed over bundles.
//!
//! A split layer (gate and up rows apart from the down columns, see
//! [`SplitRows`](super::SplitRows)) computes every neuron's activation
//! from its rows, keeps the strongest, and then needs the down columns of
//! only those: resident, streamed whole through the ring (dense), or, in a
//! sparse run, fetched per token with cache hits taken and the misses read
//! by the cost-model planner ([`fetch_layer`]).

use lode_formats::image::Image;

use crate::arena::{DramArena, Slot, SlotKind};
use crate::cache::{CacheConfig, CacheStats, NeuronCache, Policy, S3Fifo};
use crate::compute::{Bundles, Compute, DType};
use crate::fetch::{fetch_layer, BundleLoc, FetchError, FetchScratch};
use crate::flash::{FlashDevice, ReadRequest};
use crate::model::bundle_ffn::ffn_rows;
use crate::model::config::{Limits, LlamaConfig, MAX_LAYERS};
use crate::model::error::ModelError;
use crate::model::ffn::{
    checked_call, dense_product, dense_products, DenseLayer, FfnIo, FfnSource, Product,
};
use crate::model::tensor::TensorRef;
use crate::model::view::{f32s, f32s_mut, split};
use crate::model::weights::{Attention, LayerWeights, Weights, ALIGN};
use crate::plan::{Extent, Mode, Region, Strategy};

use super::layout::{DenseMatrices, FfnKind, FfnRegion, SplitRows, StreamLayout, TensorAt};
use super::plan::{blocks, read_slot, StreamPlan};
use super::ring::{IoStats, Ring, Unit, MAX_UNITS};

const NONE: u16 = u16::MAX;

/// Buffers a sparse run lends the source (no heap on the decode path):
/// sized by [`SparseScratch::lens`].
#[derive(Debug)]
pub struct SparseScratch<'s> {
    /// Placement positions one layer needs (`lens().0` entries).
    pub positions: &'s mut [u32],
    /// Positions that missed the cache (`lens().0`).
    pub missing: &'s mut [u32],
    /// Where each needed column is (`lens().0`).
    pub locs: &'s mut [BundleLoc],
    /// Planned reads (`lens().1`).
    pub extents: &'s mut [Extent],
}

/// Where a sparse run's scratch lives: borrowed from the caller
/// ([`SparseScratch`] itself, what firmware lends from its statics) or
/// owned by a host runtime. The source asks for the buffers each time it
/// fetches, so it can own them without borrowing from its owner.
pub trait SparseBuffers {
    /// The buffers, lent for one fetch.
    fn lend(&mut self) -> SparseScratch<'_>;
}

impl SparseBuffers for SparseScratch<'_> {
    fn lend(&mut self) -> SparseScratch<'_> {
        SparseScratch {
            positions: &mut *self.positions,
            missing: &mut *self.missing,
            locs: &mut *self.locs,
            extents: &mut *self.extents,
        }
    }
}

impl<B: SparseBuffers + ?Sized> SparseBuffers for &mut B {
    fn lend(&mut self) -> SparseScratch<'_> {
        (**self).lend()
    }
}

impl SparseScratch<'_> {
    /// Entries of the position buffers and of the extents for `layout`
    /// on a device of `block` bytes per block and `max_transfer` bytes per
    /// read: a per-bundle plan reads each needed column with at most
    /// `ceil((column + 2 blocks) / max_transfer)` commands, a dense one the
    /// region in `max_transfer` pieces.
    pub fn lens(layout: &StreamLayout, block: usize, max_transfer: usize) -> (usize, usize) {
        let block = block.max(1);
        let mt = (max_transfer / block * block).max(block);
        let (mut n, mut ext) = (0usize, 1usize);
        for f in &layout.ffn {
            let per = f.bundle.saturating_add(2 * block).div_ceil(mt);
            let dense = f.len.saturating_add(2 * block).div_ceil(mt);
            n = n.max(f.count);
            ext = ext.max(f.count.saturating_mul(per).max(dense).saturating_add(1));
        }
        (n, ext)
    }
}

/// How a sparse run chooses neurons and caches their columns.
#[derive(Debug)]
pub struct SparseSetup<P, B> {
    /// Fraction of each layer's neurons skipped per token, `0.0..1.0`: the
    /// ones whose activation `|silu(gate·x)·(up·x)|` is smallest.
    pub sparsity: f32,
    /// The neuron cache's policy; `None` runs without a cache.
    pub policy: Option<P>,
    /// The buffers (see [`SparseBuffers`]).
    pub scratch: B,
}

/// What the sparse fetches did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SparseStats {
    /// Layer fetches (one per streamed layer per pass).
    pub fetches: u64,
    /// Down columns needed, summed over fetches.
    pub needed: u64,
    /// Needed columns found in the cache.
    pub hits: u64,
    /// Needed columns read from flash.
    pub misses: u64,
    /// Fetches the planner served with one dense read of the region.
    pub dense_plans: u64,
    /// Bytes of the columns that missed (what a perfect reader reads).
    pub needed_bytes: u64,
    /// Bytes the plans read.
    pub read_bytes: u64,
}

#[derive(Debug)]
struct Sparse<P: Policy, B> {
    /// Neurons kept per token and layer.
    keep: usize,
    io: Slot,
    cache: Option<NeuronCache<P>>,
    scratch: B,
    stats: SparseStats,
    pass: u32,
}

/// Every FFN (and whatever else the plan streams) read from flash.
#[derive(Debug)]
pub struct StreamSource<D, P: Policy = S3Fifo, B = SparseScratch<'static>> {
    ring: Ring<D>,
    plan: StreamPlan,
    /// Schedule index of each layer's attention, or `NONE` when resident.
    attn_unit: [u16; MAX_LAYERS],
    /// Schedule index of each layer's FFN bundles (a split layer's down
    /// columns), or `NONE` when resident or fetched sparsely.
    ffn_unit: [u16; MAX_LAYERS],
    /// Schedule index of each split layer's gate and up rows, or `NONE`.
    rows_unit: [u16; MAX_LAYERS],
    /// Resident rows of split layers (`None` for streamed or bundled ones).
    rows_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// `ffn` f32 of scratch for a split layer's up products.
    tmp: Option<Slot>,
    sparse: Option<Sparse<P, B>>,
    /// Schedule index of the first streamed head piece.
    head_first: usize,
    /// Streamed head pieces.
    head_pieces: usize,
    /// The head's first rows when the plan keeps only them resident: piece
    /// 0, before the streamed ones.
    head_part: Option<TensorRef>,
    /// Resident FFN slots (`None` for streamed layers).
    ffn_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// Per-layer spans and regions (offsets into slots).
    layout: StreamLayout,
    /// Activations: one row's (`ffn` f32) for bundled layers, `max_batch`
    /// rows' for split ones.
    act: Slot,
    clock: fn() -> u64,
    hidden: usize,
    ffn: usize,
    max_rows: usize,
    vocab: usize,
    block: usize,
}

/// Reads `len` bytes at block-aligned `start` into `slot` and waits:
/// commands of at most `max_transfer`, never more than the queue takes.
pub fn read_extent<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    slot: Slot,
    start: u64,
    len: usize,
) -> Result<(), ModelError> {
    let g = dev.geometry();
    let max = (g.max_transfer as usize).max(g.block_size as usize).max(1);
    let depth = usize::from(g.queue_depth.max(1)).min(16);
    let mut at = 0usize;
    while at < len {
        let mut batch: heapless::Vec<ReadRequest, 16> = heapless::Vec::new();
        while at < len && batch.len() < depth {
            let n = (len - at).min(max);
            let _ = batch.push(ReadRequest {
                tag: batch.len() as u32,
                offset: start + at as u64,
                len: u32::try_from(n).map_err(|_| ModelError::Config("read too large"))?,
                dest: slot,
                dest_offset: at,
            });
            at += n;
        }
        dev.read_blocking(arena, &batch).map_err(|e| match e {
            crate::flash::ReadError::Device(e) => ModelError::Device(crate::flash::Error::kind(&e)),
            crate::flash::ReadError::Failed { tag, kind } => ModelError::Read {
                offset: start + batch.get(tag as usize).map_or(0, |r| r.offset - start),
                kind,
            },
        })?;
    }
    Ok(())
}

/// Checks every data byte of `img` (tensors, bundles, padding) against its
/// CRC by streaming it through `slot` from `dev`: the image is validated
/// before any weight is trusted.
pub fn verify_image_data<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    let h = img.header();
    let (start, end) = (h.meta_len, h.file_len);
    let block = u64::from(dev.geometry().block_size.max(1));
    let cap = arena.bytes(slot).map_err(ModelError::arena)?.len() as u64 / block * block;
    if cap == 0 {
        return Err(ModelError::Config(
            "the verification buffer is smaller than a block",
        ));
    }
    let mut v = img.data_verifier();
    let mut at = start;
    while at < end {
        let n = (end - at).min(cap);
        let len = usize::try_from(n).map_err(|_| ModelError::Config("read too large"))?;
        read_extent(dev, arena, slot, at, len)?;
        let data = arena
            .bytes(slot)
            .map_err(ModelError::arena)?
            .get(..len)
            .ok_or(ModelError::Config("verification buffer too small"))?;
        v.update(data).map_err(ModelError::Image)?;
        at += n;
        progress(at - start, end - start);
    }
    v.finish().map_err(ModelError::Image)
}

fn read_resident<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    start: u64,
    len: usize,
    block: usize,
) -> Result<Slot, ModelError> {
    let slot = arena
        .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::Resident)
        .map_err(ModelError::arena)?;
    read_extent(dev, arena, slot, start, blocks(len, block))?;
    Ok(slot)
}

fn tensor_in(slot: Slot, base: u64, t: &TensorAt) -> TensorRef {
    TensorRef {
        slot,
        offset: (t.offset - base) as usize,
        dtype: t.dtype,
        rows: t.rows,
        cols: t.cols,
    }
}

fn attention_in(slot: Slot, base: u64, p: &[TensorAt; 4]) -> Attention {
    let [q, k, v, o] = p;
    Attention {
        q: tensor_in(slot, base, q),
        k: tensor_in(slot, base, k),
        v: tensor_in(slot, base, v),
        o: tensor_in(slot, base, o),
    }
}

/// Appends `unit` to the pass's schedule and returns its index. A unit
/// larger than a ring slot of `slot` bytes (a plan made for another
/// layout) or past [`MAX_UNITS`] is an error, not a short read.
fn schedule_unit(
    schedule: &mut heapless::Vec<Unit, MAX_UNITS>,
    unit: Unit,
    slot: usize,
) -> Result<u16, ModelError> {
    if unit.len > slot {
        return Err(ModelError::Config(
            "a streamed unit is larger than an I/O slot",
        ));
    }
    let index = schedule.len() as u16;
    schedule
        .push(unit)
        .map_err(|_| ModelError::Config("too many streamed units"))?;
    Ok(index)
}

fn aligned_extent(start: u64, len: usize, block: usize) -> (u64, usize, usize) {
    let b = block as u64;
    let s = start / b * b;
    let skip = (start - s) as usize;
    (s, blocks(skip + len, block), skip)
}

fn fetch_err<E: crate::flash::Error>(e: FetchError<E>) -> ModelError {
    match e {
        FetchError::Device(e) => ModelError::Device(e.kind()),
        FetchError::Read { offset, kind } => ModelError::Read { offset, kind },
        FetchError::Arena(k) => ModelError::Arena(k),
        FetchError::IoBufferTooSmall { .. } => {
            ModelError::Config("a sparse read plan is larger than its I/O slot")
        }
        FetchError::ScratchTooSmall => {
            ModelError::Config("the sparse scratch is smaller than a layer's neurons")
        }
        FetchError::Plan(_) => ModelError::Config("the sparse read plan failed"),
        FetchError::Cache(_) => ModelError::Config("the neuron cache failed"),
        FetchError::Stalled { .. } => ModelError::Device(crate::flash::ErrorKind::Other),
    }
}

/// Slots of a cache of `bundle`-byte entries over `keys` keys with
/// `policy` that fits in `bytes` (with room for two slot alignments).
fn cache_config<P: Policy>(
    policy: &P,
    bytes: usize,
    keys: u32,
    bundle: u32,
) -> Option<CacheConfig> {
    let room = bytes.checked_sub(2 * 64 + 2 * ALIGN)?;
    let mut cfg = CacheConfig {
        slots: u32::try_from(room / bundle.max(1) as usize)
            .unwrap_or(u32::MAX)
            .min(keys),
        keys,
        bundle_bytes: bundle,
    };
    // Shrink until the metadata fits too (a few rounds: proportional).
    for _ in 0..64 {
        if cfg.slots == 0 {
            return None;
        }
        let need = cfg.arena_bytes(policy)?;
        if need <= room {
            return Some(cfg);
        }
        let over = need - room;
        let per = (bundle as usize).saturating_add(8).max(1);
        cfg.slots = cfg
            .slots
            .saturating_sub(u32::try_from(over.div_ceil(per)).unwrap_or(u32::MAX).max(1));
    }
    None
}

/// Neurons of a layer of `ffn` a sparse run keeps per token at `sparsity`:
/// `ffn` minus the nearest whole number of `sparsity * ffn`, at least one.
/// The run and `lode profile`'s top-k pass both count with this.
pub fn neurons_kept(sparsity: f32, ffn: usize) -> usize {
    // Nearest whole neuron (no `round` in core).
    let drop = (sparsity.clamp(0.0, 1.0) * ffn as f32 + 0.5) as usize;
    ffn.saturating_sub(drop).max(1)
}

/// Zeroes every activation of `h` below the `keep` largest in magnitude
/// (ties with the smallest kept one stay), using `scratch` (at least
/// `h.len()` values): the per-token rule of a sparse run.
pub fn keep_strongest(h: &mut [f32], keep: usize, scratch: &mut [f32]) -> Result<(), ModelError> {
    let n = h.len();
    if keep >= n {
        return Ok(());
    }
    if keep == 0 {
        h.fill(0.0);
        return Ok(());
    }
    let mags = scratch.get_mut(..n).ok_or(ModelError::Compute(
        crate::compute::ErrorKind::ScratchTooSmall,
    ))?;
    for (m, v) in mags.iter_mut().zip(h.iter()) {
        *m = v.abs();
    }
    let (_, &mut t, _) = mags.select_nth_unstable_by(n - keep, |a, b| a.total_cmp(b));
    for v in h.iter_mut() {
        if v.abs() < t {
            *v = 0.0;
        }
    }
    Ok(())
}

/// `o[r] = Σ_i h[r][pos(i)] · col(i)` over the `needed` columns, rows of
/// `hidden` outputs, skipping zero activations (those neurons were not
/// chosen, and their columns may not have been read).
#[allow(clippy::too_many_arguments)]
fn accumulate_down<'c, C: Compute>(
    compute: &mut C,
    dtype: DType,
    h: &[f32],
    o: &mut [f32],
    (rows, ffn, hidden): (usize, usize, usize),
    needed: usize,
    pos: impl Fn(usize) -> Option<usize>,
    col: impl Fn(usize) -> Option<&'c [u8]>,
) -> Result<(), ModelError> {
    let short = ModelError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
    let missing = ModelError::Config("a chosen neuron's down column was not read");
    let h = h.get(..rows * ffn).ok_or(short)?;
    let o = o.get_mut(..rows * hidden).ok_or(short)?;
    o.fill(0.0);
    if ffn == 0 || hidden == 0 {
        return Ok(());
    }
    for (hr, or) in h.chunks_exact(ffn).zip(o.chunks_exact_mut(hidden)) {
        let mut refs: [&[u8]; 8] = [&[]; 8];
        let mut w = [0f32; 8];
        let mut k = 0usize;
        for i in 0..needed {
            let a = pos(i).and_then(|p| hr.get(p).copied()).ok_or(missing)?;
            if a == 0.0 {
                continue;
            }
            if let (Some(r), Some(wk)) = (refs.get_mut(k), w.get_mut(k)) {
                *r = col(i).ok_or(missing)?;
                *wk = a;
            }
            k += 1;
            if k == refs.len() {
                compute
                    .axpy_columns(dtype, &refs, &w, or)
                    .map_err(ModelError::compute)?;
                k = 0;
            }
        }
        if k > 0 {
            compute
                .axpy_columns(
                    dtype,
                    refs.get(..k).unwrap_or(&[]),
                    w.get(..k).unwrap_or(&[]),
                    or,
                )
                .map_err(ModelError::compute)?;
        }
    }
    Ok(())
}

impl<D: FlashDevice> StreamSource<D, S3Fifo, SparseScratch<'static>> {
    /// Loads what `plan` keeps resident from `dev` into `arena` and builds
    /// the streaming source for the rest; returns the resident weights the
    /// [`Model`](crate::model::Model) keeps. Run
    /// [`verify_image_data`] first: loading trusts the bytes. Every chosen
    /// neuron is computed (a dense run).
    #[allow(clippy::too_many_arguments)]
    pub fn load<A: DramArena>(
        dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
    ) -> Result<(Weights, Self), ModelError> {
        Self::load_with(dev, arena, layout, cfg, limits, plan, clock, None)
    }
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> StreamSource<D, P, B> {
    /// [`load`](StreamSource::load) for a sparse run (a plan made with
    /// [`StreamOptions::sparse`](super::StreamOptions::sparse)): each token
    /// keeps the strongest `1 - sparsity` of every layer's neurons and reads
    /// only their down columns, through a neuron cache of what the plan
    /// left over.
    #[allow(clippy::too_many_arguments)]
    pub fn load_sparse<A: DramArena>(
        dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
        setup: SparseSetup<P, B>,
    ) -> Result<(Weights, Self), ModelError> {
        Self::load_with(dev, arena, layout, cfg, limits, plan, clock, Some(setup))
    }

    /// [`load`](StreamSource::load) (`setup` `None`) or
    /// [`load_sparse`](StreamSource::load_sparse) with the scratch type
    /// named by the caller, so dense and sparse sources of one program
    /// share one type.
    #[allow(clippy::too_many_arguments)]
    pub fn load_with<A: DramArena>(
        mut dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
        setup: Option<SparseSetup<P, B>>,
    ) -> Result<(Weights, Self), ModelError> {
        limits.validate(cfg)?;
        if setup.is_some() != plan.sparse {
            return Err(ModelError::Config(
                "a sparse run needs a sparse plan, and a sparse plan a sparse run",
            ));
        }
        let block = plan.block;
        if dev.geometry().block_size as usize != block {
            return Err(ModelError::Config(
                "the plan was made for another block size",
            ));
        }
        let b = block as u64;
        let misaligned = layout.attn.iter().any(|a| !a.start.is_multiple_of(b))
            || layout.ffn.iter().any(|f| {
                !f.offset.is_multiple_of(b) || f.split().is_some_and(|r| !r.start.is_multiple_of(b))
            })
            || !layout.head.offset.is_multiple_of(b);
        if misaligned {
            return Err(ModelError::Config(
                "the image's block size is smaller than the device's; repack with a larger \
                 --block-size",
            ));
        }
        // The ring first, so a failed load leaves nothing half placed.
        let mut ring_slots: heapless::Vec<Slot, { super::plan::MAX_RING }> = heapless::Vec::new();
        for _ in 0..plan.ring {
            let s = arena
                .alloc(plan.ring_slot, block.max(ALIGN), SlotKind::IoBuffer)
                .map_err(ModelError::arena)?;
            let _ = ring_slots.push(s);
        }
        let norm = |dev: &mut D, arena: &mut A, t: &TensorAt| -> Result<TensorRef, ModelError> {
            let slot = read_resident(dev, arena, t.offset, t.len, block)?;
            Ok(tensor_in(slot, t.offset, t))
        };
        let mut layers: heapless::Vec<LayerWeights, MAX_LAYERS> = heapless::Vec::new();
        let mut schedule: heapless::Vec<Unit, MAX_UNITS> = heapless::Vec::new();
        let mut attn_unit = [NONE; MAX_LAYERS];
        let mut ffn_unit = [NONE; MAX_LAYERS];
        let mut rows_unit = [NONE; MAX_LAYERS];
        let mut ffn_resident = heapless::Vec::new();
        let mut rows_resident = heapless::Vec::new();
        for l in 0..cfg.layers {
            let span = *layout
                .attn
                .get(l)
                .ok_or(ModelError::Config("layer missing"))?;
            let region = *layout
                .ffn
                .get(l)
                .ok_or(ModelError::Config("layer missing"))?;
            let attn_norm = norm(&mut dev, arena, &span.attn_norm)?;
            let ffn_norm = norm(&mut dev, arena, &span.ffn_norm)?;
            let attn = if plan.attn_is_resident(l) {
                let slot = read_resident(&mut dev, arena, span.start, span.len, block)?;
                Some(attention_in(slot, span.start, &span.proj))
            } else {
                let unit = Unit::whole(span.start, span.len, block);
                let index = schedule_unit(&mut schedule, unit, plan.ring_slot)?;
                if let Some(u) = attn_unit.get_mut(l) {
                    *u = index;
                }
                None
            };
            layers
                .push(LayerWeights {
                    attn_norm,
                    ffn_norm,
                    attn,
                })
                .map_err(|_| ModelError::Config("layers must be 1 to 128"))?;
            let resident = plan.ffn_is_resident(l);
            let rows = match region.split() {
                Some(r) if resident => Some(read_resident(&mut dev, arena, r.start, r.len, block)?),
                Some(r) => {
                    let unit = Unit::whole(r.start, r.len, block);
                    let index = schedule_unit(&mut schedule, unit, plan.ring_slot)?;
                    if let Some(u) = rows_unit.get_mut(l) {
                        *u = index;
                    }
                    None
                }
                None => None,
            };
            let _ = rows_resident.push(rows);
            let res = if resident {
                Some(read_resident(
                    &mut dev,
                    arena,
                    region.offset,
                    region.len,
                    block,
                )?)
            } else if region.split().is_some() && plan.sparse {
                None
            } else {
                if let Some(u) = ffn_unit.get_mut(l) {
                    *u = schedule.len() as u16;
                }
                // A dense layer streams as its three matrices in the order
                // they multiply (each unit a third of the layer, so the
                // ring's slots are too); any other as one region.
                let mut extents: heapless::Vec<(u64, usize, usize), 3> = heapless::Vec::new();
                match region.dense() {
                    Some(m) => {
                        for t in [m.gate, m.up, m.down] {
                            let _ = extents.push(aligned_extent(t.offset, t.len, block));
                        }
                    }
                    None => {
                        let _ = extents.push((region.offset, blocks(region.len, block), 0));
                    }
                }
                for (start, len, skip) in extents {
                    let unit = Unit {
                        start,
                        len,
                        skip,
                        head: false,
                    };
                    schedule_unit(&mut schedule, unit, plan.ring_slot)?;
                }
                None
            };
            let _ = ffn_resident.push(res);
        }
        let output_norm = norm(&mut dev, arena, &layout.output_norm)?;
        let head = layout.head;
        let rb = head.row_bytes();
        let (output, head_first, head_pieces) = if plan.head_resident {
            let slot = read_resident(&mut dev, arena, head.offset, head.len, block)?;
            (Some(tensor_in(slot, head.offset, &head)), schedule.len(), 0)
        } else {
            let first = schedule.len();
            let rows = plan.head_rows.max(1);
            let mut r0 = plan.head_resident_rows.min(head.rows);
            while r0 < head.rows {
                let r1 = (r0 + rows).min(head.rows);
                let (start, len, skip) =
                    aligned_extent(head.offset + (r0 * rb) as u64, (r1 - r0) * rb, block);
                let unit = Unit {
                    start,
                    len,
                    skip,
                    head: true,
                };
                schedule_unit(&mut schedule, unit, plan.ring_slot)?;
                r0 = r1;
            }
            (None, first, schedule.len() - first)
        };
        let head_part = match plan.head_resident_rows.min(head.rows) {
            n if n > 0 && !plan.head_resident => {
                let slot = read_resident(&mut dev, arena, head.offset, n * rb, block)?;
                Some(TensorRef {
                    slot,
                    offset: 0,
                    dtype: head.dtype,
                    rows: n,
                    cols: head.cols,
                })
            }
            _ => None,
        };
        let embed = if cfg.tied_embeddings { output } else { None };
        let row_slot = if embed.is_none() {
            let len = blocks(layout.embed.row_bytes() + block, block);
            Some(
                arena
                    .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::IoBuffer)
                    .map_err(ModelError::arena)?,
            )
        } else {
            None
        };
        let (act_len, up_len) = super::plan::act_lens(&layout, cfg, limits);
        let act = arena
            .alloc(act_len, ALIGN, SlotKind::Scratch)
            .map_err(ModelError::arena)?;
        let tmp = if up_len > 0 {
            Some(
                arena
                    .alloc(up_len, ALIGN, SlotKind::Scratch)
                    .map_err(ModelError::arena)?,
            )
        } else {
            None
        };
        let sparse = match setup {
            None => None,
            Some(mut setup) => {
                if !(0.0..1.0).contains(&setup.sparsity) {
                    return Err(ModelError::Config(
                        "sparsity must be at least 0 and below 1",
                    ));
                }
                let (n, ext) =
                    SparseScratch::lens(&layout, block, dev.geometry().max_transfer as usize);
                let sc = setup.scratch.lend();
                if sc.positions.len() < n
                    || sc.missing.len() < n
                    || sc.locs.len() < n
                    || sc.extents.len() < ext
                {
                    return Err(ModelError::Config(
                        "the sparse scratch is smaller than SparseScratch::lens asks",
                    ));
                }
                let down_max = layout.ffn.iter().map(|f| f.len).max().unwrap_or(0);
                let io = arena
                    .alloc(
                        read_slot(down_max.saturating_add(2 * block), block),
                        block.max(ALIGN),
                        SlotKind::IoBuffer,
                    )
                    .map_err(ModelError::arena)?;
                let bundle = layout.ffn.first().map_or(0, |f| f.bundle);
                let keys = u32::try_from(cfg.ffn.saturating_mul(cfg.layers))
                    .map_err(|_| ModelError::Config("too many neurons for a cache"))?;
                let cache = match setup.policy {
                    Some(policy) if plan.bytes.cache > 0 => {
                        match cache_config(&policy, plan.bytes.cache, keys, bundle as u32) {
                            Some(c) => Some(
                                NeuronCache::new(arena, c, policy)
                                    .map_err(|_| ModelError::Config("the neuron cache failed"))?,
                            ),
                            None => None,
                        }
                    }
                    _ => None,
                };
                Some(Sparse {
                    keep: neurons_kept(setup.sparsity, cfg.ffn),
                    io,
                    cache,
                    scratch: setup.scratch,
                    stats: SparseStats::default(),
                    pass: 0,
                })
            }
        };
        if schedule.iter().any(|u| u.len > plan.ring_slot) {
            return Err(ModelError::Config(
                "a streamed unit is larger than an I/O slot",
            ));
        }
        let ring = Ring::new(dev, &ring_slots, &schedule, row_slot, clock)?;
        let weights = Weights {
            embed,
            output_norm,
            output,
            layers,
        };
        Ok((
            weights,
            StreamSource {
                ring,
                plan,
                attn_unit,
                ffn_unit,
                rows_unit,
                rows_resident,
                tmp,
                sparse,
                head_first,
                head_pieces,
                head_part,
                ffn_resident,
                layout,
                act,
                clock,
                hidden: cfg.hidden,
                ffn: cfg.ffn,
                max_rows: limits.max_batch,
                vocab: cfg.vocab,
                block,
            },
        ))
    }

    /// The plan this source follows.
    pub fn plan(&self) -> &StreamPlan {
        &self.plan
    }

    /// I/O measured so far.
    pub fn io_stats(&self) -> IoStats {
        self.ring.stats()
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

    /// Where a unit's bytes are: its resident slot, or the ring slot its
    /// read lands in (waiting for it), with the bytes to skip there.
    fn unit_slot<A: DramArena>(
        &mut self,
        resident: Option<Slot>,
        unit: u16,
        arena: &mut A,
    ) -> Result<(Slot, usize), ModelError> {
        match resident {
            Some(s) => Ok((s, 0)),
            None => self.ring.acquire(arena, usize::from(unit)),
        }
    }

    /// [`unit_slot`](Self::unit_slot) of layer `layer`'s FFN region.
    fn ffn_slot<A: DramArena>(
        &mut self,
        layer: usize,
        arena: &mut A,
    ) -> Result<(Slot, usize), ModelError> {
        let resident = self.ffn_resident.get(layer).copied().flatten();
        let unit = self.ffn_unit.get(layer).copied().unwrap_or(NONE);
        self.unit_slot(resident, unit, arena)
    }

    /// Runs bundled layer `layer`'s FFN over its whole bundles.
    fn run_bundled<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), ModelError> {
        let (slot, skip) = self.ffn_slot(layer, arena)?;
        let (table, mem) = arena.parts_mut();
        let ([h, o], sh) = split(table, mem, [self.act, io.output])?;
        let data = sh
            .get(slot)?
            .get(skip..skip + region.len)
            .ok_or(ModelError::Config("a streamed FFN region is cut short"))?;
        let bundles = Bundles {
            dtype: region.types.rows,
            down_dtype: region.types.down,
            hidden: self.hidden,
            count: region.count,
            data,
        };
        let x = sh.f32s(io.input)?;
        ffn_rows(compute, &bundles, x, h, o, io.rows, self.ffn)
    }

    /// Runs dense layer `layer`'s FFN: three products over the matrices as
    /// the source stored them, as a resident dense FFN computes them.
    fn run_dense<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        m: DenseMatrices,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), ModelError> {
        let short = ModelError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
        let scratch = [self.act, self.tmp.ok_or(short)?];
        let shape = (self.hidden, self.ffn);
        if let Some(slot) = self.ffn_resident.get(layer).copied().flatten() {
            let at = |t: &TensorAt| tensor_in(slot, region.offset, t);
            let l = DenseLayer {
                gate: at(&m.gate),
                up: at(&m.up),
                down: at(&m.down),
            };
            return dense_products(arena, compute, &l, io, scratch, shape);
        }
        // Streamed: the three matrices are consecutive units, each taken
        // (and the one before released) as its product runs.
        let first = usize::from(self.ffn_unit.get(layer).copied().unwrap_or(NONE));
        for (k, (which, t)) in Product::ALL
            .into_iter()
            .zip([m.gate, m.up, m.down])
            .enumerate()
        {
            let (slot, skip) = self.ring.acquire(arena, first + k)?;
            let w = TensorRef {
                slot,
                offset: skip,
                dtype: t.dtype,
                rows: t.rows,
                cols: t.cols,
            };
            dense_product(arena, compute, which, &w, io, scratch, shape)?;
        }
        Ok(())
    }

    /// Runs split layer `layer`'s FFN: activations from the rows, the
    /// strongest kept (sparse runs), then the down columns of those.
    fn run_split<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        rows: SplitRows,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), ModelError> {
        let (n, ffn, hidden) = (io.rows, self.ffn, self.hidden);
        let short = ModelError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
        let tmp = self.tmp.ok_or(short)?;
        // 1. Every neuron's activation, row by row.
        let resident = self.rows_resident.get(layer).copied().flatten();
        let unit = self.rows_unit.get(layer).copied().unwrap_or(NONE);
        let (rslot, rskip) = self.unit_slot(resident, unit, arena)?;
        let mut gate = tensor_in(rslot, rows.start, &rows.gate);
        let mut up = tensor_in(rslot, rows.start, &rows.up);
        gate.offset += rskip;
        up.offset += rskip;
        let keep = self.sparse.as_ref().map_or(ffn, |s| s.keep);
        {
            let (table, mem) = arena.parts_mut();
            let ([h, t], sh) = split(table, mem, [self.act, tmp])?;
            let x = sh.f32s(io.input)?.get(..n * hidden).ok_or(short)?;
            let h = f32s_mut(h)?.get_mut(..n * ffn).ok_or(short)?;
            let t = f32s_mut(t)?.get_mut(..ffn).ok_or(short)?;
            let (gm, um) = (gate.matrix(&sh)?, up.matrix(&sh)?);
            for (xr, hr) in x.chunks_exact(hidden).zip(h.chunks_exact_mut(ffn)) {
                compute.matvec(&gm, xr, hr).map_err(ModelError::compute)?;
                compute.matvec(&um, xr, t).map_err(ModelError::compute)?;
                compute.swiglu(hr, t).map_err(ModelError::compute)?;
                keep_strongest(hr, keep, t)?;
            }
        }
        let dtype = region.types.down;
        let cb = region.bundle;
        let shape = (n, ffn, hidden);
        // 2a. Columns resident or streamed whole: every position.
        let unit = self.ffn_unit.get(layer).copied().unwrap_or(NONE);
        let whole = match self.ffn_resident.get(layer).copied().flatten() {
            Some(s) => Some((s, 0)),
            None if unit != NONE => Some(self.ring.acquire(arena, usize::from(unit))?),
            None => None,
        };
        if let Some((slot, skip)) = whole {
            let (table, mem) = arena.parts_mut();
            let ([o], sh) = split(table, mem, [io.output])?;
            let h = sh.f32s(self.act)?;
            let data = sh
                .get(slot)?
                .get(skip..skip + region.len)
                .ok_or(ModelError::Config("a streamed FFN region is cut short"))?;
            let o = f32s_mut(o)?;
            return accumulate_down(compute, dtype, h, o, shape, ffn, Some, |i| {
                data.get(i * cb..(i + 1) * cb)
            });
        }
        // 2b. Sparse: fetch the columns some row needs.
        let sp = self.sparse.as_mut().ok_or(ModelError::Config(
            "a split layer's down columns are not loaded",
        ))?;
        let sc = sp.scratch.lend();
        let mut m = 0usize;
        {
            let h = f32s(arena.bytes(self.act).map_err(ModelError::arena)?)?
                .get(..n * ffn)
                .ok_or(short)?;
            for p in 0..ffn {
                if h.iter().skip(p).step_by(ffn).any(|&v| v != 0.0) {
                    *sc.positions.get_mut(m).ok_or(short)? = p as u32;
                    m += 1;
                }
            }
        }
        self.ring.settle(arena)?;
        let t0 = (self.clock)();
        let bad = || ModelError::Config("an FFN region does not fit a read plan");
        let plan_region = Region {
            offset: region.offset,
            stride: u32::try_from(cb).map_err(|_| bad())?,
            bundle_bytes: u32::try_from(cb).map_err(|_| bad())?,
            count: u32::try_from(region.count).map_err(|_| bad())?,
        };
        let key_base = u32::try_from(layer * ffn).map_err(|_| bad())?;
        let positions = sc.positions.get(..m).ok_or(short)?;
        let mut fs = FetchScratch {
            missing: &mut *sc.missing,
            extents: &mut *sc.extents,
            locs: &mut *sc.locs,
        };
        let got = fetch_layer(
            self.ring.device_mut(),
            arena,
            sp.cache.as_mut(),
            &plan_region,
            key_base,
            positions,
            sp.pass,
            Mode::Adaptive { merge: true },
            sp.io,
            &mut fs,
        )
        .map_err(fetch_err)?;
        let waited = (self.clock)().saturating_sub(t0);
        self.ring
            .account(got.plan.bytes, u64::from(got.plan.commands), waited);
        let st = &mut sp.stats;
        st.fetches += 1;
        st.needed += m as u64;
        st.hits += u64::from(got.hits);
        st.misses += u64::from(got.misses);
        st.dense_plans += u64::from(got.plan.strategy == Strategy::Dense);
        st.needed_bytes += got.needed_bytes;
        st.read_bytes += got.plan.bytes;
        let (table, mem) = arena.parts_mut();
        let ([o], sh) = split(table, mem, [io.output])?;
        let h = sh.f32s(self.act)?;
        let iob = sh.get(sp.io)?;
        let cache = sp.cache.as_ref();
        let locs = &*sc.locs;
        let positions = &*sc.positions;
        let o = f32s_mut(o)?;
        accumulate_down(
            compute,
            dtype,
            h,
            o,
            shape,
            m,
            |i| positions.get(i).map(|&p| p as usize),
            |i| match locs.get(i)? {
                BundleLoc::Io(at) => iob.get(*at..at + cb),
                BundleLoc::Cache(s) => {
                    let (slot, r) = cache?.bundle_at(*s).ok()?;
                    sh.get(slot).ok()?.get(r)
                }
                BundleLoc::Nowhere => None,
            },
        )
    }

    /// The device.
    pub fn device(&self) -> &D {
        self.ring.device()
    }

    /// Waits for every read in flight (call after an error, before
    /// dropping the arena).
    pub fn quiesce<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
        self.ring.quiesce(arena)
    }
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> FfnSource for StreamSource<D, P, B> {
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), ModelError> {
        let region = checked_call(&self.layout.ffn, layer, &io, self.max_rows)?;
        match region.kind {
            FfnKind::Split(rows) => self.run_split(layer, region, rows, arena, compute, io),
            FfnKind::Dense(m) => self.run_dense(layer, region, m, arena, compute, io),
            FfnKind::Bundled => self.run_bundled(layer, region, arena, compute, io),
        }
    }

    fn begin_pass<A: DramArena>(&mut self, arena: &mut A, logits: bool) -> Result<(), ModelError> {
        if let Some(sp) = self.sparse.as_mut() {
            sp.pass = sp.pass.wrapping_add(1);
            if let Some(c) = sp.cache.as_mut() {
                c.end_token(arena, sp.pass)
                    .map_err(|_| ModelError::Config("the neuron cache failed"))?;
            }
        }
        self.ring.begin_pass(arena, logits)
    }

    fn attention<A: DramArena>(
        &mut self,
        layer: usize,
        arena: &mut A,
        resident: Option<Attention>,
    ) -> Result<Attention, ModelError> {
        if let Some(a) = resident {
            return Ok(a);
        }
        let span = *self
            .layout
            .attn
            .get(layer)
            .ok_or(ModelError::Config("attention layer out of range"))?;
        let u = self.attn_unit.get(layer).copied().unwrap_or(NONE);
        let (slot, skip) = self.ring.acquire(arena, usize::from(u))?;
        let mut a = attention_in(slot, span.start, &span.proj);
        for t in [&mut a.q, &mut a.k, &mut a.v, &mut a.o] {
            t.offset += skip;
        }
        Ok(a)
    }

    fn embedding_row<A: DramArena>(
        &mut self,
        token: u32,
        arena: &mut A,
        resident: Option<TensorRef>,
    ) -> Result<(TensorRef, usize), ModelError> {
        if let Some(e) = resident {
            return Ok((e, token as usize));
        }
        let e = self.layout.embed;
        let t = token as usize;
        if t >= e.rows {
            return Err(ModelError::TokenOutOfRange {
                token,
                vocab: self.vocab,
            });
        }
        let rb = e.row_bytes();
        let (start, len, skip) = aligned_extent(e.offset + (t * rb) as u64, rb, self.block);
        let slot = self.ring.read_row(arena, start, len)?;
        Ok((
            TensorRef {
                slot,
                offset: skip,
                dtype: e.dtype,
                rows: 1,
                cols: e.cols,
            },
            0,
        ))
    }

    fn head_piece<A: DramArena>(
        &mut self,
        piece: usize,
        arena: &mut A,
        resident: Option<TensorRef>,
    ) -> Result<Option<(TensorRef, usize)>, ModelError> {
        if let Some(h) = resident {
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
        let (slot, skip) = self.ring.acquire(arena, self.head_first + piece)?;
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
