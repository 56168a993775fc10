//! Portable K-quant products (Q4_K, Q6_K) against the per-32 activation
//! blocks, and the float arithmetic every path shares.
//!
//! A K-quant super-block holds 256 elements under one f16 scale `d` (and,
//! for Q4_K, one f16 `dmin`), refined by small integer scales per sub-block:
//! eight sub-blocks of 32 for Q4_K, sixteen of 16 for Q6_K (byte layouts in
//! `formats/GGUF.md` and `lode_formats::gguf::kquants`). Both sub-block
//! sizes divide the activation's 32-element blocks evenly, so a super-block
//! meets exactly eight [`ActBlock`]s and no Q8_K-style activation (one scale
//! per 256 with partial sums per 16, llama.cpp's choice) is needed:
//!
//! - Q4_K, sub-block `j` against activation block `j`:
//!   `d·sc_j·a.d·Σ q·qa − dmin·m_j·a.ds`, the minimum term through the
//!   block's precomputed `ds`, as Q4_1 does;
//! - Q6_K, activation block `b` against sub-blocks `2b` and `2b + 1`:
//!   `d·a.d·(sc_2b·Σ_lo (q−32)·qa + sc_2b+1·Σ_hi (q−32)·qa)`, the two
//!   scaled half sums combined exactly in i32 (|each| ≤ 128 · 16 · 32 · 127).
//!
//! The per-block float combination is [`q4k_term`] / [`q6k_term`]; the NEON
//! kernels compute the same integer sums and call the same functions in the
//! same order, so they match this path bit for bit.

use lode_formats::gguf::kquants::{dequantize_q4_k, dequantize_q6_k, QK_K};

use super::{idot, QType};
use crate::compute::act::ActBlock;
use crate::compute::quant::{f16_at, QK};

/// Bytes of a Q4_K super-block.
pub(crate) const Q4K_BYTES: usize = 144;
/// Bytes of a Q6_K super-block.
pub(crate) const Q6K_BYTES: usize = 210;
/// Activation blocks per super-block.
pub(crate) const ACTS: usize = QK_K / QK;

/// A Q4_K super-block's sub-block scales and minimums as floats
/// (`d·sc_j`, `dmin·m_j`), unpacked once per super-block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Q4kScales {
    pub(crate) dsc: [f32; ACTS],
    pub(crate) dm: [f32; ACTS],
}

/// The eight 6-bit scales and the eight 6-bit minimums of a Q4_K
/// super-block, one per byte (sub-block `j` in byte `j`, little-endian).
///
/// The packing (`lode_formats::gguf::kquants::q4_k_scale_min`), four
/// sub-blocks per 32-bit word, branch-free: with the packed bytes 4..16 as
/// little-endian words `a, b, c`, the scales of sub-blocks 0..4 are the
/// bytes of `a & 0x3f..`, their minimums those of `b & 0x3f..`; sub-blocks
/// 4..8 take the low (scale) or high (minimum) nibbles of `c` and, as bits
/// 4..6, the top two bits of `a` (scale) or `b` (minimum).
#[inline(always)]
pub(crate) fn q4k_scale_bytes(b: &[u8; Q4K_BYTES]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (a, bb, c) = (word(4), word(8), word(12));
    let (low6, nib, top) = (0x3f3f_3f3f, 0x0f0f_0f0f, 0x3030_3030);
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    (
        join(a & low6, (c & nib) | ((a >> 2) & top)),
        join(bb & low6, ((c >> 4) & nib) | ((bb >> 2) & top)),
    )
}

impl Q4kScales {
    /// Unpacks bytes 0..16 of a super-block (`d`, `dmin`, 12 packed bytes;
    /// see [`q4k_scale_bytes`]).
    #[inline(always)]
    pub(crate) fn of(b: &[u8; Q4K_BYTES]) -> Q4kScales {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, m) = q4k_scale_bytes(b);
        let mut s = Q4kScales {
            dsc: [0.0; ACTS],
            dm: [0.0; ACTS],
        };
        let bytes = sc.to_le_bytes().into_iter().zip(m.to_le_bytes());
        for ((dsc, dm), (sc, m)) in s.dsc.iter_mut().zip(s.dm.iter_mut()).zip(bytes) {
            *dsc = d * f32::from(sc);
            *dm = dmin * f32::from(m);
        }
        s
    }
}

/// Q4_K sub-block `j`'s contribution, from its exact integer dot product
/// `isum` with activation block `a`.
#[inline(always)]
pub(crate) fn q4k_term(s: &Q4kScales, j: usize, isum: i32, a: &ActBlock) -> f32 {
    let (dsc, dm) = match (s.dsc.get(j), s.dm.get(j)) {
        (Some(&dsc), Some(&dm)) => (dsc, dm),
        _ => return 0.0,
    };
    dsc * a.d * isum as f32 - dm * a.ds
}

/// Q6_K activation block `a`'s contribution from `isum`, the two scaled
/// half sums already combined in i32.
#[inline(always)]
pub(crate) fn q6k_term(d: f32, isum: i32, a: &ActBlock) -> f32 {
    d * a.d * isum as f32
}

/// The four 32-element groups of a Q6_K half (128 elements) as signed
/// codes `q − 32` (−32..32), from its 64 `ql` and 32 `qh` bytes: for `l` in
/// 0..32, element `l` of group `k` takes the low (`k < 2`) or high nibble
/// of `ql[l + 32·(k % 2)]` and bits `2k..2k+2` of `qh[l]` as bits 4..6.
/// Constant shifts per group, so the compiler vectorizes it.
#[inline(always)]
fn q6k_half(ql: &[u8; 64], qh: &[u8; 32]) -> [[i8; QK]; 4] {
    let mut g = [[0i8; QK]; 4];
    for l in 0..QK {
        let (a, b, h) = (ql[l], ql[l + QK], qh[l]);
        g[0][l] = ((a & 0x0f) | ((h & 3) << 4)) as i8 - 32;
        g[1][l] = ((b & 0x0f) | (((h >> 2) & 3) << 4)) as i8 - 32;
        g[2][l] = ((a >> 4) | (((h >> 4) & 3) << 4)) as i8 - 32;
        g[3][l] = ((b >> 4) | (((h >> 6) & 3) << 4)) as i8 - 32;
    }
    g
}

/// Q6_K's sixteen signed sub-block scales and its `d`.
#[inline(always)]
pub(crate) fn q6k_scales(b: &[u8; Q6K_BYTES]) -> ([i8; 16], f32) {
    let mut sc = [0i8; 16];
    for (o, &v) in sc.iter_mut().zip(&b[192..208]) {
        *o = v as i8;
    }
    (sc, f16_at(b, 208))
}

/// `(Σ_{0..16} w·qa, Σ_{16..32} w·qa)`: each half of an activation block
/// meets its own Q6_K sub-block scale.
#[inline(always)]
fn idot_halves(w: &[i8; QK], a: &ActBlock) -> (i32, i32) {
    let mut s = [0i32; 2];
    for (h, (wh, qh)) in s
        .iter_mut()
        .zip(w.chunks_exact(16).zip(a.qs.chunks_exact(16)))
    {
        for (&x, &y) in wh.iter().zip(qh) {
            *h += i32::from(x) * i32::from(y);
        }
    }
    (s[0], s[1])
}

/// Q4_K row (whole super-blocks) · activation (eight blocks per super-block).
pub(crate) fn dot_q4_k(row: &[u8], act: &[ActBlock]) -> f32 {
    let mut acc = 0.0f32;
    for (blk, a8) in row.chunks_exact(Q4K_BYTES).zip(act.chunks_exact(ACTS)) {
        let Ok(b) = <&[u8; Q4K_BYTES]>::try_from(blk) else {
            continue;
        };
        let s = Q4kScales::of(b);
        // Each 32 bytes of `qs` hold sub-blocks 2i (low nibbles) and 2i + 1
        // (high nibbles), each in element order.
        for (i, (q, a2)) in b[16..].chunks_exact(QK).zip(a8.chunks_exact(2)).enumerate() {
            let Ok(q) = <&[u8; QK]>::try_from(q) else {
                continue;
            };
            let codes = [q.map(|v| (v & 0x0f) as i8), q.map(|v| (v >> 4) as i8)];
            for (k, (w, a)) in codes.iter().zip(a2).enumerate() {
                acc += q4k_term(&s, 2 * i + k, idot(w, a), a);
            }
        }
    }
    acc
}

/// Q6_K row (whole super-blocks) · activation (eight blocks per super-block).
pub(crate) fn dot_q6_k(row: &[u8], act: &[ActBlock]) -> f32 {
    let mut acc = 0.0f32;
    for (blk, a8) in row.chunks_exact(Q6K_BYTES).zip(act.chunks_exact(ACTS)) {
        let Ok(b) = <&[u8; Q6K_BYTES]>::try_from(blk) else {
            continue;
        };
        let (sc, d) = q6k_scales(b);
        let halves = b[..128].chunks_exact(64).zip(b[128..192].chunks_exact(QK));
        for ((ql, qh), (a4, sc8)) in halves.zip(a8.chunks_exact(4).zip(sc.chunks_exact(8))) {
            let (Ok(ql), Ok(qh)) = (<&[u8; 64]>::try_from(ql), <&[u8; QK]>::try_from(qh)) else {
                continue;
            };
            for ((w, a), s2) in q6k_half(ql, qh).iter().zip(a4).zip(sc8.chunks_exact(2)) {
                let (lo, hi) = idot_halves(w, a);
                acc += q6k_term(d, i32::from(s2[0]) * lo + i32::from(s2[1]) * hi, a);
            }
        }
    }
    acc
}

/// `y += alpha · dequantize(row)` for a Q4_K or Q6_K row of `y.len()`
/// elements, through the reference decoders. Every path uses this one:
/// lode's bundles store down columns in 32-element types, so a K-quant axpy
/// (`axpy_columns` over a K-quant column) is a rarity not worth SIMD code.
pub(crate) fn axpy_k(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
    let mut v = [0.0f32; QK_K];
    for (ys, blk) in y
        .chunks_exact_mut(QK_K)
        .zip(row.chunks_exact(t.block_bytes()))
    {
        match t {
            QType::Q4_K => match <&[u8; Q4K_BYTES]>::try_from(blk) {
                Ok(b) => dequantize_q4_k(b, &mut v),
                Err(_) => continue,
            },
            QType::Q6_K => match <&[u8; Q6K_BYTES]>::try_from(blk) {
                Ok(b) => dequantize_q6_k(b, &mut v),
                Err(_) => continue,
            },
            _ => return,
        }
        for (o, &x) in ys.iter_mut().zip(&v) {
            *o += alpha * x;
        }
    }
}
