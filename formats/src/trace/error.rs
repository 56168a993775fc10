//! Errors of trace reading and writing.

use core::fmt;

/// What is wrong with a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file ends before the header or a record does.
    Truncated,
    /// The first bytes are not the trace magic.
    BadMagic,
    /// A major version this reader does not know.
    UnsupportedVersion,
    /// A CRC32C does not match.
    ChecksumMismatch,
    /// A field is inconsistent (sizes, reserved bytes, padding bits).
    Malformed,
    /// A token or layer index beyond the trace.
    OutOfRange,
    /// Writing failed, or the writer was used against its header.
    Write,
}

/// A trace error with where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceError {
    kind: ErrorKind,
    token: Option<u32>,
    what: &'static str,
}

impl TraceError {
    pub(crate) const fn header(kind: ErrorKind, what: &'static str) -> Self {
        TraceError {
            kind,
            token: None,
            what,
        }
    }

    pub(crate) const fn token(kind: ErrorKind, token: u32, what: &'static str) -> Self {
        TraceError {
            kind,
            token: Some(token),
            what,
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The token whose record is at fault, if any.
    pub fn token_index(&self) -> Option<u32> {
        self.token
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadMagic => "bad magic",
            ErrorKind::UnsupportedVersion => "unsupported version",
            ErrorKind::ChecksumMismatch => "checksum mismatch",
            ErrorKind::Malformed => "malformed",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::Write => "write failed",
        };
        match self.token {
            Some(t) => write!(f, "activation trace: {kind} at token {t}: {}", self.what),
            None => write!(f, "activation trace: {kind}: {}", self.what),
        }
    }
}

impl core::error::Error for TraceError {}
