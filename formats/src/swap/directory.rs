//! The directory: which contexts the committed state holds and where each
//! one's record is.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{
    AreaShape, Envelope, ErrorKind, Extent, SwapFormatError, MAX_DIR_ENTRIES, RECORD_HEADER_LEN,
    VERSION,
};
use crate::checksum::crc32c;

/// First four bytes of a directory.
pub const DIR_MAGIC: [u8; 4] = *b"LSDR";
/// Bytes of the directory header.
pub const DIR_HEADER_LEN: usize = 32;
/// Bytes of one directory entry.
pub const DIR_ENTRY_LEN: usize = 32;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 4],
    crc: U32,
    version: U16,
    header_len: U16,
    entry_len: U16,
    reserved0: U16,
    count: U32,
    reserved1: U32,
    sequence: U64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawEntry {
    context_id: U64,
    generation: U64,
    record_offset: U64,
    record_len: U32,
    record_crc: U32,
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == DIR_HEADER_LEN);
const _: () = assert!(core::mem::size_of::<RawEntry>() == DIR_ENTRY_LEN);

/// One context of the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DirEntry {
    /// The caller's context id.
    pub context_id: u64,
    /// How many times the context has been committed (1 for the first).
    pub generation: u64,
    /// The context's record, with the record's CRC32C.
    pub record: Extent,
}

impl DirEntry {
    /// The entry's stored bytes.
    pub fn encode(&self) -> [u8; DIR_ENTRY_LEN] {
        let raw = RawEntry {
            context_id: U64::new(self.context_id),
            generation: U64::new(self.generation),
            record_offset: U64::new(self.record.offset),
            record_len: U32::new(self.record.len),
            record_crc: U32::new(self.record.crc),
        };
        let mut out = [0; DIR_ENTRY_LEN];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// An entry from its stored bytes (`None` if `bytes` is not exactly one
    /// entry long). Not validated: [`Directory::parse`] validates.
    pub fn decode(bytes: &[u8]) -> Option<DirEntry> {
        let raw = RawEntry::ref_from_bytes(bytes).ok()?;
        Some(DirEntry {
            context_id: raw.context_id.get(),
            generation: raw.generation.get(),
            record: Extent {
                offset: raw.record_offset.get(),
                len: raw.record_len.get(),
                crc: raw.record_crc.get(),
            },
        })
    }
}

/// A validated directory, borrowed from its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Directory<'a> {
    sequence: u64,
    entries: &'a [u8],
}

impl<'a> Directory<'a> {
    /// Write a directory of `sequence` whose entries are `entries` (stored
    /// entry bytes, already sorted by context id) into `out`; returns its
    /// length.
    pub fn encode(out: &mut [u8], sequence: u64, entries: &[u8]) -> Result<usize, SwapFormatError> {
        let err = SwapFormatError::new(ErrorKind::Encode, "directory does not fit");
        let count = entries.len() / DIR_ENTRY_LEN;
        if !entries.len().is_multiple_of(DIR_ENTRY_LEN) || count > MAX_DIR_ENTRIES as usize {
            return Err(err);
        }
        let len = DIR_HEADER_LEN + entries.len();
        let dst = out.get_mut(..len).ok_or(err)?;
        let header = RawHeader {
            magic: DIR_MAGIC,
            crc: U32::new(0),
            version: U16::new(VERSION),
            header_len: U16::new(DIR_HEADER_LEN as u16),
            entry_len: U16::new(DIR_ENTRY_LEN as u16),
            reserved0: U16::new(0),
            count: U32::new(count as u32),
            reserved1: U32::new(0),
            sequence: U64::new(sequence),
        };
        dst[..DIR_HEADER_LEN].copy_from_slice(header.as_bytes());
        dst[DIR_HEADER_LEN..].copy_from_slice(entries);
        let crc = crc32c(&dst[8..]);
        dst[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(len)
    }

    /// Validate a directory of exactly `bytes` (its stated length): magic,
    /// length, CRC, version, header fields, count, then every entry (sorted
    /// by strictly increasing context id, generation at least 1, record
    /// extent inside `shape` and long enough for a record header).
    pub fn parse(bytes: &'a [u8], shape: &AreaShape) -> Result<Directory<'a>, SwapFormatError> {
        let e = SwapFormatError::new;
        const ENVELOPE: Envelope = Envelope {
            magic: &DIR_MAGIC,
            not_it: "not a swap-area directory",
            checksum: "directory checksum",
            version: "directory version",
        };
        ENVELOPE.check_magic(bytes)?;
        let Ok((h, entries)) = RawHeader::ref_from_prefix(bytes) else {
            return Err(e(ErrorKind::Truncated, "directory shorter than its header"));
        };
        ENVELOPE.check_body(bytes, h.crc.get(), h.version.get())?;
        if usize::from(h.header_len.get()) != DIR_HEADER_LEN
            || usize::from(h.entry_len.get()) != DIR_ENTRY_LEN
            || h.reserved0.get() != 0
            || h.reserved1.get() != 0
        {
            return Err(e(ErrorKind::Malformed, "directory header fields"));
        }
        let count = h.count.get();
        if count > MAX_DIR_ENTRIES || entries.len() != count as usize * DIR_ENTRY_LEN {
            return Err(e(
                ErrorKind::Malformed,
                "directory count and length disagree",
            ));
        }
        let dir = Directory {
            sequence: h.sequence.get(),
            entries,
        };
        let mut previous: Option<u64> = None;
        for entry in dir.entries() {
            if previous.is_some_and(|p| p >= entry.context_id) {
                return Err(e(
                    ErrorKind::Malformed,
                    "context ids not strictly increasing",
                ));
            }
            previous = Some(entry.context_id);
            if entry.generation == 0 || (entry.record.len as usize) < RECORD_HEADER_LEN {
                return Err(e(ErrorKind::Malformed, "generation 0 or record too short"));
            }
            shape.check_extent(entry.record.offset, u64::from(entry.record.len))?;
        }
        Ok(dir)
    }

    /// The sequence number of the superblock this directory was written for.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len() / DIR_ENTRY_LEN
    }

    /// `true` when the directory holds no context.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored bytes of every entry, in order.
    pub fn entry_bytes(&self) -> &'a [u8] {
        self.entries
    }

    /// The entries, in order of context id.
    pub fn entries(&self) -> impl Iterator<Item = DirEntry> + 'a {
        self.entries
            .chunks_exact(DIR_ENTRY_LEN)
            .filter_map(DirEntry::decode)
    }
}
