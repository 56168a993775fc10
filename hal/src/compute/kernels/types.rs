//! What the kernels are asked to multiply (the block-quantized types and
//! the row types), and the instruction sets they can run with.

use super::*;

/// The block-quantized element types.
///
/// All are multiplied against the same activation blocks of 32
/// ([`ActBlock`]): the 32-element types block for block, and the K-quants
/// (256-element super-blocks) eight activation blocks per super-block, since
/// their sub-blocks (32 elements for Q4_K, 16 for Q6_K) line up with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)] // ggml's names
pub(crate) enum QType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q6_K,
}

impl QType {
    /// Bytes per block (a super-block of 256 elements for the K-quants).
    pub(crate) const fn block_bytes(self) -> usize {
        match self {
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q5_0 => 22,
            QType::Q5_1 => 24,
            QType::Q8_0 => 34,
            QType::Q4_K => 144,
            QType::Q6_K => 210,
        }
    }

    /// Elements per block: 32, or 256 for the K-quants' super-blocks.
    pub(crate) const fn block_elems(self) -> usize {
        match self {
            QType::Q4_K | QType::Q6_K => 256,
            _ => 32,
        }
    }
}

/// How a row of a given [`DType`] is multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowType {
    /// Little-endian f32 (`half == false`) or f16 (`half == true`).
    Float { half: bool },
    /// Blocks (of 32, or K-quant super-blocks of 256) against the
    /// quantized activation.
    Quant(QType),
}

impl RowType {
    /// The row type of `dtype`, `None` for types this backend cannot multiply.
    pub(crate) fn of(dtype: DType) -> Option<RowType> {
        Some(match dtype {
            DType::F32 => RowType::Float { half: false },
            DType::F16 => RowType::Float { half: true },
            DType::Q4_0 => RowType::Quant(QType::Q4_0),
            DType::Q4_1 => RowType::Quant(QType::Q4_1),
            DType::Q5_0 => RowType::Quant(QType::Q5_0),
            DType::Q5_1 => RowType::Quant(QType::Q5_1),
            DType::Q8_0 => RowType::Quant(QType::Q8_0),
            DType::Q4_K => RowType::Quant(QType::Q4_K),
            DType::Q6_K => RowType::Quant(QType::Q6_K),
            _ => return None,
        })
    }
}

/// The instruction set a [`CpuCompute`](crate::compute::CpuCompute) runs its inner
/// loops with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// x86_64 AVX2 with FMA and F16C.
    Avx2,
    /// x86_64 AVX2, FMA and F16C, with AVX-512 VNNI (and VL) for the
    /// quantized products.
    Avx2Vnni,
    /// aarch64 NEON with widening multiplies.
    Neon,
    /// aarch64 NEON with the `sdot` dot-product instructions.
    NeonDotProd,
}
