//! Decoding a coded unit: the header, then each field's section into its
//! place in every block of the output.

use lode_formats::checksum::crc32c_digest;
use lode_formats::DType;

use crate::limits::{CODEC_LANES, CODEC_SYMBOLS};

use super::book::Book;
use super::error::DecodeError;
use super::layout::{
    fields, Field, SectionKind, CRC_AT, HEADER_LEN, MAGIC, RANS_FIXED_LEN, SECTION_HEADER_LEN,
    VERSION,
};
use super::rans::{Lanes, Table};
use super::reader::Reader;

/// What a decode needs besides its input and output: the byte rANS table
/// and the f16 codebook, about 48 KiB. Keep one per decoding thread (in an
/// arena slot or a static on a small target) and pass it to
/// [`decode_with`]; [`decode`] puts one on the stack.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    table: Table,
    book: Book,
}

/// Whether [`decode_with`] checks the unit's CRC32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Check it (the default): corrupt bytes are caught before decoding.
    Crc,
    /// Skip it, for bytes a caller has already checked (an image's check
    /// blocks cover a streamed unit). The decoder's own bounds and stream
    /// checks still run: corrupt input still never panics or writes out of
    /// bounds, but a flipped bit may decode to wrong weights.
    Trusted,
}

/// The unit header, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The block type.
    pub dtype: DType,
    /// Blocks in the unit.
    pub blocks: usize,
    /// Bytes of the whole unit.
    pub unit_len: usize,
    /// The stored CRC32C.
    pub crc: u32,
}

impl Header {
    /// Bytes the decoded blocks take.
    pub fn output_len(&self) -> usize {
        self.blocks * self.dtype.block_bytes()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses and checks the header of the unit at the start of `coded`
/// (without its CRC): the output length a caller must provide is
/// [`Header::output_len`].
pub fn header(coded: &[u8]) -> Result<Header, DecodeError> {
    let Some(h) = coded.get(..HEADER_LEN) else {
        return Err(DecodeError::Truncated {
            need: HEADER_LEN,
            have: coded.len(),
        });
    };
    if h[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if h[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion(h[4]));
    }
    let dtype = DType::from_code(u32::from(h[5]))
        .filter(|d| fields(*d).is_some())
        .ok_or(DecodeError::UnsupportedType(h[5]))?;
    if usize::from(h[6]) != fields(dtype).map_or(0, |f| f.len()) || h[7] != 0 {
        return Err(DecodeError::Corrupt("field count or reserved byte"));
    }
    let blocks = u32_at(h, 8) as usize;
    let unit_len = u32_at(h, 12) as usize;
    if unit_len < HEADER_LEN {
        return Err(DecodeError::Corrupt("unit shorter than its header"));
    }
    if blocks.checked_mul(dtype.block_bytes()).is_none() {
        return Err(DecodeError::Corrupt("block count overflows"));
    }
    Ok(Header {
        dtype,
        blocks,
        unit_len,
        crc: u32_at(h, CRC_AT),
    })
}

/// The CRC32C a unit stores: over every byte but the CRC field's.
pub fn unit_crc(unit: &[u8]) -> u32 {
    let mut d = crc32c_digest();
    d.update(unit.get(..CRC_AT).unwrap_or(unit));
    d.update(unit.get(CRC_AT + 4..).unwrap_or(&[]));
    d.finalize()
}

/// Decodes the unit at the start of `coded` into `out`, checking its CRC;
/// returns the bytes written (the unit's blocks, as GGUF stores them).
/// Bytes of `coded` past the unit's length are ignored (a slot's padding).
/// Uses about 48 KiB of stack; [`decode_with`] takes that from the caller.
pub fn decode(coded: &[u8], out: &mut [u8]) -> Result<usize, DecodeError> {
    decode_with(&mut Scratch::default(), Verify::Crc, coded, out)
}

/// [`decode`] with the caller's scratch and a choice of checksum.
pub fn decode_with(
    s: &mut Scratch,
    verify: Verify,
    coded: &[u8],
    out: &mut [u8],
) -> Result<usize, DecodeError> {
    let h = header(coded)?;
    let Some(unit) = coded.get(..h.unit_len) else {
        return Err(DecodeError::Truncated {
            need: h.unit_len,
            have: coded.len(),
        });
    };
    if verify == Verify::Crc {
        let computed = unit_crc(unit);
        if computed != h.crc {
            return Err(DecodeError::Checksum {
                stored: h.crc,
                computed,
            });
        }
    }
    let need = h.output_len();
    let Some(out) = out.get_mut(..need) else {
        return Err(DecodeError::OutputTooSmall {
            need,
            have: out.len(),
        });
    };
    let mut r = Reader::new(unit, HEADER_LEN);
    for f in fields(h.dtype).unwrap_or(&[]) {
        section(s, &mut r, f, h.dtype.block_bytes(), out)?;
    }
    if !r.at_end() {
        return Err(DecodeError::Corrupt("bytes after the last section"));
    }
    Ok(need)
}

/// Decodes one field's section into every block of `out`.
fn section(
    s: &mut Scratch,
    r: &mut Reader<'_>,
    f: &Field,
    block: usize,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let head = r.take(SECTION_HEADER_LEN)?;
    let kind = SectionKind::from_code(head[0]).ok_or(DecodeError::UnsupportedKind(head[0]))?;
    if usize::from(head[1]) != f.width {
        return Err(DecodeError::Corrupt("section width differs from its field"));
    }
    // Flags: only a codebook has one (bit 0: its last entry escapes).
    let escape = match (kind, head[2]) {
        (_, 0) => false,
        (SectionKind::F16, 1) => true,
        _ => return Err(DecodeError::Corrupt("section flags")),
    };
    let nsym = match (kind, head[3]) {
        (SectionKind::Bytes, 0) => CODEC_SYMBOLS,
        (SectionKind::Bytes, n) => usize::from(n),
        (_, 0) => 0,
        _ => {
            return Err(DecodeError::Corrupt(
                "symbol count on a section without a table",
            ))
        }
    };
    let len = u32_at(head, 4) as usize;
    let mut body = Reader::new(r.take(len)?, 0);
    let blocks = out.len() / block;
    match kind {
        SectionKind::Raw => {
            let src = body.take(blocks * f.width)?;
            for (b, v) in out.chunks_exact_mut(block).zip(src.chunks_exact(f.width)) {
                b[f.offset..f.offset + f.width].copy_from_slice(v);
            }
        }
        SectionKind::Bytes => {
            s.table.build(body.take(2 * nsym)?)?;
            let mut lanes = rans_stream(&mut body)?;
            bytes_field(&mut lanes, &s.table, f, block, out)?;
            lanes.finish()?;
        }
        SectionKind::F16 => {
            if !f.f16 {
                return Err(DecodeError::Corrupt("f16 section on a byte field"));
            }
            s.book.read(&mut body, escape)?;
            let mut lanes = rans_stream(&mut body)?;
            let n = body.u32()? as usize;
            let mut raw = Reader::new(body.take(n)?, 0);
            lanes.fill_book(&s.book, &mut raw, out, block, f.offset)?;
            lanes.finish()?;
            if !raw.at_end() {
                return Err(DecodeError::Corrupt("escaped values left over"));
            }
        }
    }
    if !body.at_end() {
        return Err(DecodeError::Corrupt("section longer than its contents"));
    }
    Ok(())
}

/// The lanes of the rANS stream at `r`: states, word count, words.
fn rans_stream<'a>(r: &mut Reader<'a>) -> Result<Lanes<'a>, DecodeError> {
    let states = r.take(RANS_FIXED_LEN - 4)?;
    let n = r.u32()? as usize;
    Lanes::new(states, r.take(n)?)
}

/// A byte field: `width` symbols a block, lane `j % LANES` for byte `j`
/// (widths are whole multiples of the lanes, so the lanes run unrolled).
fn bytes_field(
    lanes: &mut Lanes<'_>,
    t: &Table,
    f: &Field,
    block: usize,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    if !f.width.is_multiple_of(CODEC_LANES) {
        return Err(DecodeError::Corrupt(
            "byte field not a multiple of the lanes",
        ));
    }
    lanes.fill(t, out, block, f.offset, f.width)
}
