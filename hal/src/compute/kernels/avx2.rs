//! x86_64 inner loops with AVX2, FMA and F16C.
//!
//! Every `#[target_feature]` function here is private; the only way in is a
//! method of [`Token`], and a `Token` exists only after the running CPU was
//! found to support all three extensions (and says whether AVX-512 VNNI is
//! there too, for the `vpdpbusd` flavour of the quantized products). That is
//! the whole safety argument for calling them. The remaining `unsafe` blocks are unaligned loads and
//! stores through pointers derived from fixed-size array references, with
//! offsets checked at compile time, so every access is in bounds, and two
//! register-only instructions in inline assembly (`vpdpbusd`, `vmovd`).
//!
//! Quantized products: the weights' 4/5/8-bit codes become 32 bytes, and
//! `maddubs` (u8 × i8 → pairs of i16) followed by `madd` with ones (→ 8 i32)
//! gives the block's integer dot product in 8 lanes, scaled and accumulated in
//! f32 lanes. No i16 pair can saturate: |pair| ≤ 2 · 128 · 127 = 32512.
//! With VNNI, `vpdpbusd` does both steps in one instruction.
#![allow(unsafe_code)]

use super::{scalar, QType};

mod act;
mod axpy;
mod float;
mod kquant;
mod kv;
mod load;
mod quant;

use crate::compute::act::{scale_of, ActBlock};
use act::*;
use axpy::*;
use float::*;
use load::*;
use quant::*;

/// Proof that the running CPU has AVX2, FMA and F16C, and whether it also
/// has AVX-512 VNNI (with VL) for the integer dot products.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    vnni: bool,
}

impl Token {
    /// A token when the CPU supports AVX2, FMA and F16C (run-time detection
    /// with `std`, the compile-time target features without).
    pub(crate) fn detect() -> Option<Token> {
        #[cfg(feature = "std")]
        let (ok, vnni) = (
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c"),
            std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl"),
        );
        #[cfg(not(feature = "std"))]
        let (ok, vnni) = (
            cfg!(all(
                target_feature = "avx2",
                target_feature = "fma",
                target_feature = "f16c"
            )),
            cfg!(all(
                target_feature = "avx512vnni",
                target_feature = "avx512vl"
            )),
        );
        ok.then_some(Token { vnni })
    }

    /// Whether the VNNI flavour of the quantized products is used.
    pub(crate) fn has_vnni(self) -> bool {
        self.vnni
    }

    /// The plain AVX2 flavour of the same token (for tests that compare
    /// both flavours on one CPU, and for comparisons with AVX2-only builds
    /// of other engines).
    pub(crate) fn without_vnni(self) -> Token {
        Token { vnni: false }
    }

    /// See [`scalar::dot_q`].
    pub(crate) fn dot_q(self, t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
        if self.vnni {
            // SAFETY: `vnni` is set only when detection found AVX-512 VNNI
            // and VL besides AVX2, FMA and F16C (see `detect`).
            unsafe { vnni::dot_q(t, row, act) }
        } else {
            // SAFETY: a token proves AVX2, FMA and F16C (see `detect`), the
            // only requirement of the target-feature function.
            unsafe { plain::dot_q(t, row, act) }
        }
    }

    /// See [`scalar::matvec_q`].
    pub(crate) fn matvec_q(
        self,
        t: QType,
        data: &[u8],
        row_bytes: usize,
        act: &[ActBlock],
        out: &mut [f32],
    ) {
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::matvec_q(t, data, row_bytes, act, out) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::matvec_q(t, data, row_bytes, act, out) }
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
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { matvec_float(half, data, row_bytes, x, out) }
    }

    /// See [`crate::compute::act::quantize_scalar`]; bit-identical results.
    pub(crate) fn quantize_act(self, x: &[f32], out: &mut [ActBlock]) -> bool {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { quantize_act(x, out) }
    }

    /// See [`scalar::dot_f32`].
    pub(crate) fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { dot_f32(a, b) }
    }

    /// See [`scalar::axpy_f32`].
    pub(crate) fn axpy_f32(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_f32(alpha, x, y) }
    }

    /// See [`scalar::axpy_q`].
    pub(crate) fn axpy_q(self, t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_q(t, row, alpha, y) }
    }

    /// See [`scalar::axpy4_q`].
    pub(crate) fn axpy4_q(self, t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy4_q(t, rows, alpha, y) }
    }

    /// See [`scalar::pair_map`].
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
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::pair_map(t, data, stride, rb, act, out, f) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::pair_map(t, data, stride, rb, act, out, f) }
        }
    }

    /// See [`scalar::dot2_q`].
    pub(crate) fn dot2_q(self, t: QType, r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::dot2_q(t, r0, r1, act) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::dot2_q(t, r0, r1, act) }
        }
    }

    /// See [`scalar::axpy_float`].
    pub(crate) fn axpy_float(self, half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_float(half, row, alpha, y) }
    }
}
