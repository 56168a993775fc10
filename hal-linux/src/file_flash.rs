//! `FileFlash`: a flash device over a `std::fs::File`, or a window of one.
//!
//! It is the plain binding: reads are positioned `pread`s through the page
//! cache, performed in [`complete`](FlashDevice::complete), so a batch is
//! correct but does not overlap compute. It is the simple reference binding;
//! real storage is read through [`BlockFlash`](crate::BlockFlash) (direct
//! I/O, io_uring or a pread pool), which is property-tested against the fake
//! flash over the same bytes.
//!
//! Requests are admitted exactly as every lode device admits them
//! ([`flash::admit`]), so a plan that works here is aligned for direct I/O
//! too, although the page cache would forgive a misaligned one.

mod error;
mod options;
mod stats;

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::time::Instant;

use heapless::Deque;
use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    self, Completion, ErrorKind, ErrorType, FlashDevice, FlashWrite, Geometry, ReadRequest,
};

pub use crate::window::Window;
pub use error::{FileFlashError, Reason};
pub use options::{FileFlashOptions, DEV_MACHINE_DISK, MAX_QUEUE_DEPTH};
pub use stats::FileFlashStats;

/// A [`FlashDevice`] over a file (or a block device node) read with `pread`.
///
/// The device's address space is a [`Window`] of the file; its capacity is the
/// window length rounded *down* to the block size, and the bytes past the last
/// whole block (the tail, see [`tail_bytes`](FileFlash::tail_bytes)) cannot be
/// read through it, because no aligned request can reach them.
///
/// ```
/// use lode_hal_linux::{FileFlash, FileFlashOptions, LockedArena, Window};
/// use lode_kernel::arena::{DramArena, SlotKind};
/// use lode_kernel::flash::{FlashDevice, ReadRequest};
///
/// let path = std::env::temp_dir().join(format!("lode-doc-{}", std::process::id()));
/// let bytes: Vec<u8> = (0..3 * 4096 + 10).map(|i| (i % 251) as u8).collect();
/// std::fs::write(&path, &bytes)?;
///
/// // Expose the file from byte 10 on, as if it were an asset inside an APK.
/// let window = Window::new(10, 3 * 4096);
/// let mut flash = FileFlash::open_window(&path, window, FileFlashOptions::default())?;
/// let mut arena = LockedArena::new(1 << 20)?;
/// let dest = arena.alloc(4096, 4096, SlotKind::IoBuffer)?;
/// let read = ReadRequest { tag: 0, offset: 4096, len: 4096, dest, dest_offset: 0 };
/// flash.read_blocking(&mut arena, &[read]).expect("read");
/// assert_eq!(arena.bytes(dest)?, &bytes[10 + 4096..10 + 2 * 4096]);
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileFlash {
    file: File,
    window: Window,
    geometry: Geometry,
    cost: CostModel,
    queue: Deque<ReadRequest, MAX_QUEUE_DEPTH>,
    stats: FileFlashStats,
}

impl FileFlash {
    /// Open the file at `path` (read-only unless `opts.writable`) and expose
    /// all of it.
    pub fn open(path: impl AsRef<Path>, opts: FileFlashOptions) -> Result<Self, FileFlashError> {
        Self::open_inner(path.as_ref(), None, opts)
    }

    /// Open the file at `path` and expose only `window` of it.
    pub fn open_window(
        path: impl AsRef<Path>,
        window: Window,
        opts: FileFlashOptions,
    ) -> Result<Self, FileFlashError> {
        Self::open_inner(path.as_ref(), Some(window), opts)
    }

    fn open_inner(
        path: &Path,
        window: Option<Window>,
        opts: FileFlashOptions,
    ) -> Result<Self, FileFlashError> {
        opts.validate()?;
        let file = OpenOptions::new()
            .read(true)
            .write(opts.writable)
            .open(path)
            .map_err(|e| FileFlashError::io(Reason::Open, e).at(path))?;
        Self::from_file(file, window, opts).map_err(|e| e.at(path))
    }

    /// Bind an already open file; `window` defaults to the whole file. The
    /// file must be readable; writes work only if it was opened for writing.
    pub fn from_file(
        file: File,
        window: Option<Window>,
        opts: FileFlashOptions,
    ) -> Result<Self, FileFlashError> {
        opts.validate()?;
        let file_len = file_len(&file)?;
        let (window, capacity) = Window::place(window, file_len, opts.block_size)
            .map_err(|m| FileFlashError::new(m.into()))?;
        Ok(FileFlash {
            file,
            window,
            geometry: Geometry {
                block_size: opts.block_size,
                capacity,
                max_transfer: opts.max_transfer,
                queue_depth: opts.queue_depth,
            },
            cost: opts.cost_model,
            queue: Deque::new(),
            stats: FileFlashStats::default(),
        })
    }

    /// The window of the file this device exposes.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Bytes at the end of the window that fall short of a whole block and
    /// are therefore outside the device (`window.len - capacity`).
    pub fn tail_bytes(&self) -> u64 {
        self.window.len - self.geometry.capacity
    }

    /// Totals of the work done so far.
    pub fn stats(&self) -> FileFlashStats {
        self.stats
    }

    /// Start the totals again from zero (for example between benchmark runs).
    pub fn reset_stats(&mut self) {
        self.stats = FileFlashStats::default();
    }

    /// The underlying file, for operations this device does not wrap
    /// (`posix_fadvise`, `statx`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Perform one queued read into its destination slot. Every failure
    /// becomes the read's status, never a panic: a slot freed since `submit`
    /// is `BadDestination`, a file that shrank since it was opened (a short
    /// read) or any OS error is `Io`.
    fn perform<A: DramArena>(&mut self, arena: &mut A, r: &ReadRequest) -> Result<(), ErrorKind> {
        let pos = self
            .window
            .position(r.offset)
            .ok_or(ErrorKind::OutOfRange)?;
        let buf = flash::destination_mut(arena, r)?;
        let started = Instant::now();
        let result = self.file.read_exact_at(buf, pos);
        self.stats
            .record_read(result.is_ok(), u64::from(r.len), started.elapsed());
        result.map_err(|_| ErrorKind::Io)
    }
}

/// Length of a regular file or a block device. A block device's metadata
/// length is 0, so its size is found by seeking to the end (the position is
/// irrelevant: every read and write is positioned).
fn file_len(file: &File) -> Result<u64, FileFlashError> {
    let meta = file
        .metadata()
        .map_err(|e| FileFlashError::io(Reason::Stat, e))?;
    let kind = meta.file_type();
    if kind.is_file() {
        Ok(meta.len())
    } else if kind.is_block_device() {
        let mut handle = file;
        handle
            .seek(SeekFrom::End(0))
            .map_err(|e| FileFlashError::io(Reason::Stat, e))
    } else {
        Err(FileFlashError::new(Reason::NotAFile))
    }
}

impl ErrorType for FileFlash {
    type Error = FileFlashError;
}

impl FlashDevice for FileFlash {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn cost_model(&self) -> CostModel {
        self.cost
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), FileFlashError> {
        flash::admit(&self.geometry, self.queue.len(), arena, reads)?;
        for r in reads {
            // Cannot fail: admission left room for the batch, and
            // queue_depth is at most the deque's capacity (validated options).
            self.queue
                .push_back(*r)
                .map_err(|_| FileFlashError::from(ErrorKind::QueueFull))?;
        }
        Ok(())
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, FileFlashError> {
        let mut n = 0;
        for out in done.iter_mut() {
            let Some(r) = self.queue.pop_front() else {
                break;
            };
            *out = Completion {
                tag: r.tag,
                status: self.perform(arena, &r),
            };
            n += 1;
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// Positioned `pwrite`s through the page cache, made durable by
/// `fdatasync`. Not bounded by `max_transfer`: `pwrite` has no such limit
/// and KV swap chunks are written whole.
impl FlashWrite for FileFlash {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FileFlashError> {
        flash::admit_write(&self.geometry, offset, data.len())?;
        let len = u64::try_from(data.len()).map_err(|_| ErrorKind::OutOfRange)?;
        let pos = self.window.position(offset).ok_or(ErrorKind::OutOfRange)?;
        self.file.write_all_at(data, pos).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBADF) {
                FileFlashError::io(Reason::ReadOnly, e)
            } else {
                FileFlashError::io(Reason::Write, e)
            }
        })?;
        self.stats.record_write(len);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FileFlashError> {
        self.file
            .sync_data()
            .map_err(|e: io::Error| FileFlashError::io(Reason::Sync, e))?;
        self.stats.syncs = self.stats.syncs.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
