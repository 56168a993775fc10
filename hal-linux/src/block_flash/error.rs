//! The one error type of [`BlockFlash`](super::BlockFlash): what was being
//! done, which file, and the operating system's own error when there is one.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use lode_kernel::flash::{Error, ErrorKind};

use crate::file_flash::Window;

/// What went wrong, in this binding's terms. The kernel sees the coarser
/// [`ErrorKind`] through [`Error::kind`]; people see this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The options are inconsistent; the text says which rule.
    InvalidOptions(&'static str),
    /// The file could not be opened.
    Open,
    /// The file's type, size or alignment could not be read.
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
    /// Direct I/O was required but the window does not start on a block
    /// boundary, so no read through it could be aligned.
    WindowUnaligned {
        /// File offset of the window.
        offset: u64,
        /// The alignment direct I/O needs.
        align: u32,
    },
    /// The block size asked for is finer than the device can read directly.
    BlockSizeTooSmall {
        /// The block size asked for.
        requested: u32,
        /// The device's direct-I/O alignment.
        device: u32,
    },
    /// Direct I/O was required and the file system refused it.
    DirectRefused,
    /// io_uring was required and the kernel refused to set up a ring.
    IoUringUnavailable,
    /// A pread worker could not be started.
    Spawn,
    /// A pread worker could not be pinned to the CPU asked for.
    Pin {
        /// The CPU asked for.
        cpu: usize,
    },
    /// The bounce memory could not be mapped.
    Bounce,
    /// A read batch or a write was refused before any I/O: the kernel's check
    /// (alignment, range, length, queue room, destination) failed.
    Refused(ErrorKind),
    /// The I/O engine itself failed (a ring call or a worker vanished); the
    /// device may not be usable any more.
    Engine,
    /// The file was not opened for writing.
    ReadOnly,
    /// `pwrite` failed or wrote less than asked.
    Write,
    /// `fdatasync` failed.
    Sync,
}

impl Reason {
    /// The kernel's view of this reason.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Reason::InvalidOptions(_)
            | Reason::NotAFile
            | Reason::BlockSizeTooSmall { .. }
            | Reason::Spawn
            | Reason::Pin { .. }
            | Reason::Bounce => ErrorKind::Other,
            Reason::Open | Reason::Stat | Reason::Write | Reason::Sync | Reason::Engine => {
                ErrorKind::Io
            }
            Reason::WindowPastEnd { .. } | Reason::WindowTooSmall { .. } => ErrorKind::OutOfRange,
            Reason::WindowUnaligned { .. } => ErrorKind::Misaligned,
            Reason::DirectRefused | Reason::IoUringUnavailable | Reason::ReadOnly => {
                ErrorKind::Unsupported
            }
            Reason::Refused(kind) => *kind,
        }
    }
}

/// Error of every [`BlockFlash`](super::BlockFlash) operation, with the path
/// when one is known and the OS error when there is one.
#[derive(Debug)]
pub struct BlockFlashError {
    reason: Reason,
    path: Option<PathBuf>,
    source: Option<io::Error>,
}

impl BlockFlashError {
    /// An error with no path and no OS cause.
    pub(crate) fn new(reason: Reason) -> Self {
        BlockFlashError {
            reason,
            path: None,
            source: None,
        }
    }

    /// An error caused by an OS error.
    pub(crate) fn io(reason: Reason, source: io::Error) -> Self {
        BlockFlashError {
            reason,
            path: None,
            source: Some(source),
        }
    }

    /// The same error, naming the file it concerns (kept if already named).
    pub(crate) fn at(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// What went wrong.
    pub fn reason(&self) -> Reason {
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

impl From<ErrorKind> for BlockFlashError {
    /// A request refused by the kernel's checks.
    fn from(kind: ErrorKind) -> Self {
        BlockFlashError::new(Reason::Refused(kind))
    }
}

impl Error for BlockFlashError {
    fn kind(&self) -> ErrorKind {
        self.reason.kind()
    }
}

impl fmt::Display for BlockFlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = match &self.path {
            Some(p) => format!(" {}", p.display()),
            None => String::new(),
        };
        match self.reason {
            Reason::InvalidOptions(why) => write!(f, "invalid block-device options: {why}")?,
            Reason::Open => write!(f, "cannot open{file}")?,
            Reason::Stat => write!(f, "cannot read the type, size or alignment of{file}")?,
            Reason::NotAFile => write!(
                f,
                "{} is neither a regular file nor a block device",
                self.path
                    .as_deref()
                    .map_or_else(|| "the file".into(), |p| p.display().to_string())
            )?,
            Reason::WindowPastEnd { window, file_len } => write!(
                f,
                "window of {} bytes at offset {} reaches past the end of{file} ({file_len} bytes)",
                window.len, window.offset
            )?,
            Reason::WindowTooSmall { len, block_size } => write!(
                f,
                "window of {len} bytes holds no whole {block_size}-byte block"
            )?,
            Reason::WindowUnaligned { offset, align } => write!(
                f,
                "direct I/O needs the window to start on a {align}-byte boundary, not at {offset}"
            )?,
            Reason::BlockSizeTooSmall { requested, device } => write!(
                f,
                "block size {requested} is finer than the {device}-byte alignment{file} needs for direct I/O"
            )?,
            Reason::DirectRefused => write!(f, "direct I/O (O_DIRECT) refused for{file}")?,
            Reason::IoUringUnavailable => write!(f, "io_uring is not available to this process")?,
            Reason::Spawn => write!(f, "cannot start a pread worker thread")?,
            Reason::Pin { cpu } => write!(f, "cannot pin the I/O thread to CPU {cpu}")?,
            Reason::Bounce => write!(f, "cannot map the bounce buffers")?,
            Reason::Refused(kind) => write!(f, "request refused: {kind}")?,
            Reason::Engine => write!(f, "the I/O engine failed on{file}")?,
            Reason::ReadOnly => write!(f, "write refused: the file was not opened for writing")?,
            Reason::Write => write!(f, "write to{file} failed")?,
            Reason::Sync => write!(f, "sync of{file} failed")?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BlockFlashError {
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
    fn display_names_file_and_cause() {
        let e = BlockFlashError::io(
            Reason::DirectRefused,
            io::Error::from_raw_os_error(libc::EINVAL),
        )
        .at(Path::new("/dev/shm/model.lode"));
        let text = e.to_string();
        assert!(
            text.starts_with("direct I/O (O_DIRECT) refused for /dev/shm/model.lode: "),
            "{text}"
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(std::error::Error::source(&e).is_some());
        // A second `at` does not overwrite the first path.
        let e = e.at(Path::new("/elsewhere"));
        assert_eq!(e.path(), Some(Path::new("/dev/shm/model.lode")));
    }

    #[test]
    fn kinds_map_to_the_kernel() {
        assert_eq!(
            Reason::WindowUnaligned {
                offset: 3,
                align: 512
            }
            .kind(),
            ErrorKind::Misaligned
        );
        assert_eq!(Reason::Engine.kind(), ErrorKind::Io);
        assert_eq!(Reason::IoUringUnavailable.kind(), ErrorKind::Unsupported);
        assert_eq!(Reason::Pin { cpu: 9 }.kind(), ErrorKind::Other);
        assert_eq!(
            BlockFlashError::from(ErrorKind::QueueFull).kind(),
            ErrorKind::QueueFull
        );
    }
}
