//! A context record: the context's token ids and its chunk pointers.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{
    overlap, AreaShape, Envelope, ErrorKind, Extent, SwapFormatError, CHUNK_TOKENS,
    MAX_RECORD_CHUNKS, MAX_RECORD_TOKENS, VERSION,
};
use crate::checksum::crc32c;

/// First four bytes of a record.
pub const RECORD_MAGIC: [u8; 4] = *b"LSCR";
/// Bytes of the record header.
pub const RECORD_HEADER_LEN: usize = 48;
/// Bytes of one chunk pointer.
pub const CHUNK_ENTRY_LEN: usize = 24;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 4],
    crc: U32,
    version: U16,
    header_len: U16,
    chunk_entry_len: U16,
    reserved0: U16,
    context_id: U64,
    generation: U64,
    token_count: U32,
    chunk_count: U32,
    reserved1: [u8; 8],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Debug)]
#[repr(C)]
struct RawChunk {
    index: U32,
    len: U32,
    offset: U64,
    crc: U32,
    level: u8,
    valid_tokens: u8,
    reserved: U16,
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == RECORD_HEADER_LEN);
const _: () = assert!(core::mem::size_of::<RawChunk>() == CHUNK_ENTRY_LEN);

/// Where one KV chunk's payload is, and what the caller said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ChunkRef {
    /// Chunk number in the context: positions `16 * index ..`.
    pub index: u32,
    /// The payload's extent and CRC32C.
    pub payload: Extent,
    /// The caller's compression level (opaque here).
    pub level: u8,
    /// Positions of the chunk that hold tokens (1 to 16).
    pub valid_tokens: u8,
}

impl ChunkRef {
    fn from_raw(raw: &RawChunk) -> ChunkRef {
        ChunkRef {
            index: raw.index.get(),
            payload: Extent {
                offset: raw.offset.get(),
                len: raw.len.get(),
                crc: raw.crc.get(),
            },
            level: raw.level,
            valid_tokens: raw.valid_tokens,
        }
    }

    fn to_raw(self) -> RawChunk {
        RawChunk {
            index: U32::new(self.index),
            len: U32::new(self.payload.len),
            offset: U64::new(self.payload.offset),
            crc: U32::new(self.payload.crc),
            level: self.level,
            valid_tokens: self.valid_tokens,
            reserved: U16::new(0),
        }
    }

    /// Checks the pointer against a context of `tokens` tokens and the area.
    pub fn check(&self, tokens: u32, shape: &AreaShape) -> Result<(), SwapFormatError> {
        let e = SwapFormatError::new;
        let first = u64::from(self.index) * u64::from(CHUNK_TOKENS);
        let valid = u64::from(self.valid_tokens);
        if self.index >= MAX_RECORD_CHUNKS
            || valid == 0
            || valid > u64::from(CHUNK_TOKENS)
            || first + valid > u64::from(tokens)
        {
            return Err(e(ErrorKind::Malformed, "chunk beyond the context's tokens"));
        }
        shape.check_extent(self.payload.offset, u64::from(self.payload.len))
    }
}

/// A validated context record, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    context_id: u64,
    generation: u64,
    chunks: &'a [RawChunk],
    tokens: &'a [U32],
}

/// Length in bytes of a record of `chunks` chunk pointers and `tokens` token ids.
const fn record_len(chunks: usize, tokens: usize) -> usize {
    RECORD_HEADER_LEN + chunks * CHUNK_ENTRY_LEN + tokens * 4
}

impl<'a> Record<'a> {
    /// Length in bytes of a record of `chunks` chunk pointers and `tokens`
    /// token ids.
    pub const fn len_for(chunks: usize, tokens: usize) -> usize {
        record_len(chunks, tokens)
    }

    /// Write a record into `out`; returns its extent length and CRC32C.
    /// `chunks` must come in strictly increasing index order and each must
    /// pass [`ChunkRef::check`] against `tokens` (an [`ErrorKind::Encode`]
    /// error otherwise: a writer never stores what a reader would refuse).
    pub fn encode(
        out: &mut [u8],
        context_id: u64,
        generation: u64,
        tokens: &[u32],
        chunks: impl IntoIterator<Item = ChunkRef>,
        shape: &AreaShape,
    ) -> Result<(u32, u32), SwapFormatError> {
        let e = SwapFormatError::new;
        let token_count = u32::try_from(tokens.len())
            .ok()
            .filter(|&t| t <= MAX_RECORD_TOKENS)
            .ok_or(e(ErrorKind::Encode, "too many tokens"))?;
        let mut n = 0usize;
        let mut previous: Option<u32> = None;
        for c in chunks {
            if previous.is_some_and(|p| p >= c.index) || c.check(token_count, shape).is_err() {
                return Err(e(ErrorKind::Encode, "chunk out of order or invalid"));
            }
            previous = Some(c.index);
            let at = RECORD_HEADER_LEN + n * CHUNK_ENTRY_LEN;
            let dst = out
                .get_mut(at..at + CHUNK_ENTRY_LEN)
                .ok_or(e(ErrorKind::Encode, "record does not fit"))?;
            dst.copy_from_slice(c.to_raw().as_bytes());
            n += 1;
        }
        let len = record_len(n, tokens.len());
        let dst = out
            .get_mut(..len)
            .ok_or(e(ErrorKind::Encode, "record does not fit"))?;
        for (i, t) in tokens.iter().enumerate() {
            let at = record_len(n, i);
            dst[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        let header = RawHeader {
            magic: RECORD_MAGIC,
            crc: U32::new(0),
            version: U16::new(VERSION),
            header_len: U16::new(RECORD_HEADER_LEN as u16),
            chunk_entry_len: U16::new(CHUNK_ENTRY_LEN as u16),
            reserved0: U16::new(0),
            context_id: U64::new(context_id),
            generation: U64::new(generation),
            token_count: U32::new(token_count),
            chunk_count: U32::new(n as u32),
            reserved1: [0; 8],
        };
        dst[..RECORD_HEADER_LEN].copy_from_slice(header.as_bytes());
        let crc = crc32c(&dst[8..]);
        dst[4..8].copy_from_slice(&crc.to_le_bytes());
        let len = u32::try_from(len).map_err(|_| e(ErrorKind::Encode, "record too long"))?;
        Ok((len, crc))
    }

    /// Validate a record of exactly `bytes`: magic, header, CRC, version,
    /// counts against the length, then every chunk pointer (strictly
    /// increasing index, inside the tokens, valid extent, no two payloads
    /// sharing a block).
    pub fn parse(bytes: &'a [u8], shape: &AreaShape) -> Result<Record<'a>, SwapFormatError> {
        let e = SwapFormatError::new;
        const ENVELOPE: Envelope = Envelope {
            magic: &RECORD_MAGIC,
            not_it: "not a swap-area context record",
            checksum: "record checksum",
            version: "record version",
        };
        ENVELOPE.check_magic(bytes)?;
        let Ok((h, rest)) = RawHeader::ref_from_prefix(bytes) else {
            return Err(e(ErrorKind::Truncated, "record shorter than its header"));
        };
        ENVELOPE.check_body(bytes, h.crc.get(), h.version.get())?;
        if usize::from(h.header_len.get()) != RECORD_HEADER_LEN
            || usize::from(h.chunk_entry_len.get()) != CHUNK_ENTRY_LEN
            || h.reserved0.get() != 0
            || h.reserved1 != [0; 8]
            || h.generation.get() == 0
        {
            return Err(e(ErrorKind::Malformed, "record header fields"));
        }
        let (chunk_count, token_count) = (h.chunk_count.get(), h.token_count.get());
        if chunk_count > MAX_RECORD_CHUNKS
            || token_count > MAX_RECORD_TOKENS
            || bytes.len() != record_len(chunk_count as usize, token_count as usize)
        {
            return Err(e(ErrorKind::Malformed, "record counts and length disagree"));
        }
        let (chunk_bytes, token_bytes) = rest.split_at(chunk_count as usize * CHUNK_ENTRY_LEN);
        let (Ok(chunks), Ok(tokens)) = (
            <[RawChunk]>::ref_from_bytes(chunk_bytes),
            <[U32]>::ref_from_bytes(token_bytes),
        ) else {
            return Err(e(ErrorKind::Malformed, "record tables"));
        };
        for (i, raw) in chunks.iter().enumerate() {
            let c = ChunkRef::from_raw(raw);
            if raw.reserved.get() != 0 {
                return Err(e(ErrorKind::Malformed, "chunk reserved bytes"));
            }
            c.check(token_count, shape)?;
            let ext = |c: ChunkRef| (c.payload.offset, u64::from(c.payload.len));
            for earlier in &chunks[..i] {
                let earlier = ChunkRef::from_raw(earlier);
                if earlier.index >= c.index {
                    return Err(e(ErrorKind::Malformed, "chunk indexes not increasing"));
                }
                if overlap(shape, ext(earlier), ext(c)) {
                    return Err(e(ErrorKind::OutOfRange, "two chunk payloads overlap"));
                }
            }
        }
        Ok(Record {
            context_id: h.context_id.get(),
            generation: h.generation.get(),
            chunks,
            tokens,
        })
    }

    /// The context this record belongs to.
    pub fn context_id(&self) -> u64 {
        self.context_id
    }

    /// The commit count of the context when this record was written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of token ids.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Number of chunk pointers.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The token ids, in order.
    pub fn tokens(&self) -> impl Iterator<Item = u32> + 'a {
        self.tokens.iter().map(|t| t.get())
    }

    /// The chunk pointers, in order of index.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkRef> + 'a {
        self.chunks.iter().map(ChunkRef::from_raw)
    }

    /// The pointer of chunk `index`, if the record holds that chunk.
    pub fn chunk(&self, index: u32) -> Option<ChunkRef> {
        let at = self
            .chunks
            .binary_search_by_key(&index, |c| c.index.get())
            .ok()?;
        self.chunks.get(at).map(ChunkRef::from_raw)
    }
}
