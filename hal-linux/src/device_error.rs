//! The error shape shared by the Linux flash devices: a device-specific
//! reason, the file it concerns and the operating system's own error.
//!
//! [`FileFlash`](crate::FileFlash) and [`BlockFlash`](crate::BlockFlash) fail
//! for different reasons but report them the same way, so the carrying,
//! naming and chaining live here once and each device only supplies its
//! [`DeviceReason`]: how a reason maps to the kernel's [`ErrorKind`] and how it
//! reads to a person.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use lode_kernel::flash::{Error, ErrorKind};

/// What a device's own reason enum must offer for [`DeviceError`] to carry it.
pub trait DeviceReason: Copy + fmt::Debug {
    /// The kernel's coarser view of this reason.
    fn kind(&self) -> ErrorKind;

    /// The reason for a request the kernel's checks refused before any I/O.
    fn refused(kind: ErrorKind) -> Self;

    /// The sentence for this reason, naming `path` where it helps; the OS
    /// error, if any, is appended by [`DeviceError`]'s `Display`.
    fn describe(&self, path: Option<&Path>, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// `" <path>"` when the file is known and nothing otherwise, so a reason's
/// text reads "cannot open /data/model.lode" or just "cannot open".
pub(crate) fn file_suffix(path: Option<&Path>) -> String {
    path.map_or_else(String::new, |p| format!(" {}", p.display()))
}

/// Error of a Linux flash device, with the path when one is known and the OS
/// error when there is one, so `Display` can say, for example, "cannot open
/// /data/model.lode: No such file or directory (os error 2)".
#[derive(Debug)]
pub struct DeviceError<R> {
    reason: R,
    path: Option<PathBuf>,
    source: Option<io::Error>,
}

impl<R: DeviceReason> DeviceError<R> {
    /// An error with no path and no OS cause.
    pub(crate) fn new(reason: R) -> Self {
        DeviceError {
            reason,
            path: None,
            source: None,
        }
    }

    /// An error caused by an OS error.
    pub(crate) fn io(reason: R, source: io::Error) -> Self {
        DeviceError {
            reason,
            path: None,
            source: Some(source),
        }
    }

    /// The same error, naming the file it concerns. A path already named is
    /// kept: the innermost caller knows best which file failed.
    pub(crate) fn at(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// What went wrong.
    pub fn reason(&self) -> R {
        self.reason
    }

    /// The file concerned, when the device was opened by path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The operating system's error, when one caused this.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

impl<R: DeviceReason> From<ErrorKind> for DeviceError<R> {
    /// A request refused by the kernel's checks.
    fn from(kind: ErrorKind) -> Self {
        DeviceError::new(R::refused(kind))
    }
}

impl<R: DeviceReason> Error for DeviceError<R> {
    fn kind(&self) -> ErrorKind {
        self.reason.kind()
    }
}

impl<R: DeviceReason> fmt::Display for DeviceError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason.describe(self.path.as_deref(), f)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl<R: DeviceReason> std::error::Error for DeviceError<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reason of two cases, enough to see what the shared type adds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Probe {
        Open,
        Refused(ErrorKind),
    }

    impl DeviceReason for Probe {
        fn kind(&self) -> ErrorKind {
            match self {
                Probe::Open => ErrorKind::Io,
                Probe::Refused(kind) => *kind,
            }
        }

        fn refused(kind: ErrorKind) -> Self {
            Probe::Refused(kind)
        }

        fn describe(&self, path: Option<&Path>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match (self, path) {
                (Probe::Open, Some(p)) => write!(f, "cannot open {}", p.display()),
                (Probe::Open, None) => write!(f, "cannot open"),
                (Probe::Refused(kind), _) => write!(f, "refused: {kind}"),
            }
        }
    }

    #[test]
    fn display_appends_the_os_error_after_the_reason() {
        let e = DeviceError::io(Probe::Open, io::Error::from(io::ErrorKind::NotFound))
            .at(Path::new("/a"));
        let text = e.to_string();
        let os = io::Error::from(io::ErrorKind::NotFound).to_string();
        assert_eq!(text, format!("cannot open /a: {os}"));
        assert!(e.io_error().is_some());
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn first_path_wins_and_kinds_pass_through() {
        let e = DeviceError::new(Probe::Open)
            .at(Path::new("/first"))
            .at(Path::new("/second"));
        assert_eq!(e.path(), Some(Path::new("/first")));
        assert_eq!(e.to_string(), "cannot open /first");
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&e).is_none());

        let refused = DeviceError::<Probe>::from(ErrorKind::QueueFull);
        assert_eq!(refused.reason(), Probe::Refused(ErrorKind::QueueFull));
        assert_eq!(refused.kind(), ErrorKind::QueueFull);
        assert_eq!(refused.path(), None);
    }
}
