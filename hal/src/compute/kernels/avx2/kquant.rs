//! K-quant products (Q4_K, Q6_K) with AVX2 against the per-32 activation
//! blocks; the arithmetic is the scalar path's (see
//! `kernels::scalar::kquant`), laid out in vectors.
//!
//! - Q4_K: each 32 bytes of `qs` are two sub-blocks (low nibbles, high
//!   nibbles), each already in element order, so a sub-block is one `and`
//!   (or shift and `and`) and one `maddubs`/`madd` against its activation
//!   block, like Q4_1.
//! - Q6_K: the four 32-element groups of a 128-element half are assembled
//!   from two 32-byte loads of `ql` and one of `qh` (nibble, plus two high
//!   bits moved to bits 4..6), giving unsigned codes 0..64 in element order.
//!   `maddubs(q, a) − maddubs(32, a)` is `Σ (q − 32)·a` per pair of elements
//!   (|each| ≤ 2 · 63 · 127, no i16 saturation), and one `madd` against
//!   the two sub-block scales (low 128 bits: elements 0..16, high: 16..32)
//!   scales and widens it in one instruction.
//!
//! Q4_K has a VNNI flavour (`vpdpbusd` for `maddubs` + `madd`); Q6_K's
//! scaled `madd` has no one-instruction VNNI equivalent, so a VNNI token
//! runs the AVX2 Q6_K loop. Results equal the scalar path's up to float
//! rounding (lanes accumulate in a different order).

use core::arch::x86_64::*;

use super::{
    f16_one, f16_pair, hsum_ps, load_act, load_u8x16, load_u8x32, store_f32x8, udot_avx2, udot_vnni,
};
use crate::compute::act::ActBlock;
use crate::compute::kernels::scalar::kquant::{
    q4k_scale_bytes, Q4kScales, ACTS, Q4K_BYTES, Q6K_BYTES,
};

/// The 32 bytes at `off` of a super-block, as a vector (zeros if out of
/// range, which the callers' constant offsets rule out).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load32(b: &[u8], off: usize) -> __m256i {
    match b.get(off..off + 32).map(<&[u8; 32]>::try_from) {
        Some(Ok(v)) => load_u8x32::<0, 32>(v),
        _ => _mm256_setzero_si256(),
    }
}

/// A Q4_K super-block's `d·sc_j` and `dmin·m_j` (see `Q4kScales`), the
/// sixteen conversions and products in two vectors rather than scalar
/// code, which cost as much as the sub-block products themselves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4k_scales(b: &[u8; Q4K_BYTES]) -> Q4kScales {
    let (d, dmin) = f16_pair([b[0], b[1], b[2], b[3]]);
    let (sc, m) = q4k_scale_bytes(b);
    let widen = |v: u64, k: f32| {
        let ints = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64));
        _mm256_mul_ps(_mm256_set1_ps(k), _mm256_cvtepi32_ps(ints))
    };
    let mut s = Q4kScales {
        dsc: [0.0; ACTS],
        dm: [0.0; ACTS],
    };
    store_f32x8::<0, ACTS>(&mut s.dsc, widen(sc, d));
    store_f32x8::<0, ACTS>(&mut s.dm, widen(m, dmin));
    s
}

/// The Q4_K products for one integer-dot flavour: `$udot` is `maddubs` and
/// `madd` (AVX2) or one `vpdpbusd` (AVX-512 VNNI); the same integer lanes
/// either way, so both flavours give the same bits.
macro_rules! q4k_kernels {
    ($name:ident, $feat:literal, $udot:ident) => {
        pub(super) mod $name {
            use super::*;

            /// One Q4_K super-block · its eight activation blocks: the scaled integer
            /// dot products added to `acc` (8 lanes), the minimum terms to `bias`.
            #[inline]
            #[target_feature(enable = $feat)]
            fn q4k_block(
                b: &[u8; Q4K_BYTES],
                a8: &[ActBlock; ACTS],
                acc: __m256,
                bias: &mut f32,
            ) -> __m256 {
                let s = q4k_scales(b);
                let m4 = _mm256_set1_epi8(0x0f);
                let mut acc = acc;
                for i in 0..ACTS / 2 {
                    let v = load32(b, 16 + 32 * i);
                    let lo = _mm256_and_si256(v, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                    for (j, w) in [(2 * i, lo), (2 * i + 1, hi)] {
                        let (Some(a), Some(&dsc), Some(&dm)) =
                            (a8.get(j), s.dsc.get(j), s.dm.get(j))
                        else {
                            continue;
                        };
                        let p = _mm256_cvtepi32_ps($udot(w, load_act(a)));
                        acc = _mm256_fmadd_ps(_mm256_set1_ps(dsc * a.d), p, acc);
                        *bias += dm * a.ds;
                    }
                }
                acc
            }

            /// Q4_K row · activation; see `scalar::dot_q`.
            #[inline]
            #[target_feature(enable = $feat)]
            pub(crate) fn dot_q4_k(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let mut bias = 0.0f32;
                for (blk, a8) in row.chunks_exact(Q4K_BYTES).zip(act.chunks_exact(ACTS)) {
                    if let (Ok(b), Ok(a8)) = (<&[u8; Q4K_BYTES]>::try_from(blk), a8.try_into()) {
                        acc = q4k_block(b, a8, acc, &mut bias);
                    }
                }
                hsum_ps(acc) - bias
            }

            /// Two Q4_K rows · the same activation (two independent chains).
            #[inline]
            #[target_feature(enable = $feat)]
            pub(crate) fn dot2_q4_k(r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
                let mut acc = [_mm256_setzero_ps(); 2];
                let mut bias = [0.0f32; 2];
                let blocks = r0.chunks_exact(Q4K_BYTES).zip(r1.chunks_exact(Q4K_BYTES));
                for ((b0, b1), a8) in blocks.zip(act.chunks_exact(ACTS)) {
                    if let (Ok(b0), Ok(b1), Ok(a8)) = (
                        <&[u8; Q4K_BYTES]>::try_from(b0),
                        <&[u8; Q4K_BYTES]>::try_from(b1),
                        <&[ActBlock; ACTS]>::try_from(a8),
                    ) {
                        acc[0] = q4k_block(b0, a8, acc[0], &mut bias[0]);
                        acc[1] = q4k_block(b1, a8, acc[1], &mut bias[1]);
                    }
                }
                (hsum_ps(acc[0]) - bias[0], hsum_ps(acc[1]) - bias[1])
            }
        }
    };
}

q4k_kernels!(plain, "avx2,fma,f16c", udot_avx2);
q4k_kernels!(vnni, "avx2,fma,f16c,avx512vnni,avx512vl", udot_vnni);

/// One Q6_K super-block · its eight activation blocks, added to `acc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6k_block(b: &[u8; Q6K_BYTES], a8: &[ActBlock; ACTS], acc: __m256) -> __m256 {
    let d = f16_one([b[208], b[209]]);
    // The sixteen i8 sub-block scales; activation block `blk` takes the
    // pair `2·blk, 2·blk + 1`, spread by one byte shuffle (low eight bytes
    // the first, high eight the second) and sign-extended to i16 lanes.
    let sc = load_u8x16(b, 192);
    let pair = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let m4 = _mm256_set1_epi8(0x0f);
    let m3 = _mm256_set1_epi8(0x03);
    let m30 = _mm256_set1_epi8(0x30);
    let k32 = _mm256_set1_epi8(32);
    let mut acc = acc;
    for h in 0..2 {
        let ql_a = load32(b, 64 * h);
        let ql_b = load32(b, 64 * h + 32);
        let qh = load32(b, 128 + 32 * h);
        // Bits 2k..2k+2 of each qh byte moved to bits 4..6 (16-bit shifts:
        // bits crossing into the neighbouring byte are masked off).
        let codes = [
            _mm256_or_si256(
                _mm256_and_si256(ql_a, m4),
                _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3)),
            ),
            _mm256_or_si256(
                _mm256_and_si256(ql_b, m4),
                _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql_a), m4),
                _mm256_and_si256(qh, m30),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(ql_b), m4),
                _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
            ),
        ];
        for (k, w) in codes.into_iter().enumerate() {
            let blk = 4 * h + k;
            let Some(a) = a8.get(blk) else {
                continue;
            };
            let av = load_act(a);
            let pairs =
                _mm256_sub_epi16(_mm256_maddubs_epi16(w, av), _mm256_maddubs_epi16(k32, av));
            let sel = _mm_add_epi8(pair, _mm_set1_epi8(2 * blk as i8));
            let scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, sel));
            let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, scales));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), p, acc);
        }
    }
    acc
}

/// Q6_K row · activation; see `scalar::dot_q`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q6_k(row: &[u8], act: &[ActBlock]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (blk, a8) in row.chunks_exact(Q6K_BYTES).zip(act.chunks_exact(ACTS)) {
        if let (Ok(b), Ok(a8)) = (<&[u8; Q6K_BYTES]>::try_from(blk), a8.try_into()) {
            acc = q6k_block(b, a8, acc);
        }
    }
    hsum_ps(acc)
}

/// Two Q6_K rows · the same activation (two independent chains).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot2_q6_k(r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
    let mut acc = [_mm256_setzero_ps(); 2];
    let blocks = r0.chunks_exact(Q6K_BYTES).zip(r1.chunks_exact(Q6K_BYTES));
    for ((b0, b1), a8) in blocks.zip(act.chunks_exact(ACTS)) {
        if let (Ok(b0), Ok(b1), Ok(a8)) = (
            <&[u8; Q6K_BYTES]>::try_from(b0),
            <&[u8; Q6K_BYTES]>::try_from(b1),
            <&[ActBlock; ACTS]>::try_from(a8),
        ) {
            acc[0] = q6k_block(b0, a8, acc[0]);
            acc[1] = q6k_block(b1, a8, acc[1]);
        }
    }
    (hsum_ps(acc[0]), hsum_ps(acc[1]))
}
