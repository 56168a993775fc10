//! Errors of the image reader, verifier and writer.
//!
//! One error type for the whole format, as in embedded-hal: a generic
//! [`ErrorKind`] that callers match on, plus a [`Location`] and a short
//! static description that make the message name what is wrong (which
//! section, tensor, layer or byte offset). No allocation, so the reader stays
//! `no_std`.

use core::fmt;

/// What class of problem an image has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes end before the structure they must hold.
    Truncated,
    /// The file does not start with the lode magic bytes.
    BadMagic,
    /// The major version is not one this reader understands.
    UnsupportedVersion,
    /// An offset or length is not a multiple of the alignment it needs.
    Misaligned,
    /// An offset, length or index points outside the image or its table.
    OutOfRange,
    /// A CRC32C does not match its bytes.
    ChecksumMismatch,
    /// A byte that must be zero (padding, reserved field) is not.
    NonZeroPadding,
    /// Anything else that breaks the format's rules (inconsistent sizes,
    /// unknown dtype, bad permutation, unsorted names, ...).
    Malformed,
    /// A bundle's codec tag names an encoding this reader cannot decode
    /// (only `0`, raw, is defined): its bytes must not be used as raw data.
    UnsupportedCodec,
}

impl ErrorKind {
    /// A short description of the kind.
    pub const fn describe(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadMagic => "not a lode image (bad magic bytes)",
            ErrorKind::UnsupportedVersion => "unsupported format version",
            ErrorKind::Misaligned => "misaligned",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::NonZeroPadding => "non-zero padding",
            ErrorKind::Malformed => "malformed",
            ErrorKind::UnsupportedCodec => "unsupported codec",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// The sections an image may hold, by their table kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SectionKind {
    /// Model geometry (kind 1).
    Geometry,
    /// UTF-8 bytes of tensor names (kind 2).
    Strings,
    /// Tensor table (kind 3).
    Tensors,
    /// Per-layer bundle regions (kind 4).
    Layers,
    /// Per-layer placement permutations and inverses (kind 5).
    Placement,
    /// CRC32C of every bundle (kind 6).
    BundleCrcs,
    /// Codec tag of every bundle (kind 7).
    CodecTags,
    /// Stored device cost model (kind 8).
    CostModel,
    /// The model's tokenizer as a GGUF file (kind 9, optional, since 1.1).
    Tokenizer,
    /// Which layers of which model a pruned image holds (kind 10, optional,
    /// since 1.2).
    Lineage,
    /// A sliding-window model's attention parameters (kind 11, since 1.3).
    Arch,
    /// A kind this reader does not know (from a newer minor version).
    Other(u32),
}

impl SectionKind {
    /// Every kind this reader knows (version 1.3), in table order.
    pub const KNOWN: [SectionKind; 11] = [
        SectionKind::Geometry,
        SectionKind::Strings,
        SectionKind::Tensors,
        SectionKind::Layers,
        SectionKind::Placement,
        SectionKind::BundleCrcs,
        SectionKind::CodecTags,
        SectionKind::CostModel,
        SectionKind::Tokenizer,
        SectionKind::Lineage,
        SectionKind::Arch,
    ];

    /// The kind stored in the table.
    pub const fn code(self) -> u32 {
        match self {
            SectionKind::Geometry => 1,
            SectionKind::Strings => 2,
            SectionKind::Tensors => 3,
            SectionKind::Layers => 4,
            SectionKind::Placement => 5,
            SectionKind::BundleCrcs => 6,
            SectionKind::CodecTags => 7,
            SectionKind::CostModel => 8,
            SectionKind::Tokenizer => 9,
            SectionKind::Lineage => 10,
            SectionKind::Arch => 11,
            SectionKind::Other(code) => code,
        }
    }

    /// The kind with table code `code`.
    pub const fn from_code(code: u32) -> SectionKind {
        match code {
            1 => SectionKind::Geometry,
            2 => SectionKind::Strings,
            3 => SectionKind::Tensors,
            4 => SectionKind::Layers,
            5 => SectionKind::Placement,
            6 => SectionKind::BundleCrcs,
            7 => SectionKind::CodecTags,
            8 => SectionKind::CostModel,
            9 => SectionKind::Tokenizer,
            10 => SectionKind::Lineage,
            11 => SectionKind::Arch,
            other => SectionKind::Other(other),
        }
    }

    /// Lower-case name, for messages.
    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::Geometry => "geometry",
            SectionKind::Strings => "strings",
            SectionKind::Tensors => "tensors",
            SectionKind::Layers => "layers",
            SectionKind::Placement => "placement",
            SectionKind::BundleCrcs => "bundle checksums",
            SectionKind::CodecTags => "codec tags",
            SectionKind::CostModel => "cost model",
            SectionKind::Tokenizer => "tokenizer",
            SectionKind::Lineage => "lineage",
            SectionKind::Arch => "architecture",
            SectionKind::Other(_) => "unknown",
        }
    }
}

/// Where in the image a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Location {
    /// The fixed header.
    Header,
    /// The section table.
    SectionTable,
    /// A metadata section as a whole.
    Section(SectionKind),
    /// Tensor-table entry (or its data), by index.
    Tensor(usize),
    /// A layer's bundle region, by layer index.
    Layer(usize),
    /// One bundle: layer and placement position.
    Bundle {
        /// Layer index.
        layer: usize,
        /// Placement position inside the layer's region.
        pos: u32,
    },
    /// A byte offset of the image (padding, the end of the data).
    Offset(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Location::Header => f.write_str("header"),
            Location::SectionTable => f.write_str("section table"),
            Location::Section(SectionKind::Other(code)) => write!(f, "section of kind {code}"),
            Location::Section(kind) => write!(f, "{} section", kind.name()),
            Location::Tensor(i) => write!(f, "tensor {i}"),
            Location::Layer(l) => write!(f, "layer {l}"),
            Location::Bundle { layer, pos } => write!(f, "layer {layer} bundle {pos}"),
            Location::Offset(o) => write!(f, "byte offset {o}"),
        }
    }
}

/// An image that the reader, verifier or writer rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ImageError {
    kind: ErrorKind,
    location: Location,
    detail: &'static str,
}

impl ImageError {
    /// An error of `kind` at `location`, explained by `detail`.
    pub const fn new(kind: ErrorKind, location: Location, detail: &'static str) -> Self {
        ImageError {
            kind,
            location,
            detail,
        }
    }

    /// The generic kind, for matching.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Where the problem is.
    pub const fn location(&self) -> Location {
        self.location
    }

    /// What exactly is wrong, in a few words.
    pub const fn detail(&self) -> &'static str {
        self.detail
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}: {}", self.kind, self.location, self.detail)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ImageError {}

/// Shorthand for the many error sites of the reader.
pub(crate) const fn err(kind: ErrorKind, location: Location, detail: &'static str) -> ImageError {
    ImageError::new(kind, location, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_codes_round_trip() {
        for kind in SectionKind::KNOWN {
            assert_eq!(SectionKind::from_code(kind.code()), kind);
        }
        assert_eq!(SectionKind::from_code(99), SectionKind::Other(99));
        assert_eq!(SectionKind::Other(99).code(), 99);
        // Table order is code order.
        for pair in SectionKind::KNOWN.windows(2) {
            assert!(pair[0].code() < pair[1].code());
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn message_names_the_place() {
        use std::string::ToString;
        let e = ImageError::new(
            ErrorKind::ChecksumMismatch,
            Location::Bundle { layer: 3, pos: 17 },
            "bundle CRC32C differs",
        );
        assert_eq!(
            e.to_string(),
            "checksum mismatch in layer 3 bundle 17: bundle CRC32C differs"
        );
        let e = ImageError::new(
            ErrorKind::Malformed,
            Location::Section(SectionKind::Other(12)),
            "x",
        );
        assert_eq!(e.to_string(), "malformed in section of kind 12: x");
    }
}
