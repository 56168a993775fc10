//! Why a [`BlockFlash`](super::BlockFlash) operation fails, and how each
//! reason reads; [`DeviceError`] carries it with the file and the OS error.

use std::fmt;
use std::path::Path;

use lode_kernel::flash::ErrorKind;

use crate::device_error::{file_suffix, DeviceError, DeviceReason};
use crate::window::{Misfit, Window};

/// What went wrong, in this binding's terms. The kernel sees the coarser
/// [`ErrorKind`] through [`Error::kind`](lode_kernel::flash::Error::kind);
/// people see this.
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
            Reason::InvalidOptions(why) => write!(f, "invalid block-device options: {why}"),
            Reason::Open => write!(f, "cannot open{file}"),
            Reason::Stat => write!(f, "cannot read the type, size or alignment of{file}"),
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
            Reason::WindowUnaligned { offset, align } => write!(
                f,
                "direct I/O needs the window to start on a {align}-byte boundary, not at {offset}"
            ),
            Reason::BlockSizeTooSmall { requested, device } => write!(
                f,
                "block size {requested} is finer than the {device}-byte alignment{file} needs for direct I/O"
            ),
            Reason::DirectRefused => write!(f, "direct I/O (O_DIRECT) refused for{file}"),
            Reason::IoUringUnavailable => write!(f, "io_uring is not available to this process"),
            Reason::Spawn => write!(f, "cannot start a pread worker thread"),
            Reason::Pin { cpu } => write!(f, "cannot pin the I/O thread to CPU {cpu}"),
            Reason::Bounce => write!(f, "cannot map the bounce buffers"),
            Reason::Refused(kind) => write!(f, "request refused: {kind}"),
            Reason::Engine => write!(f, "the I/O engine failed on{file}"),
            Reason::ReadOnly => write!(f, "write refused: the file was not opened for writing"),
            Reason::Write => write!(f, "write to{file} failed"),
            Reason::Sync => write!(f, "sync of{file} failed"),
        }
    }
}

/// Error of every [`BlockFlash`](super::BlockFlash) operation: a [`Reason`],
/// the path when one is known and the OS error when there is one.
pub type BlockFlashError = DeviceError<Reason>;

#[cfg(test)]
mod tests {
    use std::io;

    use lode_kernel::flash::Error;

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
