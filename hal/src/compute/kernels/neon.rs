//! aarch64 inner loops with NEON, and `sdot` where the CPU has the dot
//! product extension.
//!
//! Every function here is compiled with `#[target_feature(enable = "neon")]`
//! (the dot-product flavour adds `dotprod`) and reached only through
//! [`Token`], which exists only on NEON targets, with `dot == true` only
//! after the CPU was found to support the dot-product extension. The
//! `sdot` instruction is inline assembly (its intrinsic is not stable Rust
//! yet). The remaining `unsafe` blocks are loads and stores through pointers
//! derived from fixed-size array references with compile-time checked
//! offsets.
//!
//! Quantized dot products reduce each block to its exact integer sum and then
//! do the same f32 operations, in the same order, as the scalar path: the
//! results are bit-identical to it.
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::{scalar, QType};

mod kquant;
mod kv;
use crate::compute::act::{scale_of, ActBlock};
use crate::compute::quant::f16_at;

/// Proof of NEON (always, on aarch64) and whether `sdot` is available.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    dot: bool,
}

impl Token {
    /// A token on NEON targets; `sdot` by run-time detection with `std`, by
    /// compile-time target features without.
    pub(crate) fn detect() -> Option<Token> {
        #[cfg(feature = "std")]
        let dot = std::arch::is_aarch64_feature_detected!("dotprod");
        #[cfg(not(feature = "std"))]
        let dot = cfg!(target_feature = "dotprod");
        cfg!(target_feature = "neon").then_some(Token { dot })
    }

    /// Whether the dot-product instructions are used.
    pub(crate) fn has_dotprod(self) -> bool {
        self.dot
    }

    /// The widening-multiply flavour of the same token (for tests that
    /// compare both flavours on one CPU).
    #[cfg(test)]
    pub(crate) fn without_dotprod(self) -> Token {
        Token { dot: false }
    }

    /// See [`scalar::dot_q`]; bit-identical results.
    pub(crate) fn dot_q(self, t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
        if self.dot {
            // SAFETY: a token exists only on NEON targets (`detect`), and
            // `dot` is true only when the CPU has the dotprod extension.
            unsafe { dotprod::dot_q(t, row, act) }
        } else {
            // SAFETY: a token exists only on NEON targets (`detect`).
            unsafe { widen::dot_q(t, row, act) }
        }
    }

    /// See [`scalar::matvec_q`]; bit-identical results.
    pub(crate) fn matvec_q(
        self,
        t: QType,
        data: &[u8],
        row_bytes: usize,
        act: &[ActBlock],
        out: &mut [f32],
    ) {
        if self.dot {
            // SAFETY: as in `dot_q`: NEON by the token, dotprod by `dot`.
            unsafe { dotprod::matvec_q(t, data, row_bytes, act, out) }
        } else {
            // SAFETY: a token exists only on NEON targets (`detect`).
            unsafe { widen::matvec_q(t, data, row_bytes, act, out) }
        }
    }

    /// See [`scalar::matvec_float`].
    pub(crate) fn matvec_float(
        self,
        half: bool,
        data: &[u8],
        row_bytes: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { matvec_float(half, data, row_bytes, x, out) }
    }

    /// See [`crate::compute::act::quantize_scalar`]; bit-identical results.
    pub(crate) fn quantize_act(self, x: &[f32], out: &mut [ActBlock]) -> bool {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { quantize_act(x, out) }
    }

    /// See [`scalar::dot_f32`].
    pub(crate) fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { dot_f32(a, b) }
    }

    /// See [`scalar::axpy_f32`].
    pub(crate) fn axpy_f32(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { axpy_f32(alpha, x, y) }
    }

    /// See [`scalar::axpy_q`].
    pub(crate) fn axpy_q(self, t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { axpy_q(t, row, alpha, y) }
    }

    /// See [`scalar::axpy4_q`].
    pub(crate) fn axpy4_q(self, t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
        for (row, a) in rows.into_iter().zip(alpha) {
            self.axpy_q(t, row, a, y);
        }
    }

    /// See [`scalar::pair_map`]; bit-identical results.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pair_map(
        self,
        t: QType,
        data: &[u8],
        stride: usize,
        rb: usize,
        act: &[ActBlock],
        out: &mut [f32],
        f: fn(f32, f32) -> f32,
    ) {
        for (o, b) in out.iter_mut().zip(data.chunks_exact(stride)) {
            let (r0, rest) = b.split_at(rb.min(b.len()));
            let r1 = rest.get(..rb).unwrap_or(&[]);
            let (y0, y1) = self.dot2_q(t, r0, r1, act);
            *o = f(y0, y1);
        }
    }

    /// See [`scalar::dot2_q`]; bit-identical results.
    pub(crate) fn dot2_q(self, t: QType, r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
        (self.dot_q(t, r0, act), self.dot_q(t, r1, act))
    }

    /// See [`scalar::axpy_float`].
    pub(crate) fn axpy_float(self, half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: a token exists only on NEON targets (`detect`).
        unsafe { axpy_float(half, row, alpha, y) }
    }
}

#[target_feature(enable = "neon")]
fn matvec_float(half: bool, data: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = if half {
            dot_f16_bytes(row, x)
        } else {
            dot_f32_bytes(row, x)
        };
    }
}

// ---- loads and stores: the only pointer arithmetic in this module ----

/// 16 bytes at compile-time offset `K` of `b`.
#[inline]
#[target_feature(enable = "neon")]
fn load_u8x16<const K: usize, const N: usize>(b: &[u8; N]) -> uint8x16_t {
    const { assert!(K + 16 <= N) };
    // SAFETY: `K + 16 <= N` (compile time): the 16 bytes lie inside `b`;
    // byte loads have no alignment requirement.
    unsafe { vld1q_u8(b.as_ptr().add(K)) }
}

/// Codes `K..K+16` of an activation block.
#[inline]
#[target_feature(enable = "neon")]
fn load_act<const K: usize>(a: &ActBlock) -> int8x16_t {
    const { assert!(K + 16 <= 32) };
    // SAFETY: `K + 16 <= 32` (compile time): the 16 codes lie inside `a.qs`.
    unsafe { vld1q_s8(a.qs.as_ptr().add(K)) }
}

/// Four f32 at element offset `K` of `x`.
#[inline]
#[target_feature(enable = "neon")]
fn load_f32x4<const K: usize, const N: usize>(x: &[f32; N]) -> float32x4_t {
    const { assert!(K + 4 <= N) };
    // SAFETY: `K + 4 <= N` (compile time): the 4 floats lie inside `x`, and
    // the pointer is f32-aligned because it points into an f32 array.
    unsafe { vld1q_f32(x.as_ptr().add(K)) }
}

/// Stores four f32 at element offset `K` of `y`.
#[inline]
#[target_feature(enable = "neon")]
fn store_f32x4<const K: usize, const N: usize>(y: &mut [f32; N], v: float32x4_t) {
    const { assert!(K + 4 <= N) };
    // SAFETY: `K + 4 <= N` (compile time): the 4 floats lie inside `y`,
    // borrowed mutably and f32-aligned.
    unsafe { vst1q_f32(y.as_mut_ptr().add(K), v) }
}

// ---- helpers ----

/// 16 nibble bytes at `K` to (elements 0..16, elements 16..32).
#[inline]
#[target_feature(enable = "neon")]
fn nibbles<const K: usize, const N: usize>(b: &[u8; N]) -> (int8x16_t, int8x16_t) {
    let v = load_u8x16::<K, N>(b);
    let lo = vandq_u8(v, vdupq_n_u8(0x0f));
    let hi = vshrq_n_u8::<4>(v);
    (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
}

/// Q5_0's and Q5_1's fifth bits for elements 0..16 and 16..32: byte `j` is `0x10` when
/// bit `j` of `qh` is set.
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits(qh: u32) -> (int8x16_t, int8x16_t) {
    let sel = vcombine_u8(
        vcreate_u8(0x8040_2010_0804_0201),
        vcreate_u8(0x8040_2010_0804_0201),
    );
    let bytes =
        |a: u32, b: u32| vcombine_u8(vdup_n_u8((qh >> a) as u8), vdup_n_u8((qh >> b) as u8));
    let ten = vdupq_n_u8(0x10);
    let lo = vandq_u8(vtstq_u8(bytes(0, 8), sel), ten);
    let hi = vandq_u8(vtstq_u8(bytes(16, 24), sel), ten);
    (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
}

/// Exact integer dot product of 32 codes with a block by widening
/// multiplies (products fit i16: |w · a| ≤ 128 · 127).
#[inline]
#[target_feature(enable = "neon")]
fn idot_widen(w: (int8x16_t, int8x16_t), a: &ActBlock) -> i32 {
    let (a0, a1) = (load_act::<0>(a), load_act::<16>(a));
    let p0 = vmull_s8(vget_low_s8(w.0), vget_low_s8(a0));
    let p1 = vmull_high_s8(w.0, a0);
    let p2 = vmull_s8(vget_low_s8(w.1), vget_low_s8(a1));
    let p3 = vmull_high_s8(w.1, a1);
    let s = vpadalq_s16(vpadalq_s16(vpadalq_s16(vpaddlq_s16(p0), p1), p2), p3);
    vaddvq_s32(s)
}

/// `acc + sdot(a, b)`: per 32-bit lane, the sum of four i8 × i8 products.
///
/// Written as inline assembly because the `vdotq_s32` intrinsic is not
/// stable Rust yet.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` only reads the two byte vectors and accumulates into
    // `acc`, all three in registers the compiler assigned: no memory, stack
    // or flags are touched. The instruction exists because this function
    // is only reachable on CPUs with the dotprod feature (see `Token`).
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Exact integer dot product of 32 codes with a block by `sdot`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn idot_sdot(w: (int8x16_t, int8x16_t), a: &ActBlock) -> i32 {
    let s = sdot(vdupq_n_s32(0), w.0, load_act::<0>(a));
    vaddvq_s32(sdot(s, w.1, load_act::<16>(a)))
}

/// The quantized dot products, once per integer-dot flavour. Each block's
/// float arithmetic mirrors `scalar::block_dot` exactly.
macro_rules! quant_kernels {
    ($name:ident, $feat:literal, $idot:ident) => {
        mod $name {
            use super::*;

            #[inline]
            #[target_feature(enable = $feat)]
            fn dot_q8_0(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a) in row.chunks_exact(34).zip(act) {
                    let Ok(b) = <&[u8; 34]>::try_from(blk) else {
                        continue;
                    };
                    let d = f16_at(b, 0) * a.d;
                    let w0 = vreinterpretq_s8_u8(load_u8x16::<2, 34>(b));
                    let w1 = vreinterpretq_s8_u8(load_u8x16::<18, 34>(b));
                    acc += d * $idot((w0, w1), a) as f32;
                }
                acc
            }

            #[inline]
            #[target_feature(enable = $feat)]
            fn dot_q4_0(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a) in row.chunks_exact(18).zip(act) {
                    let Ok(b) = <&[u8; 18]>::try_from(blk) else {
                        continue;
                    };
                    let d = f16_at(b, 0) * a.d;
                    let s = $idot(nibbles::<2, 18>(b), a);
                    acc += d * (s - 8 * a.sum) as f32;
                }
                acc
            }

            #[inline]
            #[target_feature(enable = $feat)]
            fn dot_q4_1(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a) in row.chunks_exact(20).zip(act) {
                    let Ok(b) = <&[u8; 20]>::try_from(blk) else {
                        continue;
                    };
                    let d = f16_at(b, 0) * a.d;
                    let m = f16_at(b, 2);
                    let s = $idot(nibbles::<4, 20>(b), a);
                    acc += d * s as f32 + m * a.ds;
                }
                acc
            }

            #[inline]
            #[target_feature(enable = $feat)]
            fn dot_q5_0(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a) in row.chunks_exact(22).zip(act) {
                    let Ok(b) = <&[u8; 22]>::try_from(blk) else {
                        continue;
                    };
                    let d = f16_at(b, 0) * a.d;
                    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                    let (l, h) = nibbles::<6, 22>(b);
                    let (hl, hh) = fifth_bits(qh);
                    let s = $idot((vorrq_s8(l, hl), vorrq_s8(h, hh)), a);
                    acc += d * (s - 16 * a.sum) as f32;
                }
                acc
            }

            // The K-quants, in the same integer-dot flavour.
            use super::kquant::$name::{dot_q4_k, dot_q6_k};

            #[inline]
            #[target_feature(enable = $feat)]
            fn dot_q5_1(row: &[u8], act: &[ActBlock]) -> f32 {
                let mut acc = 0.0f32;
                for (blk, a) in row.chunks_exact(24).zip(act) {
                    let Ok(b) = <&[u8; 24]>::try_from(blk) else {
                        continue;
                    };
                    let d = f16_at(b, 0) * a.d;
                    let m = f16_at(b, 2);
                    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                    let (l, h) = nibbles::<8, 24>(b);
                    let (hl, hh) = fifth_bits(qh);
                    let s = $idot((vorrq_s8(l, hl), vorrq_s8(h, hh)), a);
                    acc += d * s as f32 + m * a.ds;
                }
                acc
            }

            #[target_feature(enable = $feat)]
            pub(super) fn dot_q(t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
                match t {
                    QType::Q4_0 => dot_q4_0(row, act),
                    QType::Q4_1 => dot_q4_1(row, act),
                    QType::Q5_0 => dot_q5_0(row, act),
                    QType::Q5_1 => dot_q5_1(row, act),
                    QType::Q8_0 => dot_q8_0(row, act),
                    QType::Q4_K => dot_q4_k(row, act),
                    QType::Q6_K => dot_q6_k(row, act),
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn matvec_q(
                t: QType,
                data: &[u8],
                row_bytes: usize,
                act: &[ActBlock],
                out: &mut [f32],
            ) {
                macro_rules! rows {
                    ($dot:ident) => {
                        for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
                            *o = $dot(row, act);
                        }
                    };
                }
                match t {
                    QType::Q4_0 => rows!(dot_q4_0),
                    QType::Q4_1 => rows!(dot_q4_1),
                    QType::Q5_0 => rows!(dot_q5_0),
                    QType::Q5_1 => rows!(dot_q5_1),
                    QType::Q8_0 => rows!(dot_q8_0),
                    QType::Q4_K => rows!(dot_q4_k),
                    QType::Q6_K => rows!(dot_q6_k),
                }
            }
        }
    };
}

quant_kernels!(widen, "neon", idot_widen);
quant_kernels!(dotprod, "neon,dotprod", idot_sdot);

// ---- float rows ----

/// Four f16 (as u16 lanes) to f32, exactly: the magnitude bits shifted into
/// f32 position and scaled by 2^112 re-bias normals and subnormals alike;
/// infinities and NaNs get an all-ones exponent.
#[inline]
#[target_feature(enable = "neon")]
fn f16x4_to_f32(h: uint32x4_t) -> float32x4_t {
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let mag = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
    let scaled = vreinterpretq_u32_f32(vmulq_f32(
        vreinterpretq_f32_u32(mag),
        vdupq_n_f32(f32::from_bits((127 + 112) << 23)),
    ));
    let special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
    let inf_nan = vorrq_u32(mag, vdupq_n_u32(0x7f80_0000));
    vreinterpretq_f32_u32(vorrq_u32(vbslq_u32(special, inf_nan, scaled), sign))
}

/// Eight f16 from 16 bytes at `K` of `b` as two f32x4.
#[inline]
#[target_feature(enable = "neon")]
fn load_f16x8<const K: usize, const N: usize>(b: &[u8; N]) -> (float32x4_t, float32x4_t) {
    let h = vreinterpretq_u16_u8(load_u8x16::<K, N>(b));
    (
        f16x4_to_f32(vmovl_u16(vget_low_u16(h))),
        f16x4_to_f32(vmovl_high_u16(h)),
    )
}

/// Four little-endian f32 from 16 bytes at `K` of `b`.
#[inline]
#[target_feature(enable = "neon")]
fn load_f32x4_bytes<const K: usize, const N: usize>(b: &[u8; N]) -> float32x4_t {
    vreinterpretq_f32_u8(load_u8x16::<K, N>(b))
}

#[target_feature(enable = "neon")]
fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut rc = row.chunks_exact(64);
    let mut xc = x.chunks_exact(16);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 64]>::try_from(r), <&[f32; 16]>::try_from(v)) else {
            continue;
        };
        acc[0] = vfmaq_f32(acc[0], load_f32x4_bytes::<0, 64>(r), load_f32x4::<0, 16>(v));
        acc[1] = vfmaq_f32(
            acc[1],
            load_f32x4_bytes::<16, 64>(r),
            load_f32x4::<4, 16>(v),
        );
        acc[2] = vfmaq_f32(
            acc[2],
            load_f32x4_bytes::<32, 64>(r),
            load_f32x4::<8, 16>(v),
        );
        acc[3] = vfmaq_f32(
            acc[3],
            load_f32x4_bytes::<48, 64>(r),
            load_f32x4::<12, 16>(v),
        );
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f32_bytes(rc.remainder(), xc.remainder())
}

#[target_feature(enable = "neon")]
fn dot_f16_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut rc = row.chunks_exact(32);
    let mut xc = x.chunks_exact(16);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 32]>::try_from(r), <&[f32; 16]>::try_from(v)) else {
            continue;
        };
        let (h0, h1) = load_f16x8::<0, 32>(r);
        let (h2, h3) = load_f16x8::<16, 32>(r);
        acc[0] = vfmaq_f32(acc[0], h0, load_f32x4::<0, 16>(v));
        acc[1] = vfmaq_f32(acc[1], h1, load_f32x4::<4, 16>(v));
        acc[2] = vfmaq_f32(acc[2], h2, load_f32x4::<8, 16>(v));
        acc[3] = vfmaq_f32(acc[3], h3, load_f32x4::<12, 16>(v));
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f16_bytes(rc.remainder(), xc.remainder())
}

#[target_feature(enable = "neon")]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut ac = a.chunks_exact(16);
    let mut bc = b.chunks_exact(16);
    for (x, y) in (&mut ac).zip(&mut bc) {
        let (Ok(x), Ok(y)) = (<&[f32; 16]>::try_from(x), <&[f32; 16]>::try_from(y)) else {
            continue;
        };
        acc[0] = vfmaq_f32(acc[0], load_f32x4::<0, 16>(x), load_f32x4::<0, 16>(y));
        acc[1] = vfmaq_f32(acc[1], load_f32x4::<4, 16>(x), load_f32x4::<4, 16>(y));
        acc[2] = vfmaq_f32(acc[2], load_f32x4::<8, 16>(x), load_f32x4::<8, 16>(y));
        acc[3] = vfmaq_f32(acc[3], load_f32x4::<12, 16>(x), load_f32x4::<12, 16>(y));
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f32(ac.remainder(), bc.remainder())
}

#[target_feature(enable = "neon")]
fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let av = vdupq_n_f32(alpha);
    let mut yc = y.chunks_exact_mut(4);
    let mut xc = x.chunks_exact(4);
    for (o, v) in (&mut yc).zip(&mut xc) {
        let (Ok(o), Ok(v)) = (<&mut [f32; 4]>::try_from(o), <&[f32; 4]>::try_from(v)) else {
            continue;
        };
        let r = vfmaq_f32(load_f32x4::<0, 4>(o), av, load_f32x4::<0, 4>(v));
        store_f32x4::<0, 4>(o, r);
    }
    scalar::axpy_f32(alpha, xc.remainder(), yc.into_remainder());
}

/// `y[i] = (y[i] + bias) + scale · q[i]` for four widened codes at `K`.
#[inline]
#[target_feature(enable = "neon")]
fn axpy4<const K: usize>(q: int32x4_t, scale: float32x4_t, bias: float32x4_t, y: &mut [f32; 32]) {
    let r = vfmaq_f32(
        vaddq_f32(load_f32x4::<K, 32>(y), bias),
        scale,
        vcvtq_f32_s32(q),
    );
    store_f32x4::<K, 32>(y, r);
}

/// `y += scale · codes + bias` for 32 codes (elements 0..16, 16..32) that
/// are signed (`signed`) or unsigned bytes.
#[inline]
#[target_feature(enable = "neon")]
fn axpy_codes(
    codes: (int8x16_t, int8x16_t),
    signed: bool,
    scale: f32,
    bias: f32,
    y: &mut [f32; 32],
) {
    let s = vdupq_n_f32(scale);
    let b = vdupq_n_f32(bias);
    let widen16 = |v: int8x16_t| -> (int16x8_t, int16x8_t) {
        if signed {
            (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v))
        } else {
            let u = vreinterpretq_u8_s8(v);
            (
                vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(u))),
                vreinterpretq_s16_u16(vmovl_high_u8(u)),
            )
        }
    };
    let (a, b16) = widen16(codes.0);
    let (c, d) = widen16(codes.1);
    axpy4::<0>(vmovl_s16(vget_low_s16(a)), s, b, y);
    axpy4::<4>(vmovl_high_s16(a), s, b, y);
    axpy4::<8>(vmovl_s16(vget_low_s16(b16)), s, b, y);
    axpy4::<12>(vmovl_high_s16(b16), s, b, y);
    axpy4::<16>(vmovl_s16(vget_low_s16(c)), s, b, y);
    axpy4::<20>(vmovl_high_s16(c), s, b, y);
    axpy4::<24>(vmovl_s16(vget_low_s16(d)), s, b, y);
    axpy4::<28>(vmovl_high_s16(d), s, b, y);
}

#[target_feature(enable = "neon")]
fn axpy_q(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
    if matches!(t, QType::Q4_K | QType::Q6_K) {
        return scalar::axpy_q(t, row, alpha, y);
    }
    for (ys, blk) in y
        .chunks_exact_mut(32)
        .zip(row.chunks_exact(t.block_bytes()))
    {
        let Ok(ys) = <&mut [f32; 32]>::try_from(ys) else {
            continue;
        };
        let d = f16_at(blk, 0);
        match t {
            QType::Q8_0 => {
                let Ok(b) = <&[u8; 34]>::try_from(blk) else {
                    continue;
                };
                let w0 = vreinterpretq_s8_u8(load_u8x16::<2, 34>(b));
                let w1 = vreinterpretq_s8_u8(load_u8x16::<18, 34>(b));
                axpy_codes((w0, w1), true, alpha * d, 0.0, ys);
            }
            QType::Q4_0 => {
                let Ok(b) = <&[u8; 18]>::try_from(blk) else {
                    continue;
                };
                let ad = alpha * d;
                axpy_codes(nibbles::<2, 18>(b), false, ad, -8.0 * ad, ys);
            }
            QType::Q5_0 => {
                let Ok(b) = <&[u8; 22]>::try_from(blk) else {
                    continue;
                };
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let (l, h) = nibbles::<6, 22>(b);
                let (hl, hh) = fifth_bits(qh);
                let ad = alpha * d;
                let w = (vorrq_s8(l, hl), vorrq_s8(h, hh));
                axpy_codes(w, false, ad, -16.0 * ad, ys);
            }
            QType::Q4_1 => {
                let Ok(b) = <&[u8; 20]>::try_from(blk) else {
                    continue;
                };
                let m = f16_at(b, 2);
                axpy_codes(nibbles::<4, 20>(b), false, alpha * d, alpha * m, ys);
            }
            QType::Q5_1 => {
                let Ok(b) = <&[u8; 24]>::try_from(blk) else {
                    continue;
                };
                let m = f16_at(b, 2);
                let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                let (l, h) = nibbles::<8, 24>(b);
                let (hl, hh) = fifth_bits(qh);
                let w = (vorrq_s8(l, hl), vorrq_s8(h, hh));
                axpy_codes(w, false, alpha * d, alpha * m, ys);
            }
            // Routed to the scalar decoder above.
            QType::Q4_K | QType::Q6_K => {}
        }
    }
}

#[target_feature(enable = "neon")]
fn axpy_float(half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
    let av = vdupq_n_f32(alpha);
    let mut yc = y.chunks_exact_mut(8);
    let mut rc = row.chunks_exact(if half { 16 } else { 32 });
    for (o, r) in (&mut yc).zip(&mut rc) {
        let Ok(o) = <&mut [f32; 8]>::try_from(o) else {
            continue;
        };
        let (v0, v1) = if half {
            match <&[u8; 16]>::try_from(r) {
                Ok(r) => load_f16x8::<0, 16>(r),
                Err(_) => continue,
            }
        } else {
            match <&[u8; 32]>::try_from(r) {
                Ok(r) => (load_f32x4_bytes::<0, 32>(r), load_f32x4_bytes::<16, 32>(r)),
                Err(_) => continue,
            }
        };
        let r0 = vfmaq_f32(load_f32x4::<0, 8>(o), av, v0);
        let r1 = vfmaq_f32(load_f32x4::<4, 8>(o), av, v1);
        store_f32x4::<0, 8>(o, r0);
        store_f32x4::<4, 8>(o, r1);
    }
    scalar::axpy_float(half, rc.remainder(), alpha, yc.into_remainder());
}

// ---- activation quantization ----

#[target_feature(enable = "neon")]
fn quantize_act(x: &[f32], out: &mut [ActBlock]) -> bool {
    let inf = vdupq_n_f32(f32::INFINITY);
    let mut ok = vdupq_n_u32(u32::MAX);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(32)) {
        let Ok(xs) = <&[f32; 32]>::try_from(xs) else {
            continue;
        };
        let v = [
            load_f32x4::<0, 32>(xs),
            load_f32x4::<4, 32>(xs),
            load_f32x4::<8, 32>(xs),
            load_f32x4::<12, 32>(xs),
            load_f32x4::<16, 32>(xs),
            load_f32x4::<20, 32>(xs),
            load_f32x4::<24, 32>(xs),
            load_f32x4::<28, 32>(xs),
        ];
        let mut m = vdupq_n_f32(0.0);
        for &vk in &v {
            let a = vabsq_f32(vk);
            // Less-than-infinity is false for ±inf and NaN.
            ok = vandq_u32(ok, vcltq_f32(a, inf));
            m = vmaxq_f32(m, a);
        }
        let (d, id) = scale_of(vmaxvq_f32(m));
        let idv = vdupq_n_f32(id);
        // fcvtns: round to nearest, ties to even, as `rint` does.
        let q = v.map(|vk| vcvtnq_s32_f32(vmulq_f32(vk, idv)));
        let narrow = |a: int32x4_t, b: int32x4_t, c: int32x4_t, e: int32x4_t| {
            let lo = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
            let hi = vcombine_s16(vqmovn_s32(c), vqmovn_s32(e));
            vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi))
        };
        let q0 = narrow(q[0], q[1], q[2], q[3]);
        let q1 = narrow(q[4], q[5], q[6], q[7]);
        let (first, second) = blk.qs.split_at_mut(16);
        // SAFETY: `split_at_mut(16)` of the 32-byte `qs` gives two 16-byte
        // halves we borrow mutably; byte stores have no alignment requirement.
        unsafe {
            vst1q_s8(first.as_mut_ptr(), q0);
            vst1q_s8(second.as_mut_ptr(), q1);
        }
        let s = vaddq_s32(
            vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
            vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])),
        );
        blk.d = d;
        blk.sum = vaddvq_s32(s);
        blk.ds = d * blk.sum as f32;
    }
    vminvq_u32(ok) != 0
}
