//! Test data: random matrices in every layout and plain references.

use lode_kernel::compute::DType;
use lode_kernel::formats::gguf::dequantize_row;
use lode_kernel::rng::SplitMix64;

use super::f16::f32_to_f16;
use super::quant::{quantize_row, QK};

pub(crate) const ALL_TYPES: [DType; 6] = [
    DType::F32,
    DType::F16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_1,
    DType::Q8_0,
];

/// Uniform values in `[-scale, scale)`.
pub(crate) fn rand_vec(r: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| ((r.unit_f64() * 2.0 - 1.0) * f64::from(scale)) as f32)
        .collect()
}

/// A `rows × cols` matrix of `dtype`: either quantized from random floats
/// (`raw == false`), or random bytes everywhere except sane f16 scales and
/// minimums (`raw == true`), which reaches every code pattern, including
/// Q8_0's -128 that the quantizer never writes.
pub(crate) fn rand_matrix(
    r: &mut SplitMix64,
    dtype: DType,
    rows: usize,
    cols: usize,
    raw: bool,
) -> Vec<u8> {
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut data = vec![0u8; rows * rb];
    if raw && dtype.block_elems() == QK {
        for b in data.iter_mut() {
            *b = r.next_u64() as u8;
        }
        let bb = dtype.block_bytes();
        for blk in data.chunks_exact_mut(bb) {
            let d = (r.unit_f64() * 0.1) as f32;
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            if matches!(dtype, DType::Q4_1 | DType::Q5_1) {
                let m = ((r.unit_f64() - 0.5) * 2.0) as f32;
                blk[2..4].copy_from_slice(&f32_to_f16(m).to_le_bytes());
            }
        }
    } else {
        for row in data.chunks_exact_mut(rb) {
            let x = rand_vec(r, cols, 1.0);
            quantize_row(dtype, &x, row).unwrap();
        }
    }
    data
}

/// The matrix decoded to f32, row-major.
pub(crate) fn dequant(dtype: DType, data: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut out = vec![0.0f32; rows * cols];
    for (o, row) in out.chunks_exact_mut(cols).zip(data.chunks_exact(rb)) {
        dequantize_row(dtype, row, o).unwrap();
    }
    assert_eq!(data.len(), rows * rb);
    out
}

/// For a row `w` (dequantized) and input `x`: the exact dot product in f64,
/// and the largest error that rounding `x` to 8-bit blocks can cause
/// (half a step per element) plus f32 accumulation slack.
pub(crate) fn dot_and_bound(w: &[f32], x: &[f32], quantized: bool) -> (f64, f64) {
    let exact: f64 = w
        .iter()
        .zip(x)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    let mag: f64 = w
        .iter()
        .zip(x)
        .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
        .sum();
    let mut bound = mag * 1e-5 + 1e-5;
    if quantized {
        for (wb, xb) in w.chunks(QK).zip(x.chunks(QK)) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let half_step = f64::from(amax) / 127.0 / 2.0;
            bound += half_step * wb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * 1.001;
        }
    }
    (exact, bound)
}
