//! Opening input files so that no path a user names can block a command,
//! exhaust its memory, or be read past what its format allows.
//!
//! Every file lode reads (a GGUF, an image, a trace, a text, a calibration)
//! is opened through [`Input::open`]:
//!
//! 1. with `O_NONBLOCK`, so opening a FIFO that has no writer returns at
//!    once instead of waiting for one (a plain `open` waits forever);
//! 2. then `fstat`ed on the opened descriptor (not the path, which could be
//!    swapped between the two calls) and refused unless it is a regular
//!    file or a block device: a directory, a FIFO, a socket or a character
//!    device such as `/dev/zero` is named in the error and never read;
//! 3. its length is the one `fstat` gave (a block device's, the offset of
//!    its end), and no read goes past it, nor past the format's [`Limit`],
//!    which is checked before a byte is allocated.
//!
//! `O_NONBLOCK` stays set on the descriptor: Linux ignores it for reads of
//! regular files and block devices, the only kinds that pass step 2.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::vec::Vec;

#[cfg(test)]
mod tests;

/// What a path is, as `fstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A character device (`/dev/zero`, `/dev/null`, a terminal).
    CharDevice,
    /// A block device (a disk or a partition).
    BlockDevice,
    /// A Unix domain socket.
    Socket,
    /// A symbolic link (seen only where links are not followed).
    Symlink,
}

impl FileKind {
    /// The kind of `t`.
    pub fn of(t: std::fs::FileType) -> FileKind {
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else {
            // The only file type left on Unix.
            FileKind::Socket
        }
    }

    /// Whether lode reads inputs of this kind: only these have a length
    /// known before reading and reads that neither block nor run forever.
    pub fn is_readable_input(self) -> bool {
        matches!(self, FileKind::Regular | FileKind::BlockDevice)
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Symlink => "a symbolic link",
        })
    }
}

/// The most bytes an input of some format may have: what a reader that
/// holds the whole file in memory accepts, stated per format so a wrong
/// or hostile file is refused before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// What the file is ("trace", "calibration JSON"), for the error.
    pub what: &'static str,
    /// The largest accepted length in bytes.
    pub max: u64,
}

impl Limit {
    /// A limit of `max` bytes for files that are `what`.
    pub const fn new(what: &'static str, max: u64) -> Limit {
        Limit { what, max }
    }

    /// No limit beyond the file's own length, for files whose every byte
    /// is needed in memory anyway (a GGUF read whole is the model's
    /// weights): the length `fstat` gave still bounds the read, so a
    /// device without an end is never read.
    pub const fn whole(what: &'static str) -> Limit {
        Limit {
            what,
            max: u64::MAX,
        }
    }
}

/// An activation trace, read whole: 1 GiB holds 4,096 tokens of the widest
/// 7B geometry (32 layers of 43,008 neurons), more than `lode profile`
/// records by default (see `formats/TRACE.md`).
pub const TRACE_LIMIT: Limit = Limit::new("trace", crate::trace::MAX_FILE_LEN);

/// Why an input was refused or could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum InputReason {
    /// `open` failed (no such file, no permission, ...).
    Open(io::Error),
    /// `fstat` (or finding a block device's end) failed.
    Stat(io::Error),
    /// The path is not a regular file or a block device.
    NotReadable(FileKind),
    /// The file is longer than its format allows.
    TooLarge {
        /// The file's length.
        len: u64,
        /// The format's limit.
        limit: Limit,
    },
    /// The file's length does not fit this machine's memory at all (or
    /// the allocation was refused).
    NoMemory {
        /// Bytes that could not be allocated.
        len: u64,
    },
    /// A read failed.
    Read(io::Error),
    /// The file ended before the length `fstat` gave: it shrank while it
    /// was read.
    Shrank {
        /// The length `fstat` gave.
        expected: u64,
        /// Bytes there were.
        got: u64,
    },
}

/// An input that was refused or could not be read, with its path.
#[derive(Debug)]
pub struct InputError {
    path: PathBuf,
    reason: InputReason,
}

impl InputError {
    /// An error about `path`.
    pub fn new(path: &Path, reason: InputReason) -> InputError {
        InputError {
            path: path.to_path_buf(),
            reason,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn reason(&self) -> &InputReason {
        &self.reason
    }
}

impl fmt::Display for InputReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputReason::Open(e) => write!(f, "cannot open: {e}"),
            InputReason::Stat(e) => write!(f, "cannot find its type and length: {e}"),
            InputReason::NotReadable(kind) => {
                write!(f, "is {kind}, not a regular file or a block device")
            }
            InputReason::TooLarge { len, limit } => write!(
                f,
                "is {len} bytes; a {} is at most {} bytes",
                limit.what, limit.max
            ),
            InputReason::NoMemory { len } => {
                write!(f, "cannot allocate {len} bytes to read it into")
            }
            InputReason::Read(e) => write!(f, "cannot read: {e}"),
            InputReason::Shrank { expected, got } => write!(
                f,
                "the file shrank while it was read ({expected} bytes when opened, {got} read)"
            ),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for InputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            InputReason::Open(e) | InputReason::Stat(e) | InputReason::Read(e) => Some(e),
            _ => None,
        }
    }
}

/// An opened input: a regular file or a block device, with its length.
#[derive(Debug)]
pub struct Input {
    file: File,
    path: PathBuf,
    kind: FileKind,
    len: u64,
}

impl Input {
    /// Opens `path` for reading (see the module docs for what is refused).
    pub fn open(path: &Path) -> Result<Input, InputError> {
        Input::open_with(path, OpenOptions::new().read(true))
    }

    /// Opens `path` with `options` (read and write, say), adding
    /// `O_NONBLOCK`, and refuses what is not a regular file or a block
    /// device.
    pub fn open_with(path: &Path, options: &mut OpenOptions) -> Result<Input, InputError> {
        let err = |reason| InputError::new(path, reason);
        let file = options
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| err(open_failure(path, e)))?;
        let meta = file.metadata().map_err(|e| err(InputReason::Stat(e)))?;
        let kind = FileKind::of(meta.file_type());
        if !kind.is_readable_input() {
            return Err(err(InputReason::NotReadable(kind)));
        }
        let len = match kind {
            // A block device's st_size is 0: its length is where it ends.
            FileKind::BlockDevice => end_of(&file).map_err(|e| err(InputReason::Stat(e)))?,
            _ => meta.len(),
        };
        Ok(Input {
            file,
            path: path.to_path_buf(),
            kind,
            len,
        })
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A regular file or a block device.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Bytes, as `fstat` (or a block device's end) gave them at open.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The open file, for readers that take their own bounded steps (an
    /// image's prefix reader, a verifier reading in chunks).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file, owned.
    pub fn into_file(self) -> File {
        self.file
    }

    /// An error about this input.
    pub fn error(&self, reason: InputReason) -> InputError {
        InputError::new(&self.path, reason)
    }

    /// Refuses a file longer than `limit`.
    pub fn check(&self, limit: Limit) -> Result<(), InputError> {
        if self.len > limit.max {
            return Err(self.error(InputReason::TooLarge {
                len: self.len,
                limit,
            }));
        }
        Ok(())
    }

    /// Up to `buf.len()` bytes from offset 0 (fewer when the file is
    /// shorter): enough to tell a format by its magic without reading
    /// more.
    pub fn read_head(&self, buf: &mut [u8]) -> Result<usize, InputError> {
        let want = buf
            .len()
            .min(usize::try_from(self.len).unwrap_or(usize::MAX));
        read_fully_at(&self.file, &mut buf[..want], 0).map_err(|e| self.error(e))
    }

    /// The whole file, refused first when it is longer than `limit`: exactly
    /// the length `fstat` gave is allocated and read, never more.
    pub fn read_all(&self, limit: Limit) -> Result<Vec<u8>, InputError> {
        self.check(limit)?;
        let len = usize::try_from(self.len)
            .map_err(|_| self.error(InputReason::NoMemory { len: self.len }))?;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| self.error(InputReason::NoMemory { len: self.len }))?;
        bytes.resize(len, 0);
        let got = read_fully_at(&self.file, &mut bytes, 0).map_err(|e| self.error(e))?;
        if got < len {
            return Err(self.error(InputReason::Shrank {
                expected: self.len,
                got: got as u64,
            }));
        }
        Ok(bytes)
    }
}

/// The whole file at `path`, opened and bounded as [`Input`] says.
pub fn read_file(path: &Path, limit: Limit) -> Result<Vec<u8>, InputError> {
    Input::open(path)?.read_all(limit)
}

/// Why `open` failed: a path that exists but cannot be opened as a file
/// (a socket gives `ENXIO`, "No such device or address") is named by its
/// kind, which says more than the errno.
fn open_failure(path: &Path, e: io::Error) -> InputReason {
    match std::fs::metadata(path) {
        Ok(m) if !FileKind::of(m.file_type()).is_readable_input() => {
            InputReason::NotReadable(FileKind::of(m.file_type()))
        }
        _ => InputReason::Open(e),
    }
}

/// Where a block device ends (its `st_size` is 0), leaving the position at
/// the start.
fn end_of(mut file: &File) -> io::Result<u64> {
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// Reads from `offset` until `buf` is full or the file ends; the bytes
/// read.
fn read_fully_at(file: &File, buf: &mut [u8], offset: u64) -> Result<usize, InputReason> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(InputReason::Read(e)),
        }
    }
    Ok(done)
}
