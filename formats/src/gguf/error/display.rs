//! What a [`GgufError`] says to a person: the problem, and where (the
//! key, tensor or byte offset its variant carries).

use core::fmt;

use super::*;

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::BadMagic { found } => write!(
                f,
                "not a GGUF file: magic is {:?}, expected \"GGUF\"",
                core::str::from_utf8(found).unwrap_or("(not text)")
            ),
            GgufError::UnsupportedVersion { version: 1 } => {
                f.write_str("GGUF version 1 is not supported (only versions 2 and 3)")
            }
            GgufError::UnsupportedVersion { version } => write!(
                f,
                "GGUF version {version} is not supported (only versions 2 and 3)"
            ),
            GgufError::ByteOrder { version } => write!(
                f,
                "GGUF version field is {version:#x}: a big-endian file, and lode reads only little-endian GGUF"
            ),
            GgufError::Truncated { offset, item } => {
                write!(f, "file ends early: {item} reads past the end (at byte {offset})")
            }
            GgufError::BadUtf8 { offset, item } => {
                write!(f, "{item}: string at byte {offset} is not valid UTF-8")
            }
            GgufError::BadValueType { offset, code, item } => write!(
                f,
                "{item}: unknown metadata value type {code} at byte {offset}"
            ),
            GgufError::BadBool { offset, byte, item } => write!(
                f,
                "{item}: boolean at byte {offset} is {byte}, expected 0 or 1"
            ),
            GgufError::TooDeep { offset, item } => write!(
                f,
                "{item}: arrays nested more than {} deep at byte {offset}",
                super::super::MAX_ARRAY_DEPTH
            ),
            GgufError::BadAlignment { alignment } => write!(
                f,
                "general.alignment is {alignment}, which is not a power of two"
            ),
            GgufError::TooManyDims { tensor, n_dims } => write!(
                f,
                "tensor '{tensor}' has {n_dims} dimensions, at most {} are allowed",
                super::super::MAX_DIMS
            ),
            GgufError::UnknownType { tensor, code } => match ggml_type_name(*code) {
                Some(name) => write!(
                    f,
                    "tensor '{tensor}' has ggml type {name} (id {code}), which lode does not read"
                ),
                None => write!(f, "tensor '{tensor}' has unknown ggml type id {code}"),
            },
            GgufError::PartialBlock {
                tensor,
                dtype,
                row_len,
            } => write!(
                f,
                "tensor '{tensor}': row of {row_len} elements is not a whole number of {}-element {} blocks",
                dtype.block_elems(),
                dtype.name()
            ),
            GgufError::SizeOverflow { tensor } => {
                write!(f, "tensor '{tensor}': size overflows 64 bits")
            }
            GgufError::TensorOutOfBounds {
                tensor,
                offset,
                len,
                file_len,
            } => write!(
                f,
                "tensor '{tensor}': {len} bytes at offset {offset} reach past the end of the {file_len}-byte file"
            ),
            GgufError::MisalignedTensor {
                tensor,
                offset,
                alignment,
            } => write!(
                f,
                "tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}"
            ),
            GgufError::TensorOverlap {
                tensor,
                offset,
                previous_end,
            } => write!(
                f,
                "tensor '{tensor}': data offset {offset} is before the end of the previous tensor's data ({previous_end})"
            ),
            GgufError::MissingKey { key } => write!(f, "metadata key '{key}' is missing"),
            GgufError::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "metadata key '{key}' holds a {}, expected {expected}",
                found.name()
            ),
            GgufError::BadValue { key, reason } => {
                write!(f, "metadata key '{key}': {reason}")
            }
            GgufError::NotLlama { found } => write!(
                f,
                "general.architecture is '{found}', but this needs a 'llama' model (lode runs 'llama', and 'gemma3' dense from a GGUF)"
            ),
            GgufError::MissingTensor { tensor } => write!(f, "tensor '{tensor}' is missing"),
            GgufError::BadShape {
                tensor,
                dim,
                found,
                expected,
            } => write!(
                f,
                "tensor '{tensor}': dimension {dim} is {found}, expected {expected}"
            ),
            GgufError::RowLength { dtype, elems, bytes } => write!(
                f,
                "{} row: {bytes} encoded bytes do not hold exactly {elems} elements",
                dtype.name()
            ),
            GgufError::RowOutOfRange { tensor, row, rows } => write!(
                f,
                "tensor '{tensor}' has {rows} rows, there is no row {row}"
            ),
        }
    }
}
