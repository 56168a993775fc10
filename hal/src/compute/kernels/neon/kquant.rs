//! K-quant products (Q4_K, Q6_K) with NEON against the per-32 activation
//! blocks, in both integer-dot flavours (widening multiplies, `sdot`).
//!
//! The integer sums are exact and the float combination is the scalar
//! path's own [`q4k_term`] / [`q6k_term`], called in the same order, so the
//! results are bit-identical to `kernels::scalar::kquant` (the tests compare
//! the bits).
//!
//! - Q4_K: each 32 bytes of `qs` are two sub-blocks (low nibbles, high
//!   nibbles), each already in element order: one mask or one shift each.
//! - Q6_K: a 128-element half is four 32-element groups assembled from
//!   `ql` nibbles and two `qh` bits moved to bits 4..6, minus 32, so the
//!   codes are signed bytes in −32..32; the dot of each 16-element half of
//!   an activation block is kept separate because each half has its own
//!   sub-block scale.

use core::arch::aarch64::*;

use super::{idot_sdot, idot_widen, load_act, load_u8x16, sdot};
use crate::compute::act::ActBlock;
use crate::compute::kernels::scalar::kquant::{
    q4k_term, q6k_scales, q6k_term, Q4kScales, ACTS, Q4K_BYTES, Q6K_BYTES,
};

/// `(Σ_{0..16} w·a, Σ_{16..32} w·a)` by widening multiplies (|w·a| ≤
/// 32 · 127 fits i16).
#[inline]
#[target_feature(enable = "neon")]
fn halves_widen(w: (int8x16_t, int8x16_t), a: &ActBlock) -> (i32, i32) {
    let (a0, a1) = (load_act::<0>(a), load_act::<16>(a));
    let lo = vpadalq_s16(
        vpaddlq_s16(vmull_s8(vget_low_s8(w.0), vget_low_s8(a0))),
        vmull_high_s8(w.0, a0),
    );
    let hi = vpadalq_s16(
        vpaddlq_s16(vmull_s8(vget_low_s8(w.1), vget_low_s8(a1))),
        vmull_high_s8(w.1, a1),
    );
    (vaddvq_s32(lo), vaddvq_s32(hi))
}

/// As [`halves_widen`], by `sdot`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn halves_sdot(w: (int8x16_t, int8x16_t), a: &ActBlock) -> (i32, i32) {
    let lo = sdot(vdupq_n_s32(0), w.0, load_act::<0>(a));
    let hi = sdot(vdupq_n_s32(0), w.1, load_act::<16>(a));
    (vaddvq_s32(lo), vaddvq_s32(hi))
}

/// `v` as signed bytes.
#[inline]
#[target_feature(enable = "neon")]
fn s8(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// The two sub-blocks in 32 bytes of Q4_K's `qs`: (low nibbles, high
/// nibbles), each as (elements 0..16, elements 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn q4k_pair(q: &[u8; 32]) -> [(int8x16_t, int8x16_t); 2] {
    let (v0, v1) = (load_u8x16::<0, 32>(q), load_u8x16::<16, 32>(q));
    let m4 = vdupq_n_u8(0x0f);
    [
        (s8(vandq_u8(v0, m4)), s8(vandq_u8(v1, m4))),
        (s8(vshrq_n_u8::<4>(v0)), s8(vshrq_n_u8::<4>(v1))),
    ]
}

/// Group `K` (0..4) of a Q6_K half, 16 elements from the `ql` bytes `l`
/// and `qh` bytes `h`: signed codes `q − 32`.
#[inline]
#[target_feature(enable = "neon")]
fn q6k_group<const K: usize>(l: uint8x16_t, h: uint8x16_t) -> int8x16_t {
    let nib = if K < 2 {
        vandq_u8(l, vdupq_n_u8(0x0f))
    } else {
        vshrq_n_u8::<4>(l)
    };
    let top = vandq_u8(h, vdupq_n_u8(0x03 << (2 * K)));
    let top = match K {
        0 => vshlq_n_u8::<4>(top),
        1 => vshlq_n_u8::<2>(top),
        2 => top,
        _ => vshrq_n_u8::<2>(top),
    };
    vsubq_s8(s8(vorrq_u8(nib, top)), vdupq_n_s8(32))
}

/// The four 32-element groups of a Q6_K half from its 64 `ql` bytes and 32
/// `qh` bytes, in element order.
#[inline]
#[target_feature(enable = "neon")]
fn q6k_half(ql: &[u8; 64], qh: &[u8; 32]) -> [(int8x16_t, int8x16_t); 4] {
    let (la0, la1) = (load_u8x16::<0, 64>(ql), load_u8x16::<16, 64>(ql));
    let (lb0, lb1) = (load_u8x16::<32, 64>(ql), load_u8x16::<48, 64>(ql));
    let (h0, h1) = (load_u8x16::<0, 32>(qh), load_u8x16::<16, 32>(qh));
    [
        (q6k_group::<0>(la0, h0), q6k_group::<0>(la1, h1)),
        (q6k_group::<1>(lb0, h0), q6k_group::<1>(lb1, h1)),
        (q6k_group::<2>(la0, h0), q6k_group::<2>(la1, h1)),
        (q6k_group::<3>(lb0, h0), q6k_group::<3>(lb1, h1)),
    ]
}

/// The K-quant dot products for one integer-dot flavour: `$idot` sums a
/// whole block, `$halves` each 16-element half.
macro_rules! kquant_kernels {
    ($name:ident, $feat:literal, $idot:ident, $halves:ident) => {
        pub(super) mod $name {
            use super::*;

            /// Q4_K row · activation; bit-identical to the scalar path.
            #[inline]
            #[target_feature(enable = $feat)]
            pub(crate) fn dot_q4_k(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a8) in row.chunks_exact(Q4K_BYTES).zip(act.chunks_exact(ACTS)) {
                    let Ok(b) = <&[u8; Q4K_BYTES]>::try_from(blk) else {
                        continue;
                    };
                    let s = Q4kScales::of(b);
                    let qs = b[16..].chunks_exact(32);
                    for (i, (q, a2)) in qs.zip(a8.chunks_exact(2)).enumerate() {
                        let Ok(q) = <&[u8; 32]>::try_from(q) else {
                            continue;
                        };
                        for (k, (w, a)) in q4k_pair(q).into_iter().zip(a2).enumerate() {
                            acc += q4k_term(&s, 2 * i + k, $idot(w, a), a);
                        }
                    }
                }
                acc
            }

            /// Q6_K row · activation; bit-identical to the scalar path.
            #[inline]
            #[target_feature(enable = $feat)]
            pub(crate) fn dot_q6_k(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a8) in row.chunks_exact(Q6K_BYTES).zip(act.chunks_exact(ACTS)) {
                    let Ok(b) = <&[u8; Q6K_BYTES]>::try_from(blk) else {
                        continue;
                    };
                    let (sc, d) = q6k_scales(b);
                    let (ql, qh) = (&b[..128], &b[128..192]);
                    let halves = ql.chunks_exact(64).zip(qh.chunks_exact(32));
                    for ((l, h), (a4, sc8)) in
                        halves.zip(a8.chunks_exact(4).zip(sc.chunks_exact(8)))
                    {
                        let (Ok(l), Ok(h)) = (<&[u8; 64]>::try_from(l), <&[u8; 32]>::try_from(h))
                        else {
                            continue;
                        };
                        let groups = q6k_half(l, h).into_iter().zip(a4);
                        for ((w, a), s2) in groups.zip(sc8.chunks_exact(2)) {
                            let (lo, hi) = $halves(w, a);
                            let isum = i32::from(s2[0]) * lo + i32::from(s2[1]) * hi;
                            acc += q6k_term(d, isum, a);
                        }
                    }
                }
                acc
            }
        }
    };
}

kquant_kernels!(widen, "neon", idot_widen, halves_widen);
kquant_kernels!(dotprod, "neon,dotprod", idot_sdot, halves_sdot);
