//! The portable CPU implementation of the kernel's `Compute` trait.
//!
//! [`CpuCompute`] runs every numeric primitive of a decode step on the CPU:
//! quantized matrix-vector products over GGML blocks (F32, F16, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0, and the K-quants Q4_K and Q6_K, whose 256-element
//! super-blocks meet the same 32-element activation blocks eight at a time),
//! RMSNorm, RoPE, grouped-query attention, the SiLU-gated FFN
//! over neuron bundles, and KV-chunk quantization; [`sample`] turns logits
//! into tokens.
//!
//! How it is fast, and what that costs in accuracy:
//! - Quantized products quantize the activation once per product to 8-bit
//!   blocks of 32 ([`ActBlock`]) and do integer block dot products, as
//!   llama.cpp does; the result differs from an exact f32 product by the
//!   activation rounding (half a step of 1/127 of each block's largest
//!   magnitude).
//! - Inner loops use AVX2+FMA+F16C on x86_64 (with AVX-512 VNNI's
//!   `vpdpbusd` for the integer dot products where present) and NEON (with
//!   `sdot` where present) on aarch64, chosen by run-time detection with
//!   `std` (compile-time target features without), and fall back to portable
//!   scalar code, which is also the reference they are tested against.
//!   [`CpuConfig::force_scalar`] (or `LODE_FORCE_SCALAR=1` through
//!   [`CpuConfig::with_env`]) selects the scalar path; [`CpuCompute::isa`]
//!   says which one runs.
//! - Products walk two rows at a time (one activation load for both); the
//!   FFN's down columns are added four bundles per pass over the output.
//! - With `std` and [`CpuConfig::threads`] > 1, large operations are cut into
//!   a few chunks per thread that a persistent worker pool (created once by
//!   [`CpuCompute::new`]) and the calling thread claim; results do not depend
//!   on which thread ran which chunk.
//!
//! Nothing on the decode path allocates: the activation scratch is sized by
//! [`CpuConfig::max_cols`] at construction (or borrowed from the caller
//! without `alloc`), and everything else is the caller's buffers.

mod act;
mod attention;
mod checksums;
mod config;
mod decode;
mod exec;
mod f16;
mod ffn;
mod gelu;
mod kernels;
pub mod kv;
mod math;
mod matmul;
mod matvec;
mod norm;
#[cfg(feature = "std")]
mod pool;
pub mod quant;
mod rope;
pub mod sample;

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use lode_kernel::codec::{self, Piece, Verify};
use lode_kernel::compute::{
    AttentionShape, Bundles, Compute, DType, ErrorKind, KvBits, KvChunk, KvGroups, QuantMatrix,
};

pub use act::{blocks_for, ActBlock};
pub use config::CpuConfig;
pub use exec::MAX_THREADS;
pub use f16::{f16_to_f32, f32_to_f16};
pub use kernels::Isa;

use exec::Exec;
use kernels::Kernels;
use rope::RopeCache;

/// Activation scratch: owned when there is an allocator, else the caller's.
enum Scratch<'s> {
    Borrowed(&'s mut [ActBlock]),
    #[cfg(feature = "alloc")]
    Owned(Vec<ActBlock>),
}

impl Scratch<'_> {
    fn len(&self) -> usize {
        match self {
            Scratch::Borrowed(s) => s.len(),
            #[cfg(feature = "alloc")]
            Scratch::Owned(v) => v.len(),
        }
    }

    fn blocks(&mut self) -> &mut [ActBlock] {
        match self {
            Scratch::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Scratch::Owned(v) => v,
        }
    }
}

/// The portable CPU [`Compute`] backend.
///
/// ```
/// use lode_hal::compute::{CpuCompute, CpuConfig};
/// use lode_hal::compute::quant::quantize_row;
/// use lode_kernel::compute::{Compute, DType, QuantMatrix};
///
/// let mut cpu = CpuCompute::new(CpuConfig::new(64)).unwrap();
/// // Two rows of 64: all ones, and the ramp 0..64 / 64.
/// let ramp: Vec<f32> = (0..64).map(|i| i as f32 / 64.0).collect();
/// let mut data = vec![0u8; 2 * 40];
/// quantize_row(DType::Q4_1, &[1.0; 64], &mut data[..40]).unwrap();
/// quantize_row(DType::Q4_1, &ramp, &mut data[40..]).unwrap();
/// let w = QuantMatrix { dtype: DType::Q4_1, rows: 2, cols: 64, data: &data };
/// let mut out = [0.0f32; 2];
/// cpu.matvec(&w, &[0.5; 64], &mut out).unwrap();
/// assert!((out[0] - 32.0).abs() < 0.2);
/// assert!((out[1] - 15.75).abs() < 0.2);
/// ```
pub struct CpuCompute<'s> {
    kernels: Kernels,
    act: Scratch<'s>,
    exec: Exec,
    rope: RopeCache,
}

#[cfg(feature = "alloc")]
impl CpuCompute<'static> {
    /// A backend owning its activation scratch (`config.max_cols / 32`
    /// blocks, rounded up) and, with `std` and `config.threads > 1`, a pool
    /// of `threads - 1` workers. Fails only if a thread cannot be spawned.
    pub fn new(config: CpuConfig) -> Result<CpuCompute<'static>, ErrorKind> {
        let blocks = config.max_cols.div_ceil(quant::QK);
        let mut v = Vec::new();
        v.try_reserve_exact(blocks).map_err(|_| ErrorKind::Other)?;
        v.resize(blocks, ActBlock::ZERO);
        Ok(CpuCompute {
            kernels: kernels_for(&config),
            act: Scratch::Owned(v),
            exec: exec_for(&config)?,
            rope: RopeCache::new(),
        })
    }

    /// Grows the activation scratch to `cols` columns. Allocates: call it
    /// when loading a model, never while decoding.
    pub fn reserve_cols(&mut self, cols: usize) -> Result<(), ErrorKind> {
        let blocks = cols.div_ceil(quant::QK);
        match &mut self.act {
            Scratch::Owned(v) if v.len() < blocks => {
                v.try_reserve_exact(blocks - v.len())
                    .map_err(|_| ErrorKind::Other)?;
                v.resize(blocks, ActBlock::ZERO);
                Ok(())
            }
            Scratch::Owned(_) => Ok(()),
            Scratch::Borrowed(s) if s.len() >= blocks => Ok(()),
            Scratch::Borrowed(_) => Err(ErrorKind::ScratchTooSmall),
        }
    }

    /// Grows the activation scratch so [`Compute::matmul`] can quantize
    /// `vectors` inputs of `cols` columns at once (larger batches run in
    /// pieces of that size). Allocates: call it when loading a model.
    pub fn reserve_batch(&mut self, cols: usize, vectors: usize) -> Result<(), ErrorKind> {
        self.reserve_cols(cols.checked_mul(vectors).ok_or(ErrorKind::Other)?)
    }
}

fn kernels_for(config: &CpuConfig) -> Kernels {
    let k = Kernels::detect(config.force_scalar);
    if config.no_vnni {
        k.without_vnni()
    } else {
        k
    }
}

#[cfg(feature = "std")]
fn exec_for(config: &CpuConfig) -> Result<Exec, ErrorKind> {
    let spin = std::time::Duration::from_micros(u64::from(config.spin_micros));
    Exec::threaded(config.threads, config.min_work_per_chunk, spin).map_err(|_| ErrorKind::Other)
}

#[cfg(not(feature = "std"))]
fn exec_for(config: &CpuConfig) -> Result<Exec, ErrorKind> {
    Ok(Exec::inline(config.min_work_per_chunk))
}

impl<'s> CpuCompute<'s> {
    /// A backend over caller-owned activation scratch (one [`ActBlock`] per
    /// 32 columns of the widest input), for builds without an allocator.
    /// `config.max_cols` is ignored (the scratch's length is the limit).
    pub fn with_scratch(
        config: CpuConfig,
        scratch: &'s mut [ActBlock],
    ) -> Result<CpuCompute<'s>, ErrorKind> {
        Ok(CpuCompute {
            kernels: kernels_for(&config),
            act: Scratch::Borrowed(scratch),
            exec: exec_for(&config)?,
            rope: RopeCache::new(),
        })
    }

    /// The instruction set the inner loops use.
    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    /// Threads one operation may use (1 without `std`).
    pub fn threads(&self) -> usize {
        self.exec.threads()
    }

    /// Widest input a quantized product accepts.
    pub fn max_cols(&self) -> usize {
        self.act.len() * quant::QK
    }
}

impl Compute for CpuCompute<'_> {
    type Error = ErrorKind;

    fn matvec(&mut self, w: &QuantMatrix<'_>, x: &[f32], out: &mut [f32]) -> Result<(), ErrorKind> {
        matvec::matvec(self.kernels, &mut self.exec, self.act.blocks(), w, x, out)
    }

    fn matmul(
        &mut self,
        w: &QuantMatrix<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), ErrorKind> {
        matmul::matmul(
            self.kernels,
            &mut self.exec,
            self.act.blocks(),
            w,
            x,
            n,
            out,
        )
    }

    fn rms_norm(&mut self, x: &mut [f32], weight: &[f32], eps: f32) -> Result<(), ErrorKind> {
        norm::rms_norm(x, weight, eps)
    }

    fn swiglu(&mut self, gate: &mut [f32], up: &[f32]) -> Result<(), ErrorKind> {
        ffn::swiglu(gate, up)
    }

    fn geglu(&mut self, gate: &mut [f32], up: &[f32]) -> Result<(), ErrorKind> {
        gelu::geglu(gate, up)
    }

    fn rope(
        &mut self,
        x: &mut [f32],
        head_dim: usize,
        pos: u32,
        theta_base: f32,
    ) -> Result<(), ErrorKind> {
        self.rope.apply(x, head_dim, pos, theta_base)
    }

    fn attention(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        shape: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), ErrorKind> {
        attention::attention(
            self.kernels,
            &mut self.exec,
            q,
            kv,
            shape,
            scores,
            out,
            None,
        )
    }

    fn attention_received(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        shape: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
        received: &mut [f32],
    ) -> Result<(), ErrorKind> {
        let r = Some(received);
        attention::attention(self.kernels, &mut self.exec, q, kv, shape, scores, out, r)
    }

    fn gated_ffn(
        &mut self,
        x: &[f32],
        bundles: &Bundles<'_>,
        hidden: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), ErrorKind> {
        ffn::gated_ffn(
            self.kernels,
            &mut self.exec,
            self.act.blocks(),
            x,
            bundles,
            hidden,
            out,
        )
    }

    fn axpy_columns(
        &mut self,
        dtype: DType,
        cols: &[&[u8]],
        weights: &[f32],
        out: &mut [f32],
    ) -> Result<(), ErrorKind> {
        ffn::axpy_columns(self.kernels, dtype, cols, weights, out)
    }

    fn kv_quantize(
        &mut self,
        src: &[f32],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [u8],
    ) -> Result<(), ErrorKind> {
        kv::quantize_with(self.kernels, src, groups, bits, dst)
    }

    fn kv_dequantize(
        &mut self,
        src: &[u8],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [f32],
    ) -> Result<(), ErrorKind> {
        kv::dequantize_with(self.kernels, src, groups, bits, dst)
    }

    fn checksums(
        &mut self,
        data: &[u8],
        piece: usize,
        crc: fn(&[u8]) -> u32,
        crcs: &mut [u32],
    ) -> Result<(), ErrorKind> {
        checksums::checksums(&mut self.exec, data, piece, crc, crcs)
    }

    fn decode_pieces(
        &mut self,
        pieces: &mut [Piece<'_>],
        verify: Verify,
        scratch: &mut codec::Scratch,
    ) -> Result<(), ErrorKind> {
        decode::decode_pieces(&mut self.exec, pieces, verify, scratch);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_kquant;
#[cfg(test)]
mod tests_kquant_model;
#[cfg(test)]
mod tests_kquant_ops;
#[cfg(test)]
mod testutil;
