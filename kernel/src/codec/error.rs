//! What decoding a coded unit can hit: one error enum, with a `kind()` in
//! the embedded-hal 1.0 style, so a caller can tell "read it again" from
//! "this build cannot read it".

use core::fmt;

/// What kind of failure a decode met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ends before the unit does.
    Truncated,
    /// The unit is of a version, block type or coding this build does not
    /// read.
    Unsupported,
    /// The output slice cannot hold the decoded blocks.
    OutputTooSmall,
    /// The bytes fail their checksum or the format's own checks: read the
    /// unit again, or give up on it.
    Corrupt,
}

/// Why a coded unit could not be decoded. Nothing was promised about the
/// output's contents when this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is shorter than the header or the length it declares.
    Truncated {
        /// Bytes the unit needs.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// The first bytes are not the codec's magic.
    BadMagic,
    /// A format version other than [`VERSION`](super::VERSION).
    UnsupportedVersion(u8),
    /// A GGML block type the codec does not take.
    UnsupportedType(u8),
    /// A section kind this build does not know.
    UnsupportedKind(u8),
    /// The output slice is smaller than the unit's blocks.
    OutputTooSmall {
        /// Bytes the blocks take.
        need: usize,
        /// Bytes of the output slice.
        have: usize,
    },
    /// The CRC32C over the unit does not match the stored one.
    Checksum {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes given.
        computed: u32,
    },
    /// The header, a table or a stream is inconsistent; the text says
    /// which check failed.
    Corrupt(&'static str),
}

impl DecodeError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::Truncated { .. } => ErrorKind::Truncated,
            DecodeError::UnsupportedVersion(_)
            | DecodeError::UnsupportedType(_)
            | DecodeError::UnsupportedKind(_) => ErrorKind::Unsupported,
            DecodeError::OutputTooSmall { .. } => ErrorKind::OutputTooSmall,
            DecodeError::BadMagic | DecodeError::Checksum { .. } | DecodeError::Corrupt(_) => {
                ErrorKind::Corrupt
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { need, have } => {
                write!(f, "coded unit truncated: {have} bytes of {need}")
            }
            DecodeError::BadMagic => write!(f, "not a coded unit (bad magic)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "coded unit version {v} unsupported"),
            DecodeError::UnsupportedType(t) => write!(f, "block type {t} unsupported by the codec"),
            DecodeError::UnsupportedKind(k) => write!(f, "section kind {k} unsupported"),
            DecodeError::OutputTooSmall { need, have } => {
                write!(f, "output of {have} bytes cannot hold {need}")
            }
            DecodeError::Checksum { stored, computed } => write!(
                f,
                "coded unit checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            DecodeError::Corrupt(why) => write!(f, "corrupt coded unit: {why}"),
        }
    }
}

impl core::error::Error for DecodeError {}
