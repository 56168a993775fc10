//! The activation vector quantized to 8-bit blocks of 32.
//!
//! A quantized matrix-vector product spends nearly all its time in the block
//! dot products. Quantizing the (short) activation vector once per product
//! to signed 8-bit blocks turns every weight block's dot product into an
//! integer multiply-add that SIMD units do 32 lanes at a time, at the cost of
//! rounding the activations (llama.cpp does the same: its Q8_0/Q8_1
//! "vec_dot_type"). The block keeps the integer sum of its codes so the
//! minimum term of Q4_1/Q5_1 (and Q4_0's `-8` offset) is one multiply per
//! block instead of 32.

use super::math;
use super::quant::QK;

/// One quantized activation block: `x_j ≈ d · qs_j`, `sum = Σ qs_j`.
///
/// `#[repr(C)]` with the codes first so SIMD loads of `qs` start at the
/// block's address.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ActBlock {
    /// Codes in -127..=127.
    pub qs: [i8; QK],
    /// Scale: the block's largest |x| over 127.
    pub d: f32,
    /// Sum of `qs`.
    pub sum: i32,
    /// `d · sum`: the block's contribution per unit of a weight block's
    /// minimum (Q4_1, Q5_1) or offset (Q4_0), precomputed once per product
    /// instead of once per weight row.
    pub ds: f32,
}

impl ActBlock {
    /// An all-zero block, for initializing caller-owned scratch arrays.
    pub const ZERO: ActBlock = ActBlock {
        qs: [0; QK],
        d: 0.0,
        sum: 0,
        ds: 0.0,
    };
}

/// Blocks needed for an activation vector of `cols` elements (`None` when
/// `cols` is not a whole number of blocks).
pub const fn blocks_for(cols: usize) -> Option<usize> {
    if cols.is_multiple_of(QK) {
        Some(cols / QK)
    } else {
        None
    }
}

/// The scale and its inverse for a block whose largest magnitude is `amax`.
///
/// Every quantizer path (scalar, AVX2, NEON) computes these the same way so
/// their codes are bit-identical.
/// A scale below the smallest normal f32 would make its inverse overflow, so
/// such blocks (|x| < 1.5e-36) quantize to zero, on every path alike.
#[inline]
pub(crate) fn scale_of(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    if d >= f32::MIN_POSITIVE {
        (d, 1.0 / d)
    } else {
        (0.0, 0.0)
    }
}

/// Portable quantizer: fills `out` from `x` (`x.len() == 32 * out.len()`,
/// checked by the caller). Returns `false` when `x` holds a NaN or an
/// infinity (the blocks are then unspecified).
pub(crate) fn quantize_scalar(x: &[f32], out: &mut [ActBlock]) -> bool {
    let mut finite = true;
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = abs_max(xs, &mut finite);
        let (d, id) = scale_of(amax);
        fill_block(blk, xs, d, id);
    }
    finite
}

/// The largest `|v|` of `xs`; clears `finite` when one is not finite.
fn abs_max(xs: &[f32], finite: &mut bool) -> f32 {
    let mut amax = 0.0f32;
    for &v in xs {
        let a = math::abs(v);
        *finite &= a < f32::INFINITY;
        amax = if a > amax { a } else { amax };
    }
    amax
}

/// Writes the 32 codes of `xs` at scale `d` (inverse `id`: codes rounded
/// to nearest, ties to even, clamped to ±127) and their sums into `blk`.
fn fill_block(blk: &mut ActBlock, xs: &[f32], d: f32, id: f32) {
    let mut sum = 0i32;
    for (q, &v) in blk.qs.iter_mut().zip(xs) {
        let c = math::rint(v * id).clamp(-127.0, 127.0) as i8;
        *q = c;
        sum += i32::from(c);
    }
    blk.d = d;
    blk.sum = sum;
    blk.ds = d * sum as f32;
}

/// Elements of a K-quant super-block, and of ggml's Q8_K activation block.
const QK_K: usize = 256;

/// Re-quantizes `x` into `out` as ggml's Q8_K does for K-quant products:
/// one scale per 256 elements (`max|x| / 127`, codes rounded to nearest,
/// ties to even), written as eight [`ActBlock`]s of 32 that share it, so
/// the K-quant kernels need no second activation format. llama.cpp
/// multiplies Q4_K and Q6_K rows by such activations; quantizing the same
/// way makes lode's products round as llama.cpp's do (a per-32 scale is
/// finer, and differs from llama.cpp by more than their summation orders
/// do). `x.len() == 32 · out.len()`, a whole number of super-blocks;
/// returns `false` otherwise or when `x` is not all finite.
pub(crate) fn quantize_q8k(x: &[f32], out: &mut [ActBlock]) -> bool {
    if !x.len().is_multiple_of(QK_K) || x.len() != out.len() * QK {
        return false;
    }
    let mut finite = true;
    for (blocks, xs) in out.chunks_exact_mut(QK_K / QK).zip(x.chunks_exact(QK_K)) {
        let amax = abs_max(xs, &mut finite);
        let (d, id) = if amax > 0.0 {
            let iscale = 127.0 / amax;
            (1.0 / iscale, iscale)
        } else {
            (0.0, 0.0)
        };
        for (blk, xb) in blocks.iter_mut().zip(xs.chunks_exact(QK)) {
            fill_block(blk, xb, d, id);
        }
    }
    finite
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn codes_reconstruct_within_half_a_step(x in proptest::collection::vec(-100.0f32..100.0, 96)) {
            let mut b = [ActBlock::ZERO; 3];
            prop_assert!(quantize_scalar(&x, &mut b));
            for (blk, xs) in b.iter().zip(x.chunks(32)) {
                prop_assert_eq!(blk.sum, blk.qs.iter().map(|&q| i32::from(q)).sum::<i32>());
                prop_assert_eq!(blk.ds, blk.d * blk.sum as f32);
                for (&q, &v) in blk.qs.iter().zip(xs) {
                    prop_assert!((f32::from(q) * blk.d - v).abs() <= blk.d * 0.5 + 1e-5);
                    prop_assert!(q != -128);
                }
            }
        }
    }

    #[test]
    fn extremes_map_to_127_and_zero_block_is_zero() {
        let mut x = [0.0f32; 32];
        x[5] = -127.0;
        x[9] = 2.5;
        x[10] = 3.5;
        let mut b = [ActBlock::ZERO];
        assert!(quantize_scalar(&x, &mut b));
        assert_eq!(b[0].d, 1.0);
        assert_eq!(b[0].qs[5], -127);
        assert_eq!((b[0].qs[9], b[0].qs[10]), (2, 4), "ties go to even");
        assert_eq!(b[0].sum, -127 + 2 + 4);
        let mut z = [ActBlock::ZERO];
        assert!(quantize_scalar(&[0.0; 32], &mut z));
        assert_eq!(z[0], ActBlock::ZERO);
        x[0] = f32::NAN;
        assert!(!quantize_scalar(&x, &mut b));
        x[0] = f32::NEG_INFINITY;
        assert!(!quantize_scalar(&x, &mut b));
    }

    #[test]
    fn block_counts() {
        assert_eq!(blocks_for(576), Some(18));
        assert_eq!(blocks_for(33), None);
    }
}
