//! Errors of the GGUF reader.
//!
//! One enum, [`GgufError`], whose variants carry the context a person needs to
//! find the problem (the metadata key or tensor name, the byte offset), and a
//! fieldless [`ErrorKind`] for code that only wants to branch on the category,
//! in the style of embedded-hal 1.0.
//!
//! Names are copied into a fixed inline buffer ([`Name`]) rather than borrowed
//! from the file, so an error is `'static`, can outlive the bytes it came from
//! and needs no allocator.

use super::value::ValueType;
use crate::DType;

mod display;
mod location;
mod type_names;

pub use location::{Item, Name, NAME_CAPACITY};
pub use type_names::ggml_type_name;

/// The category of a [`GgufError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The first four bytes are not `GGUF`.
    BadMagic,
    /// A GGUF version lode does not read (0, 1 or newer than 3).
    UnsupportedVersion,
    /// The file was written big-endian (or byte-swapped); lode reads little-endian GGUF.
    ByteOrder,
    /// The file ends inside a structure, or a count or length points past its end.
    Truncated,
    /// A key, tensor name or string value is not valid UTF-8.
    BadUtf8,
    /// A metadata value type code outside 0..=12.
    BadValueType,
    /// A boolean byte other than 0 or 1.
    BadBool,
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH).
    TooDeep,
    /// `general.alignment` is zero or not a power of two.
    BadAlignment,
    /// A tensor with more than [`MAX_DIMS`](super::MAX_DIMS) dimensions.
    TooManyDims,
    /// A tensor whose ggml type lode does not know.
    UnknownType,
    /// A tensor row that is not a whole number of blocks of its type.
    PartialBlock,
    /// A tensor's element or byte count overflows 64 bits.
    SizeOverflow,
    /// A tensor's data reaches past the end of the file.
    TensorOutOfBounds,
    /// A tensor's data offset is not a multiple of the alignment.
    MisalignedTensor,
    /// A tensor's data starts before the previous tensor's data ends.
    TensorOverlap,
    /// A required metadata key is absent.
    MissingKey,
    /// A metadata value has a different type than the caller asked for.
    WrongType,
    /// A metadata value is present but unusable (out of range, inconsistent).
    BadValue,
    /// `general.architecture` is not `llama`.
    NotLlama,
    /// A tensor the caller requires is absent.
    MissingTensor,
    /// A tensor has a different shape than required.
    BadShape,
    /// A dequantization buffer does not match the encoded row.
    RowLength,
    /// A row index past the last row of a tensor.
    RowOutOfRange,
}

/// Everything that can be wrong with a GGUF file or a request made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GgufError {
    /// The file does not start with `GGUF`.
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// Version 0, 1 (GGUF v1, which used 32-bit counts) or newer than 3.
    UnsupportedVersion {
        /// The version field as read.
        version: u32,
    },
    /// The version field reads as a byte-swapped small number: a big-endian file.
    ByteOrder {
        /// The version field as read (little-endian).
        version: u32,
    },
    /// The file ends, or a length or count points, past the last byte.
    Truncated {
        /// Byte offset of the read that did not fit.
        offset: u64,
        /// What was being read.
        item: Item,
    },
    /// A key, tensor name or string value is not UTF-8.
    BadUtf8 {
        /// Byte offset of the string's bytes.
        offset: u64,
        /// Where the string is.
        item: Item,
    },
    /// A metadata value type code that GGUF does not define.
    BadValueType {
        /// Byte offset of the type code.
        offset: u64,
        /// The code found.
        code: u32,
        /// Where it is.
        item: Item,
    },
    /// A boolean stored as a byte other than 0 or 1.
    BadBool {
        /// Byte offset of the boolean.
        offset: u64,
        /// The byte found.
        byte: u8,
        /// Where it is.
        item: Item,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH).
    TooDeep {
        /// Byte offset of the innermost array header.
        offset: u64,
        /// Where it is.
        item: Item,
    },
    /// `general.alignment` is zero or not a power of two.
    BadAlignment {
        /// The value found.
        alignment: u32,
    },
    /// A tensor with more than [`MAX_DIMS`](super::MAX_DIMS) dimensions.
    TooManyDims {
        /// The tensor.
        tensor: Name,
        /// The dimension count found.
        n_dims: u32,
    },
    /// A tensor of a ggml type lode cannot read.
    UnknownType {
        /// The tensor.
        tensor: Name,
        /// The ggml type id found.
        code: u32,
    },
    /// A tensor whose row length (first dimension) is not a whole number of blocks.
    PartialBlock {
        /// The tensor.
        tensor: Name,
        /// Its type.
        dtype: DType,
        /// Its row length in elements.
        row_len: u64,
    },
    /// A tensor's element count or byte length does not fit in 64 bits.
    SizeOverflow {
        /// The tensor.
        tensor: Name,
    },
    /// A tensor's data reaches past the end of the file.
    TensorOutOfBounds {
        /// The tensor.
        tensor: Name,
        /// Absolute offset of its data.
        offset: u64,
        /// Length of its data.
        len: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    MisalignedTensor {
        /// The tensor.
        tensor: Name,
        /// Its offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u32,
    },
    /// A tensor's data starts before the end of the previous tensor's data.
    TensorOverlap {
        /// The tensor.
        tensor: Name,
        /// Its offset relative to the data section.
        offset: u64,
        /// Where the previous tensor's data ends, relative to the data section.
        previous_end: u64,
    },
    /// A required key is absent.
    MissingKey {
        /// The key.
        key: Name,
    },
    /// A key holds a value of another type than requested.
    WrongType {
        /// The key.
        key: Name,
        /// What the caller accepts.
        expected: &'static str,
        /// The type found.
        found: ValueType,
    },
    /// A key's value is present but unusable.
    BadValue {
        /// The key.
        key: Name,
        /// Why.
        reason: &'static str,
    },
    /// `general.architecture` names another architecture.
    NotLlama {
        /// The architecture found.
        found: Name,
    },
    /// A required tensor is absent.
    MissingTensor {
        /// The tensor's name.
        tensor: Name,
    },
    /// A tensor's shape differs from the one the model's hyper-parameters imply.
    BadShape {
        /// The tensor.
        tensor: Name,
        /// First differing dimension (absent dimensions count as 1).
        dim: u8,
        /// Size of that dimension in the file.
        found: u64,
        /// Size it should have.
        expected: u64,
    },
    /// `dequantize_row` got an output length or input length that do not
    /// describe the same whole number of blocks.
    RowLength {
        /// The encoding.
        dtype: DType,
        /// Output elements requested.
        elems: usize,
        /// Encoded bytes supplied.
        bytes: usize,
    },
    /// A row index past the last row of a tensor.
    RowOutOfRange {
        /// The tensor.
        tensor: Name,
        /// The row asked for.
        row: u64,
        /// Rows the tensor has.
        rows: u64,
    },
}

impl GgufError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GgufError::BadMagic { .. } => ErrorKind::BadMagic,
            GgufError::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            GgufError::ByteOrder { .. } => ErrorKind::ByteOrder,
            GgufError::Truncated { .. } => ErrorKind::Truncated,
            GgufError::BadUtf8 { .. } => ErrorKind::BadUtf8,
            GgufError::BadValueType { .. } => ErrorKind::BadValueType,
            GgufError::BadBool { .. } => ErrorKind::BadBool,
            GgufError::TooDeep { .. } => ErrorKind::TooDeep,
            GgufError::BadAlignment { .. } => ErrorKind::BadAlignment,
            GgufError::TooManyDims { .. } => ErrorKind::TooManyDims,
            GgufError::UnknownType { .. } => ErrorKind::UnknownType,
            GgufError::PartialBlock { .. } => ErrorKind::PartialBlock,
            GgufError::SizeOverflow { .. } => ErrorKind::SizeOverflow,
            GgufError::TensorOutOfBounds { .. } => ErrorKind::TensorOutOfBounds,
            GgufError::MisalignedTensor { .. } => ErrorKind::MisalignedTensor,
            GgufError::TensorOverlap { .. } => ErrorKind::TensorOverlap,
            GgufError::MissingKey { .. } => ErrorKind::MissingKey,
            GgufError::WrongType { .. } => ErrorKind::WrongType,
            GgufError::BadValue { .. } => ErrorKind::BadValue,
            GgufError::NotLlama { .. } => ErrorKind::NotLlama,
            GgufError::MissingTensor { .. } => ErrorKind::MissingTensor,
            GgufError::BadShape { .. } => ErrorKind::BadShape,
            GgufError::RowLength { .. } => ErrorKind::RowLength,
            GgufError::RowOutOfRange { .. } => ErrorKind::RowOutOfRange,
        }
    }

    /// Attribute a low-level error (found while reading a value or a string)
    /// to the metadata entry or tensor info it occurred in.
    pub(crate) fn within(mut self, at: Item) -> GgufError {
        match &mut self {
            GgufError::Truncated { item, .. }
            | GgufError::BadUtf8 { item, .. }
            | GgufError::BadValueType { item, .. }
            | GgufError::BadBool { item, .. }
            | GgufError::TooDeep { item, .. }
                if *item == Item::Unknown =>
            {
                *item = at;
            }
            _ => {}
        }
        self
    }
}

/// `core::error::Error` is the same trait as `std::error::Error`, so this
/// also serves `std` users, without making the reader depend on `std`.
impl core::error::Error for GgufError {}

#[cfg(test)]
mod tests;
