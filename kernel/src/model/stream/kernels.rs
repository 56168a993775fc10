//! The FFN of a streamed layer, one kernel per layout: bundled (gate row,
//! up row and down column of each neuron together), dense (the three
//! matrices as stored, streamed one at a time), and split (gate and up
//! rows apart from the down columns, which a sparse run fetches only for
//! the neurons it keeps).

use crate::arena::{DramArena, Slot};
use crate::cache::Policy;
use crate::compute::{Bundles, Compute, DType};
use crate::fetch::{fetch_layer, BundleLoc, FetchIo, FetchScratch};
use crate::flash::FlashDevice;
use crate::model::bundle_ffn::ffn_rows;
use crate::model::error::EvalError;
use crate::model::ffn::{dense_product, dense_products, DenseLayer, FfnIo, Product};
use crate::model::tensor::TensorRef;
use crate::model::view::{f32s, f32s_mut, split};
use crate::plan::Mode;

use super::layout::{DenseMatrices, FfnRegion, SplitRows, TensorAt};
use super::load::tensor_in;
use super::source::{StreamSource, NONE};
use super::sparse::{fetch_err, SparseBuffers};
use super::sparsity::keep_strongest;

/// `o[r] = Σ_i h[r][pos(i)] · col(i)` over the `needed` columns, rows of
/// `hidden` outputs, skipping zero activations (those neurons were not
/// chosen, and their columns may not have been read).
#[allow(clippy::too_many_arguments)]
pub(super) fn accumulate_down<'c, C: Compute>(
    compute: &mut C,
    dtype: DType,
    h: &[f32],
    o: &mut [f32],
    (rows, ffn, hidden): (usize, usize, usize),
    needed: usize,
    pos: impl Fn(usize) -> Option<usize>,
    col: impl Fn(usize) -> Option<&'c [u8]>,
) -> Result<(), EvalError> {
    let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
    let missing = EvalError::Internal("a chosen neuron's down column was not read");
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
                    .map_err(EvalError::compute)?;
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
                .map_err(EvalError::compute)?;
        }
    }
    Ok(())
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> StreamSource<D, P, B> {
    /// Where a unit's bytes are: its resident slot, or the ring slot its
    /// read lands in (waiting for it), with the bytes to skip there.
    pub(super) fn unit_slot<A: DramArena, C: Compute>(
        &mut self,
        resident: Option<Slot>,
        unit: u16,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<(Slot, usize), EvalError> {
        match resident {
            Some(s) => Ok((s, 0)),
            None => self.ring.acquire(arena, usize::from(unit), compute),
        }
    }

    /// [`unit_slot`](Self::unit_slot) of layer `layer`'s FFN region.
    fn ffn_slot<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<(Slot, usize), EvalError> {
        let resident = self.ffn_resident.get(layer).copied().flatten();
        let unit = self.ffn_unit.get(layer).copied().unwrap_or(NONE);
        self.unit_slot(resident, unit, arena, compute)
    }

    /// Runs bundled layer `layer`'s FFN over its whole bundles.
    pub(super) fn run_bundled<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let (slot, skip) = self.ffn_slot(layer, arena, compute)?;
        let (table, mem) = arena.parts_mut();
        let ([h, o], sh) = split(table, mem, [self.act, io.output])?;
        let data = sh
            .get(slot)?
            .get(skip..skip + region.len)
            .ok_or(EvalError::Internal("a streamed FFN region is cut short"))?;
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
    pub(super) fn run_dense<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        m: DenseMatrices,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
        let scratch = [self.act, self.tmp.ok_or(short)?];
        let shape = (self.hidden, self.ffn);
        if let Some(slot) = self.ffn_resident.get(layer).copied().flatten() {
            let at = |t: &TensorAt| tensor_in(slot, region.offset, t);
            let l = DenseLayer {
                gate: at(&m.gate),
                up: at(&m.up),
                down: at(&m.down),
            };
            return dense_products(arena, compute, &l, io, scratch, shape, self.layout.gate);
        }
        // Streamed: the three matrices are consecutive units, each taken
        // (and the one before released) as its product runs.
        let first = usize::from(self.ffn_unit.get(layer).copied().unwrap_or(NONE));
        for (k, (which, t)) in Product::ALL
            .into_iter()
            .zip([m.gate, m.up, m.down])
            .enumerate()
        {
            let (slot, skip) = self.ring.acquire(arena, first + k, compute)?;
            let w = TensorRef {
                slot,
                offset: skip,
                dtype: t.dtype,
                rows: t.rows,
                cols: t.cols,
            };
            dense_product(
                arena,
                compute,
                which,
                &w,
                io,
                scratch,
                shape,
                self.layout.gate,
            )?;
        }
        Ok(())
    }

    /// Runs split layer `layer`'s FFN: activations from the rows, the
    /// strongest kept (sparse runs), then the down columns of those.
    pub(super) fn run_split<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        rows: SplitRows,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        self.split_activations(layer, rows, arena, compute, io)?;
        let (n, ffn, hidden) = (io.rows, self.ffn, self.hidden);
        let dtype = region.types.down;
        let cb = region.bundle;
        let shape = (n, ffn, hidden);
        // Columns resident or streamed whole: every position.
        let unit = self.ffn_unit.get(layer).copied().unwrap_or(NONE);
        let whole = match self.ffn_resident.get(layer).copied().flatten() {
            Some(s) => Some((s, 0)),
            None if unit != NONE => Some(self.ring.acquire(arena, usize::from(unit), compute)?),
            None => None,
        };
        let Some((slot, skip)) = whole else {
            return self.fetch_columns(layer, region, arena, compute, io);
        };
        let (table, mem) = arena.parts_mut();
        let ([o], sh) = split(table, mem, [io.output])?;
        let h = sh.f32s(self.act)?;
        let data = sh
            .get(slot)?
            .get(skip..skip + region.len)
            .ok_or(EvalError::Internal("a streamed FFN region is cut short"))?;
        let o = f32s_mut(o)?;
        accumulate_down(compute, dtype, h, o, shape, ffn, Some, |i| {
            data.get(i * cb..(i + 1) * cb)
        })
    }

    /// Every neuron's activation of split layer `layer` from its gate and
    /// up rows, row by row, into `act`; a sparse run keeps the strongest.
    fn split_activations<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        rows: SplitRows,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let (n, ffn, hidden) = (io.rows, self.ffn, self.hidden);
        let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
        let tmp = self.tmp.ok_or(short)?;
        let resident = self.rows_resident.get(layer).copied().flatten();
        let unit = self.rows_unit.get(layer).copied().unwrap_or(NONE);
        let (rslot, rskip) = self.unit_slot(resident, unit, arena, compute)?;
        let mut gate = tensor_in(rslot, rows.start, &rows.gate);
        let mut up = tensor_in(rslot, rows.start, &rows.up);
        gate.offset += rskip;
        up.offset += rskip;
        let keep = self.keep;
        let (table, mem) = arena.parts_mut();
        let ([h, t], sh) = split(table, mem, [self.act, tmp])?;
        let x = sh.f32s(io.input)?.get(..n * hidden).ok_or(short)?;
        let h = f32s_mut(h)?.get_mut(..n * ffn).ok_or(short)?;
        let t = f32s_mut(t)?.get_mut(..ffn).ok_or(short)?;
        let (gm, um) = (gate.matrix(&sh)?, up.matrix(&sh)?);
        for (xr, hr) in x.chunks_exact(hidden).zip(h.chunks_exact_mut(ffn)) {
            compute.matvec(&gm, xr, hr).map_err(EvalError::compute)?;
            compute.matvec(&um, xr, t).map_err(EvalError::compute)?;
            compute.swiglu(hr, t).map_err(EvalError::compute)?;
            keep_strongest(hr, keep, t)?;
        }
        Ok(())
    }

    /// A sparse run's down projection of split layer `layer`: the columns
    /// some row needs, from the neuron cache or read by the cost-model
    /// planner ([`fetch_layer`]).
    fn fetch_columns<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        region: FfnRegion,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let (n, ffn, hidden) = (io.rows, self.ffn, self.hidden);
        let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
        let cb = region.bundle;
        let sp = self.sparse.as_mut().ok_or(EvalError::Internal(
            "a split layer's down columns are not loaded",
        ))?;
        let sc = sp.scratch.lend();
        let mut m = 0usize;
        {
            let h = f32s(arena.bytes(self.act).map_err(EvalError::arena)?)?
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
        let bad = || EvalError::Internal("an FFN region does not fit a read plan");
        let plan_region = region.plan_region().ok_or_else(bad)?;
        let key_base = u32::try_from(layer * ffn).map_err(|_| bad())?;
        let positions = sc.positions.get(..m).ok_or(short)?;
        let mut fs = FetchScratch {
            missing: &mut *sc.missing,
            extents: &mut *sc.extents,
            locs: &mut *sc.locs,
        };
        let checks = self.ring.checks().copied();
        let got = fetch_layer(
            self.ring.device_mut(),
            arena,
            sp.cache.as_mut(),
            &plan_region,
            key_base,
            positions,
            sp.pass,
            Mode::Adaptive { merge: true },
            FetchIo {
                slot: sp.io,
                checks: checks.as_ref(),
            },
            &mut fs,
        )
        .map_err(fetch_err)?;
        let waited = (self.clock)().saturating_sub(t0);
        self.ring
            .account(got.plan.bytes, u64::from(got.plan.commands), waited);
        self.ring
            .account_checks(got.verified, u64::from(got.retries));
        sp.stats.add(&got, m);
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
            region.types.down,
            h,
            o,
            (n, ffn, hidden),
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
}
