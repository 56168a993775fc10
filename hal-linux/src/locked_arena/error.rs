//! The error type of [`LockedArena`](super::LockedArena).

use std::fmt;
use std::io;

use lode_kernel::arena::{Error, ErrorKind};

/// Error of a [`LockedArena`](super::LockedArena): the kernel's kind, what the
/// arena was doing, and the OS error when one caused it.
#[derive(Debug)]
pub struct LockedArenaError {
    kind: ErrorKind,
    context: Option<&'static str>,
    source: Option<io::Error>,
}

impl LockedArenaError {
    /// An error of `kind` raised while doing `context`, caused by `source`.
    pub(crate) fn os(kind: ErrorKind, context: &'static str, source: io::Error) -> Self {
        LockedArenaError {
            kind,
            context: Some(context),
            source: Some(source),
        }
    }

    /// What the arena was doing, when the error came from the OS.
    pub fn context(&self) -> Option<&'static str> {
        self.context
    }

    /// The operating system's error, when one caused this.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl From<ErrorKind> for LockedArenaError {
    fn from(kind: ErrorKind) -> Self {
        LockedArenaError {
            kind,
            context: None,
            source: None,
        }
    }
}

impl PartialEq<ErrorKind> for LockedArenaError {
    /// Compare by kind, so tests and callers can write
    /// `assert_eq!(arena.alloc(..).unwrap_err(), ErrorKind::OutOfMemory)`.
    fn eq(&self, other: &ErrorKind) -> bool {
        self.kind == *other
    }
}

impl Error for LockedArenaError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for LockedArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(context) = self.context {
            write!(f, " ({context})")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LockedArenaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_kind() {
        let e = LockedArenaError::os(
            ErrorKind::OutOfMemory,
            "mmap of the budget",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        assert_eq!(e, ErrorKind::OutOfMemory);
        let text = e.to_string();
        assert!(
            text.contains("mmap of the budget") && text.contains("os error"),
            "{text}"
        );
        let plain = LockedArenaError::from(ErrorKind::StaleSlot);
        assert_eq!(plain.to_string(), ErrorKind::StaleSlot.to_string());
        assert!(std::error::Error::source(&plain).is_none());
    }
}
