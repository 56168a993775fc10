//! The encoder of `lode_kernel::codec`: a GGUF tensor's raw block bytes
//! (or any run of whole blocks) into one coded unit that the kernel
//! decodes back to the same bytes. The byte layout is specified in
//! `kernel/src/codec/CODEC.md`; the encoder writes a CRC32C over the whole
//! unit so a decoder needs no checksum from its caller.

mod book;
mod freq;
mod rans;
mod section;

use lode_formats::DType;
use lode_kernel::codec::{fields, unit_crc, Role, SectionKind, CRC_AT, MAGIC, VERSION, VERSION_1};
use lode_kernel::limits::CODEC_MAX_PIECES;

pub use freq::{coded_bits, normalize};

/// Why blocks could not be coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The codec does not take this block type.
    UnsupportedType(DType),
    /// The bytes are not whole blocks of the type.
    PartialBlock {
        /// Bytes given.
        len: usize,
        /// Bytes a block takes.
        block: usize,
    },
    /// More blocks or bytes than the header's u32 fields hold.
    TooLarge,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::UnsupportedType(d) => write!(f, "the codec does not take {}", d.name()),
            EncodeError::PartialBlock { len, block } => {
                write!(f, "{len} bytes are not whole blocks of {block}")
            }
            EncodeError::TooLarge => write!(f, "too many blocks for one coded unit"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// What one section of a unit cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SectionStat {
    /// The field it codes.
    pub role: Role,
    /// How it is coded.
    pub kind: SectionKind,
    /// Bytes of the field as stored in the blocks.
    pub raw_bytes: usize,
    /// Bytes of the section, its header and tables included.
    pub coded_bytes: usize,
}

/// A coded unit and what each section cost.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The unit's bytes.
    pub bytes: Vec<u8>,
    /// One entry per field, in block order.
    pub sections: Vec<SectionStat>,
}

/// Which fields a unit codes: the trade between bytes and decode speed.
///
/// A Q4 block's 4-bit values carry 3.85 of their 4 bits, so coding them
/// saves about 4% of their bytes at most of the decode time (one rANS
/// symbol a byte), while its f16 scales and minimums code to about half
/// at two symbols a block. Where decoding competes with the disk for time,
/// coding only the f16 fields keeps most of the gain at a fraction of
/// the cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Every field coded where that makes it smaller.
    Smallest,
    /// Only the f16 fields (scales, minimums); byte fields stored raw.
    FloatsOnly,
}

/// Codes the blocks `data` of type `dtype` as one unit, every field the
/// smallest way ([`Coding::Smallest`]).
pub fn encode(dtype: DType, data: &[u8]) -> Result<Encoded, EncodeError> {
    encode_with(dtype, data, Coding::Smallest)
}

/// Codes the blocks `data` of type `dtype` as one unit, coding the fields
/// `coding` says.
pub fn encode_with(dtype: DType, data: &[u8], coding: Coding) -> Result<Encoded, EncodeError> {
    encode_version(dtype, data, coding, VERSION)
}

/// [`encode_with`] writing a unit of the codec's first version, whose f16
/// codebooks are the 16-bit kind (as images before format 1.6 hold them).
pub fn encode_v1(dtype: DType, data: &[u8], coding: Coding) -> Result<Encoded, EncodeError> {
    encode_version(dtype, data, coding, VERSION_1)
}

/// [`encode_with`] writing a unit of the codec's version `version`
/// ([`VERSION`], or [`VERSION_1`] for readers older than image format
/// 1.6; any other is taken as [`VERSION`]).
pub fn encode_version(
    dtype: DType,
    data: &[u8],
    coding: Coding,
    version: u8,
) -> Result<Encoded, EncodeError> {
    let version = if version == VERSION_1 {
        VERSION_1
    } else {
        VERSION
    };
    let fs = fields(dtype).ok_or(EncodeError::UnsupportedType(dtype))?;
    let block = dtype.block_bytes();
    if !data.len().is_multiple_of(block) {
        return Err(EncodeError::PartialBlock {
            len: data.len(),
            block,
        });
    }
    let blocks = u32::try_from(data.len() / block).map_err(|_| EncodeError::TooLarge)?;
    let mut bytes = Vec::with_capacity(data.len() + 64);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&[version, dtype.code() as u8, fs.len() as u8, 0]);
    bytes.extend_from_slice(&blocks.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]); // unit length and CRC, below
    let mut sections = Vec::with_capacity(fs.len());
    for f in fs {
        let code = f.f16 || coding == Coding::Smallest;
        let s = section::encode(f, block, data, code, version != VERSION_1);
        sections.push(SectionStat {
            role: f.role,
            kind: s.kind,
            raw_bytes: f.width * blocks as usize,
            coded_bytes: s.bytes.len(),
        });
        bytes.extend_from_slice(&s.bytes);
    }
    let len = u32::try_from(bytes.len()).map_err(|_| EncodeError::TooLarge)?;
    bytes[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = unit_crc(&bytes);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(Encoded { bytes, sections })
}

/// Codes the blocks `data` of type `dtype` as a chain of `pieces` units of
/// the codec's version `version` ([`encode_version`]) back to back (`CODEC.md`, "Chains"), each the next run of nearly equal
/// whole blocks, so that as many threads can decode them; fewer when
/// there are fewer blocks, and at most [`CODEC_MAX_PIECES`] (what a reader
/// takes). Each unit pays its own tables.
pub fn encode_chain(
    dtype: DType,
    data: &[u8],
    coding: Coding,
    pieces: usize,
    version: u8,
) -> Result<Vec<u8>, EncodeError> {
    let block = dtype.block_bytes();
    if !data.len().is_multiple_of(block) {
        return Err(EncodeError::PartialBlock {
            len: data.len(),
            block,
        });
    }
    let blocks = data.len() / block;
    let pieces = pieces.clamp(1, blocks.clamp(1, CODEC_MAX_PIECES));
    let mut out = Vec::with_capacity(data.len());
    let mut start = 0;
    for i in 1..=pieces {
        let end = blocks * i / pieces;
        let run = data.get(start * block..end * block).unwrap_or(&[]);
        out.extend_from_slice(&encode_version(dtype, run, coding, version)?.bytes);
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
