//! The numeric primitives the decode loop calls.
//!
//! The engine is written once against [`Compute`]; a HAL supplies the
//! arithmetic (portable SIMD on a CPU, a DSP, an NPU). Every operation works on
//! borrowed buffers the caller owns (arena slots), never allocates, and checks
//! shapes before it touches memory, so a shape bug is an error, not a panic or
//! an out-of-bounds read.

use core::fmt;

pub use lode_formats::DType;

use crate::codec::{Piece, Scratch, Verify};

/// What went wrong in a numeric primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// Buffer lengths disagree with the stated shape.
    ShapeMismatch,
    /// The element type is not supported by this implementation.
    UnsupportedType,
    /// A scratch buffer is too small for the operation.
    ScratchTooSmall,
    /// A NaN or infinity appeared where the operation cannot continue.
    NonFinite,
    /// Anything else the implementation reports.
    Other,
}

impl core::error::Error for ErrorKind {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::ShapeMismatch => "buffer lengths do not match the shape",
            ErrorKind::UnsupportedType => "element type not supported by this compute backend",
            ErrorKind::ScratchTooSmall => "scratch buffer too small",
            ErrorKind::NonFinite => "non-finite value",
            ErrorKind::Other => "compute error",
        })
    }
}

/// A compute error: anything that can say which [`ErrorKind`] it is.
pub trait Error: fmt::Debug {
    /// The generic kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// A row-major matrix of `rows` rows of `cols` elements in `dtype`; each row
/// is `dtype.row_bytes(cols)` bytes and rows are contiguous.
#[derive(Debug, Clone, Copy)]
pub struct QuantMatrix<'a> {
    /// Element encoding.
    pub dtype: DType,
    /// Number of rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// `rows * row_bytes` bytes.
    pub data: &'a [u8],
}

impl QuantMatrix<'_> {
    /// Bytes per row, or `None` when `cols` is not a whole number of blocks.
    pub fn row_bytes(&self) -> Option<usize> {
        self.dtype
            .row_bytes(self.cols as u64)
            .and_then(|b| usize::try_from(b).ok())
    }

    /// `Ok` when `data` holds exactly `rows` rows.
    pub fn check(&self) -> Result<(), ErrorKind> {
        let rb = self.row_bytes().ok_or(ErrorKind::ShapeMismatch)?;
        match rb.checked_mul(self.rows) {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(ErrorKind::ShapeMismatch),
        }
    }
}

/// A set of FFN neuron bundles laid out one after another: for each neuron,
/// its gate row and its up row, each `hidden` elements in `dtype`, then its
/// down column, `hidden` elements in `down_dtype` (at hidden 576: all Q4_1,
/// 360 + 360 + 360 = 1080 bytes; Q4_1 rows with a Q8_0 column, 1332).
///
/// The down column has its own type because GGUF quantizes the down matrix
/// along the neuron axis: a bundle's column must be re-quantized, and doing
/// that at 4 bits costs far more quality than at 8 (see DESIGN.md), while
/// the gate and up rows can be copied as stored.
#[derive(Debug, Clone, Copy)]
pub struct Bundles<'a> {
    /// Element encoding of the gate and up rows.
    pub dtype: DType,
    /// Element encoding of the down column.
    pub down_dtype: DType,
    /// Model hidden size (length of each vector).
    pub hidden: usize,
    /// Number of bundles in `data`.
    pub count: usize,
    /// `count * bundle_bytes()` bytes.
    pub data: &'a [u8],
}

impl Bundles<'_> {
    /// Bytes of one bundle of `hidden` elements: two rows of `dtype` and a
    /// column of `down_dtype`; `None` when `hidden` is not whole blocks of
    /// either type or the size overflows.
    pub fn bundle_bytes(dtype: DType, down_dtype: DType, hidden: usize) -> Option<usize> {
        let row = usize::try_from(dtype.row_bytes(hidden as u64)?).ok()?;
        let col = usize::try_from(down_dtype.row_bytes(hidden as u64)?).ok()?;
        row.checked_mul(2)?.checked_add(col)
    }
}

/// Shape of one attention call (grouped-query attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` is a multiple of it).
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
}

/// One chunk of the KV cache for one layer: `tokens` positions, each with
/// `kv_heads * head_dim` keys and as many values, position-major.
#[derive(Debug, Clone, Copy)]
pub struct KvChunk<'a> {
    /// Valid positions in this chunk.
    pub tokens: usize,
    /// Keys, `tokens * kv_heads * head_dim` elements.
    pub keys: &'a [f32],
    /// Values, same shape as `keys`.
    pub values: &'a [f32],
}

mod kv;

pub use kv::{KvBits, KvGroups};

/// The numeric primitives of a decode step.
///
/// ```
/// use lode_kernel::compute::{Compute, ErrorKind};
/// # use lode_kernel::compute::*;
/// /// A backend that only knows RMSNorm, to show the shape of an implementation.
/// struct NormOnly;
/// impl Compute for NormOnly {
///     type Error = ErrorKind;
///     fn rms_norm(&mut self, x: &mut [f32], w: &[f32], eps: f32) -> Result<(), ErrorKind> {
///         if x.len() != w.len() { return Err(ErrorKind::ShapeMismatch); }
///         let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
///         let k = 1.0 / (ms + eps).sqrt();
///         x.iter_mut().zip(w).for_each(|(v, w)| *v *= k * w);
///         Ok(())
///     }
/// #   fn matvec(&mut self, _: &QuantMatrix<'_>, _: &[f32], _: &mut [f32]) -> Result<(), ErrorKind> { Err(ErrorKind::UnsupportedType) }
/// #   fn rope(&mut self, _: &mut [f32], _: usize, _: u32, _: f32) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn attention(&mut self, _: &[f32], _: &[KvChunk<'_>], _: AttentionShape, _: &mut [f32], _: &mut [f32]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn gated_ffn(&mut self, _: &[f32], _: &Bundles<'_>, _: &mut [f32], _: &mut [f32]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn kv_quantize(&mut self, _: &[f32], _: KvGroups, _: KvBits, _: &mut [u8]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn kv_dequantize(&mut self, _: &[u8], _: KvGroups, _: KvBits, _: &mut [f32]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn swiglu(&mut self, _: &mut [f32], _: &[f32]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// #   fn axpy_columns(&mut self, _: DType, _: &[&[u8]], _: &[f32], _: &mut [f32]) -> Result<(), ErrorKind> { Err(ErrorKind::Other) }
/// }
/// let mut x = [3.0f32, 4.0];
/// NormOnly.rms_norm(&mut x, &[1.0, 1.0], 0.0).unwrap();
/// assert!((x[0] * x[0] + x[1] * x[1] - 2.0).abs() < 1e-5);
/// assert_eq!(NormOnly.rms_norm(&mut x, &[1.0], 0.0), Err(ErrorKind::ShapeMismatch));
/// ```
pub trait Compute {
    /// The backend's error type; every compute error can be built from a
    /// kernel kind, so provided methods can report shape errors themselves.
    type Error: Error + From<ErrorKind>;

    /// `out[r] = Σ_c w[r][c] · x[c]` for every row of `w`.
    fn matvec(
        &mut self,
        w: &QuantMatrix<'_>,
        x: &[f32],
        out: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// The same product for `n` inputs at once: `x` holds `n` vectors of
    /// `w.cols` one after another and `out` receives `n` vectors of `w.rows`
    /// (input-major). Prompt processing calls this so a backend can read each
    /// weight row once for several positions instead of once per position;
    /// the provided version just calls [`matvec`](Compute::matvec) `n` times.
    fn matmul(
        &mut self,
        w: &QuantMatrix<'_>,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), Self::Error> {
        let fits = |len: usize, per: usize| per.checked_mul(n) == Some(len);
        if !fits(x.len(), w.cols) || !fits(out.len(), w.rows) {
            return Err(ErrorKind::ShapeMismatch.into());
        }
        for i in 0..n {
            // In range: both lengths were checked to be `n` vectors.
            let xi = x.get(i * w.cols..(i + 1) * w.cols).unwrap_or(&[]);
            let oi = out.get_mut(i * w.rows..(i + 1) * w.rows).unwrap_or(&mut []);
            self.matvec(w, xi, oi)?;
        }
        Ok(())
    }

    /// In place: `x = x / sqrt(mean(x²) + eps) · weight`.
    fn rms_norm(&mut self, x: &mut [f32], weight: &[f32], eps: f32) -> Result<(), Self::Error>;

    /// Rotary position embedding in place over consecutive heads of
    /// `head_dim`, rotating adjacent pairs `(2i, 2i+1)` by
    /// `pos · theta_base^(-2i / head_dim)` (the GGUF llama convention).
    fn rope(
        &mut self,
        x: &mut [f32],
        head_dim: usize,
        pos: u32,
        theta_base: f32,
    ) -> Result<(), Self::Error>;

    /// Grouped-query attention of one query position over the KV chunks, in
    /// order. `scores` is scratch for at least the total number of positions;
    /// `out` receives `heads * head_dim` values.
    fn attention(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        shape: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// [`attention`](Compute::attention) that also reports how much
    /// attention each position received: adds to `received[p]` position
    /// `p`'s softmax weight summed over the query heads (`received` has one
    /// value per position of `kv`). `scores` is scratch of at least twice
    /// the number of positions.
    ///
    /// The KV lifecycle ranks chunks by these sums (LLMS's information
    /// density) to choose how far each chunk may be compressed. The
    /// provided version computes the attention and leaves `received`
    /// unchanged, so with a backend that does not override it every chunk
    /// looks equally dense and is compressed alike.
    fn attention_received(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        shape: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
        received: &mut [f32],
    ) -> Result<(), Self::Error> {
        let _ = received;
        self.attention(q, kv, shape, scores, out)
    }

    /// SiLU-gated FFN over a subset of neurons:
    /// `out += Σ_i down_i · silu(gate_i · x) · (up_i · x)` over the bundles.
    /// `hidden` is scratch of at least `bundles.count` values.
    fn gated_ffn(
        &mut self,
        x: &[f32],
        bundles: &Bundles<'_>,
        hidden: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// `out += Σ_k weights[k] · cols[k]`, each column `out.len()` elements
    /// of `dtype`: the down half of an FFN whose neurons were chosen and
    /// whose down columns were read one by one (sparse streaming keeps the
    /// gate and up rows apart from the down columns, so the columns arrive
    /// from a read buffer or a cache slot, not as whole bundles).
    fn axpy_columns(
        &mut self,
        dtype: DType,
        cols: &[&[u8]],
        weights: &[f32],
        out: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// SwiGLU's element-wise step of a dense FFN, in place:
    /// `gate[i] = silu(gate[i]) · up[i]` with `silu(g) = g / (1 + e^-g)`.
    /// (`gated_ffn` fuses this into a bundle product; a dense FFN whose down
    /// matrix is stored row-major needs it on its own.)
    fn swiglu(&mut self, gate: &mut [f32], up: &[f32]) -> Result<(), Self::Error>;

    /// The GELU-gated step of Gemma's FFN, in place:
    /// `gate[i] = gelu(gate[i]) · up[i]`, GELU in its tanh approximation
    /// (as ggml computes it). Only models with a GELU gate call it, so the
    /// provided version refuses: a backend that runs Gemma overrides it.
    fn geglu(&mut self, gate: &mut [f32], up: &[f32]) -> Result<(), Self::Error> {
        let _ = (gate, up);
        Err(ErrorKind::UnsupportedType.into())
    }

    /// Quantizes a KV block (`src`, position-major) to `bits` per element
    /// in `groups` into `dst` (exactly [`KvGroups::packed_len`] bytes).
    fn kv_quantize(
        &mut self,
        src: &[f32],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [u8],
    ) -> Result<(), Self::Error>;

    /// Inverse of [`kv_quantize`](Compute::kv_quantize).
    fn kv_dequantize(
        &mut self,
        src: &[u8],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// The CRCs of `data` cut into `crcs.len()` consecutive pieces of
    /// `piece` bytes (the last one whatever remains), each by `crc`.
    ///
    /// Every streamed read is checked against the CRCs recorded at load
    /// before it is used, which is a CRC over tens of MiB a token on the
    /// decode thread while the compute threads wait for it; a backend with
    /// threads computes the pieces in parallel. The provided version
    /// computes them one after another.
    fn checksums(
        &mut self,
        data: &[u8],
        piece: usize,
        crc: fn(&[u8]) -> u32,
        crcs: &mut [u32],
    ) -> Result<(), Self::Error> {
        if piece == 0 || data.len().div_ceil(piece) != crcs.len() {
            return Err(ErrorKind::ShapeMismatch.into());
        }
        for (c, p) in crcs.iter_mut().zip(data.chunks(piece)) {
            *c = crc(p);
        }
        Ok(())
    }

    /// Decodes every piece of a coded chain ([`Piece::decode`]), each with
    /// its own outcome, which the caller reads after.
    ///
    /// A streamed coded matrix is decoded on the decode thread as the ring
    /// hands it out, while the compute threads wait; a chain of several
    /// units lets a backend with threads decode them in parallel, each
    /// thread with a [`Scratch`] of its own. The provided version decodes
    /// them one after another with `scratch`.
    fn decode_pieces(
        &mut self,
        pieces: &mut [Piece<'_>],
        verify: Verify,
        scratch: &mut Scratch,
    ) -> Result<(), Self::Error> {
        for p in pieces {
            p.decode(scratch, verify);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shape_check() {
        let data = [0u8; 2 * 20];
        let m = QuantMatrix {
            dtype: DType::Q4_1,
            rows: 2,
            cols: 32,
            data: &data,
        };
        assert_eq!(m.check(), Ok(()));
        let m = QuantMatrix { rows: 3, ..m };
        assert_eq!(m.check(), Err(ErrorKind::ShapeMismatch));
        let m = QuantMatrix {
            cols: 33,
            rows: 2,
            ..m
        };
        assert_eq!(m.check(), Err(ErrorKind::ShapeMismatch));
    }
}
