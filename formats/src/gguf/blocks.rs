//! Reference (scalar) dequantization of the block types lode reads.
//!
//! These functions define what the bytes mean; fast kernels elsewhere are
//! tested against them. Each layout is the one ggml writes (all multi-byte
//! fields little-endian, blocks packed back to back with no padding), and the
//! arithmetic is ggml's reference order of operations, so results match
//! llama.cpp's `dequantize_row_*` bit for bit.
//!
//! | type | elems/block | bytes/block | layout |
//! |------|-------------|-------------|--------|
//! | F32  | 1  | 4  | IEEE-754 binary32 |
//! | F16  | 1  | 2  | IEEE-754 binary16 |
//! | Q4_0 | 32 | 18 | `d: f16`, `qs: [u8; 16]` |
//! | Q4_1 | 32 | 20 | `d: f16`, `m: f16`, `qs: [u8; 16]` |
//! | Q5_1 | 32 | 24 | `d: f16`, `m: f16`, `qh: [u8; 4]`, `qs: [u8; 16]` |
//! | Q8_0 | 32 | 34 | `d: f16`, `qs: [i8; 32]` |
//!
//! In the 4- and 5-bit types a block's byte `j` (0..16) holds element `j` in
//! its low nibble and element `j + 16` in its high nibble: the first half of
//! the block in the low nibbles, the second half in the high ones (not
//! neighbouring elements in one byte).

use half::f16;

use super::error::GgufError;
use crate::DType;

/// Elements in a block of every quantized type here.
pub const QK: usize = 32;

/// Bytes of a Q4_0 block.
pub const Q4_0_BYTES: usize = 18;
/// Bytes of a Q4_1 block.
pub const Q4_1_BYTES: usize = 20;
/// Bytes of a Q5_1 block.
pub const Q5_1_BYTES: usize = 24;
/// Bytes of a Q8_0 block.
pub const Q8_0_BYTES: usize = 34;

/// Decode `out.len()` elements of type `dtype` from `bytes`.
///
/// `out.len()` must be a whole number of blocks and `bytes` exactly their
/// encoding (`dtype.row_bytes(out.len())` bytes); anything else is
/// [`GgufError::RowLength`] and `out` is left untouched. Any number of rows
/// can be decoded at once: rows are whole blocks, so consecutive rows are
/// just more blocks.
pub fn dequantize_row(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    let mismatch = GgufError::RowLength {
        dtype,
        elems: out.len(),
        bytes: bytes.len(),
    };
    match dtype.row_bytes(out.len() as u64) {
        Some(n) if n == bytes.len() as u64 => {}
        _ => return Err(mismatch),
    }
    match dtype {
        DType::F32 => {
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *x = f32::from_le_bytes(b.try_into().map_err(|_| mismatch)?);
            }
        }
        DType::F16 => {
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *x = f16::from_le_bytes(b.try_into().map_err(|_| mismatch)?).to_f32();
            }
        }
        DType::Q4_0 => blocks(bytes, out, mismatch, dequantize_q4_0)?,
        DType::Q4_1 => blocks(bytes, out, mismatch, dequantize_q4_1)?,
        DType::Q5_1 => blocks(bytes, out, mismatch, dequantize_q5_1)?,
        DType::Q5_0 | DType::Q4_K | DType::Q6_K => {
            super::kquants::dequantize_k(dtype.block_bytes(), bytes, out).ok_or(mismatch)?
        }
        DType::Q8_0 => blocks(bytes, out, mismatch, dequantize_q8_0)?,
    }
    Ok(())
}

/// Apply a block decoder to each `N`-byte block and 32-element output chunk.
/// The lengths were checked by the caller; the conversions cannot fail.
fn blocks<const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    mismatch: GgufError,
    decode: fn(&[u8; N], &mut [f32; QK]),
) -> Result<(), GgufError> {
    for (b, o) in bytes.chunks_exact(N).zip(out.chunks_exact_mut(QK)) {
        let b: &[u8; N] = b.try_into().map_err(|_| mismatch)?;
        let o: &mut [f32; QK] = o.try_into().map_err(|_| mismatch)?;
        decode(b, o);
    }
    Ok(())
}

/// The little-endian f16 at `bytes[at..at + 2]` as f32.
fn f16_at<const N: usize>(bytes: &[u8; N], at: usize) -> f32 {
    match (bytes.get(at), bytes.get(at + 1)) {
        (Some(&lo), Some(&hi)) => f16::from_le_bytes([lo, hi]).to_f32(),
        // Callers pass constant offsets inside the block.
        _ => 0.0,
    }
}

/// Q4_0, 18 bytes for 32 elements:
///
/// | bytes | field |
/// |-------|-------|
/// | 0..2  | `d`, f16 scale |
/// | 2..18 | `qs[16]`: byte `j` = element `j` (low nibble), element `j+16` (high nibble) |
///
/// `x = d * (q - 8)`, `q` in 0..=15 (so -8d..=7d).
pub fn dequantize_q4_0(block: &[u8; Q4_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for ((&q, l), h) in block[2..].iter().zip(lo).zip(hi) {
        *l = (i32::from(q & 0x0f) - 8) as f32 * d;
        *h = (i32::from(q >> 4) - 8) as f32 * d;
    }
}

/// Q4_1, 20 bytes for 32 elements:
///
/// | bytes | field |
/// |-------|-------|
/// | 0..2  | `d`, f16 scale |
/// | 2..4  | `m`, f16 minimum |
/// | 4..20 | `qs[16]`: byte `j` = element `j` (low nibble), element `j+16` (high nibble) |
///
/// `x = d * q + m`, `q` in 0..=15.
pub fn dequantize_q4_1(block: &[u8; Q4_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for ((&q, l), h) in block[4..].iter().zip(lo).zip(hi) {
        *l = f32::from(q & 0x0f) * d + m;
        *h = f32::from(q >> 4) * d + m;
    }
}

/// Q5_1, 24 bytes for 32 elements:
///
/// | bytes  | field |
/// |--------|-------|
/// | 0..2   | `d`, f16 scale |
/// | 2..4   | `m`, f16 minimum |
/// | 4..8   | `qh`, u32 little-endian: bit `i` is the fifth (high) bit of element `i` |
/// | 8..24  | `qs[16]`: byte `j` = low 4 bits of element `j` (low nibble) and of element `j+16` (high nibble) |
///
/// `q = low4 | (bit << 4)` in 0..=31; `x = d * q + m`.
pub fn dequantize_q5_1(block: &[u8; Q5_1_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let m = f16_at(block, 2);
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    let (lo, hi) = out.split_at_mut(QK / 2);
    for (j, ((&q, l), h)) in block[8..].iter().zip(lo).zip(hi).enumerate() {
        let high_lo = ((qh >> j) & 1) as u8;
        let high_hi = ((qh >> (j + QK / 2)) & 1) as u8;
        *l = f32::from((q & 0x0f) | (high_lo << 4)) * d + m;
        *h = f32::from((q >> 4) | (high_hi << 4)) * d + m;
    }
}

/// Q8_0, 34 bytes for 32 elements:
///
/// | bytes | field |
/// |-------|-------|
/// | 0..2  | `d`, f16 scale |
/// | 2..34 | `qs[32]`, signed bytes, element `i` in byte `2 + i` |
///
/// `x = d * q`, `q` in -128..=127.
pub fn dequantize_q8_0(block: &[u8; Q8_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    for (&q, x) in block[2..].iter().zip(out.iter_mut()) {
        *x = f32::from(q as i8) * d;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::gguf::ErrorKind;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_nibble_order_and_offset() {
        let mut b = [0u8; Q4_0_BYTES];
        b[..2].copy_from_slice(&h(0.5));
        // Byte j: low nibble j % 16, high nibble 15 - j.
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut out = [0.0; QK];
        dequantize_q4_0(&b, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], (j as f32 - 8.0) * 0.5, "element {j}");
            assert_eq!(out[j + 16], (7.0 - j as f32) * 0.5, "element {}", j + 16);
        }
    }

    #[test]
    fn q4_1_scale_and_minimum() {
        let mut b = [0u8; Q4_1_BYTES];
        b[..2].copy_from_slice(&h(0.25));
        b[2..4].copy_from_slice(&h(-1.0));
        b[4] = 0xf3; // element 0 = 3, element 16 = 15
        let mut out = [0.0; QK];
        dequantize_q4_1(&b, &mut out);
        assert_eq!(out[0], 3.0 * 0.25 - 1.0);
        assert_eq!(out[16], 15.0 * 0.25 - 1.0);
        assert_eq!(out[1], -1.0);
    }

    #[test]
    fn q5_1_high_bits() {
        let mut b = [0u8; Q5_1_BYTES];
        b[..2].copy_from_slice(&h(1.0));
        // High bit set for element 1 and element 17 only.
        let qh: u32 = (1 << 1) | (1 << 17);
        b[4..8].copy_from_slice(&qh.to_le_bytes());
        b[8 + 1] = 0x21; // element 1 low = 1, element 17 low = 2
        b[8 + 2] = 0x0f; // element 2 low = 15, element 18 low = 0
        let mut out = [0.0; QK];
        dequantize_q5_1(&b, &mut out);
        assert_eq!(out[1], 17.0);
        assert_eq!(out[17], 18.0);
        assert_eq!(out[2], 15.0);
        assert_eq!(out[18], 0.0);
        assert_eq!(out[0], 0.0);
    }

    #[test]
    fn q8_0_signed() {
        let mut b = [0u8; Q8_0_BYTES];
        b[..2].copy_from_slice(&h(2.0));
        b[2] = 0x80; // -128
        b[3] = 0x7f; // 127
        b[33] = 0xff; // -1, last element
        let mut out = [0.0; QK];
        dequantize_q8_0(&b, &mut out);
        assert_eq!(out[0], -256.0);
        assert_eq!(out[1], 254.0);
        assert_eq!(out[31], -2.0);
    }

    #[test]
    fn floats() {
        let mut bytes = Vec::new();
        for x in [1.0f32, -2.5, f32::INFINITY] {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let mut out = [0.0; 3];
        dequantize_row(DType::F32, &bytes, &mut out).unwrap();
        assert_eq!(out, [1.0, -2.5, f32::INFINITY]);
        let bytes = [h(0.5), h(-3.0)].concat();
        let mut out = [0.0; 2];
        dequantize_row(DType::F16, &bytes, &mut out).unwrap();
        assert_eq!(out, [0.5, -3.0]);
    }

    #[test]
    fn length_mismatches_are_errors_and_leave_out_alone() {
        let mut out = [7.0; 32];
        let e = dequantize_row(DType::Q4_1, &[0; 19], &mut out).unwrap_err();
        assert_eq!(
            e,
            GgufError::RowLength {
                dtype: DType::Q4_1,
                elems: 32,
                bytes: 19
            }
        );
        assert_eq!(out, [7.0; 32]);
        let mut out = [0.0; 33];
        assert_eq!(
            dequantize_row(DType::Q8_0, &[0; 34], &mut out)
                .unwrap_err()
                .kind(),
            ErrorKind::RowLength
        );
        let mut out = [0.0; 2];
        assert!(dequantize_row(DType::F32, &[0; 4], &mut out).is_err());
        let mut empty: [f32; 0] = [];
        dequantize_row(DType::Q4_0, &[], &mut empty).unwrap();
    }

    proptest! {
        /// Q4_1 with minimum -8d is Q4_0: the two layouts must agree on
        /// every nibble (bit-exact, since -8d is exact in f32 for f16 d).
        #[test]
        fn q4_1_with_min_minus_8d_is_q4_0(d in -1000.0f32..1000.0, qs in proptest::array::uniform16(any::<u8>())) {
            let d16 = f16::from_f32(d);
            let m16 = f16::from_f32(-8.0 * d16.to_f32());
            prop_assume!(m16.to_f32() == -8.0 * d16.to_f32());
            let mut a = [0u8; Q4_0_BYTES];
            a[..2].copy_from_slice(&d16.to_le_bytes());
            a[2..].copy_from_slice(&qs);
            let mut b = [0u8; Q4_1_BYTES];
            b[..2].copy_from_slice(&d16.to_le_bytes());
            b[2..4].copy_from_slice(&m16.to_le_bytes());
            b[4..].copy_from_slice(&qs);
            let (mut x, mut y) = ([0.0; QK], [0.0; QK]);
            dequantize_q4_0(&a, &mut x);
            dequantize_q4_1(&b, &mut y);
            for i in 0..QK {
                // Both are exact in f32 (a 4-bit q times an 11-bit d), so equal.
                prop_assert_eq!(x[i], y[i], "element {}", i);
            }
        }

        /// Q5_1 with no high bits is Q4_1 with the same scale, minimum and nibbles.
        #[test]
        fn q5_1_without_high_bits_is_q4_1(dm in any::<[u8; 4]>(), qs in proptest::array::uniform16(any::<u8>())) {
            let mut a = [0u8; Q4_1_BYTES];
            a[..4].copy_from_slice(&dm);
            a[4..].copy_from_slice(&qs);
            let mut b = [0u8; Q5_1_BYTES];
            b[..4].copy_from_slice(&dm);
            b[8..].copy_from_slice(&qs);
            let (mut x, mut y) = ([0.0f32; QK], [0.0f32; QK]);
            dequantize_q4_1(&a, &mut x);
            dequantize_q5_1(&b, &mut y);
            for i in 0..QK {
                prop_assert!(x[i].to_bits() == y[i].to_bits() || (x[i].is_nan() && y[i].is_nan()));
            }
        }

        /// Setting high bit i of Q5_1 adds exactly 16d to element i and no other.
        #[test]
        fn q5_1_high_bit_adds_16d(i in 0usize..32, qs in proptest::array::uniform16(any::<u8>())) {
            let mut b = [0u8; Q5_1_BYTES];
            b[..2].copy_from_slice(&h(1.0));
            b[8..].copy_from_slice(&qs);
            let mut base = [0.0; QK];
            dequantize_q5_1(&b, &mut base);
            b[4..8].copy_from_slice(&(1u32 << i).to_le_bytes());
            let mut set = [0.0; QK];
            dequantize_q5_1(&b, &mut set);
            for k in 0..QK {
                let want = if k == i { base[k] + 16.0 } else { base[k] };
                prop_assert_eq!(set[k], want);
            }
        }

        /// Q8_0 holding q - 8 for 4-bit q is Q4_0 with the same scale.
        #[test]
        fn q8_0_agrees_with_q4_0(d in any::<[u8; 2]>(), qs in proptest::array::uniform16(any::<u8>())) {
            let mut a = [0u8; Q4_0_BYTES];
            a[..2].copy_from_slice(&d);
            a[2..].copy_from_slice(&qs);
            let mut b = [0u8; Q8_0_BYTES];
            b[..2].copy_from_slice(&d);
            for j in 0..16 {
                b[2 + j] = ((qs[j] & 0x0f) as i8 - 8) as u8;
                b[2 + j + 16] = ((qs[j] >> 4) as i8 - 8) as u8;
            }
            let (mut x, mut y) = ([0.0f32; QK], [0.0f32; QK]);
            dequantize_q4_0(&a, &mut x);
            dequantize_q8_0(&b, &mut y);
            for i in 0..QK {
                prop_assert!(x[i].to_bits() == y[i].to_bits() || (x[i].is_nan() && y[i].is_nan()));
            }
        }

        /// A multi-block row decodes block by block, for every type.
        #[test]
        fn rows_are_concatenated_blocks(code in prop::sample::select(vec![0u32, 1, 2, 3, 7, 8]), blocks in 0usize..4, seed in any::<u64>()) {
            let dtype = DType::from_code(code).unwrap();
            let elems = blocks * QK;
            let n = dtype.row_bytes(elems as u64).unwrap() as usize;
            let mut state = seed;
            let bytes: Vec<u8> = (0..n).map(|_| { state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); (state >> 56) as u8 }).collect();
            let mut whole = vec![0.0f32; elems];
            dequantize_row(dtype, &bytes, &mut whole).unwrap();
            let per = n / blocks.max(1);
            for k in 0..blocks {
                let mut part = vec![0.0f32; QK];
                dequantize_row(dtype, &bytes[k * per..(k + 1) * per], &mut part).unwrap();
                for i in 0..QK {
                    let (a, b) = (whole[k * QK + i], part[i]);
                    prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                }
            }
        }
    }
}
