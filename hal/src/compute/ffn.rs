//! The SiLU-gated FFN over a set of neuron bundles.
//!
//! Two phases, each split across threads when large enough:
//! 1. per bundle `i`: `h_i = silu(gate_i · x) · (up_i · x)`, split by
//!    bundles (each thread writes its own range of `hidden`);
//! 2. `out += Σ_i h_i · down_i`, split by output columns (whole blocks), so
//!    each thread adds into its own range of `out` and no reduction is needed;
//!    four bundles go through each range together, so `out` is read and
//!    written once per four bundles.

use lode_kernel::compute::{Bundles, DType, ErrorKind};

use super::act::ActBlock;
use super::exec::{split_ranges, Exec, Parts};
use super::kernels::{Kernels, RowType};
use super::math;
use super::quant::QK;

/// Bytes of the first `cols` elements of a row of `rt` (`cols` a whole
/// number of blocks for quantized types).
fn prefix_bytes(rt: RowType, cols: usize) -> usize {
    match rt {
        RowType::Float { half: false } => cols * 4,
        RowType::Float { half: true } => cols * 2,
        RowType::Quant(t) => cols / t.block_elems() * t.block_bytes(),
    }
}

/// A bundle's activation from its gate and up products.
fn gate_up(g: f32, u: f32) -> f32 {
    math::silu(g) * u
}

/// See [`Compute::gated_ffn`](lode_kernel::compute::Compute::gated_ffn).
///
/// Errors: `ShapeMismatch` when `x`, `out` or `bundles.data` disagree with
/// `bundles.hidden`/`count` (or `hidden` is not whole blocks),
/// `ScratchTooSmall` when `hidden` (the caller's) or the activation scratch
/// is too short, `UnsupportedType`, and `NonFinite` for a quantized bundle
/// type with non-finite `x`.
pub(crate) fn gated_ffn(
    kern: Kernels,
    exec: &mut Exec,
    scratch: &mut [ActBlock],
    x: &[f32],
    bundles: &Bundles<'_>,
    hidden: &mut [f32],
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    let dim = bundles.hidden;
    if x.len() != dim || out.len() != dim {
        return Err(ErrorKind::ShapeMismatch);
    }
    let rt = RowType::of(bundles.dtype).ok_or(ErrorKind::UnsupportedType)?;
    let dt = RowType::of(bundles.down_dtype).ok_or(ErrorKind::UnsupportedType)?;
    let rb = bundles
        .dtype
        .row_bytes(dim as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or(ErrorKind::ShapeMismatch)?;
    let bundle_bytes = Bundles::bundle_bytes(bundles.dtype, bundles.down_dtype, dim)
        .ok_or(ErrorKind::ShapeMismatch)?;
    match bundle_bytes.checked_mul(bundles.count) {
        Some(n) if n == bundles.data.len() => {}
        _ => return Err(ErrorKind::ShapeMismatch),
    }
    let hidden = hidden
        .get_mut(..bundles.count)
        .ok_or(ErrorKind::ScratchTooSmall)?;
    if bundles.count == 0 || rb == 0 {
        return Ok(());
    }
    let act: &[ActBlock] = match rt {
        RowType::Quant(t) => {
            let act = scratch
                .get_mut(..dim / QK)
                .ok_or(ErrorKind::ScratchTooSmall)?;
            if !kern.quantize_act_for(t, x, act) {
                return Err(ErrorKind::NonFinite);
            }
            act
        }
        RowType::Float { .. } => &[],
    };

    // Phase 1: activations of every bundle (gate and up as a row pair).
    let phase1 = |data: &[u8], h: &mut [f32]| {
        kern.pair_map(rt, data, bundle_bytes, rb, x, act, h, gate_up);
    };
    let work = bundles.count.saturating_mul(dim).saturating_mul(2);
    let parts = exec.chunks_for(work, bundles.count);
    if parts <= 1 {
        phase1(bundles.data, hidden);
    } else {
        let mut items: Parts<(&[u8], &mut [f32])> = Parts::new();
        let mut rest_h: &mut [f32] = hidden;
        let mut rest_d = bundles.data;
        for (a, b) in split_ranges(bundles.count, 1, parts) {
            let (h, th) = core::mem::take(&mut rest_h).split_at_mut(b - a);
            let (d, td) = rest_d.split_at((b - a) * bundle_bytes);
            rest_h = th;
            rest_d = td;
            if let Err((d, h)) = items.push((d, h)) {
                phase1(d, h);
            }
        }
        exec.for_each(&mut items, &|(d, h)| phase1(d, h));
    }
    let hidden: &[f32] = hidden;

    // Phase 2: out += Σ h_i · down_i over a column range [c0, c0 + o.len()),
    // four bundles per pass over the range.
    let phase2 = |c0: usize, o: &mut [f32]| {
        let (b0, b1) = (prefix_bytes(dt, c0), prefix_bytes(dt, c0 + o.len()));
        let (lo, hi) = (2 * rb + b0, 2 * rb + b1);
        let mut hs = hidden.chunks_exact(4);
        let mut bs = bundles.data.chunks_exact(4 * bundle_bytes);
        for (h4, b4) in (&mut hs).zip(&mut bs) {
            let mut rows: [&[u8]; 4] = [&[]; 4];
            for (r, b) in rows.iter_mut().zip(b4.chunks_exact(bundle_bytes)) {
                *r = b.get(lo..hi).unwrap_or(&[]);
            }
            if let Ok(h4) = <[f32; 4]>::try_from(h4) {
                kern.axpy4_row(dt, rows, h4, o);
            }
        }
        for (&h, b) in hs
            .remainder()
            .iter()
            .zip(bs.remainder().chunks_exact(bundle_bytes))
        {
            kern.axpy_row(dt, b.get(lo..hi).unwrap_or(&[]), h, o);
        }
    };
    // Column ranges must be whole blocks of the down type (32, or a
    // K-quant's 256: whole activation blocks either way).
    let granule = match dt {
        RowType::Quant(t) => t.block_elems(),
        RowType::Float { .. } => 8,
    };
    // Chunks of at least four blocks: each chunk walks every bundle.
    let parts = exec.chunks_for(work / 2, dim / (4 * granule));
    if parts <= 1 {
        phase2(0, out);
    } else {
        let mut items: Parts<(usize, &mut [f32])> = Parts::new();
        let mut rest_o: &mut [f32] = out;
        for (a, b) in split_ranges(dim, granule, parts) {
            let (o, to) = core::mem::take(&mut rest_o).split_at_mut(b - a);
            rest_o = to;
            if let Err((c0, o)) = items.push((a, o)) {
                phase2(c0, o);
            }
        }
        exec.for_each(&mut items, &|(c0, o)| phase2(*c0, o));
    }
    Ok(())
}

/// See [`Compute::axpy_columns`](lode_kernel::compute::Compute::axpy_columns):
/// four columns per pass over `out`, so it is read and written once per four.
///
/// Errors: `ShapeMismatch` when `cols` and `weights` differ in length or a
/// column is not one row of `out.len()` elements of `dtype`;
/// `UnsupportedType`.
pub(crate) fn axpy_columns(
    kern: Kernels,
    dtype: DType,
    cols: &[&[u8]],
    weights: &[f32],
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    let rt = RowType::of(dtype).ok_or(ErrorKind::UnsupportedType)?;
    let want = dtype
        .row_bytes(out.len() as u64)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or(ErrorKind::ShapeMismatch)?;
    if cols.len() != weights.len() || cols.iter().any(|c| c.len() != want) {
        return Err(ErrorKind::ShapeMismatch);
    }
    let mut cs = cols.chunks_exact(4);
    let mut ws = weights.chunks_exact(4);
    for (c4, w4) in (&mut cs).zip(&mut ws) {
        if let (Ok(rows), Ok(alpha)) = (<[&[u8]; 4]>::try_from(c4), <[f32; 4]>::try_from(w4)) {
            kern.axpy4_row(rt, rows, alpha, out);
        }
    }
    for (c, &w) in cs.remainder().iter().zip(ws.remainder()) {
        kern.axpy_row(rt, c, w, out);
    }
    Ok(())
}

/// See [`Compute::swiglu`](lode_kernel::compute::Compute::swiglu).
///
/// Errors: `ShapeMismatch` when the lengths differ. Non-finite inputs give
/// non-finite outputs (the next quantized product reports them).
pub(crate) fn swiglu(gate: &mut [f32], up: &[f32]) -> Result<(), ErrorKind> {
    if gate.len() != up.len() {
        return Err(ErrorKind::ShapeMismatch);
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gate_up(*g, u);
    }
    Ok(())
}
