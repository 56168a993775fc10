//! The superblock: one block at the start of the area (slot 0 or 1) that
//! names the committed state.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{AreaShape, ErrorKind, Extent, SwapFormatError, DIR_HEADER_LEN, SLOTS, VERSION};
use crate::checksum::crc32c;

/// First eight bytes of a superblock: a high-bit byte, `LSWP`, CR LF and
/// Ctrl-Z, as PNG does (damaged by 7-bit and line-ending conversions).
pub const SUPERBLOCK_MAGIC: [u8; 8] = [0x8A, b'L', b'S', b'W', b'P', b'\r', b'\n', 0x1A];
/// Bytes of a version-1 superblock.
pub const SUPERBLOCK_LEN: usize = 96;
/// Bytes before the checksummed part: the magic and the CRC itself.
const CRC_FROM: usize = 12;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Raw {
    magic: [u8; 8],
    crc: U32,
    version: U16,
    header_len: U16,
    block_size: U32,
    slot: U32,
    area_len: U64,
    sequence: U64,
    dir_offset: U64,
    dir_len: U32,
    dir_crc: U32,
    fingerprint: [u8; 32],
    reserved: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<Raw>() == SUPERBLOCK_LEN);

/// A decoded superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Superblock {
    /// Block size and area length the area was formatted with.
    pub shape: AreaShape,
    /// Which slot (0 or 1) the superblock was written to.
    pub slot: u32,
    /// Commit number: the valid superblock with the larger one is current.
    pub sequence: u64,
    /// The committed directory.
    pub directory: Extent,
    /// The caller's fingerprint of the model the KV chunks belong to.
    pub fingerprint: [u8; 32],
}

impl Superblock {
    /// The superblock's bytes, into the first [`SUPERBLOCK_LEN`] bytes of
    /// `out` (the rest of the block is the caller's to zero).
    pub fn encode(&self, out: &mut [u8]) -> Result<(), SwapFormatError> {
        let raw = Raw {
            magic: SUPERBLOCK_MAGIC,
            crc: U32::new(0),
            version: U16::new(VERSION),
            header_len: U16::new(SUPERBLOCK_LEN as u16),
            block_size: U32::new(self.shape.block),
            slot: U32::new(self.slot),
            area_len: U64::new(self.shape.len),
            sequence: U64::new(self.sequence),
            dir_offset: U64::new(self.directory.offset),
            dir_len: U32::new(self.directory.len),
            dir_crc: U32::new(self.directory.crc),
            fingerprint: self.fingerprint,
            reserved: [0; 8],
        };
        let dst = out.get_mut(..SUPERBLOCK_LEN).ok_or(SwapFormatError::new(
            ErrorKind::Encode,
            "buffer shorter than a superblock",
        ))?;
        dst.copy_from_slice(raw.as_bytes());
        let crc = crc32c(&dst[CRC_FROM..]);
        dst[8..CRC_FROM].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Decode and validate a superblock from the start of `bytes` (a slot's
    /// block). Order: magic, stated length, CRC, version, then every field;
    /// the CRC comes before the version so that a damaged version field is
    /// a checksum error (a torn write), and only an intact superblock of
    /// another version is [`ErrorKind::UnsupportedVersion`].
    pub fn decode(bytes: &[u8]) -> Result<Superblock, SwapFormatError> {
        let e = SwapFormatError::new;
        let n = bytes.len().min(SUPERBLOCK_MAGIC.len());
        if bytes.get(..n) != SUPERBLOCK_MAGIC.get(..n) {
            return Err(e(ErrorKind::BadMagic, "not a swap-area superblock"));
        }
        let stated = bytes
            .get(14..16)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .ok_or(e(ErrorKind::Truncated, "superblock shorter than 16 bytes"))?;
        if stated < 16 {
            return Err(e(ErrorKind::Malformed, "superblock length below 16"));
        }
        let body = bytes
            .get(..stated)
            .ok_or(e(ErrorKind::Truncated, "superblock shorter than it states"))?;
        let crc = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
        if crc32c(&body[CRC_FROM..]) != crc {
            return Err(e(ErrorKind::ChecksumMismatch, "superblock checksum"));
        }
        if u16::from_le_bytes([body[12], body[13]]) != VERSION {
            return Err(e(ErrorKind::UnsupportedVersion, "superblock version"));
        }
        let Ok(raw) = Raw::ref_from_bytes(body) else {
            return Err(e(
                ErrorKind::Malformed,
                "version-1 superblock is not 96 bytes",
            ));
        };
        if raw.reserved != [0; 8] {
            return Err(e(ErrorKind::Malformed, "reserved bytes are not zero"));
        }
        let sb = Superblock {
            shape: AreaShape {
                block: raw.block_size.get(),
                len: raw.area_len.get(),
            },
            slot: raw.slot.get(),
            sequence: raw.sequence.get(),
            directory: Extent {
                offset: raw.dir_offset.get(),
                len: raw.dir_len.get(),
                crc: raw.dir_crc.get(),
            },
            fingerprint: raw.fingerprint,
        };
        sb.shape.check()?;
        if u64::from(sb.slot) >= SLOTS || sb.sequence == 0 {
            return Err(e(ErrorKind::Malformed, "slot above 1 or sequence 0"));
        }
        if (sb.directory.len as usize) < DIR_HEADER_LEN {
            return Err(e(ErrorKind::Malformed, "directory shorter than its header"));
        }
        sb.shape
            .check_extent(sb.directory.offset, u64::from(sb.directory.len))?;
        Ok(sb)
    }
}
