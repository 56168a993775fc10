//! `BlockFlash`: the Linux flash device for real storage. It reads a regular
//! file or a block device node (a partition, a loop device) around the page
//! cache, many reads in flight at once.
//!
//! - **Direct I/O.** The file is opened with O_DIRECT, and the alignment the
//!   device demands is asked of it: `BLKSSZGET` for a block device,
//!   `statx(STATX_DIOALIGN)` for a file, or a probe where neither answers.
//!   The geometry's block size is that alignment (or a coarser one asked
//!   for), so every plan the kernel makes is a legal direct read. Where the
//!   file system refuses O_DIRECT, reads fall back to the page cache and
//!   [`OpenReport`] says so ([`DirectIo::Require`] makes that an error).
//! - **Engines.** Reads go through io_uring: a batch is one system call and
//!   completions are taken from shared memory. Where the kernel refuses a
//!   ring (ENOSYS, EPERM from seccomp or `kernel.io_uring_disabled`), a
//!   bounded pool of pread threads takes over, chosen at open and reported;
//!   [`Engine::Threads`] forces it.
//! - **Split phase.** [`submit`](FlashDevice::submit) admits the whole
//!   batch (the kernel's one check, [`flash::admit`]), queues it and
//!   returns; [`complete`](FlashDevice::complete) collects whatever
//!   finished, so the engine's reads overlap the caller's compute.
//! - **Bounce memory.** The kernel writes only into memory this device owns,
//!   and `complete` copies each finished read into its arena slot. The
//!   argument for why that is sound, and why reading straight into the arena
//!   would not be, is in `block_flash/bounce.rs`. Dropping the device waits
//!   for every read in flight.
//! - **Writes** (the KV swap area) are synchronous `pwrite`s, staged through
//!   an aligned buffer under O_DIRECT, made durable by `fdatasync` on
//!   [`sync`](FlashWrite::sync) or, with [`WriteMode::Dsync`], by O_DSYNC on
//!   every write.

mod bounce;
mod engine;
mod error;
mod open;
mod options;
mod os;
mod probe;
mod reads;
mod report;
mod stats;
mod threads;
mod uring;
mod write;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lode_kernel::arena::{DramArena, Slot};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    self, Completion, ErrorKind, ErrorType, FlashDevice, FlashWrite, Geometry, ReadRequest,
};

use bounce::BouncePool;
use engine::{Done, Op, Runner};
pub use error::{BlockFlashError, Reason};
pub use options::{BlockFlashOptions, DirectIo, Engine, WriteMode, MAX_THREADS};
pub use report::{
    AlignSource, BufferedWhy, DirectStatus, EngineStatus, FallbackWhy, FileKind, OpenReport,
};
pub use stats::BlockFlashStats;

use crate::locked_arena::{mapping::Mapping, HugePages};
use crate::window::Window;
use stats::bump;

/// How often an interrupted (EINTR, EAGAIN) read is resubmitted before it
/// completes with an error.
const MAX_RETRIES: u8 = 8;

/// One accepted read.
#[derive(Debug, Clone, Copy)]
struct Pending {
    req: ReadRequest,
    /// Its bounce memory, once it has some (reads wait in the backlog until
    /// there is room).
    bounce: Option<Slot>,
    /// Bytes already read (short reads are resubmitted for the rest).
    done: u32,
    retries: u8,
}

/// A [`FlashDevice`] over a file or block device: O_DIRECT, io_uring or a
/// pread pool, split-phase batched reads.
///
/// ```
/// use lode_hal_linux::block_flash::{BlockFlash, BlockFlashOptions};
/// use lode_hal_linux::LockedArena;
/// use lode_kernel::arena::{DramArena, SlotKind};
/// use lode_kernel::flash::{FlashDevice, ReadRequest};
///
/// let path = std::env::temp_dir().join(format!("lode-block-doc-{}", std::process::id()));
/// let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
/// std::fs::write(&path, &bytes)?;
///
/// let opts = BlockFlashOptions { bounce_bytes: 1 << 20, ..BlockFlashOptions::default() };
/// let mut flash = BlockFlash::open(&path, opts)?;
/// println!("{}", flash.report()); // engine, direct or buffered, and why
/// let block = flash.geometry().block_size as usize;
///
/// let mut arena = LockedArena::new(1 << 20)?;
/// let dest = arena.alloc(8192, 4096, SlotKind::IoBuffer)?;
/// let read = ReadRequest { tag: 0, offset: 4096, len: 8192, dest, dest_offset: 0 };
/// flash.read_blocking(&mut arena, &[read]).expect("read");
/// assert_eq!(arena.bytes(dest)?, &bytes[4096..4096 + 8192]);
/// assert!(block.is_power_of_two());
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BlockFlash {
    // Field order matters for drop: the engine (threads joined, ring
    // closed) goes before the bounce memory it wrote into. `Drop` has drained
    // every read before either.
    runner: Runner,
    pool: BouncePool,
    file: Arc<File>,
    path: Option<PathBuf>,
    window: Window,
    geometry: Geometry,
    cost: CostModel,
    report: OpenReport,
    /// Alignment of bounce slots: the device's memory alignment and the
    /// block size, whichever is larger.
    buf_align: usize,
    /// Indexed by request id (`0..queue_depth`).
    pending: Vec<Option<Pending>>,
    free_ids: Vec<u16>,
    /// Accepted reads waiting for bounce memory, oldest first.
    backlog: VecDeque<u16>,
    /// Completions decided without the engine, waiting to be collected.
    ready: VecDeque<Completion>,
    /// Scratch for the engine's completions (capacity reserved at open).
    reaped: Vec<Done>,
    /// Reads accepted and not yet collected: `in_flight()`.
    accepted: usize,
    write_mode: WriteMode,
    /// O_DSYNC was set at open, so writes are durable without `fdatasync`.
    dsync_on_open: bool,
    /// Aligned staging for writes under O_DIRECT, mapped on the first write.
    write_stage: Option<Mapping>,
    stats: BlockFlashStats,
}

impl BlockFlash {
    /// Open the file or block device at `path` (read-only unless
    /// `opts.writable`) and expose all of it.
    pub fn open(path: impl AsRef<Path>, opts: BlockFlashOptions) -> Result<Self, BlockFlashError> {
        Self::open_inner(path.as_ref(), None, opts)
    }

    /// Open `path` and expose only `window` of it (device offset 0 is file
    /// offset `window.offset`; under direct I/O that must be aligned).
    pub fn open_window(
        path: impl AsRef<Path>,
        window: Window,
        opts: BlockFlashOptions,
    ) -> Result<Self, BlockFlashError> {
        Self::open_inner(path.as_ref(), Some(window), opts)
    }

    /// Bind an already open file (an Android app's descriptor, say);
    /// `window` defaults to the whole file. O_DIRECT is set on the
    /// descriptor when direct I/O is used. Writes work only if the file was
    /// opened for writing.
    pub fn from_file(
        file: File,
        window: Option<Window>,
        opts: BlockFlashOptions,
    ) -> Result<Self, BlockFlashError> {
        opts.validate()?;
        Self::build(file, window, opts, false)
    }

    /// What was opened and how it is read.
    pub fn report(&self) -> &OpenReport {
        &self.report
    }

    /// The window of the file this device exposes.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Bytes at the end of the window short of a whole block (unreadable).
    pub fn tail_bytes(&self) -> u64 {
        self.window.len - self.geometry.capacity
    }

    /// Totals of the work done so far.
    pub fn stats(&self) -> BlockFlashStats {
        self.stats
    }

    /// Start the totals again from zero.
    pub fn reset_stats(&mut self) {
        self.stats = BlockFlashStats::default();
    }

    /// Replace the cost model reported to the scheduler (for example with
    /// one `lode calibrate` measured, or one stored in an image).
    pub fn set_cost_model(&mut self, cost: CostModel) -> Result<(), BlockFlashError> {
        if !cost.is_valid() {
            return Err(BlockFlashError::new(Reason::InvalidOptions(
                "cost_model needs non-zero bytes_per_sec and queue_depth",
            )));
        }
        self.cost = cost;
        Ok(())
    }

    /// The underlying file, for operations this device does not wrap.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn engine_error(&self, e: io::Error) -> BlockFlashError {
        let err = BlockFlashError::io(Reason::Engine, e);
        match &self.path {
            Some(p) => err.at(p),
            None => err,
        }
    }
}

impl Drop for BlockFlash {
    /// Wait for every read the engine still has; if that fails, leak the
    /// bounce memory rather than unmap pages the kernel may still write.
    fn drop(&mut self) {
        if self.runner.drain().is_err() {
            self.pool.leak_on_drop();
        }
    }
}

impl ErrorType for BlockFlash {
    type Error = BlockFlashError;
}

#[cfg(test)]
mod tests;
