//! The coded unit's byte layout, shared by the decoder here and the
//! encoder in `lode-pack` so the two cannot drift (CODEC.md says the same
//! in prose, byte by byte).

use lode_formats::DType;

use crate::limits::{CODEC_LANES, CODEC_PROB_BITS};

/// The first four bytes of every coded unit ("lode quantized blocks, coded").
pub const MAGIC: [u8; 4] = *b"LQBC";
/// The format version the encoder writes (a decoder reads it and
/// [`VERSION_1`]): version 2 adds section kind 3, [`SectionKind::F16Direct`].
pub const VERSION: u8 = 2;
/// The first version, still read: every section kind but
/// [`SectionKind::F16Direct`].
pub const VERSION_1: u8 = 1;
/// Bytes of the unit header.
pub const HEADER_LEN: usize = 20;
/// Bytes of a section header.
pub const SECTION_HEADER_LEN: usize = 8;
/// Byte offset of the CRC32C field in the unit header; the CRC covers
/// every byte of the unit except these four.
pub const CRC_AT: usize = 16;
/// Sum of a frequency table: every rANS symbol's probability is
/// `freq / PROB_TOTAL`.
pub const PROB_TOTAL: u32 = 1 << CODEC_PROB_BITS;
/// Lower bound of a rANS state (and every lane's initial and final state):
/// 32-bit states renormalised 16 bits at a time live in `[L, 2^32)`.
pub const STATE_LOW: u32 = 1 << 16;
/// Bytes of a rANS stream's fixed part: its lanes' states and the length
/// of its word stream.
pub const RANS_FIXED_LEN: usize = 4 * CODEC_LANES + 4;

/// How a section codes its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum SectionKind {
    /// The field's bytes as stored, field by field (coding did not pay).
    Raw = 0,
    /// Every byte a rANS symbol with one frequency table.
    Bytes = 1,
    /// Each f16 an rANS-coded index into the unit's codebook of the
    /// field's distinct values, at 16-bit probabilities (version 1 units'
    /// codebooks; a decode searches the cumulative starts).
    F16 = 2,
    /// The same codebook at 12-bit probabilities (since version 2): a
    /// decode is one lookup in a table of `2^12` slots, which fits the
    /// L1 cache, at a cost measured under 0.1% of the field's bits.
    F16Direct = 3,
}

impl SectionKind {
    /// The kind with code `b`.
    pub const fn from_code(b: u8) -> Option<SectionKind> {
        match b {
            0 => Some(SectionKind::Raw),
            1 => Some(SectionKind::Bytes),
            2 => Some(SectionKind::F16),
            3 => Some(SectionKind::F16Direct),
            _ => None,
        }
    }
}

/// What a field of a block holds (for reports; coding depends on `f16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// The f16 scale `d`.
    Scale,
    /// The f16 minimum `m`.
    Min,
    /// The fifth bits of Q5 types (`qh`).
    HighBits,
    /// The quantized values (`qs`).
    Values,
}

/// One field of a block: where it sits and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Byte offset in the block.
    pub offset: usize,
    /// Bytes in the block.
    pub width: usize,
    /// A little-endian f16 (coded as a codebook when it pays),
    /// else bytes ([`SectionKind::Bytes`]).
    pub f16: bool,
    /// What it holds.
    pub role: Role,
}

const fn f16(offset: usize, role: Role) -> Field {
    Field {
        offset,
        width: 2,
        f16: true,
        role,
    }
}

const fn bytes(offset: usize, width: usize, role: Role) -> Field {
    Field {
        offset,
        width,
        f16: false,
        role,
    }
}

const Q4_0: [Field; 2] = [f16(0, Role::Scale), bytes(2, 16, Role::Values)];
const Q4_1: [Field; 3] = [
    f16(0, Role::Scale),
    f16(2, Role::Min),
    bytes(4, 16, Role::Values),
];
const Q5_0: [Field; 3] = [
    f16(0, Role::Scale),
    bytes(2, 4, Role::HighBits),
    bytes(6, 16, Role::Values),
];
const Q5_1: [Field; 4] = [
    f16(0, Role::Scale),
    f16(2, Role::Min),
    bytes(4, 4, Role::HighBits),
    bytes(8, 16, Role::Values),
];
const Q8_0: [Field; 2] = [f16(0, Role::Scale), bytes(2, 32, Role::Values)];

/// The fields of a block of `dtype`, in block order, or `None` for a type
/// the codec does not take (floats, the K-quants).
pub const fn fields(dtype: DType) -> Option<&'static [Field]> {
    match dtype {
        DType::Q4_0 => Some(&Q4_0),
        DType::Q4_1 => Some(&Q4_1),
        DType::Q5_0 => Some(&Q5_0),
        DType::Q5_1 => Some(&Q5_1),
        DType::Q8_0 => Some(&Q8_0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CODEC_MAX_FIELDS;

    /// Every layout tiles its block exactly, byte fields split evenly over
    /// the lanes (the decoder's fast path), within the field bound.
    #[test]
    fn layouts_tile_their_blocks() {
        for dt in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
        ] {
            let f = fields(dt).unwrap();
            assert!(f.len() <= CODEC_MAX_FIELDS);
            let mut at = 0;
            for x in f {
                assert_eq!(x.offset, at, "{dt:?}");
                assert!(x.f16 || x.width.is_multiple_of(CODEC_LANES));
                at += x.width;
            }
            assert_eq!(at, dt.block_bytes(), "{dt:?}");
        }
        assert!(fields(DType::F32).is_none());
        assert!(fields(DType::Q6_K).is_none());
    }
}
