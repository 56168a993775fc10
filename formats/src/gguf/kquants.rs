//! Reference (scalar) dequantization of the block types Gemma 3's Q4_K_M
//! files add to those in `blocks.rs`: Q5_0 and the "K-quants" Q4_K and
//! Q6_K, whose 256-element super-blocks carry one f16 scale (and minimum)
//! refined by a small scale per 16 or 32 elements.
//!
//! Layouts (ggml's, little-endian, blocks packed back to back; byte by
//! byte in `formats/GGUF.md`):
//!
//! | type | elems/block | bytes/block | layout |
//! |------|-------------|-------------|--------|
//! | Q5_0 | 32  | 22  | `d: f16`, `qh: u32`, `qs: [u8; 16]` |
//! | Q4_K | 256 | 144 | `d: f16`, `dmin: f16`, `scales: [u8; 12]`, `qs: [u8; 128]` |
//! | Q6_K | 256 | 210 | `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16` |
//!
//! The arithmetic follows ggml's reference order (the sub-block's scale is
//! multiplied into `d` first, then by the code), so the results equal
//! llama.cpp's bit for bit; `tests/tests/kquants.rs` checks them against
//! llama.cpp's own Python reader on the real model.
//!
//! Not yet wired into [`DType`](crate::DType): the kernel has no products
//! for these types, and a file using them is refused when it is parsed.

use half::f16;

/// Elements in a K-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of a Q5_0 block (32 elements).
pub const Q5_0_BYTES: usize = 22;
/// Bytes of a Q4_K super-block.
pub const Q4_K_BYTES: usize = 144;
/// Bytes of a Q6_K super-block.
pub const Q6_K_BYTES: usize = 210;

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Decodes one Q5_0 block: element `j` (0..16) is the low nibble of
/// `qs[j]`, element `j + 16` its high nibble, each with bit `j` (`j + 16`)
/// of `qh` as its fifth bit; `x = (q - 16) * d`.
pub fn dequantize_q5_0(block: &[u8; Q5_0_BYTES], out: &mut [f32; 32]) {
    let d = f16_at(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let (lo, hi) = out.split_at_mut(16);
    for (j, (&q, (a, b))) in block[6..].iter().zip(lo.iter_mut().zip(hi)).enumerate() {
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        *a = ((u32::from(q & 0x0f) | h0) as i32 - 16) as f32 * d;
        *b = ((u32::from(q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// The 6-bit scale and minimum of Q4_K sub-block `j` (0..8) from the 12
/// packed bytes: sub-blocks 0..4 keep theirs in the low six bits of bytes
/// `j` and `j + 4`; sub-blocks 4..8 take the low (scale) and high (minimum)
/// nibbles of byte `j + 4` and, as their top two bits, the top two bits of
/// bytes `j - 4` and `j`.
pub fn q4_k_scale_min(scales: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Decodes one Q4_K super-block: eight sub-blocks of 32, each `x = d *
/// scale * q - dmin * min` with 4-bit `q`; each 32 bytes of `qs` hold two
/// sub-blocks, the first in the low nibbles and the second in the high.
pub fn dequantize_q4_k(block: &[u8; Q4_K_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(block, 0);
    let dmin = f16_at(block, 2);
    let mut scales = [0u8; 12];
    scales.copy_from_slice(&block[4..16]);
    let qs = &block[16..];
    for (i, (y, q)) in out
        .chunks_exact_mut(64)
        .zip(qs.chunks_exact(32))
        .enumerate()
    {
        let (s0, m0) = q4_k_scale_min(&scales, 2 * i);
        let (s1, m1) = q4_k_scale_min(&scales, 2 * i + 1);
        let (d0, min0) = (d * f32::from(s0), dmin * f32::from(m0));
        let (d1, min1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (lo, hi) = y.split_at_mut(32);
        for ((&b, a), c) in q.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
            *a = d0 * f32::from(b & 0x0f) - min0;
            *c = d1 * f32::from(b >> 4) - min1;
        }
    }
}

/// Decodes one Q6_K super-block: 16 sub-blocks of 16, each `x = d * scale
/// * (q - 32)` with a 6-bit `q` whose low four bits are in `ql` and top
/// two in `qh`. Each half of 128 elements uses 64 bytes of `ql` and 32 of
/// `qh`: for `l` in 0..32, elements `l`, `l + 32`, `l + 64`, `l + 96` take
/// the low nibble of `ql[l]`, of `ql[l + 32]`, the high nibble of `ql[l]`,
/// of `ql[l + 32]`, and bits 0-1, 2-3, 4-5, 6-7 of `qh[l]`.
pub fn dequantize_q6_k(block: &[u8; Q6_K_BYTES], out: &mut [f32; QK_K]) {
    let (ql, rest) = block.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let (sc, d) = rest.split_at(16);
    let d = f16::from_le_bytes([d[0], d[1]]).to_f32();
    for (half, y) in out.chunks_exact_mut(128).enumerate() {
        let ql = &ql[64 * half..64 * half + 64];
        let qh = &qh[32 * half..32 * half + 32];
        let sc = &sc[8 * half..8 * half + 8];
        for l in 0..32 {
            let is = l / 16;
            let h = qh[l];
            let q = [
                (ql[l] & 0x0f) | ((h & 3) << 4),
                (ql[l + 32] & 0x0f) | (((h >> 2) & 3) << 4),
                (ql[l] >> 4) | (((h >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((h >> 6) & 3) << 4),
            ];
            for (k, &q) in q.iter().enumerate() {
                let scale = f32::from(sc[is + 2 * k] as i8);
                y[l + 32 * k] = d * scale * f32::from(q as i8 - 32);
            }
        }
    }
}

/// Decodes whole blocks of `bytes` (Q5_0, Q4_K or Q6_K, by `block_bytes`)
/// into `out`; `None` when the lengths are not whole blocks of each other.
pub fn dequantize_k(block_bytes: usize, bytes: &[u8], out: &mut [f32]) -> Option<()> {
    let elems = match block_bytes {
        Q5_0_BYTES => 32,
        Q4_K_BYTES | Q6_K_BYTES => QK_K,
        _ => return None,
    };
    if !bytes.len().is_multiple_of(block_bytes) || bytes.len() / block_bytes * elems != out.len() {
        return None;
    }
    for (b, y) in bytes
        .chunks_exact(block_bytes)
        .zip(out.chunks_exact_mut(elems))
    {
        match block_bytes {
            Q5_0_BYTES => dequantize_q5_0(b.try_into().ok()?, y.try_into().ok()?),
            Q4_K_BYTES => dequantize_q4_k(b.try_into().ok()?, y.try_into().ok()?),
            _ => dequantize_q6_k(b.try_into().ok()?, y.try_into().ok()?),
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q5_0_puts_the_fifth_bit_from_qh() {
        let mut b = [0u8; Q5_0_BYTES];
        b[..2].copy_from_slice(&h(0.5));
        // Element 0: low nibble 15, fifth bit set -> 31 - 16 = 15.
        // Element 16: high nibble 0, fifth bit clear -> -16.
        // Element 17: high nibble 1, fifth bit set -> 17 - 16 = 1.
        let qh: u32 = 1 | (1 << 17);
        b[2..6].copy_from_slice(&qh.to_le_bytes());
        b[6] = 0x0f;
        b[7] = 0x10;
        let mut y = [0f32; 32];
        dequantize_q5_0(&b, &mut y);
        assert_eq!(y[0], 7.5);
        assert_eq!(y[16], -8.0);
        assert_eq!(y[17], 0.5);
        assert_eq!(y[1], -8.0, "low nibble 0, no fifth bit");
    }

    #[test]
    fn q4_k_scales_and_minimums_unpack() {
        let mut s = [0u8; 12];
        s[0] = 0b11_000101; // sub-block 0 scale 5; top bits feed sub-block 4's scale
        s[4] = 0b10_000111; // sub-block 0 min 7; top bits feed sub-block 4's min
        s[8] = 0x3a; // sub-block 4: scale low nibble 10, min low nibble 3
        assert_eq!(q4_k_scale_min(&s, 0), (5, 7));
        assert_eq!(q4_k_scale_min(&s, 4), (10 | (3 << 4), 3 | (2 << 4)));
        let mut b = [0u8; Q4_K_BYTES];
        b[..2].copy_from_slice(&h(1.0));
        b[2..4].copy_from_slice(&h(0.25));
        b[4..16].copy_from_slice(&s);
        b[16] = 0x92; // element 0: q 2; element 32: q 9
        let mut y = [0f32; QK_K];
        dequantize_q4_k(&b, &mut y);
        assert_eq!(y[0], 5.0 * 2.0 - 0.25 * 7.0);
        // Sub-block 1 has scale and min 0.
        assert_eq!(y[32], 0.0);
        // Sub-block 4 (elements 128..160) with q 0: -dmin * min.
        assert_eq!(y[128], -0.25 * f32::from(3u8 | (2 << 4)));
    }

    #[test]
    fn q6_k_assembles_six_bits_and_signed_scales() {
        let mut b = [0u8; Q6_K_BYTES];
        b[0] = 0x3f; // ql[0]: element 0 low 15, element 64 low 3
        b[128] = 0b11_10_01_11; // qh[0]: elements 0, 32, 64, 96 top bits 3, 1, 2, 3
        b[192] = 2; // scale of sub-block 0
        b[194] = 0xff; // scale of sub-block 2 (elements 32..48): -1
        b[196] = 1; // sub-block 4 (elements 64..80)
        b[198] = 3; // sub-block 6 (elements 96..112)
        b[208..210].copy_from_slice(&h(0.5));
        let mut y = [0f32; QK_K];
        dequantize_q6_k(&b, &mut y);
        assert_eq!(y[0], 0.5 * 2.0 * f32::from((15 | (3 << 4)) - 32i8));
        assert_eq!(y[32], -0.5 * f32::from((1 << 4) - 32i8), "scale -1");
        assert_eq!(y[64], 0.5 * 1.0 * f32::from((3 | (2 << 4)) - 32i8));
        assert_eq!(y[96], 0.5 * 3.0 * f32::from((3 << 4) - 32i8));
        assert_eq!(y[1], 0.5 * 2.0 * -32.0, "code 0 is -32");
    }

    #[test]
    fn whole_blocks_only() {
        let mut y = [0f32; 64];
        assert!(dequantize_k(Q5_0_BYTES, &[0u8; 44], &mut y).is_some());
        assert!(dequantize_k(Q5_0_BYTES, &[0u8; 43], &mut y).is_none());
        assert!(dequantize_k(Q4_K_BYTES, &[0u8; 144], &mut y).is_none());
        assert!(dequantize_k(7, &[0u8; 7], &mut y).is_none());
    }
}
