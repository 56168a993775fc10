//! Changing one stored field of an existing image in place, without
//! rewriting its data: today, the device cost model that `lode calibrate`
//! measures on the device the image will be read from.
//!
//! The cost-model section has a fixed length (24 bytes), so replacing it
//! moves nothing; only its bytes, its entry's CRC, the section table's CRC
//! in the header, and the header's own CRC change. The prefix is checked
//! whole before and after, so a damaged image is refused rather than given
//! fresh checksums over its damage.

use core::mem::offset_of;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::layout::{
    CostRecord, HeaderRecord, SectionEntry, HEADER_CRC_OFFSET, HEADER_LEN, SECTION_ENTRY_LEN,
};
use super::model::StoredCostModel;
use super::reader::Image;
use crate::checksum::crc32c;

/// The section's bytes for `cost` (all zero when absent).
fn encode(cost: Option<StoredCostModel>) -> CostRecord {
    let c = cost.unwrap_or(StoredCostModel {
        command_ns: 0,
        bytes_per_sec: 0,
        queue_depth: 0,
    });
    CostRecord {
        present: U32::new(u32::from(cost.is_some())),
        command_ns: U32::new(c.command_ns),
        bytes_per_sec: U64::new(c.bytes_per_sec),
        queue_depth: U16::new(c.queue_depth),
        reserved: [0; 6],
    }
}

/// Store `cost` (or, with `None`, no model) in the image whose metadata
/// prefix is `prefix` (at least `meta_len` bytes from offset 0, such as the
/// whole file); write the first `meta_len` bytes back to the file afterwards.
///
/// Refuses, leaving `prefix` untouched, an image that does not open
/// ([`Image::parse`]'s errors) and a model with zero bandwidth or queue depth
/// (`Malformed`).
pub fn set_cost_model(prefix: &mut [u8], cost: Option<StoredCostModel>) -> Result<(), ImageError> {
    let at = Location::Section(SectionKind::CostModel);
    if cost.is_some_and(|c| c.bytes_per_sec == 0 || c.queue_depth == 0) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "a stored model needs non-zero bandwidth and queue depth",
        ));
    }
    let header = {
        let image = Image::parse(prefix)?;
        *image.header()
    };
    let table_len = (header.section_count as usize).saturating_mul(SECTION_ENTRY_LEN);
    let table_end = HEADER_LEN.saturating_add(table_len);
    let missing = || err(ErrorKind::Malformed, at, "no cost-model section");
    // Find the entry and its section (the parse above checked every offset).
    let (entry_at, section) = {
        let table = prefix.get(HEADER_LEN..table_end).ok_or_else(missing)?;
        let entries = <[SectionEntry]>::ref_from_bytes(table).map_err(|_| missing())?;
        let (i, entry) = entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.kind.get() == SectionKind::CostModel.code())
            .ok_or_else(missing)?;
        let start = usize::try_from(entry.offset.get()).map_err(|_| missing())?;
        (
            HEADER_LEN + i * SECTION_ENTRY_LEN,
            start..start + core::mem::size_of::<CostRecord>(),
        )
    };
    let body = encode(cost);
    let section_crc = crc32c(body.as_bytes());
    prefix
        .get_mut(section.clone())
        .ok_or_else(missing)?
        .copy_from_slice(body.as_bytes());
    let crc_at = entry_at + offset_of!(SectionEntry, crc);
    prefix
        .get_mut(crc_at..crc_at + 4)
        .ok_or_else(missing)?
        .copy_from_slice(&section_crc.to_le_bytes());
    let table_crc = crc32c(prefix.get(HEADER_LEN..table_end).ok_or_else(missing)?);
    let table_crc_at = offset_of!(HeaderRecord, table_crc);
    prefix
        .get_mut(table_crc_at..table_crc_at + 4)
        .ok_or_else(missing)?
        .copy_from_slice(&table_crc.to_le_bytes());
    let header_crc = crc32c(prefix.get(..HEADER_CRC_OFFSET).ok_or_else(missing)?);
    prefix
        .get_mut(HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4)
        .ok_or_else(missing)?
        .copy_from_slice(&header_crc.to_le_bytes());
    // The result must open and say what was stored.
    let image = Image::parse(prefix)?;
    debug_assert_eq!(image.cost_model(), cost);
    Ok(())
}

/// Little-endian `u32` at `at`, `None` when `bytes` is too short.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian `u64` at `at`, `None` when `bytes` is too short.
fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Store `value` little-endian at `at`, `None` when `bytes` is too short.
fn write_u32(bytes: &mut [u8], at: usize, value: u32) -> Option<()> {
    bytes
        .get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&value.to_le_bytes());
    Some(())
}

/// Recompute every checksum of a metadata prefix that was edited on
/// purpose: each listed section's CRC (sections that lie outside `prefix`
/// keep theirs), then the table's and the header's.
///
/// For tools and tests that change metadata to see what a reader makes of
/// it (format tests, fuzzers): without fresh checksums every such change
/// stops at the first CRC and the checks behind it are never reached. It
/// checks nothing itself; [`Image::parse`] judges the result. `Truncated`
/// when `prefix` does not hold the header and the section table.
pub fn reseal_checksums(prefix: &mut [u8]) -> Result<(), ImageError> {
    let short = || {
        err(
            ErrorKind::Truncated,
            Location::SectionTable,
            "prefix ends inside the header or the section table",
        )
    };
    let count = read_u32(prefix, offset_of!(HeaderRecord, section_count)).ok_or_else(short)?;
    let table_end = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(SECTION_ENTRY_LEN))
        .and_then(|len| len.checked_add(HEADER_LEN))
        .filter(|&end| end <= prefix.len())
        .ok_or_else(short)?;
    for entry in (HEADER_LEN..table_end).step_by(SECTION_ENTRY_LEN) {
        let offset = read_u64(prefix, entry + offset_of!(SectionEntry, offset));
        let length = read_u64(prefix, entry + offset_of!(SectionEntry, length));
        let range = offset.zip(length).and_then(|(o, l)| {
            let start = usize::try_from(o).ok()?;
            Some(start..start.checked_add(usize::try_from(l).ok()?)?)
        });
        if let Some(crc) = range.and_then(|r| prefix.get(r)).map(crc32c) {
            write_u32(prefix, entry + offset_of!(SectionEntry, crc), crc).ok_or_else(short)?;
        }
    }
    let table_crc = crc32c(prefix.get(HEADER_LEN..table_end).ok_or_else(short)?);
    write_u32(prefix, offset_of!(HeaderRecord, table_crc), table_crc).ok_or_else(short)?;
    let header_crc = crc32c(prefix.get(..HEADER_CRC_OFFSET).ok_or_else(short)?);
    write_u32(prefix, HEADER_CRC_OFFSET, header_crc).ok_or_else(short)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::image::{ArchTag, BundleParts, ImageBuilder, ImageHeader, LayerSpec, ModelGeometry};
    use crate::DType;

    fn image(cost: Option<StoredCostModel>) -> Vec<u8> {
        image_with(cost, None)
    }

    /// A tokenizer section: a GGUF v3 file with the architecture and one
    /// token, padded to its 32-byte data offset.
    fn tokenizer() -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        put(&mut out, "general.architecture");
        out.extend_from_slice(&8u32.to_le_bytes());
        put(&mut out, "llama");
        put(&mut out, "tokenizer.ggml.tokens");
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        put(&mut out, "hello");
        out.resize(out.len().next_multiple_of(32), 0);
        out
    }

    fn image_with(cost: Option<StoredCostModel>, tokenizer: Option<Vec<u8>>) -> Vec<u8> {
        let geometry = ModelGeometry {
            arch: ArchTag::new("llama").unwrap(),
            layers: 1,
            hidden: 32,
            ffn: 2,
            heads: 1,
            kv_heads: 1,
            head_dim: 32,
            vocab: 16,
            context: 64,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            fingerprint: 7,
        };
        let q = Some(DType::Q8_0);
        let parts = BundleParts {
            gate: q,
            up: q,
            down: q,
        };
        let mut b = ImageBuilder::new(geometry);
        b.cost_model(cost);
        b.add_tensor("output_norm.weight", DType::F32, &[32], vec![1u8; 128])
            .unwrap();
        b.add_layer(LayerSpec::new(parts, vec![3u8; 2 * 102], vec![1, 0]));
        if let Some(t) = tokenizer {
            b.tokenizer_gguf(t);
        }
        b.to_bytes().unwrap()
    }

    const MODEL: StoredCostModel = StoredCostModel {
        command_ns: 48_000,
        bytes_per_sec: 1_300_000_000,
        queue_depth: 5,
    };

    #[test]
    fn storing_a_model_matches_what_the_writer_would_have_written() {
        let mut file = image(None);
        set_cost_model(&mut file, Some(MODEL)).unwrap();
        assert_eq!(file, image(Some(MODEL)));
        assert_eq!(Image::parse(&file).unwrap().cost_model(), Some(MODEL));
        // And back: removing it restores the original bytes exactly.
        set_cost_model(&mut file, None).unwrap();
        assert_eq!(file, image(None));
    }

    #[test]
    fn a_tokenizer_section_after_the_cost_model_is_kept() {
        let mut file = image_with(None, Some(tokenizer()));
        set_cost_model(&mut file, Some(MODEL)).unwrap();
        assert_eq!(file, image_with(Some(MODEL), Some(tokenizer())));
        let image = Image::parse(&file).unwrap();
        assert_eq!(image.header().minor, 1);
        assert_eq!(image.tokenizer_gguf(), Some(tokenizer().as_slice()));
    }

    #[test]
    fn only_the_prefix_given_is_needed_and_data_is_untouched() {
        let mut file = image(Some(MODEL));
        let meta = ImageHeader::parse(&file).unwrap().meta_len as usize;
        let data = file[meta..].to_vec();
        let other = StoredCostModel {
            queue_depth: 9,
            ..MODEL
        };
        set_cost_model(&mut file[..meta], Some(other)).unwrap();
        assert_eq!(&file[meta..], &data[..]);
        assert_eq!(Image::parse(&file).unwrap().cost_model(), Some(other));
    }

    #[test]
    fn bad_models_and_damaged_images_are_refused_untouched() {
        let mut file = image(None);
        let before = file.clone();
        for bad in [
            StoredCostModel {
                bytes_per_sec: 0,
                ..MODEL
            },
            StoredCostModel {
                queue_depth: 0,
                ..MODEL
            },
        ] {
            let e = set_cost_model(&mut file, Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Malformed);
            assert_eq!(file, before);
        }
        // A flipped byte in a section: the CRC catches it and nothing is
        // re-checksummed over the damage.
        let meta = ImageHeader::parse(&file).unwrap().meta_len as usize;
        let mut damaged = file.clone();
        damaged[HEADER_LEN + 8 * SECTION_ENTRY_LEN + 3] ^= 1;
        let snapshot = damaged.clone();
        assert!(set_cost_model(&mut damaged, Some(MODEL)).is_err());
        assert_eq!(damaged, snapshot);
        // A prefix cut short is Truncated.
        let e = set_cost_model(&mut file[..meta - 1], Some(MODEL)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated);
        assert_eq!(
            set_cost_model(&mut [], None).unwrap_err().kind(),
            ErrorKind::Truncated
        );
        let mut not_an_image = vec![0u8; 4096];
        assert_eq!(
            set_cost_model(&mut not_an_image, None).unwrap_err().kind(),
            ErrorKind::BadMagic
        );
    }

    #[test]
    fn resealing_an_intact_image_changes_nothing() {
        for file in [image(Some(MODEL)), image_with(None, Some(tokenizer()))] {
            let mut copy = file.clone();
            reseal_checksums(&mut copy).unwrap();
            assert_eq!(copy, file);
        }
    }

    #[test]
    fn a_resealed_edit_reaches_the_checks_behind_the_checksums() {
        let mut file = image(None);
        let geometry = Image::parse(&file).unwrap().geometry();
        // The geometry section is the first after the table: its `hidden`
        // field (offset 20) set to zero passes every CRC once resealed.
        let table_end = HEADER_LEN + 8 * SECTION_ENTRY_LEN;
        let at = table_end.next_multiple_of(8) + 20;
        assert_eq!(read_u32(&file, at), Some(geometry.hidden));
        write_u32(&mut file, at, 0).unwrap();
        assert_eq!(
            Image::parse(&file).unwrap_err().kind(),
            ErrorKind::ChecksumMismatch
        );
        reseal_checksums(&mut file).unwrap();
        let e = Image::parse(&file).unwrap_err();
        assert_eq!(e.detail(), "hidden width is zero");
        assert_eq!(
            reseal_checksums(&mut file[..HEADER_LEN + 10])
                .unwrap_err()
                .kind(),
            ErrorKind::Truncated
        );
    }
}
