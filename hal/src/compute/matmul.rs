//! Several matrix-vector products with one weight matrix: prompt processing.
//!
//! A decode step multiplies each weight matrix by one vector, so it streams
//! the whole matrix from memory for two multiply-adds per weight byte and is
//! bound by memory bandwidth. A prompt offers many vectors at once: here a
//! tile of rows small enough to stay in L1 is multiplied by every vector of
//! the batch before the next tile is touched, so each weight byte comes from
//! DRAM once per batch instead of once per position.
//!
//! Threads split the batch (each thread owns whole output vectors, so no
//! two threads write the same memory and the result does not depend on
//! which thread ran what); a batch too small to give every thread a few
//! vectors runs as separate products, each split by rows as usual.
//!
//! The numbers are exactly those of [`matvec`](super::matvec::matvec) on
//! each vector: the same activation quantization and the same row kernels.

use lode_kernel::compute::{ErrorKind, QuantMatrix};

use super::act::ActBlock;
use super::exec::{split_ranges, Exec, Parts};
use super::kernels::{Kernels, QType, RowType};
use super::matvec;
use super::quant::QK;

/// Bytes of weight rows multiplied by the whole batch before moving on:
/// small enough to stay in a 32 KiB L1 data cache next to the activations.
const TILE_BYTES: usize = 8 * 1024;

/// Vectors each thread should get at least, for the batch split to pay.
const MIN_VECTORS_PER_THREAD: usize = 2;

/// See [`Compute::matmul`](lode_kernel::compute::Compute::matmul).
///
/// Errors as [`matvec`](super::matvec::matvec), plus `ShapeMismatch` when
/// `x` or `out` is not `n` whole vectors.
pub(crate) fn matmul(
    kern: Kernels,
    exec: &mut Exec,
    scratch: &mut [ActBlock],
    w: &QuantMatrix<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    w.check()?;
    let fits = |len: usize, per: usize| per.checked_mul(n) == Some(len);
    if !fits(x.len(), w.cols) || !fits(out.len(), w.rows) {
        return Err(ErrorKind::ShapeMismatch);
    }
    if n == 0 || w.rows == 0 {
        return Ok(());
    }
    let row_bytes = w.row_bytes().ok_or(ErrorKind::ShapeMismatch)?;
    let blocks = w.cols / QK;
    let quant = match RowType::of(w.dtype).ok_or(ErrorKind::UnsupportedType)? {
        RowType::Quant(t) if row_bytes > 0 && blocks > 0 => Some(t),
        _ => None,
    };
    let threads = exec.threads();
    // Vectors whose quantized activations fit the scratch at once.
    let fit = scratch.len().checked_div(blocks).unwrap_or(0);
    let Some(t) = quant.filter(|_| n >= 2 && fit >= 2 && n >= MIN_VECTORS_PER_THREAD * threads)
    else {
        return per_vector(kern, exec, scratch, w, x, n, out);
    };
    let cols = w.cols;
    let rows = w.rows;
    let mut done = 0;
    while done < n {
        let m = (n - done).min(fit);
        let xs = x
            .get(done * cols..(done + m) * cols)
            .ok_or(ErrorKind::ShapeMismatch)?;
        let os = out
            .get_mut(done * rows..(done + m) * rows)
            .ok_or(ErrorKind::ShapeMismatch)?;
        let act = scratch
            .get_mut(..m * blocks)
            .ok_or(ErrorKind::ScratchTooSmall)?;
        if !kern.quantize_act_for(t, xs, act) {
            return Err(ErrorKind::NonFinite);
        }
        batch(kern, exec, t, w.data, row_bytes, blocks, act, os, rows);
        done += m;
    }
    Ok(())
}

/// The batch as `n` separate products.
fn per_vector(
    kern: Kernels,
    exec: &mut Exec,
    scratch: &mut [ActBlock],
    w: &QuantMatrix<'_>,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    for i in 0..n {
        let xi = x
            .get(i * w.cols..(i + 1) * w.cols)
            .ok_or(ErrorKind::ShapeMismatch)?;
        let oi = out
            .get_mut(i * w.rows..(i + 1) * w.rows)
            .ok_or(ErrorKind::ShapeMismatch)?;
        matvec::matvec(kern, exec, scratch, w, xi, oi)?;
    }
    Ok(())
}

/// Multiplies every row by every quantized vector of `act` (`blocks` per
/// vector) into `out` (`rows` per vector), split across threads by vectors.
#[allow(clippy::too_many_arguments)]
fn batch(
    kern: Kernels,
    exec: &mut Exec,
    t: QType,
    data: &[u8],
    row_bytes: usize,
    blocks: usize,
    act: &[ActBlock],
    out: &mut [f32],
    rows: usize,
) {
    let m = act.len() / blocks;
    let run = |first: usize, o: &mut [f32]| {
        tiles(kern, t, data, row_bytes, blocks, act, first, o, rows);
    };
    let work = m.saturating_mul(data.len()).saturating_mul(2);
    let parts = exec
        .chunks_for(work, m / MIN_VECTORS_PER_THREAD)
        .min(exec.threads());
    if parts <= 1 {
        run(0, out);
        return;
    }
    let mut items: Parts<(usize, &mut [f32])> = Parts::new();
    let mut rest: &mut [f32] = out;
    for (a, b) in split_ranges(m, 1, parts) {
        let (o, tail) = core::mem::take(&mut rest).split_at_mut((b - a) * rows);
        rest = tail;
        if let Err((first, o)) = items.push((a, o)) {
            run(first, o);
        }
    }
    exec.for_each(&mut items, &|(first, o)| run(*first, o));
}

/// Vectors `first..first + out.len() / rows` of `act` times every row, one
/// L1-sized tile of rows at a time.
#[allow(clippy::too_many_arguments)]
fn tiles(
    kern: Kernels,
    t: QType,
    data: &[u8],
    row_bytes: usize,
    blocks: usize,
    act: &[ActBlock],
    first: usize,
    out: &mut [f32],
    rows: usize,
) {
    // An even number of rows per tile: the row kernels go two at a time.
    let tile_rows = ((TILE_BYTES / row_bytes.max(1)) & !1).max(2);
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + tile_rows).min(rows);
        let Some(tile) = data.get(r0 * row_bytes..r1 * row_bytes) else {
            return;
        };
        for (i, o) in out.chunks_exact_mut(rows).enumerate() {
            let v = first + i;
            let (Some(a), Some(o)) = (act.get(v * blocks..(v + 1) * blocks), o.get_mut(r0..r1))
            else {
                return;
            };
            kern.matvec_q(t, tile, row_bytes, a, o);
        }
        r0 = r1;
    }
}
