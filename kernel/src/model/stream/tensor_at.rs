//! One tensor of an image as the streaming layout sees it: where it is on
//! the device (and, coded, where its unit is), its shape, and the lookups
//! that check a tensor against the model's hyper-parameters.

use lode_formats::image::{Image, TensorCodec};
use lode_formats::DType;

use crate::model::error::LoadError;

/// One tensor's place on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorAt {
    /// Absolute device offset (block-aligned in an image). For a coded
    /// tensor, where its decoded bytes sit in its region's decoded layout
    /// (what a slot holding the region is laid out by); its bytes on the
    /// device are `stored`.
    pub offset: u64,
    /// Element type.
    pub dtype: DType,
    /// Rows (outputs).
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Bytes: `rows * row_bytes(dtype, cols)`.
    pub len: usize,
    /// Index in the image's tensor table (for its CRC).
    pub index: usize,
    /// Where a coded tensor's unit is on the device (`None`: raw, its
    /// bytes are `len` at `offset`).
    pub stored: Option<StoredAt>,
}

/// A coded tensor's bytes on the device: one unit of the weight codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAt {
    /// Absolute device offset (block-aligned).
    pub offset: u64,
    /// Bytes of the unit.
    pub len: usize,
}

impl TensorAt {
    /// What a read of the tensor fetches: its device offset and bytes.
    pub fn device(&self) -> (u64, usize) {
        match self.stored {
            Some(s) => (s.offset, s.len),
            None => (self.offset, self.len),
        }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.len.checked_div(self.rows).unwrap_or(0)
    }
}

pub(super) fn find(
    img: &Image<'_>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<TensorAt, LoadError> {
    let t = find_any(img, name, rows, cols)?;
    if t.stored.is_some() {
        // Only a dense layer's FFN matrices, each a unit of its own, are
        // decoded as they are read (`ffn_region::dense_region`).
        return Err(LoadError::tensor(
            name,
            "is stored coded (lode pack --compress), which this runtime decodes only for a \
             dense layer's FFN matrices",
        ));
    }
    Ok(t)
}

/// [`find`], a coded tensor included: its `stored` says where its unit is
/// and its `offset` is the device offset until a caller lays it out.
pub(super) fn find_any(
    img: &Image<'_>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<TensorAt, LoadError> {
    let (index, t) = img
        .tensor_by_name(name)
        .ok_or_else(|| LoadError::tensor(name, "missing from the image"))?;
    let dims = t.shape.dims();
    let want: &[u64] = if rows == 1 {
        &[cols as u64]
    } else {
        &[cols as u64, rows as u64]
    };
    if dims != want {
        return Err(LoadError::tensor(
            name,
            "has a different shape than the model's hyper-parameters imply",
        ));
    }
    if !crate::model::tensor::computable(t.dtype) {
        return Err(LoadError::tensor(
            name,
            crate::model::tensor::NOT_COMPUTABLE,
        ));
    }
    let too_large = || LoadError::tensor(name, "is too large for this machine");
    let len = usize::try_from(t.data_len()).map_err(|_| too_large())?;
    let rb = crate::model::tensor::row_bytes(t.dtype, cols)
        .ok_or_else(|| LoadError::tensor(name, "rows are not whole blocks of its type"))?;
    if rb.checked_mul(rows) != Some(len) {
        return Err(LoadError::tensor(
            name,
            "data length does not match its shape",
        ));
    }
    let stored = match t.codec {
        TensorCodec::Raw => None,
        _ => Some(StoredAt {
            offset: t.offset,
            len: usize::try_from(t.length).map_err(|_| too_large())?,
        }),
    };
    Ok(TensorAt {
        offset: t.offset,
        dtype: t.dtype,
        rows,
        cols,
        len,
        index,
        stored,
    })
}

pub(super) fn norm(img: &Image<'_>, name: &str, len: usize) -> Result<TensorAt, LoadError> {
    let t = find(img, name, 1, len)?;
    if t.dtype != DType::F32 {
        return Err(LoadError::tensor(
            name,
            "a norm must be stored as f32 to be streamed",
        ));
    }
    Ok(t)
}

pub(super) fn end_of(t: &TensorAt) -> u64 {
    t.offset.saturating_add(t.len as u64)
}
