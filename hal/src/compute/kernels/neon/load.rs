//! Loads and stores for the NEON kernels: the only pointer arithmetic of
//! [`super`] (each unsafe block says why it is in bounds).

#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::*;

// ---- loads and stores: the only pointer arithmetic in this module ----

/// 16 bytes at compile-time offset `K` of `b`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_u8x16<const K: usize, const N: usize>(b: &[u8; N]) -> uint8x16_t {
    const { assert!(K + 16 <= N) };
    // SAFETY: `K + 16 <= N` (compile time): the 16 bytes lie inside `b`;
    // byte loads have no alignment requirement.
    unsafe { vld1q_u8(b.as_ptr().add(K)) }
}

/// Codes `K..K+16` of an activation block.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_act<const K: usize>(a: &ActBlock) -> int8x16_t {
    const { assert!(K + 16 <= 32) };
    // SAFETY: `K + 16 <= 32` (compile time): the 16 codes lie inside `a.qs`.
    unsafe { vld1q_s8(a.qs.as_ptr().add(K)) }
}

/// Four f32 at element offset `K` of `x`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_f32x4<const K: usize, const N: usize>(x: &[f32; N]) -> float32x4_t {
    const { assert!(K + 4 <= N) };
    // SAFETY: `K + 4 <= N` (compile time): the 4 floats lie inside `x`, and
    // the pointer is f32-aligned because it points into an f32 array.
    unsafe { vld1q_f32(x.as_ptr().add(K)) }
}

/// Stores four f32 at element offset `K` of `y`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn store_f32x4<const K: usize, const N: usize>(y: &mut [f32; N], v: float32x4_t) {
    const { assert!(K + 4 <= N) };
    // SAFETY: `K + 4 <= N` (compile time): the 4 floats lie inside `y`,
    // borrowed mutably and f32-aligned.
    unsafe { vst1q_f32(y.as_mut_ptr().add(K), v) }
}
