//! The KV swap area: where a service keeps its conversations' KV-cache
//! chunks on flash so they survive power loss. The byte layout is in
//! `formats/SWAP.md`.
//!
//! Three structures, each with its own CRC32C, each decoded here without
//! allocation and validated field by field before it is trusted:
//!
//! - a [`Superblock`], in one of two alternating slots at the start of the
//!   area: format version, geometry, the model fingerprint, a sequence
//!   number and a pointer to the committed directory;
//! - the [`Directory`]: one [`DirEntry`] per context, pointing at its record;
//! - a context [`Record`]: the context's token ids and its chunk pointers
//!   ([`ChunkRef`]), each naming a payload extent and the payload's CRC32C.
//!
//! Payloads are opaque bytes. The crash-consistency policy (copy-on-write,
//! newest valid superblock wins) is the kernel's (`lode_kernel::swap`);
//! this module only says what the bytes mean and whether they are sound.

mod directory;
mod error;
mod record;
mod superblock;
#[cfg(test)]
mod tests;

pub use directory::{DirEntry, Directory, DIR_ENTRY_LEN, DIR_HEADER_LEN, DIR_MAGIC};
pub use error::{ErrorKind, SwapFormatError};
pub use record::{ChunkRef, Record, CHUNK_ENTRY_LEN, RECORD_HEADER_LEN, RECORD_MAGIC};
pub use superblock::{Superblock, SUPERBLOCK_LEN, SUPERBLOCK_MAGIC};

/// Format version written and understood (superblock, directory and
/// records share it).
pub const VERSION: u16 = 1;
/// Smallest block size of an area: a superblock fits in one block.
pub const MIN_BLOCK: u32 = 512;
/// Largest block size of an area.
pub const MAX_BLOCK: u32 = 1 << 20;
/// Superblock slots at the start of the area, one block each.
pub const SLOTS: u64 = 2;
/// Fewest blocks an area may have: the two slots and room for a directory,
/// a record and a payload.
pub const MIN_AREA_BLOCKS: u64 = 8;
/// Most entries a directory may hold.
pub const MAX_DIR_ENTRIES: u32 = 4096;
/// Most chunk pointers a record may hold.
pub const MAX_RECORD_CHUNKS: u32 = 1 << 16;
/// Most token ids a record may hold.
pub const MAX_RECORD_TOKENS: u32 = MAX_RECORD_CHUNKS * CHUNK_TOKENS;
/// Token positions per KV chunk.
pub const CHUNK_TOKENS: u32 = 16;

/// A byte extent of the area with the CRC32C of its `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Extent {
    /// Byte offset from the start of the area (block-aligned).
    pub offset: u64,
    /// Bytes used; the extent occupies `len` rounded up to whole blocks.
    pub len: u32,
    /// CRC32C of the `len` bytes.
    pub crc: u32,
}

/// The geometry every pointer is checked against: an extent must start on
/// a block boundary past the superblock slots, be non-empty and end (in
/// whole blocks) inside the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AreaShape {
    /// Block size in bytes (a power of two, `MIN_BLOCK..=MAX_BLOCK`).
    pub block: u32,
    /// Area length in bytes (a multiple of `block`).
    pub len: u64,
}

impl AreaShape {
    /// Checks the shape itself: block size and area length as the
    /// superblock requires them.
    pub fn check(&self) -> Result<(), SwapFormatError> {
        let b = u64::from(self.block);
        if !self.block.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&self.block) {
            return Err(SwapFormatError::new(
                ErrorKind::Malformed,
                "block size is not a power of two in 512..=1 MiB",
            ));
        }
        if !self.len.is_multiple_of(b) || self.len / b < MIN_AREA_BLOCKS {
            return Err(SwapFormatError::new(
                ErrorKind::Malformed,
                "area length is not a whole number of at least 8 blocks",
            ));
        }
        Ok(())
    }

    /// `len` rounded up to whole blocks, if that fits a `u64`.
    pub fn blocks_of(&self, len: u64) -> Option<u64> {
        len.checked_add(u64::from(self.block) - 1)
            .map(|n| n / u64::from(self.block))
    }

    /// Checks that `len` bytes at `offset` are a valid extent (see the type).
    pub fn check_extent(&self, offset: u64, len: u64) -> Result<(), SwapFormatError> {
        let b = u64::from(self.block.max(1));
        let end = self
            .blocks_of(len)
            .and_then(|n| n.checked_mul(b))
            .and_then(|n| n.checked_add(offset));
        let inside = end.is_some_and(|end| end <= self.len);
        if len == 0 || !offset.is_multiple_of(b) || offset < SLOTS * b || !inside {
            return Err(SwapFormatError::new(
                ErrorKind::OutOfRange,
                "extent empty, misaligned, over a superblock slot or past the area",
            ));
        }
        Ok(())
    }
}

/// `true` when the block ranges of two extents share a block.
/// What a structure's envelope checks are called in its errors.
pub(crate) struct Envelope {
    /// Its magic bytes.
    pub magic: &'static [u8],
    /// The error for other magic bytes.
    pub not_it: &'static str,
    /// The error for a CRC mismatch.
    pub checksum: &'static str,
    /// The error for another version.
    pub version: &'static str,
}

impl Envelope {
    /// The checks every directory and record starts with, in order: its
    /// magic, then (once its header is read) its CRC32C over everything
    /// after the first 8 bytes, then its version.
    pub(crate) fn check_magic(&self, bytes: &[u8]) -> Result<(), SwapFormatError> {
        let n = bytes.len().min(self.magic.len());
        if bytes.get(..n) != self.magic.get(..n) {
            return Err(SwapFormatError::new(ErrorKind::BadMagic, self.not_it));
        }
        Ok(())
    }

    /// The CRC and version checks, after the header was read.
    pub(crate) fn check_body(
        &self,
        bytes: &[u8],
        crc: u32,
        version: u16,
    ) -> Result<(), SwapFormatError> {
        if crate::checksum::crc32c(bytes.get(8..).unwrap_or_default()) != crc {
            return Err(SwapFormatError::new(
                ErrorKind::ChecksumMismatch,
                self.checksum,
            ));
        }
        if version != VERSION {
            return Err(SwapFormatError::new(
                ErrorKind::UnsupportedVersion,
                self.version,
            ));
        }
        Ok(())
    }
}

pub(crate) fn overlap(shape: &AreaShape, a: (u64, u64), b: (u64, u64)) -> bool {
    let end = |(off, len): (u64, u64)| {
        shape
            .blocks_of(len)
            .and_then(|n| n.checked_mul(u64::from(shape.block)))
            .and_then(|n| n.checked_add(off))
            .unwrap_or(u64::MAX)
    };
    a.0 < end(b) && b.0 < end(a)
}
