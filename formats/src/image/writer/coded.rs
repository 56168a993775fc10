//! Coded tensors (since 1.4): a tensor stored as one unit of lode's weight
//! codec, or (since 1.5) a chain of units back to back, added coded or
//! coded in place by a packer's encoder (this crate cannot encode: the
//! codec lives in the kernel and the packer).

use std::borrow::Cow;
use std::string::String;
use std::vec::Vec;

use crate::DType;

use super::super::codec::TensorCodec;
use super::super::error::{ErrorKind, Location};
use super::super::layout::MAX_CHAIN_UNITS;
use super::super::model::Shape;
use super::{invalid, usize_to_u64, ImageBuilder, WriteError};

impl<'d> ImageBuilder<'d> {
    /// Add a tensor stored as lode's weight codec: `unit` is one unit
    /// (since 1.4) or several back to back (a chain, since 1.5) that
    /// `lode_pack::codec::encode` made of runs of the tensor's blocks.
    /// Every header must name `dtype`, the units' lengths must fill `unit`
    /// and their blocks the shape (the decoder checks the rest when the
    /// bytes are read).
    pub fn add_coded_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        dims: &[u64],
        unit: impl Into<Cow<'d, [u8]>>,
    ) -> Result<&mut Self, WriteError> {
        let unit = unit.into();
        let at = Location::Tensor(self.tensors.len());
        let decoded = Shape::new(dims).and_then(|s| s.byte_len(dtype));
        let Some(codec) = chain_codec(&unit, dtype, decoded) else {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "coded units do not hold the tensor's type and blocks",
            ));
        };
        self.push_tensor(name.into(), dtype, dims, unit, codec)
    }

    /// Replaces every raw tensor for which `code(name, dtype, data)` returns
    /// weight-codec units (one, or a chain) with them, checked as
    /// [`add_coded_tensor`](Self::add_coded_tensor) checks it. Returns the
    /// bytes of the tensors replaced, before and after.
    pub fn code_tensors(
        &mut self,
        mut code: impl FnMut(&str, DType, &[u8]) -> Option<Vec<u8>>,
    ) -> Result<(u64, u64), WriteError> {
        let (mut before, mut after) = (0u64, 0u64);
        for i in 0..self.tensors.len() {
            let t = &self.tensors[i];
            if t.codec != TensorCodec::Raw {
                continue;
            }
            let Some(unit) = code(&t.name, t.dtype, &t.data) else {
                continue;
            };
            let Some(codec) = chain_codec(&unit, t.dtype, t.shape.byte_len(t.dtype)) else {
                return Err(invalid(
                    ErrorKind::Malformed,
                    Location::Tensor(i),
                    "coded units do not hold the tensor's type and blocks",
                ));
            };
            before += usize_to_u64(t.data.len());
            after += usize_to_u64(unit.len());
            let t = &mut self.tensors[i];
            t.data = Cow::Owned(unit);
            t.codec = codec;
        }
        Ok((before, after))
    }
}

/// How `units` (weight-codec units back to back) store a tensor of
/// `dtype` blocks that decodes to `decoded` bytes, by their headers: with
/// any unit of the codec's version 2, [`TensorCodec::ChainV2`]; else one
/// unit is [`TensorCodec::Weights`], two to [`MAX_CHAIN_UNITS`] a
/// [`TensorCodec::Chain`]; `None` when they do not fill `units` and the
/// shape exactly with blocks of that type, or a unit has another version.
fn chain_codec(units: &[u8], dtype: DType, decoded: Option<u64>) -> Option<TensorCodec> {
    let (mut rest, mut blocks, mut n, mut v2) = (units, 0u64, 0usize, false);
    while !rest.is_empty() && n < MAX_CHAIN_UNITS {
        let h = coded_header(rest).filter(|h| h.dtype == dtype.code() && h.len >= 20)?;
        rest = rest.get(h.len..)?;
        blocks = blocks.checked_add(h.blocks)?;
        v2 |= h.version == 2;
        n += 1;
    }
    let bytes = blocks.checked_mul(dtype.block_bytes() as u64);
    let holds = rest.is_empty() && n > 0 && TensorCodec::takes(dtype) && decoded.is_some();
    match (holds && bytes == decoded, v2, n) {
        (true, true, _) => Some(TensorCodec::ChainV2),
        (true, false, 1) => Some(TensorCodec::Weights),
        (true, false, _) => Some(TensorCodec::Chain),
        (false, _, _) => None,
    }
}

/// What a weight-codec unit's header says of it.
struct UnitHeader {
    version: u8,
    dtype: u32,
    blocks: u64,
    len: usize,
}

/// A weight-codec unit's header (CODEC.md: magic `LQBC`, the version at
/// byte 4, the block type at 5, blocks at 8 and the length at 12), if
/// `unit` starts with one of version 1 or 2.
fn coded_header(unit: &[u8]) -> Option<UnitHeader> {
    let h = unit
        .get(..20)
        .filter(|h| h[..4] == *b"LQBC" && matches!(h[4], 1 | 2))?;
    let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    Some(UnitHeader {
        version: h[4],
        dtype: u32::from(h[5]),
        blocks: u64::from(u32_at(8)),
        len: u32_at(12) as usize,
    })
}
