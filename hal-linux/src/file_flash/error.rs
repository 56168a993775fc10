//! Why a [`FileFlash`](super::FileFlash) operation fails, and how each reason
//! reads; [`DeviceError`] carries it with the file and the OS error.

use std::fmt;
use std::path::Path;

use lode_kernel::flash::ErrorKind;

use crate::device_error::{file_suffix, DeviceError, DeviceReason};
use crate::window::{Misfit, Window};

/// What went wrong, in this binding's own terms. The kernel only sees the
/// coarser [`ErrorKind`] through
/// [`Error::kind`](lode_kernel::flash::Error::kind); people see this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The options are inconsistent; the text says which rule.
    InvalidOptions(&'static str),
    /// The file could not be opened.
    Open,
    /// The file's type or size could not be read.
    Stat,
    /// The path names neither a regular file nor a block device.
    NotAFile,
    /// The window reaches past the end of the file.
    WindowPastEnd {
        /// The window asked for.
        window: Window,
        /// The file's length when it was checked.
        file_len: u64,
    },
    /// The window holds no whole block, so the device would be empty.
    WindowTooSmall {
        /// The window's length.
        len: u64,
        /// The block size it was measured against.
        block_size: u32,
    },
    /// A read batch or a write was refused before any I/O: the kernel's check
    /// (alignment, range, length, queue room, destination) failed.
    Refused(ErrorKind),
    /// The file was not opened for writing.
    ReadOnly,
    /// `pwrite` failed.
    Write,
    /// `fdatasync` failed.
    Sync,
}

impl Reason {
    /// The kernel's view of this reason.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Reason::InvalidOptions(_) | Reason::NotAFile => ErrorKind::Other,
            Reason::Open | Reason::Stat | Reason::Write | Reason::Sync => ErrorKind::Io,
            Reason::WindowPastEnd { .. } | Reason::WindowTooSmall { .. } => ErrorKind::OutOfRange,
            Reason::Refused(kind) => *kind,
            Reason::ReadOnly => ErrorKind::Unsupported,
        }
    }
}

impl From<Misfit> for Reason {
    fn from(m: Misfit) -> Self {
        match m {
            Misfit::PastEnd { window, file_len } => Reason::WindowPastEnd { window, file_len },
            Misfit::TooSmall { len, block_size } => Reason::WindowTooSmall { len, block_size },
        }
    }
}

impl DeviceReason for Reason {
    fn kind(&self) -> ErrorKind {
        Reason::kind(self)
    }

    fn refused(kind: ErrorKind) -> Self {
        Reason::Refused(kind)
    }

    fn describe(&self, path: Option<&Path>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = file_suffix(path);
        match *self {
            Reason::InvalidOptions(why) => write!(f, "invalid flash options: {why}"),
            Reason::Open => write!(f, "cannot open{file}"),
            Reason::Stat => write!(f, "cannot read the type or size of{file}"),
            Reason::NotAFile => write!(
                f,
                "{} is neither a regular file nor a block device",
                path.map_or_else(|| "the file".into(), |p| p.display().to_string())
            ),
            Reason::WindowPastEnd { window, file_len } => write!(
                f,
                "window of {} bytes at offset {} reaches past the end of{file} ({file_len} bytes)",
                window.len, window.offset
            ),
            Reason::WindowTooSmall { len, block_size } => write!(
                f,
                "window of {len} bytes holds no whole {block_size}-byte block"
            ),
            Reason::Refused(kind) => write!(f, "request refused: {kind}"),
            Reason::ReadOnly => write!(f, "write refused: the file was not opened for writing"),
            Reason::Write => write!(f, "write to{file} failed"),
            Reason::Sync => write!(f, "sync of{file} failed"),
        }
    }
}

/// Error of every [`FileFlash`](super::FileFlash) operation: a [`Reason`],
/// the path when one is known and the OS error when there is one.
pub type FileFlashError = DeviceError<Reason>;

#[cfg(test)]
mod tests {
    use std::io;

    use lode_kernel::flash::Error;

    use super::*;

    #[test]
    fn display_names_file_and_cause() {
        let e = FileFlashError::io(Reason::Open, io::Error::from(io::ErrorKind::NotFound))
            .at(Path::new("/nowhere/model.lode"));
        let text = e.to_string();
        assert!(
            text.starts_with("cannot open /nowhere/model.lode: "),
            "{text}"
        );
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn kinds_map_to_the_kernel() {
        let past = Reason::WindowPastEnd {
            window: Window::new(10, 10),
            file_len: 15,
        };
        assert_eq!(past.kind(), ErrorKind::OutOfRange);
        assert_eq!(Reason::ReadOnly.kind(), ErrorKind::Unsupported);
        assert_eq!(
            FileFlashError::from(ErrorKind::Misaligned).kind(),
            ErrorKind::Misaligned
        );
        let text = FileFlashError::new(past).to_string();
        assert!(
            text.contains("offset 10") && text.contains("15 bytes"),
            "{text}"
        );
    }
}
