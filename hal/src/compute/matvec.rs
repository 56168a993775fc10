//! Matrix-vector products over rows of any supported element type.

use lode_kernel::compute::{ErrorKind, QuantMatrix};

use super::act::ActBlock;
use super::exec::{split_ranges, Exec, Parts};
use super::kernels::{Kernels, RowType};
use super::quant::QK;

/// `out = w · x`; see [`Compute::matvec`](lode_kernel::compute::Compute::matvec).
///
/// Errors: `ShapeMismatch` when `w.data`, `x` or `out` disagree with
/// `w.rows × w.cols`, `UnsupportedType` for element types without kernels,
/// `ScratchTooSmall` when a quantized `w` is wider than the activation
/// scratch, `NonFinite` when a quantized product's `x` holds NaN or ±∞.
pub(crate) fn matvec(
    kern: Kernels,
    exec: &mut Exec,
    scratch: &mut [ActBlock],
    w: &QuantMatrix<'_>,
    x: &[f32],
    out: &mut [f32],
) -> Result<(), ErrorKind> {
    w.check()?;
    if x.len() != w.cols || out.len() != w.rows {
        return Err(ErrorKind::ShapeMismatch);
    }
    let rt = RowType::of(w.dtype).ok_or(ErrorKind::UnsupportedType)?;
    let row_bytes = w.row_bytes().ok_or(ErrorKind::ShapeMismatch)?;
    if row_bytes == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let work = w.rows.saturating_mul(w.cols);
    match rt {
        RowType::Quant(t) => {
            let act = scratch
                .get_mut(..w.cols / QK)
                .ok_or(ErrorKind::ScratchTooSmall)?;
            if !kern.quantize_act_for(t, x, act) {
                return Err(ErrorKind::NonFinite);
            }
            let act: &[ActBlock] = act;
            split_rows(exec, work, row_bytes, w.data, out, &|d, o| {
                kern.matvec_q(t, d, row_bytes, act, o)
            });
        }
        RowType::Float { half } => {
            split_rows(exec, work, row_bytes, w.data, out, &|d, o| {
                kern.matvec_float(half, d, row_bytes, x, o)
            });
        }
    }
    Ok(())
}

/// Runs `f(rows, out_rows)` over contiguous row ranges, split across
/// threads when the product is large enough.
pub(crate) fn split_rows(
    exec: &mut Exec,
    work: usize,
    row_bytes: usize,
    data: &[u8],
    out: &mut [f32],
    f: &(dyn Fn(&[u8], &mut [f32]) + Sync),
) {
    let rows = out.len();
    let parts = exec.chunks_for(work, rows);
    if parts <= 1 {
        f(data, out);
        return;
    }
    let mut items: Parts<(&[u8], &mut [f32])> = Parts::new();
    let mut rest_out = out;
    let mut rest_data = data;
    for (a, b) in split_ranges(rows, 1, parts) {
        let n = b - a;
        let (o, tail_o) = core::mem::take(&mut rest_out).split_at_mut(n);
        let (d, tail_d) = rest_data.split_at(n.saturating_mul(row_bytes).min(rest_data.len()));
        rest_out = tail_o;
        rest_data = tail_d;
        if let Err((d, o)) = items.push((d, o)) {
            f(d, o);
        }
    }
    exec.for_each(&mut items, &|(d, o)| f(d, o));
}
