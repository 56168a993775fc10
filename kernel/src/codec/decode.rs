//! Decoding a coded unit: the header, then each field's section into its
//! place in every block of the output.

use lode_formats::checksum::crc32c_digest;
use lode_formats::DType;

use crate::limits::{
    CODEC_BOOK_PROB_BITS, CODEC_LANES, CODEC_PROB_BITS, CODEC_SLOTS, CODEC_SYMBOLS,
};

use super::book::Book;
use super::error::DecodeError;
use super::layout::{
    fields, Field, SectionKind, CRC_AT, HEADER_LEN, MAGIC, RANS_FIXED_LEN, SECTION_HEADER_LEN,
    VERSION, VERSION_1,
};
use super::rans::{Lanes, Table};
use super::reader::Reader;

/// What a decode needs besides its input and output: the rANS table, the
/// f16 codebook and a kind 3 codebook's value a slot, about 56 KiB. Keep
/// one per decoding thread (in an arena slot or a static on a small
/// target) and pass it to [`decode_with`]; [`decode`] puts one on the
/// stack.
#[derive(Debug, Clone)]
pub struct Scratch {
    table: Table,
    book: Book,
    values: [u16; CODEC_SLOTS],
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            table: Table::default(),
            book: Book::default(),
            values: [0; CODEC_SLOTS],
        }
    }
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
    /// The unit's format version ([`VERSION_1`] or [`VERSION`]).
    pub version: u8,
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
    if h[4] != VERSION && h[4] != VERSION_1 {
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
        version: h[4],
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
/// Uses about 56 KiB of stack; [`decode_with`] takes that from the caller.
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
        section(s, &mut r, f, h, out)?;
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
    h: Header,
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let block = h.dtype.block_bytes();
    let head = r.take(SECTION_HEADER_LEN)?;
    let kind = SectionKind::from_code(head[0])
        .filter(|&k| k != SectionKind::F16Direct || h.version != VERSION_1)
        .ok_or(DecodeError::UnsupportedKind(head[0]))?;
    if usize::from(head[1]) != f.width {
        return Err(DecodeError::Corrupt("section width differs from its field"));
    }
    // Flags: only a codebook has one (bit 0: its last entry escapes).
    let escape = match (kind, head[2]) {
        (_, 0) => false,
        (SectionKind::F16 | SectionKind::F16Direct, 1) => true,
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
        SectionKind::Raw => raw_field(body.take(blocks * f.width)?, f, block, out),
        SectionKind::Bytes => {
            s.table.build(body.take(2 * nsym)?)?;
            let mut lanes = rans_stream(&mut body)?;
            bytes_field(&mut lanes, &s.table, f, block, out)?;
            lanes.finish()?;
        }
        SectionKind::F16 | SectionKind::F16Direct => {
            if !f.f16 {
                return Err(DecodeError::Corrupt("f16 section on a byte field"));
            }
            let direct = kind == SectionKind::F16Direct;
            let bits = if direct {
                CODEC_PROB_BITS
            } else {
                CODEC_BOOK_PROB_BITS
            };
            s.book.read(&mut body, escape, bits)?;
            if direct {
                s.book.direct(&mut s.table, &mut s.values);
            }
            let mut lanes = rans_stream(&mut body)?;
            let n = body.u32()? as usize;
            let mut raw = Reader::new(body.take(n)?, 0);
            if direct {
                lanes.fill_direct(&s.table, &s.values, &mut raw, out, block, f.offset)?;
            } else {
                lanes.fill_book(&s.book, &mut raw, out, block, f.offset)?;
            }
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

/// A raw field: `src` holds its bytes block after block. The widths the
/// layouts use are copied at a fixed size (a call to `memcpy` a block
/// would cost more than the copy).
fn raw_field(src: &[u8], f: &Field, block: usize, out: &mut [u8]) {
    fn copy<const W: usize>(src: &[u8], at: usize, block: usize, out: &mut [u8]) {
        let blocks = out.chunks_exact_mut(block);
        for (b, v) in blocks.zip(src.as_chunks::<W>().0) {
            if let Some(d) = b.get_mut(at..).and_then(|d| d.first_chunk_mut::<W>()) {
                *d = *v;
            }
        }
    }
    match f.width {
        2 => copy::<2>(src, f.offset, block, out),
        4 => copy::<4>(src, f.offset, block, out),
        16 => copy::<16>(src, f.offset, block, out),
        32 => copy::<32>(src, f.offset, block, out),
        w => {
            for (b, v) in out.chunks_exact_mut(block).zip(src.chunks_exact(w)) {
                b[f.offset..f.offset + w].copy_from_slice(v);
            }
        }
    }
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
