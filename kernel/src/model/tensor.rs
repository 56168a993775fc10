//! Weight tensors: where they come from and where they live.
//!
//! A [`TensorSource`] hands out named tensors as borrowed bytes (a GGUF file
//! implements it; tests implement it over a few vectors). Once copied into
//! the arena a tensor is a [`TensorRef`]: a slot plus what the bytes mean.

use lode_formats::gguf::{Dims, Gguf, GgufError};
use lode_formats::DType;

use crate::arena::Slot;
use crate::compute::QuantMatrix;

use super::error::{EvalError, LoadError};
use super::view::Shared;

/// A tensor as its source stores it.
#[derive(Debug, Clone, Copy)]
pub struct RawTensor<'a> {
    /// Element encoding.
    pub dtype: DType,
    /// Shape, `dims[0]` (the row length) first, as GGUF writes it.
    pub dims: Dims,
    /// The encoded elements, rows back to back.
    pub data: &'a [u8],
}

/// Where weights are loaded from. Only loading and planning ask for
/// tensors, so a source fails with a [`LoadError`] (a file that cannot be
/// read is [`LoadError::Format`]).
pub trait TensorSource {
    /// The tensor called `name` (GGUF naming: `blk.3.attn_q.weight`), or
    /// `None` when there is none.
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError>;
}

impl TensorSource for Gguf<'_> {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
        let Some(info) = Gguf::tensor(self, name) else {
            return Ok(None);
        };
        let data = self
            .data(&info)
            .map_err(|e: GgufError| LoadError::Format(e))?;
        Ok(Some(RawTensor {
            dtype: info.dtype,
            dims: info.dims,
            data,
        }))
    }
}

/// A tensor in an arena slot: `rows` rows of `cols` elements of `dtype`,
/// rows back to back from byte `offset` of the slot. A slot may hold several
/// tensors (a streamed layer is read as one extent), hence the offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorRef {
    /// The slot holding the bytes.
    pub slot: Slot,
    /// Where the tensor starts inside the slot.
    pub offset: usize,
    /// Element encoding (`F32` for norm weights, converted at load).
    pub dtype: DType,
    /// Number of rows (outputs of a product).
    pub rows: usize,
    /// Elements per row (inputs of a product).
    pub cols: usize,
}

/// Views of the tensor, taken while evaluating: its shape was checked when
/// it was loaded, so a view that does not fit its slot is an
/// [`EvalError`] (a compute shape mismatch, or the arena's refusal).
impl TensorRef {
    /// The tensor as a matrix over the step's shared memory.
    pub fn matrix<'m>(&self, mem: &Shared<'m>) -> Result<QuantMatrix<'m>, EvalError> {
        Ok(QuantMatrix {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            data: self.bytes(mem)?,
        })
    }

    /// Bytes of the whole tensor: `rows * row_bytes` from `offset`.
    pub fn len(&self) -> usize {
        self.row_bytes().saturating_mul(self.rows)
    }

    /// `true` for a tensor of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's bytes.
    pub fn bytes<'m>(&self, mem: &Shared<'m>) -> Result<&'m [u8], EvalError> {
        let end = self.offset.checked_add(self.len()).ok_or_else(shape)?;
        mem.get(self.slot)?.get(self.offset..end).ok_or_else(shape)
    }

    /// The tensor's values when it is stored as f32 (norm weights).
    pub fn floats<'m>(&self, mem: &Shared<'m>) -> Result<&'m [f32], EvalError> {
        if self.dtype != DType::F32 {
            return Err(EvalError::Compute(
                crate::compute::ErrorKind::UnsupportedType,
            ));
        }
        Ok(super::view::f32s(self.bytes(mem)?)?)
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.dtype, self.cols).unwrap_or(0)
    }

    /// The encoded row `row` (an embedding lookup).
    pub fn row<'m>(&self, mem: &Shared<'m>, row: usize) -> Result<&'m [u8], EvalError> {
        let rb = self.row_bytes();
        if row >= self.rows {
            return Err(shape());
        }
        self.bytes(mem)?
            .get(row * rb..(row + 1) * rb)
            .ok_or_else(shape)
    }
}

fn shape() -> EvalError {
    EvalError::Compute(crate::compute::ErrorKind::ShapeMismatch)
}

/// Whether lode's compute multiplies by tensors of `dtype` (and decodes
/// their rows). Every type the formats read has products now (Gemma 3's
/// Q5_0, Q4_K and Q6_K included); the check stays so that a type the
/// formats learn to read before compute can multiply by it is refused at
/// load, by name, not at its first token.
pub const fn computable(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32
            | DType::F16
            | DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q8_0
            | DType::Q4_K
            | DType::Q6_K
    )
}

/// What a load says of a tensor whose type has no products.
pub(crate) const NOT_COMPUTABLE: &str =
    "is of a type lode reads but cannot compute with yet (no products for it)";

/// Bytes of a row of `cols` elements of `dtype`, if whole blocks.
pub fn row_bytes(dtype: DType, cols: usize) -> Option<usize> {
    dtype
        .row_bytes(cols as u64)
        .and_then(|b| usize::try_from(b).ok())
}
