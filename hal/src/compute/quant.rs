//! GGML block layouts: the plain reference quantizer.
//!
//! The slow, obviously-correct encoder that offline tools (re-laying out a
//! down column into a bundle, building test matrices) call. Its inverse, the
//! one reference dequantizer the fast kernels are tested against, is
//! `lode_formats::gguf::dequantize_row` (the format defines what the bytes
//! mean). Layouts, little-endian, 32 elements per block:
//!
//! | type | bytes | layout | value of element `j` |
//! |---|---|---|---|
//! | Q4_0 | 18 | f16 `d`, 16 nibble bytes | `d * (q_j - 8)` |
//! | Q4_1 | 20 | f16 `d`, f16 `m`, 16 nibble bytes | `d * q_j + m` |
//! | Q5_1 | 24 | f16 `d`, f16 `m`, u32 `qh`, 16 nibble bytes | `d * (q_j + 16 * bit_j(qh)) + m` |
//! | Q8_0 | 34 | f16 `d`, 32 × i8 | `d * q_j` |
//!
//! Nibble order: element `j < 16` is the low nibble of byte `j`, element
//! `j + 16` the high nibble of byte `j`.

use lode_kernel::compute::{DType, ErrorKind};

use super::f16::{f16_le, f32_to_f16};
use super::math;

/// Elements per quantized block.
pub use lode_kernel::formats::gguf::QK;

/// Checks that `bytes` holds exactly `elems` elements of `dtype`.
fn check_len(dtype: DType, elems: usize, bytes: usize) -> Result<(), ErrorKind> {
    match dtype.row_bytes(elems as u64) {
        Some(n) if n == bytes as u64 => Ok(()),
        _ => Err(ErrorKind::ShapeMismatch),
    }
}

/// The little-endian f16 at `b[off..off + 2]` as f32 (0 if `b` is too
/// short, which callers rule out).
#[inline]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    match b.get(off..off + 2) {
        Some(&[lo, hi]) => f16_le([lo, hi]),
        _ => 0.0,
    }
}

/// Encodes `src` (a whole number of blocks) as a row of `dtype` into `dst`.
///
/// The quantizers follow GGML's reference ones (Q4_0's scale is the
/// signed extreme over -8, so the extreme is exact; Q4_1/Q5_1 span
/// min..max; Q8_0 scales the absolute maximum to 127), so files written with
/// them read back as llama.cpp would have written them.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), ErrorKind> {
    check_len(dtype, src.len(), dst.len())?;
    if src.iter().any(|v| !v.is_finite()) {
        return Err(ErrorKind::NonFinite);
    }
    match dtype {
        DType::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(src) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        DType::Q4_0 | DType::Q4_1 | DType::Q5_1 | DType::Q8_0 => {
            let bb = dtype.block_bytes();
            for (x, blk) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(bb)) {
                quantize_block(dtype, x, blk);
            }
        }
        _ => return Err(ErrorKind::UnsupportedType),
    }
    Ok(())
}

/// Packs 32 codes (each < 16) into 16 nibble bytes.
fn pack_nibbles(codes: &[u8; QK], qs: &mut [u8]) {
    for (j, b) in qs.iter_mut().take(16).enumerate() {
        *b = (codes[j] & 0x0f) | ((codes[j + 16] & 0x0f) << 4);
    }
}

fn quantize_block(dtype: DType, x: &[f32], blk: &mut [u8]) {
    let mut codes = [0u8; QK];
    match dtype {
        DType::Q4_0 => {
            // The signed value of largest magnitude maps to -8 exactly.
            let mut amax = 0.0f32;
            let mut max = 0.0f32;
            for &v in x {
                if math::abs(v) > amax {
                    amax = math::abs(v);
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, &v) in codes.iter_mut().zip(x) {
                // Truncation after +8.5 is GGML's rounding for this type.
                *c = ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            }
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            pack_nibbles(&codes, &mut blk[2..]);
        }
        DType::Q4_1 | DType::Q5_1 => {
            let levels = if dtype == DType::Q4_1 { 15.0 } else { 31.0 };
            let min = x.iter().copied().fold(f32::INFINITY, f32::min);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / levels;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (c, &v) in codes.iter_mut().zip(x) {
                *c = (((v - min) * id + 0.5) as i32).clamp(0, levels as i32) as u8;
            }
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            blk[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
            if dtype == DType::Q4_1 {
                pack_nibbles(&codes, &mut blk[4..]);
            } else {
                let mut qh = 0u32;
                for (j, &c) in codes.iter().enumerate() {
                    qh |= u32::from(c >> 4) << j;
                }
                blk[4..8].copy_from_slice(&qh.to_le_bytes());
                pack_nibbles(&codes, &mut blk[8..]);
            }
        }
        DType::Q8_0 => {
            let amax = x.iter().fold(0.0f32, |a, &v| a.max(math::abs(v)));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            blk[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            for (q, &v) in blk[2..].iter_mut().zip(x) {
                *q = (math::round(v * id).clamp(-127.0, 127.0) as i8) as u8;
            }
        }
        _ => {}
    }
}

/// The largest |dequantized - original| a [`quantize_row`] block of `x` can
/// have: half a step, plus the f16 rounding of the scale and minimum.
/// Used by tests to state tolerances from first principles.
pub fn block_error_bound(dtype: DType, x: &[f32]) -> f32 {
    let amax = x.iter().fold(0.0f32, |a, &v| a.max(math::abs(v)));
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let f16_rel = 1.0 / 1024.0;
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => amax * f16_rel + 6.0e-8,
        // Q4_0's codes reach +7 only while the extreme maps to -8: the top
        // end may clamp by a full step.
        DType::Q4_0 => amax / 8.0 * (1.0 + f16_rel) + amax * 8.0 * f16_rel / 8.0 + 1e-6,
        DType::Q4_1 => {
            (max - min) / 15.0 * (0.5 + 16.0 * f16_rel) + math::abs(min) * f16_rel + 1e-6
        }
        DType::Q5_1 => {
            (max - min) / 31.0 * (0.5 + 32.0 * f16_rel) + math::abs(min) * f16_rel + 1e-6
        }
        DType::Q8_0 => amax / 127.0 * (0.5 + 128.0 * f16_rel) + 1e-6,
        _ => f32::INFINITY,
    }
}

/// f16 bits of the block scale, for tests that build blocks by hand.
#[cfg(test)]
pub(crate) fn scale_of(blk: &[u8]) -> f32 {
    super::f16::f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_kernel::formats::gguf::dequantize_row;
    use proptest::prelude::*;

    const QTYPES: [DType; 4] = [DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::Q8_0];

    #[test]
    fn hand_built_blocks_decode_per_layout() {
        // Q4_0: d = 0.5, byte j = (j % 16) | ((15 - j % 16) << 4).
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&f32_to_f16(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut out = [0.0f32; 32];
        dequantize_row(DType::Q4_0, &b, &mut out).unwrap();
        assert_eq!(out[0], -4.0);
        assert_eq!(out[15], 3.5);
        assert_eq!(out[16], 3.5, "element 16 is the high nibble of byte 0");
        assert_eq!(out[31], -4.0);
        assert_eq!(scale_of(&b), 0.5);

        // Q5_1: d = 1, m = -1, qh has bit 3 and bit 20 set.
        let mut b = [0u8; 24];
        b[..2].copy_from_slice(&f32_to_f16(1.0).to_le_bytes());
        b[2..4].copy_from_slice(&f32_to_f16(-1.0).to_le_bytes());
        b[4..8].copy_from_slice(&((1u32 << 3) | (1u32 << 20)).to_le_bytes());
        b[8 + 3] = 0x21; // element 3 low nibble 1, element 19 high nibble 2
        b[8 + 4] = 0x50; // element 20 high nibble 5
        dequantize_row(DType::Q5_1, &b, &mut out).unwrap();
        assert_eq!(out[3], 16.0 + 1.0 - 1.0);
        assert_eq!(out[19], 2.0 - 1.0);
        assert_eq!(out[20], 16.0 + 5.0 - 1.0);
        assert_eq!(out[0], -1.0);

        // Q8_0: d = 0.25, q_j = j - 16.
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&f32_to_f16(0.25).to_le_bytes());
        for j in 0..32 {
            b[2 + j] = (j as i8 - 16) as u8;
        }
        dequantize_row(DType::Q8_0, &b, &mut out).unwrap();
        assert_eq!(out[0], -4.0);
        assert_eq!(out[31], 3.75);
    }

    #[test]
    fn wrong_lengths_are_shape_errors() {
        // The dequantizer's length checks are the format's (formats'
        // `length_mismatches_are_errors_and_leave_out_alone`).
        assert_eq!(
            quantize_row(DType::Q8_0, &[0.0; 32], &mut [0u8; 33]),
            Err(ErrorKind::ShapeMismatch)
        );
        assert_eq!(
            quantize_row(DType::Q8_0, &[f32::NAN; 32], &mut [0u8; 34]),
            Err(ErrorKind::NonFinite)
        );
    }

    proptest! {
        #[test]
        fn round_trip_error_is_bounded(
            x in proptest::collection::vec(-8.0f32..8.0, 64),
            t in 0usize..6,
        ) {
            let dtype = [DType::F32, DType::F16, DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::Q8_0][t];
            let mut bytes = vec![0u8; dtype.row_bytes(64).unwrap() as usize];
            quantize_row(dtype, &x, &mut bytes).unwrap();
            let mut y = vec![0.0f32; 64];
            dequantize_row(dtype, &bytes, &mut y).unwrap();
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let bound = block_error_bound(dtype, xb);
                for (a, b) in xb.iter().zip(yb) {
                    prop_assert!((a - b).abs() <= bound, "{dtype:?}: {a} vs {b}, bound {bound}");
                }
            }
        }

        #[test]
        fn constant_blocks_are_exact_where_representable(v in -4i32..4, t in 0usize..3) {
            // Q8_0's scale v/127 is not an f16, so only the others qualify.
            let dtype = QTYPES[t];
            let x = [v as f32; 32];
            let mut bytes = vec![0u8; dtype.block_bytes()];
            quantize_row(dtype, &x, &mut bytes).unwrap();
            let mut y = [0.0f32; 32];
            dequantize_row(dtype, &bytes, &mut y).unwrap();
            prop_assert_eq!(y, x);
        }
    }
}
