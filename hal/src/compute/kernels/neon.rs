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

use super::{scalar, QType};

mod act;
mod axpy;
mod float;
mod kquant;
mod kv;
mod load;
mod quant;

use crate::compute::act::{scale_of, ActBlock};
use crate::compute::quant::f16_at;
use act::*;
use axpy::*;
use float::*;
use load::*;
use quant::*;

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
