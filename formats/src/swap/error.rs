//! Errors of swap-area decoding and encoding.

use core::fmt;

/// What is wrong with a swap-area structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes end before the structure does.
    Truncated,
    /// The first bytes are not the structure's magic.
    BadMagic,
    /// A version this reader does not know (its checksum was valid, so a
    /// newer writer made it on purpose).
    UnsupportedVersion,
    /// A CRC32C does not match.
    ChecksumMismatch,
    /// A field is inconsistent (sizes, order, reserved bytes, counts).
    Malformed,
    /// An extent is misaligned, overlaps another or leaves the area.
    OutOfRange,
    /// The output buffer is too small, or the value cannot be encoded.
    Encode,
}

/// A swap-area error: its kind, the structure and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapFormatError {
    kind: ErrorKind,
    what: &'static str,
}

impl SwapFormatError {
    /// An error of `kind`; `what` says what was wrong (for a message).
    pub const fn new(kind: ErrorKind, what: &'static str) -> Self {
        SwapFormatError { kind, what }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What was wrong, for a message.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for SwapFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadMagic => "bad magic",
            ErrorKind::UnsupportedVersion => "unsupported version",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::Malformed => "malformed",
            ErrorKind::OutOfRange => "extent out of range",
            ErrorKind::Encode => "cannot encode",
        };
        write!(f, "KV swap area: {kind}: {}", self.what)
    }
}

impl core::error::Error for SwapFormatError {}
