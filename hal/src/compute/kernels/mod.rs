//! Inner loops, one implementation per instruction set, and the choice
//! between them.
//!
//! Besides the worker pool's lifetime erasure, the SIMD modules are the only
//! places with `unsafe` in the compute code.
//! They are reached through [`Kernels`], whose SIMD variants carry a token
//! that only run-time (or, without `std`, compile-time) feature detection can
//! create, so a `Kernels` value is itself the proof that its instructions
//! exist on this CPU.
//!
//! Preconditions every entry point relies on (the callers in this crate
//! check shapes first; violating them gives wrong numbers, never unsafety):
//! a quantized row holds whole blocks (super-blocks of 256 for the K-quants)
//! and `act` has one block per 32 of its elements;
//! a float row holds as many elements as `x`; axpy operands have equal lengths.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
pub(crate) mod scalar;
mod types;

pub use types::Isa;
pub(crate) use types::{QType, RowType};

use lode_kernel::compute::{DType, ErrorKind, KvBits, KvGroups};

use super::act::{quantize_q8k, quantize_scalar, ActBlock};
use super::kv;

/// A set of inner loops that this CPU can run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernels {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(avx2::Token),
    #[cfg(target_arch = "aarch64")]
    Neon(neon::Token),
}

impl Kernels {
    /// The fastest kernels this CPU supports, or the scalar ones if
    /// `force_scalar`.
    pub(crate) fn detect(force_scalar: bool) -> Kernels {
        if force_scalar {
            return Kernels::Scalar;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = avx2::Token::detect() {
            return Kernels::Avx2(t);
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(t) = neon::Token::detect() {
            return Kernels::Neon(t);
        }
        Kernels::Scalar
    }

    /// The same kernels without AVX-512 VNNI (plain AVX2 products);
    /// unchanged on other instruction sets.
    pub(crate) fn without_vnni(self) -> Kernels {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => Kernels::Avx2(t.without_vnni()),
            other => other,
        }
    }

    /// Which instruction set these kernels use.
    pub(crate) fn isa(self) -> Isa {
        match self {
            Kernels::Scalar => Isa::Scalar,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => {
                if t.has_vnni() {
                    Isa::Avx2Vnni
                } else {
                    Isa::Avx2
                }
            }
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(t) => {
                if t.has_dotprod() {
                    Isa::NeonDotProd
                } else {
                    Isa::Neon
                }
            }
        }
    }

    /// Quantizes `x` into `out` (`x.len() == 32 · out.len()`); `false` when
    /// `x` is not all finite. Bit-identical on every path.
    pub(crate) fn quantize_act(self, x: &[f32], out: &mut [ActBlock]) -> bool {
        match self {
            Kernels::Scalar => quantize_scalar(x, out),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => t.quantize_act(x, out),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(t) => t.quantize_act(x, out),
        }
    }

    /// Quantizes `x` for products with rows of type `t` as llama.cpp
    /// quantizes activations for them, where no model lode ran before uses
    /// the type (SmolLM2's Q4_1 and Q8_0 products keep
    /// [`Kernels::quantize_act`]'s f32 scales): the K-quants' activation
    /// gets one scale per 256 elements, as ggml's Q8_K (see
    /// [`quantize_q8k`]); Q5_0's gets per-32 scales rounded to binary16,
    /// as ggml's Q8_0 blocks store them.
    pub(crate) fn quantize_act_for(self, t: QType, x: &[f32], out: &mut [ActBlock]) -> bool {
        match t {
            QType::Q4_K | QType::Q6_K => quantize_q8k(x, out),
            QType::Q5_0 => {
                let ok = self.quantize_act(x, out);
                round_scales_f16(out);
                ok
            }
            _ => self.quantize_act(x, out),
        }
    }

    /// One quantized row · the quantized activation.
    pub(crate) fn dot_q(self, t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
        match self {
            Kernels::Scalar => scalar::dot_q(t, row, act),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(k) => k.dot_q(t, row, act),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(k) => k.dot_q(t, row, act),
        }
    }

    /// `out[r] = row_r · act` for consecutive rows of `row_bytes`.
    pub(crate) fn matvec_q(
        self,
        t: QType,
        data: &[u8],
        row_bytes: usize,
        act: &[ActBlock],
        out: &mut [f32],
    ) {
        match self {
            Kernels::Scalar => scalar::matvec_q(t, data, row_bytes, act, out),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(k) => k.matvec_q(t, data, row_bytes, act, out),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(k) => k.matvec_q(t, data, row_bytes, act, out),
        }
    }

    /// `out[r] = row_r · x` for consecutive float rows of `row_bytes`.
    pub(crate) fn matvec_float(
        self,
        half: bool,
        data: &[u8],
        row_bytes: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        match self {
            Kernels::Scalar => scalar::matvec_float(half, data, row_bytes, x, out),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(k) => k.matvec_float(half, data, row_bytes, x, out),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(k) => k.matvec_float(half, data, row_bytes, x, out),
        }
    }

    /// One row of any supported type · the input (`act` for quantized rows,
    /// `x` for float rows).
    pub(crate) fn dot_row(self, rt: RowType, row: &[u8], x: &[f32], act: &[ActBlock]) -> f32 {
        match rt {
            RowType::Quant(t) => self.dot_q(t, row, act),
            RowType::Float { half } => {
                let mut o = [0.0f32];
                let rb = row.len();
                self.matvec_float(half, row, rb.max(1), x, &mut o);
                o[0]
            }
        }
    }

    /// Two rows of one type · the same input.
    pub(crate) fn dot2_row(
        self,
        rt: RowType,
        r0: &[u8],
        r1: &[u8],
        x: &[f32],
        act: &[ActBlock],
    ) -> (f32, f32) {
        match (self, rt) {
            (Kernels::Scalar, RowType::Quant(t)) => scalar::dot2_q(t, r0, r1, act),
            #[cfg(target_arch = "x86_64")]
            (Kernels::Avx2(k), RowType::Quant(t)) => k.dot2_q(t, r0, r1, act),
            #[cfg(target_arch = "aarch64")]
            (Kernels::Neon(k), RowType::Quant(t)) => k.dot2_q(t, r0, r1, act),
            (_, RowType::Float { .. }) => {
                (self.dot_row(rt, r0, x, act), self.dot_row(rt, r1, x, act))
            }
        }
    }

    /// For consecutive records of `stride` bytes that start with two rows of
    /// `rb` bytes (an FFN bundle's gate and up rows):
    /// `out[i] = f(row0_i · input, row1_i · input)`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pair_map(
        self,
        rt: RowType,
        data: &[u8],
        stride: usize,
        rb: usize,
        x: &[f32],
        act: &[ActBlock],
        out: &mut [f32],
        f: fn(f32, f32) -> f32,
    ) {
        match (self, rt) {
            (Kernels::Scalar, RowType::Quant(t)) => {
                scalar::pair_map(t, data, stride, rb, act, out, f)
            }
            #[cfg(target_arch = "x86_64")]
            (Kernels::Avx2(k), RowType::Quant(t)) => k.pair_map(t, data, stride, rb, act, out, f),
            #[cfg(target_arch = "aarch64")]
            (Kernels::Neon(k), RowType::Quant(t)) => k.pair_map(t, data, stride, rb, act, out, f),
            (_, RowType::Float { .. }) => {
                for (o, b) in out.iter_mut().zip(data.chunks_exact(stride)) {
                    let (r0, rest) = b.split_at(rb.min(b.len()));
                    let r1 = rest.get(..rb).unwrap_or(&[]);
                    let (y0, y1) = self.dot2_row(rt, r0, r1, x, act);
                    *o = f(y0, y1);
                }
            }
        }
    }

    /// `y += Σ_r alpha[r] · rows[r]` for four rows of `y.len()` elements.
    pub(crate) fn axpy4_row(self, rt: RowType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
        match (self, rt) {
            (Kernels::Scalar, RowType::Quant(t)) => scalar::axpy4_q(t, rows, alpha, y),
            #[cfg(target_arch = "x86_64")]
            (Kernels::Avx2(k), RowType::Quant(t)) => k.axpy4_q(t, rows, alpha, y),
            #[cfg(target_arch = "aarch64")]
            (Kernels::Neon(k), RowType::Quant(t)) => k.axpy4_q(t, rows, alpha, y),
            (_, RowType::Float { .. }) => {
                for (row, a) in rows.into_iter().zip(alpha) {
                    self.axpy_row(rt, row, a, y);
                }
            }
        }
    }

    /// `a · b` (equal lengths).
    pub(crate) fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Kernels::Scalar => scalar::dot_f32(a, b),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(k) => k.dot_f32(a, b),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(k) => k.dot_f32(a, b),
        }
    }

    /// `y += alpha · x` (equal lengths).
    pub(crate) fn axpy_f32(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        match self {
            Kernels::Scalar => scalar::axpy_f32(alpha, x, y),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(k) => k.axpy_f32(alpha, x, y),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(k) => k.axpy_f32(alpha, x, y),
        }
    }

    /// `y += alpha · row` for a row of `y.len()` elements of type `rt`.
    pub(crate) fn axpy_row(self, rt: RowType, row: &[u8], alpha: f32, y: &mut [f32]) {
        match (self, rt) {
            (Kernels::Scalar, RowType::Quant(t)) => scalar::axpy_q(t, row, alpha, y),
            (Kernels::Scalar, RowType::Float { half }) => scalar::axpy_float(half, row, alpha, y),
            #[cfg(target_arch = "x86_64")]
            (Kernels::Avx2(k), RowType::Quant(t)) => k.axpy_q(t, row, alpha, y),
            #[cfg(target_arch = "x86_64")]
            (Kernels::Avx2(k), RowType::Float { half }) => k.axpy_float(half, row, alpha, y),
            #[cfg(target_arch = "aarch64")]
            (Kernels::Neon(k), RowType::Quant(t)) => k.axpy_q(t, row, alpha, y),
            #[cfg(target_arch = "aarch64")]
            (Kernels::Neon(k), RowType::Float { half }) => k.axpy_float(half, row, alpha, y),
        }
    }

    /// Encodes a KV block whose shape [`kv::quantize_with`] checked: the
    /// same bytes, or the same error, on every path.
    pub(crate) fn kv_quantize(
        self,
        src: &[f32],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [u8],
    ) -> Result<(), ErrorKind> {
        match self {
            Kernels::Scalar => kv::scalar::quantize(src, groups, bits, dst),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => t.kv_quantize(src, groups, bits, dst),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(t) => t.kv_quantize(src, groups, bits, dst),
        }
    }

    /// Decodes a KV block whose shape [`kv::dequantize_with`] checked: the
    /// same floats on every path.
    pub(crate) fn kv_dequantize(self, src: &[u8], groups: KvGroups, bits: KvBits, dst: &mut [f32]) {
        match self {
            Kernels::Scalar => kv::scalar::dequantize(src, groups, bits, dst),
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2(t) => t.kv_dequantize(src, groups, bits, dst),
            #[cfg(target_arch = "aarch64")]
            Kernels::Neon(t) => t.kv_dequantize(src, groups, bits, dst),
        }
    }
}

/// On aarch64 (CI runs this crate's tests there under `qemu-aarch64`, see
/// `scripts/test-aarch64`) the detected kernels must be NEON: otherwise the
/// SIMD-against-scalar tests would compare scalar with itself and prove
/// nothing about the NEON code.
#[cfg(all(test, target_arch = "aarch64"))]
mod aarch64_tests {
    use super::*;

    #[test]
    fn neon_is_detected_so_the_simd_tests_run_it() {
        let k = Kernels::detect(false);
        assert!(
            matches!(k.isa(), Isa::Neon | Isa::NeonDotProd),
            "{:?}",
            k.isa()
        );
        // The tests compare both flavours when the CPU has `sdot`; say
        // which one this run could not reach.
        if let Kernels::Neon(t) = k {
            std::println!("aarch64 kernels: NEON, dotprod {}", t.has_dotprod());
        }
    }
}

/// Rounds each block's scale to binary16 (and its `ds` with it), as a ggml
/// Q8_0 activation block stores it; the codes stay those of the f32 scale.
fn round_scales_f16(blocks: &mut [ActBlock]) {
    for b in blocks {
        b.d = super::f16::f16_to_f32(super::f16::f32_to_f16(b.d));
        b.ds = b.d * b.sum as f32;
    }
}
