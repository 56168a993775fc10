//! The section table: where each metadata section is, and the checks that
//! make every byte of the metadata prefix accounted for.
//!
//! Sections follow the table in strictly increasing kind order, each at the
//! first multiple of 8 after the previous one, so the prefix has exactly one
//! valid layout and every gap is a few bytes that must be zero. Each
//! section's bytes are checked against its CRC32C; sections of unknown kinds
//! (from a newer minor version) are checked and then skipped.

use zerocopy::FromBytes;

use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::header::{align_up, ImageHeader};
use super::layout::{SectionEntry, HEADER_LEN, SECTION_ALIGN};
use crate::checksum::crc32c;

/// The byte ranges of the sections version 1.3 defines, each verified
/// against its CRC.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sections<'a> {
    pub geometry: Option<&'a [u8]>,
    pub strings: Option<&'a [u8]>,
    pub tensors: Option<&'a [u8]>,
    pub layers: Option<&'a [u8]>,
    pub placement: Option<&'a [u8]>,
    pub bundle_crcs: Option<&'a [u8]>,
    pub codec_tags: Option<&'a [u8]>,
    pub cost_model: Option<&'a [u8]>,
    pub tokenizer: Option<&'a [u8]>,
    pub lineage: Option<&'a [u8]>,
    pub arch: Option<&'a [u8]>,
}

impl<'a> Sections<'a> {
    fn slot(&mut self, kind: SectionKind) -> Option<&mut Option<&'a [u8]>> {
        Some(match kind {
            SectionKind::Geometry => &mut self.geometry,
            SectionKind::Strings => &mut self.strings,
            SectionKind::Tensors => &mut self.tensors,
            SectionKind::Layers => &mut self.layers,
            SectionKind::Placement => &mut self.placement,
            SectionKind::BundleCrcs => &mut self.bundle_crcs,
            SectionKind::CodecTags => &mut self.codec_tags,
            SectionKind::CostModel => &mut self.cost_model,
            SectionKind::Tokenizer => &mut self.tokenizer,
            SectionKind::Lineage => &mut self.lineage,
            SectionKind::Arch => &mut self.arch,
            SectionKind::Other(_) => return None,
        })
    }

    /// The bytes of a section, if the image has it.
    pub fn get(&self, kind: SectionKind) -> Option<&'a [u8]> {
        match kind {
            SectionKind::Geometry => self.geometry,
            SectionKind::Strings => self.strings,
            SectionKind::Tensors => self.tensors,
            SectionKind::Layers => self.layers,
            SectionKind::Placement => self.placement,
            SectionKind::BundleCrcs => self.bundle_crcs,
            SectionKind::CodecTags => self.codec_tags,
            SectionKind::CostModel => self.cost_model,
            SectionKind::Tokenizer => self.tokenizer,
            SectionKind::Lineage => self.lineage,
            SectionKind::Arch => self.arch,
            SectionKind::Other(_) => None,
        }
    }

    /// The bytes of a section that must be present.
    pub fn require(&self, kind: SectionKind) -> Result<&'a [u8], ImageError> {
        self.get(kind).ok_or(err(
            ErrorKind::Malformed,
            Location::Section(kind),
            "required section is missing",
        ))
    }
}

/// `true` when every byte is zero.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn to_usize(x: u64, at: Location) -> Result<usize, ImageError> {
    usize::try_from(x).map_err(|_| err(ErrorKind::OutOfRange, at, "offset does not fit in memory"))
}

/// Check the section table of `meta` (exactly the metadata prefix) and
/// every section it lists.
pub(crate) fn read_sections<'a>(
    header: &ImageHeader,
    meta: &'a [u8],
) -> Result<Sections<'a>, ImageError> {
    let table_at = Location::SectionTable;
    let table_end = to_usize(header.table_end(), table_at)?;
    let Some(table) = meta.get(HEADER_LEN..table_end) else {
        return Err(err(
            ErrorKind::Truncated,
            table_at,
            "prefix ends inside the section table",
        ));
    };
    if crc32c(table) != header.table_crc {
        return Err(err(
            ErrorKind::ChecksumMismatch,
            table_at,
            "section table CRC32C differs",
        ));
    }
    let Ok(entries) = <[SectionEntry]>::ref_from_bytes(table) else {
        return Err(err(
            ErrorKind::Malformed,
            table_at,
            "table is not whole entries",
        ));
    };

    let mut found = Sections::default();
    let mut prev_kind = 0u32;
    let mut prev_end = header.table_end();
    for entry in entries {
        let code = entry.kind.get();
        let kind = SectionKind::from_code(code);
        let at = Location::Section(kind);
        if code <= prev_kind {
            return Err(err(
                ErrorKind::Malformed,
                at,
                "kinds are not in strictly increasing order",
            ));
        }
        prev_kind = code;
        let offset = entry.offset.get();
        if offset % SECTION_ALIGN != 0 {
            return Err(err(
                ErrorKind::Misaligned,
                at,
                "offset is not a multiple of 8",
            ));
        }
        let end = offset
            .checked_add(entry.length.get())
            .filter(|&end| offset >= header.table_end() && end <= header.meta_len)
            .ok_or(err(
                ErrorKind::OutOfRange,
                at,
                "lies outside the metadata prefix",
            ))?;
        if Some(offset) != align_up(prev_end, SECTION_ALIGN) {
            return Err(err(
                ErrorKind::Malformed,
                at,
                "does not start right after the previous section",
            ));
        }
        let gap = meta.get(to_usize(prev_end, at)?..to_usize(offset, at)?);
        if !gap.is_some_and(all_zero) {
            return Err(err(
                ErrorKind::NonZeroPadding,
                at,
                "padding before it is not zero",
            ));
        }
        let Some(bytes) = meta.get(to_usize(offset, at)?..to_usize(end, at)?) else {
            return Err(err(
                ErrorKind::Truncated,
                at,
                "prefix ends inside the section",
            ));
        };
        if crc32c(bytes) != entry.crc.get() {
            return Err(err(
                ErrorKind::ChecksumMismatch,
                at,
                "section CRC32C differs",
            ));
        }
        if let Some(slot) = found.slot(kind) {
            *slot = Some(bytes);
        }
        prev_end = end;
    }

    let at = Location::Offset(prev_end);
    if header.align_up(prev_end) != Some(header.meta_len) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "metadata length is not the sections' end rounded up to a block",
        ));
    }
    let tail = meta.get(to_usize(prev_end, at)?..);
    if !tail.is_some_and(all_zero) {
        return Err(err(
            ErrorKind::NonZeroPadding,
            at,
            "padding after the last section is not zero",
        ));
    }
    Ok(found)
}
