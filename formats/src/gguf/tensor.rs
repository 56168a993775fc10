//! Tensor infos: name, shape, type and where the data is.
//!
//! A tensor info in the file is: name (GGUF string), `u32` dimension count,
//! that many `u64` dimensions (fastest-varying first, so `dims[0]` is the row
//! length), `u32` ggml type id, and a `u64` offset relative to the start of
//! the data section. [`TensorInfo`] turns the offset into an absolute file
//! offset and adds the byte length, both checked against the file.

use core::fmt;

use super::cursor::Cursor;
use super::error::{GgufError, Item, Name};
use super::MAX_DIMS;
use crate::DType;

/// A tensor's shape: up to [`MAX_DIMS`] sizes, `dims[0]` varying fastest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dims {
    sizes: [u64; MAX_DIMS],
    n: u8,
}

impl Dims {
    /// A shape from its sizes, or `None` for more than [`MAX_DIMS`] of them.
    pub fn new(sizes: &[u64]) -> Option<Dims> {
        let mut d = Dims {
            sizes: [1; MAX_DIMS],
            n: 0,
        };
        d.sizes.get_mut(..sizes.len())?.copy_from_slice(sizes);
        // `sizes.len() <= MAX_DIMS = 4` here.
        d.n = sizes.len() as u8;
        Some(d)
    }

    /// The sizes as stored (no padding).
    pub fn as_slice(&self) -> &[u64] {
        self.sizes.get(..usize::from(self.n)).unwrap_or(&[])
    }

    /// The sizes padded with 1s to [`MAX_DIMS`], as ggml sees them.
    pub fn padded(&self) -> [u64; MAX_DIMS] {
        self.sizes
    }

    /// Number of stored dimensions.
    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    /// `true` for a zero-dimensional (scalar) shape.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Elements in a row (`dims[0]`, or 1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.sizes[0]
    }

    /// Number of rows (product of every dimension but the first).
    pub fn rows(&self) -> Option<u64> {
        self.sizes[1..]
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Total elements, or `None` on overflow.
    pub fn elements(&self) -> Option<u64> {
        self.rows()?.checked_mul(self.row_len())
    }
}

impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// One tensor of the file, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// Name, e.g. `blk.0.ffn_up.weight`.
    pub name: &'a str,
    /// Element encoding.
    pub dtype: DType,
    /// Shape, `dims[0]` (the row length) varying fastest.
    pub dims: Dims,
    /// Absolute byte offset of the data in the file (a multiple of the
    /// file's alignment).
    pub offset: u64,
    /// Bytes of data.
    pub len_bytes: u64,
}

impl TensorInfo<'_> {
    /// Bytes of one row (`dims[0]` elements).
    pub fn row_bytes(&self) -> u64 {
        // Validated at parse time; the fallback keeps this total.
        self.dtype.row_bytes(self.dims.row_len()).unwrap_or(0)
    }
}

/// A tensor info as laid out in the file, before its offset is resolved.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawInfo<'a> {
    pub(crate) name: &'a str,
    pub(crate) dtype: DType,
    pub(crate) dims: Dims,
    /// Offset relative to the data section.
    pub(crate) rel_offset: u64,
    pub(crate) len_bytes: u64,
}

/// Read and check one tensor info (everything that does not need the data
/// section's position). `index` is only used to name the tensor in errors
/// before its name is known.
pub(crate) fn read_info<'a>(c: &mut Cursor<'a>, index: u64) -> Result<RawInfo<'a>, GgufError> {
    let unnamed = Item::TensorInfo { index, name: None };
    let name = c.string().map_err(|e| e.within(unnamed))?;
    let named = Item::TensorInfo {
        index,
        name: Some(Name::new(name)),
    };
    let tensor = Name::new(name);

    let n_dims = c.u32().map_err(|e| e.within(named))?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::TooManyDims { tensor, n_dims });
    }
    let mut sizes = [1u64; MAX_DIMS];
    for size in sizes.iter_mut().take(n_dims as usize) {
        *size = c.u64().map_err(|e| e.within(named))?;
    }
    let dims = Dims::new(sizes.get(..n_dims as usize).unwrap_or(&[]))
        .ok_or(GgufError::TooManyDims { tensor, n_dims })?;

    let code = c.u32().map_err(|e| e.within(named))?;
    let dtype = DType::from_code(code).ok_or(GgufError::UnknownType { tensor, code })?;
    let rel_offset = c.u64().map_err(|e| e.within(named))?;

    // Rows are dequantized independently, so each must be whole blocks
    // (stricter than "the whole tensor is whole blocks", and what ggml checks).
    if dims.row_len() % dtype.block_elems() as u64 != 0 {
        return Err(GgufError::PartialBlock {
            tensor,
            dtype,
            row_len: dims.row_len(),
        });
    }
    let row_bytes = dtype
        .row_bytes(dims.row_len())
        .ok_or(GgufError::SizeOverflow { tensor })?;
    let len_bytes = dims
        .rows()
        .and_then(|rows| rows.checked_mul(row_bytes))
        .ok_or(GgufError::SizeOverflow { tensor })?;
    Ok(RawInfo {
        name,
        dtype,
        dims,
        rel_offset,
        len_bytes,
    })
}

/// Place a raw info in the file: check alignment, order and bounds and make
/// the offset absolute. `previous_end` is where the previous tensor's data
/// ends, relative to the data section.
pub(crate) fn place<'a>(
    raw: RawInfo<'a>,
    data_start: u64,
    alignment: u32,
    file_len: u64,
    previous_end: u64,
) -> Result<TensorInfo<'a>, GgufError> {
    let tensor = Name::new(raw.name);
    if !raw.rel_offset.is_multiple_of(u64::from(alignment.max(1))) {
        return Err(GgufError::MisalignedTensor {
            tensor,
            offset: raw.rel_offset,
            alignment,
        });
    }
    if raw.rel_offset < previous_end {
        return Err(GgufError::TensorOverlap {
            tensor,
            offset: raw.rel_offset,
            previous_end,
        });
    }
    let out_of_bounds = GgufError::TensorOutOfBounds {
        tensor,
        offset: data_start.saturating_add(raw.rel_offset),
        len: raw.len_bytes,
        file_len,
    };
    let offset = data_start
        .checked_add(raw.rel_offset)
        .ok_or(out_of_bounds)?;
    match offset.checked_add(raw.len_bytes) {
        Some(end) if end <= file_len => Ok(TensorInfo {
            name: raw.name,
            dtype: raw.dtype,
            dims: raw.dims,
            offset,
            len_bytes: raw.len_bytes,
        }),
        _ => Err(out_of_bounds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::ErrorKind;

    #[test]
    fn dims_pad_with_ones() {
        let d = Dims::new(&[576, 1536]).unwrap();
        assert_eq!(d.as_slice(), &[576, 1536]);
        assert_eq!(d.padded(), [576, 1536, 1, 1]);
        assert_eq!(d.row_len(), 576);
        assert_eq!(d.rows(), Some(1536));
        assert_eq!(d.elements(), Some(576 * 1536));
        let scalar = Dims::new(&[]).unwrap();
        assert!(scalar.is_empty());
        assert_eq!(scalar.elements(), Some(1));
        assert!(Dims::new(&[1, 2, 3, 4, 5]).is_none());
        let huge = Dims::new(&[u64::MAX, 2]).unwrap();
        assert_eq!(huge.elements(), None);
    }

    fn info(name: &str, dims: &[u64], code: u32, offset: u64) -> [u8; 128] {
        let mut b = [0u8; 128];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            b[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&(name.len() as u64).to_le_bytes());
        put(name.as_bytes());
        put(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            put(&d.to_le_bytes());
        }
        put(&code.to_le_bytes());
        put(&offset.to_le_bytes());
        b
    }

    #[test]
    fn reads_a_q4_1_matrix() {
        let b = info("w", &[64, 3], 3, 32);
        let raw = read_info(&mut Cursor::at(&b, 0), 0).unwrap();
        assert_eq!(raw.dtype, DType::Q4_1);
        assert_eq!(raw.len_bytes, 3 * 2 * 20);
        let placed = place(raw, 96, 32, 96 + 32 + 120, 0).unwrap();
        assert_eq!(placed.offset, 128);
        assert_eq!(placed.row_bytes(), 40);
        // One byte short of the file.
        let e = place(raw, 96, 32, 96 + 32 + 119, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TensorOutOfBounds);
    }

    #[test]
    fn rejects_bad_infos() {
        let b = info("w", &[33], 2, 0);
        let e = read_info(&mut Cursor::at(&b, 0), 0).unwrap_err();
        assert_eq!(
            e,
            GgufError::PartialBlock {
                tensor: Name::new("w"),
                dtype: DType::Q4_0,
                row_len: 33
            }
        );
        let b = info("w", &[32], 15, 0);
        let e = read_info(&mut Cursor::at(&b, 0), 0).unwrap_err();
        assert_eq!(
            e,
            GgufError::UnknownType {
                tensor: Name::new("w"),
                code: 15
            }
        );
        let b = info("w", &[1, 1, 1, 1, 1], 0, 0);
        let e = read_info(&mut Cursor::at(&b, 0), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooManyDims);
        let b = info("w", &[u64::MAX / 2, 4], 0, 0);
        let e = read_info(&mut Cursor::at(&b, 0), 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SizeOverflow);
        let b = info("w", &[32], 0, 8);
        let raw = read_info(&mut Cursor::at(&b, 0), 0).unwrap();
        assert_eq!(
            place(raw, 64, 32, 1000, 0).unwrap_err().kind(),
            ErrorKind::MisalignedTensor
        );
        let b = info("w", &[32], 0, 32);
        let raw = read_info(&mut Cursor::at(&b, 0), 0).unwrap();
        assert_eq!(
            place(raw, 64, 32, 1000, 64).unwrap_err().kind(),
            ErrorKind::TensorOverlap
        );
        let b = info("w", &[32], 0, u64::MAX - 31);
        let raw = read_info(&mut Cursor::at(&b, 0), 0).unwrap();
        assert_eq!(
            place(raw, 64, 32, 1000, 0).unwrap_err().kind(),
            ErrorKind::TensorOutOfBounds
        );
    }

    #[test]
    fn truncation_names_the_tensor_once_known() {
        let b = info("blk.0.attn_q.weight", &[32, 32], 0, 0);
        // Cut inside the dimensions.
        let cut = &b[..8 + 19 + 4 + 3];
        let e = read_info(&mut Cursor::at(cut, 0), 5).unwrap_err();
        assert_eq!(
            e,
            GgufError::Truncated {
                offset: 31,
                item: Item::TensorInfo {
                    index: 5,
                    name: Some(Name::new("blk.0.attn_q.weight"))
                }
            }
        );
        // Cut inside the name.
        let e = read_info(&mut Cursor::at(&b[..12], 0), 5).unwrap_err();
        assert_eq!(
            e,
            GgufError::Truncated {
                offset: 8,
                item: Item::TensorInfo {
                    index: 5,
                    name: None
                }
            }
        );
    }
}
