//! How a tensor's data is stored (since 1.4, FORMAT.md "Tensor table"):
//! raw blocks, one unit of lode's weight codec, or a chain of them (since
//! 1.5), or a chain that may hold the codec's version 2 units (since 1.6);
//! and reading that from a tensor record's `dtype` field.

use crate::DType;

use super::error::{err, ErrorKind, ImageError, Location};
use super::layout::{MINOR_CHAIN, MINOR_CODEC_V2, MINOR_CODED, TENSOR_CODEC_SHIFT};
use super::tables::image_dtype;

/// How a tensor's data is stored (FORMAT.md, "Tensor table").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorCodec {
    /// The blocks as they are: `length` is `row_bytes * rows`.
    Raw,
    /// One unit of lode's weight codec (`kernel/src/codec/CODEC.md`,
    /// since 1.4): its blocks decode to `row_bytes * rows` bytes.
    Weights,
    /// Units of lode's weight codec back to back (since 1.5), each
    /// decoding the next run of the tensor's blocks, so several threads
    /// decode one tensor (`CODEC.md`, "Chains").
    Chain,
    /// One to sixteen units back to back, each of the weight codec's
    /// version 1 or 2 (since 1.6): version 2 adds the codebook that decodes
    /// in one lookup, which a 1.5 reader's decoder does not know, so it
    /// must refuse the tensor by its codec rather than fail mid-run.
    ChainV2,
}

impl TensorCodec {
    /// Its code in the tensor table (bits 16 to 23 of `dtype`).
    pub const fn code(self) -> u32 {
        match self {
            TensorCodec::Raw => 0,
            TensorCodec::Weights => 1,
            TensorCodec::Chain => 2,
            TensorCodec::ChainV2 => 3,
        }
    }

    /// The codec of `code`, if this reader knows it.
    pub const fn from_code(code: u32) -> Option<TensorCodec> {
        match code {
            0 => Some(TensorCodec::Raw),
            1 => Some(TensorCodec::Weights),
            2 => Some(TensorCodec::Chain),
            3 => Some(TensorCodec::ChainV2),
            _ => None,
        }
    }

    /// Whether the weight codec takes blocks of `dtype` (its block types).
    pub const fn takes(dtype: DType) -> bool {
        matches!(
            dtype,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0
        )
    }
}

/// Bytes of the smallest coded unit (its header).
pub(crate) const CODED_UNIT_MIN: u64 = 20;

/// A tensor record's `dtype` field: the element type in bits 0 to 15, the
/// codec in bits 16 to 23 (since 1.4; a coded tensor must be of a type the
/// codec takes), bits 24 to 31 zero.
pub(crate) fn tensor_dtype(
    field: u32,
    minor: u16,
    at: Location,
) -> Result<(DType, TensorCodec), ImageError> {
    let dtype = image_dtype(field & 0xFFFF, minor).ok_or(err(
        ErrorKind::Malformed,
        at,
        "dtype code unknown in this image's version",
    ))?;
    let code = field >> TENSOR_CODEC_SHIFT;
    if code != 0 && minor < MINOR_CODED {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "coded tensor in an image older than 1.4",
        ));
    }
    if code == TensorCodec::Chain.code() && minor < MINOR_CHAIN {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "chain-coded tensor in an image older than 1.5",
        ));
    }
    if code == TensorCodec::ChainV2.code() && minor < MINOR_CODEC_V2 {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "tensor coded with the weight codec's version 2 in an image older than 1.6",
        ));
    }
    let codec = TensorCodec::from_code(code).ok_or(err(
        ErrorKind::UnsupportedCodec,
        at,
        "tensor codec unknown to this reader (it knows 0, raw, 1, lode's weight codec, 2, a chain of its units, and 3, a chain that may hold its version 2 units)",
    ))?;
    if codec != TensorCodec::Raw && !TensorCodec::takes(dtype) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "coded tensor of a type the weight codec does not take",
        ));
    }
    Ok((dtype, codec))
}
