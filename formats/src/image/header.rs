//! The fixed header: the first thing a reader parses, from the first block.
//!
//! The header alone tells a reader how many bytes of metadata prefix to read
//! next ([`ImageHeader::meta_len`]), so opening an image costs two reads and
//! never needs the data in DRAM.

use zerocopy::FromBytes;

use super::error::{err, ErrorKind, ImageError, Location};
use super::layout::{
    HeaderRecord, HEADER_CRC_OFFSET, HEADER_LEN, MAGIC, MAX_BLOCK_SIZE, MAX_SECTIONS,
    MIN_BLOCK_SIZE, SECTION_ENTRY_LEN, VERSION_MAJOR,
};
use crate::checksum::crc32c;

/// A validated copy of an image's fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ImageHeader {
    /// Major format version (always [`VERSION_MAJOR`] once parsed).
    pub major: u16,
    /// Minor format version.
    pub minor: u16,
    /// Alignment of every data extent, a power of two.
    pub block_size: u32,
    /// Length of the metadata prefix; data starts here.
    pub meta_len: u64,
    /// Length of the whole image.
    pub file_len: u64,
    /// Entries in the section table.
    pub section_count: u32,
    /// CRC32C of the section table.
    pub table_crc: u32,
}

const H: Location = Location::Header;

/// What holds an image, which decides whether bytes may follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Container {
    /// A regular file: it holds the image and nothing else, so its length
    /// is exactly `file_len` (bytes past the image are covered by no
    /// checksum and mean a botched copy or concatenation).
    File,
    /// A block device or partition: its size is the device's, rounded to
    /// its own units, so it may hold more than the image.
    Device,
}

impl ImageHeader {
    /// Parse and check the header at the start of `bytes` (at least
    /// [`HEADER_LEN`] bytes; more are ignored).
    ///
    /// Checks, in order: magic, major version (before the CRC, because a
    /// different major may lay the header out differently), header CRC,
    /// reserved fields, block size, and that the lengths are block multiples
    /// large enough for the section table.
    pub fn parse(bytes: &[u8]) -> Result<ImageHeader, ImageError> {
        let magic_len = bytes.len().min(MAGIC.len());
        if bytes.get(..magic_len) != MAGIC.get(..magic_len) {
            return Err(err(
                ErrorKind::BadMagic,
                H,
                "first bytes are not the lode magic",
            ));
        }
        let Ok((rec, _)) = HeaderRecord::ref_from_prefix(bytes) else {
            return Err(err(
                ErrorKind::Truncated,
                H,
                "shorter than the 64-byte header",
            ));
        };
        if rec.major.get() != VERSION_MAJOR {
            return Err(err(
                ErrorKind::UnsupportedVersion,
                H,
                "major version is not 1",
            ));
        }
        let covered = bytes.get(..HEADER_CRC_OFFSET).unwrap_or_default();
        if crc32c(covered) != rec.header_crc.get() {
            return Err(err(ErrorKind::ChecksumMismatch, H, "header CRC32C differs"));
        }
        if rec.flags.get() != 0 || rec.reserved.iter().any(|&b| b != 0) {
            return Err(err(
                ErrorKind::Malformed,
                H,
                "flags or reserved bytes are set",
            ));
        }
        let block_size = rec.block_size.get();
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(err(
                ErrorKind::Malformed,
                H,
                "block size is not a power of two in 512..=1048576",
            ));
        }
        let meta_len = rec.meta_len.get();
        let file_len = rec.file_len.get();
        let block = u64::from(block_size);
        if meta_len % block != 0 || file_len % block != 0 {
            return Err(err(
                ErrorKind::Misaligned,
                H,
                "metadata or file length is not a multiple of the block size",
            ));
        }
        let section_count = rec.section_count.get();
        if section_count > MAX_SECTIONS {
            return Err(err(ErrorKind::Malformed, H, "more than 64 sections"));
        }
        let table_end = HEADER_LEN as u64 + u64::from(section_count) * SECTION_ENTRY_LEN as u64;
        if meta_len < table_end {
            return Err(err(
                ErrorKind::OutOfRange,
                H,
                "metadata length does not cover the section table",
            ));
        }
        if file_len < meta_len {
            return Err(err(
                ErrorKind::OutOfRange,
                H,
                "file length is shorter than the metadata",
            ));
        }
        Ok(ImageHeader {
            major: rec.major.get(),
            minor: rec.minor.get(),
            block_size,
            meta_len,
            file_len,
            section_count,
            table_crc: rec.table_crc.get(),
        })
    }

    /// Byte offset just past the section table.
    pub fn table_end(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.section_count) * SECTION_ENTRY_LEN as u64
    }

    /// Check the length of what holds the image: `len` bytes from the
    /// image's start, in `container`.
    ///
    /// One rule for every program that opens an image (`lode run`, `lode
    /// inspect`, `lode calibrate`), so none accepts what another refuses:
    /// shorter than `file_len` is `Truncated`; longer is `OutOfRange` for a
    /// file and allowed for a device. The error's location is the offset
    /// where the container ends.
    pub fn check_container_len(&self, len: u64, container: Container) -> Result<(), ImageError> {
        let at = Location::Offset(len);
        if len < self.file_len {
            return Err(err(
                ErrorKind::Truncated,
                at,
                "file is shorter than the image's length",
            ));
        }
        if len > self.file_len && container == Container::File {
            return Err(err(
                ErrorKind::OutOfRange,
                at,
                "file has bytes past the image's end",
            ));
        }
        Ok(())
    }

    /// Length of the data part: everything after the metadata prefix.
    pub fn data_len(&self) -> u64 {
        self.file_len.saturating_sub(self.meta_len)
    }

    /// Round `x` up to a multiple of the block size (`None` on overflow).
    pub fn align_up(&self, x: u64) -> Option<u64> {
        align_up(x, u64::from(self.block_size))
    }
}

/// Round `x` up to a multiple of `align` (a power of two), `None` on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}

/// The 64 header bytes for `header`, with the CRC filled in.
#[cfg(feature = "alloc")]
pub(crate) fn encode(header: &ImageHeader) -> [u8; HEADER_LEN] {
    use zerocopy::little_endian::{U16, U32, U64};
    use zerocopy::IntoBytes;

    let mut rec = HeaderRecord {
        magic: MAGIC,
        major: U16::new(header.major),
        minor: U16::new(header.minor),
        block_size: U32::new(header.block_size),
        meta_len: U64::new(header.meta_len),
        file_len: U64::new(header.file_len),
        section_count: U32::new(header.section_count),
        table_crc: U32::new(header.table_crc),
        flags: U32::new(0),
        reserved: [0; 16],
        header_crc: U32::new(0),
    };
    let crc = crc32c(rec.as_bytes().get(..HEADER_CRC_OFFSET).unwrap_or_default());
    rec.header_crc = U32::new(crc);
    let mut out = [0u8; HEADER_LEN];
    out.copy_from_slice(rec.as_bytes());
    out
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    fn sample() -> ImageHeader {
        ImageHeader {
            major: 1,
            minor: 0,
            block_size: 4096,
            meta_len: 4096,
            file_len: 3 * 4096,
            section_count: 8,
            table_crc: 0x1234_5678,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        assert_eq!(ImageHeader::parse(&encode(&h)), Ok(h));
        assert_eq!(h.data_len(), 8192);
        assert_eq!(h.table_end(), 64 + 8 * 24);
    }

    #[test]
    fn each_check_has_its_kind() {
        let kind = |h: ImageHeader| ImageHeader::parse(&encode(&h)).map_err(|e| e.kind());
        assert_eq!(
            kind(ImageHeader {
                major: 2,
                ..sample()
            }),
            Err(ErrorKind::UnsupportedVersion)
        );
        assert_eq!(
            kind(ImageHeader {
                minor: 7,
                ..sample()
            })
            .map(|h| h.minor),
            Ok(7)
        );
        assert_eq!(
            kind(ImageHeader {
                block_size: 256,
                ..sample()
            }),
            Err(ErrorKind::Malformed)
        );
        assert_eq!(
            kind(ImageHeader {
                block_size: 3000,
                ..sample()
            }),
            Err(ErrorKind::Malformed)
        );
        assert_eq!(
            kind(ImageHeader {
                meta_len: 4000,
                ..sample()
            }),
            Err(ErrorKind::Misaligned)
        );
        assert_eq!(
            kind(ImageHeader {
                file_len: 0,
                ..sample()
            }),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            kind(ImageHeader {
                section_count: 65,
                ..sample()
            }),
            Err(ErrorKind::Malformed)
        );
        assert_eq!(
            kind(ImageHeader {
                block_size: 512,
                meta_len: 512,
                file_len: 512,
                section_count: 20,
                ..sample()
            }),
            Err(ErrorKind::OutOfRange)
        );
    }

    #[test]
    fn short_or_foreign_input() {
        let bytes = encode(&sample());
        for len in 0..HEADER_LEN {
            let e = ImageHeader::parse(&bytes[..len]).map_err(|e| e.kind());
            assert_eq!(e, Err(ErrorKind::Truncated), "length {len}");
        }
        assert_eq!(
            ImageHeader::parse(b"GGUF\x03\0\0\0").map_err(|e| e.kind()),
            Err(ErrorKind::BadMagic)
        );
        assert_eq!(
            ImageHeader::parse(b"\x89PN").map_err(|e| e.kind()),
            Err(ErrorKind::BadMagic)
        );
    }

    /// Flags and reserved bytes are refused for what they are, not only
    /// by the CRC: here the CRC is right.
    #[test]
    fn set_flags_or_reserved_bytes_are_malformed() {
        for at in 40..60 {
            let mut b = encode(&sample());
            b[at] = 0x10;
            let crc = crc32c(&b[..HEADER_CRC_OFFSET]);
            b[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
            let e = ImageHeader::parse(&b).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed, "byte {at}");
            assert_eq!(e.detail(), "flags or reserved bytes are set");
        }
    }

    #[test]
    fn every_header_byte_is_protected() {
        let bytes = encode(&sample());
        for i in 0..HEADER_LEN {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes;
                b[i] ^= flip;
                assert!(
                    ImageHeader::parse(&b).is_err(),
                    "byte {i} ^ {flip:#x} accepted"
                );
            }
        }
    }

    #[test]
    fn a_file_holds_exactly_the_image_and_a_device_at_least_it() {
        let h = sample();
        let kind = |len, c| h.check_container_len(len, c).map_err(|e| e.kind());
        for c in [Container::File, Container::Device] {
            assert_eq!(kind(h.file_len, c), Ok(()));
            assert_eq!(kind(h.file_len - 1, c), Err(ErrorKind::Truncated));
            assert_eq!(kind(0, c), Err(ErrorKind::Truncated));
        }
        assert_eq!(
            kind(h.file_len + 1, Container::File),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(kind(u64::MAX, Container::File), Err(ErrorKind::OutOfRange));
        assert_eq!(kind(h.file_len + 512, Container::Device), Ok(()));
        let e = h.check_container_len(h.file_len + 7, Container::File);
        assert_eq!(
            e.map_err(|e| e.location()),
            Err(Location::Offset(h.file_len + 7))
        );
    }

    #[test]
    fn align_up_edges() {
        assert_eq!(align_up(0, 4096), Some(0));
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(u64::MAX, 4096), None);
        assert_eq!(align_up(5, 0), None);
    }
}
