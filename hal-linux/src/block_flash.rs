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
mod options;
mod os;
mod probe;
mod report;
mod stats;
mod threads;
mod uring;

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

    fn open_inner(
        path: &Path,
        window: Option<Window>,
        opts: BlockFlashOptions,
    ) -> Result<Self, BlockFlashError> {
        opts.validate()?;
        let dsync = opts.writable && opts.write_mode == WriteMode::Dsync;
        let open = |direct: bool| {
            let mut flags = 0;
            if direct {
                flags |= libc::O_DIRECT;
            }
            if dsync {
                flags |= libc::O_DSYNC;
            }
            OpenOptions::new()
                .read(true)
                .write(opts.writable)
                .custom_flags(flags)
                .open(path)
        };
        let file = match open(opts.direct != DirectIo::Off) {
            // A file system without O_DIRECT refuses the open itself; open
            // without it and let discovery record the refusal (or, under
            // `Require`, report it).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && opts.direct != DirectIo::Off => {
                open(false)
            }
            other => other,
        }
        .map_err(|e| BlockFlashError::io(Reason::Open, e).at(path))?;
        let mut dev = Self::build(file, window, opts, dsync).map_err(|e| e.at(path))?;
        dev.path = Some(path.to_path_buf());
        Ok(dev)
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

    #[allow(unsafe_code)]
    fn build(
        file: File,
        window: Option<Window>,
        opts: BlockFlashOptions,
        dsync_on_open: bool,
    ) -> Result<Self, BlockFlashError> {
        let (kind, file_len, direct) =
            probe::discover(&file, opts.direct, window.map(|w| w.offset))?;
        let (block, mem_align) = block_size(opts.block_size, direct)?;
        let (window, capacity) =
            Window::place(window, file_len, block).map_err(|m| BlockFlashError::new(m.into()))?;
        if !opts.max_transfer.is_multiple_of(block) {
            return Err(BlockFlashError::new(Reason::InvalidOptions(
                "max_transfer must be a multiple of the device's block size",
            )));
        }
        let pool = BouncePool::new(opts.bounce_bytes)
            .map_err(|e| BlockFlashError::io(Reason::Bounce, e))?;
        let file = Arc::new(file);
        // SAFETY: the pool's mapping outlives the ring: the ring lives in the
        // `BlockFlash` built below, which also owns the pool, declares the
        // runner (and so drops it) first, and leaks a pool that might still
        // be written rather than unmap it (bounce.rs, point 4).
        let ring = || unsafe {
            uring::UringEngine::new(
                &file,
                u32::from(opts.queue_depth),
                (pool.base(), pool.len()),
            )
        };
        let (runner, engine) = start_engine(&file, &opts, ring)?;
        let qd = usize::from(opts.queue_depth);
        Ok(BlockFlash {
            runner,
            report: OpenReport {
                file: kind,
                direct,
                engine,
                bounce_bytes: pool.len(),
            },
            pool,
            file,
            path: None,
            window,
            geometry: Geometry {
                block_size: block,
                capacity,
                max_transfer: opts.max_transfer,
                queue_depth: opts.queue_depth,
            },
            cost: opts.cost_model,
            buf_align: mem_align.max(block) as usize,
            pending: vec![None; qd],
            // Popped from the back: ids are handed out 0, 1, 2...
            free_ids: (0..opts.queue_depth).rev().collect(),
            backlog: VecDeque::with_capacity(qd),
            ready: VecDeque::with_capacity(qd),
            reaped: Vec::with_capacity(qd),
            accepted: 0,
            write_mode: opts.write_mode,
            dsync_on_open,
            write_stage: None,
            stats: BlockFlashStats::default(),
        })
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

    /// Give every backlogged read that now fits some bounce memory and hand
    /// it to the engine, then flush the engine.
    fn pump(&mut self) -> Result<(), BlockFlashError> {
        while let Some(&id) = self.backlog.front() {
            let Some(Some(p)) = self.pending.get(usize::from(id)).copied() else {
                self.backlog.pop_front();
                continue;
            };
            match self.pool.alloc(p.req.len as usize, self.buf_align) {
                Some(slot) => {
                    self.backlog.pop_front();
                    if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                        *entry = Some(Pending {
                            bounce: Some(slot),
                            ..p
                        });
                    }
                    if let Err(kind) = self.start(id, slot, 0) {
                        let c = self.retire(id, Err(kind));
                        self.ready.push_back(c);
                    }
                }
                None if self.runner.outstanding() == 0 && self.pool.is_idle() => {
                    // Cannot fit even in an empty pool; validated options
                    // make this unreachable, but never wait on it forever.
                    self.backlog.pop_front();
                    let c = self.retire(id, Err(ErrorKind::TooLarge));
                    self.ready.push_back(c);
                }
                None => break,
            }
        }
        self.runner.flush().map_err(|e| self.engine_error(e))
    }

    /// Hand the engine the rest of read `id`, from byte `skip` on, into its
    /// bounce slot.
    #[allow(unsafe_code)]
    fn start(&mut self, id: u16, slot: Slot, skip: u32) -> Result<(), ErrorKind> {
        let Some(Some(p)) = self.pending.get(usize::from(id)).copied() else {
            return Err(ErrorKind::Other);
        };
        let len = p.req.len.checked_sub(skip).ok_or(ErrorKind::Other)?;
        let ptr = self.pool.ptr(slot, skip as usize).ok_or(ErrorKind::Other)?;
        let pos = self
            .window
            .position(p.req.offset)
            .and_then(|x| x.checked_add(u64::from(skip)))
            .ok_or(ErrorKind::OutOfRange)?;
        let op = Op { id, ptr, len, pos };
        // SAFETY: `ptr .. ptr + len` is the tail of bounce slot `slot`
        // (`ptr` checked the slot is live and `skip <= slot.len()`, and the
        // slot was carved with the read's full length). The slot belongs to
        // read `id` alone: it is freed only in `retire`, which runs only
        // after the engine has returned this op's `Done` and no other op for
        // `id` is queued (`finish` resubmits only in place of retiring). The
        // mapping outlives the op: `Drop` drains the engine before the pool
        // is dropped, and leaks the pool if it cannot (bounce.rs, point 4).
        unsafe { self.runner.push(op) }.map_err(|_| ErrorKind::Io)?;
        bump(&mut self.stats.commands, 1);
        Ok(())
    }

    /// Turn one engine completion into a collected [`Completion`], or into
    /// a resubmission of the rest of a short or interrupted read (`None`).
    fn finish<A: DramArena>(&mut self, arena: &mut A, d: Done) -> Option<Completion> {
        let id = d.id;
        let Some(Some(mut p)) = self.pending.get(usize::from(id)).copied() else {
            return None;
        };
        let slot = p.bounce?;
        let remaining = p.req.len.saturating_sub(p.done);
        let again = match d.result {
            Ok(n) if n >= remaining => false,
            Ok(0) => return Some(self.retire(id, Err(ErrorKind::Io))),
            Ok(n) => {
                p.done += n;
                true
            }
            Err(e) if (e == libc::EINTR || e == libc::EAGAIN) && p.retries < MAX_RETRIES => {
                p.retries += 1;
                true
            }
            Err(_) => return Some(self.retire(id, Err(ErrorKind::Io))),
        };
        if again {
            if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                *entry = Some(p);
            }
            bump(&mut self.stats.resubmits, 1);
            return match self.start(id, slot, p.done) {
                Ok(()) => None,
                Err(kind) => Some(self.retire(id, Err(kind))),
            };
        }
        let status = self.deliver(arena, &p, slot);
        Some(self.retire(id, status))
    }

    /// Copy a finished read from its bounce slot into its arena slot.
    #[allow(unsafe_code)]
    fn deliver<A: DramArena>(
        &mut self,
        arena: &mut A,
        p: &Pending,
        slot: Slot,
    ) -> Result<(), ErrorKind> {
        let len = p.req.len as usize;
        // SAFETY: `finish` calls this only after the engine returned the last
        // op of this read, and queues none after it; so no read into `slot`
        // is in flight, and none can start until `retire` frees the slot
        // after the borrow below has ended.
        let src = unsafe { self.pool.bytes(slot) }
            .and_then(|b| b.get(..len))
            .ok_or(ErrorKind::Other)?;
        let window = flash::destination_mut(arena, &p.req)?;
        let started = Instant::now();
        window.copy_from_slice(src);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        bump(&mut self.stats.copy_ns, ns);
        Ok(())
    }

    /// Forget read `id`: free its bounce memory and id, count it, and make
    /// its completion (the caller delivers it or queues it in `ready`).
    fn retire(&mut self, id: u16, status: Result<(), ErrorKind>) -> Completion {
        let entry = self.pending.get_mut(usize::from(id)).and_then(Option::take);
        let Some(p) = entry else {
            return Completion {
                tag: u32::MAX,
                status: Err(ErrorKind::Other),
            };
        };
        if let Some(slot) = p.bounce {
            self.pool.free(slot);
        }
        self.free_ids.push(id);
        bump(&mut self.stats.reads, 1);
        match status {
            Ok(()) => bump(&mut self.stats.bytes_read, u64::from(p.req.len)),
            Err(_) => bump(&mut self.stats.failed_reads, 1),
        }
        Completion {
            tag: p.req.tag,
            status,
        }
    }

    fn write_error(&self, e: io::Error) -> BlockFlashError {
        let reason = if e.raw_os_error() == Some(libc::EBADF) {
            Reason::ReadOnly
        } else {
            Reason::Write
        };
        let err = BlockFlashError::io(reason, e);
        match &self.path {
            Some(p) => err.at(p),
            None => err,
        }
    }
}

/// The geometry's block size and the memory alignment of bounce slots.
fn block_size(asked: Option<u32>, direct: DirectStatus) -> Result<(u32, u32), BlockFlashError> {
    match direct {
        DirectStatus::Direct {
            offset_align,
            mem_align,
            ..
        } => {
            let device = offset_align.max(512);
            let block = match asked {
                Some(b) if !b.is_multiple_of(device) => {
                    return Err(BlockFlashError::new(Reason::BlockSizeTooSmall {
                        requested: b,
                        device,
                    }))
                }
                Some(b) => b,
                None => device,
            };
            Ok((block, mem_align.max(1)))
        }
        DirectStatus::Buffered { .. } => Ok((asked.unwrap_or(4096), 1)),
    }
}

/// Start the engine the options ask for; say which and why. `ring` sets up
/// io_uring (a parameter so tests can make it fail like a seccomp filter
/// would).
fn start_engine(
    file: &Arc<File>,
    opts: &BlockFlashOptions,
    ring: impl FnOnce() -> io::Result<uring::UringEngine>,
) -> Result<(Runner, EngineStatus), BlockFlashError> {
    let why = match opts.engine {
        Engine::Threads => FallbackWhy::Forced,
        Engine::IoUring | Engine::Auto => match ring() {
            Ok(ring) => {
                let status = EngineStatus::IoUring {
                    entries: ring.entries(),
                    fixed_file: ring.fixed_file(),
                    fixed_buffers: ring.fixed_buffers(),
                    deferred: ring.deferred(),
                };
                return Ok((Runner::Uring(Box::new(ring)), status));
            }
            Err(e) if opts.engine == Engine::IoUring => {
                return Err(BlockFlashError::io(Reason::IoUringUnavailable, e))
            }
            Err(e) => FallbackWhy::Unavailable {
                errno: e.raw_os_error().unwrap_or(0),
                sysctl_disabled: os::io_uring_disabled_sysctl(),
            },
        },
    };
    let pool_threads = threads::ThreadEngine::new(
        Arc::clone(file),
        opts.threads,
        opts.pin_cpu,
        usize::from(opts.queue_depth),
    )
    .map_err(|e| match e {
        threads::StartError::Spawn(e) => BlockFlashError::io(Reason::Spawn, e),
        threads::StartError::Pin(e) => BlockFlashError::io(
            Reason::Pin {
                cpu: opts.pin_cpu.unwrap_or(0),
            },
            e,
        ),
    })?;
    let status = EngineStatus::Threads {
        threads: pool_threads.threads(),
        pinned_cpu: pool_threads.pinned(),
        why,
    };
    Ok((Runner::Threads(pool_threads), status))
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

impl FlashDevice for BlockFlash {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn cost_model(&self) -> CostModel {
        self.cost
    }

    /// Admit the whole batch, accept it, and start as many reads as the
    /// bounce memory holds (the rest start as earlier ones complete). A
    /// refused batch queues nothing. An engine failure after validation
    /// (the ring's submit call failing) is an `Err` with the batch accepted:
    /// its reads stay in flight and later `complete` calls retry them.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), BlockFlashError> {
        flash::admit(&self.geometry, self.accepted, arena, reads)?;
        for r in reads {
            // Cannot fail: fewer than queue_depth ids are in use.
            let id = self
                .free_ids
                .pop()
                .ok_or(BlockFlashError::from(ErrorKind::QueueFull))?;
            if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                *entry = Some(Pending {
                    req: *r,
                    bounce: None,
                    done: 0,
                    retries: 0,
                });
            }
            self.backlog.push_back(id);
            self.accepted += 1;
        }
        let result = self.pump();
        // The reads of this batch still waiting are at the backlog's tail.
        let waiting = self.backlog.len().min(reads.len());
        bump(&mut self.stats.backlogged, waiting as u64);
        result
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, BlockFlashError> {
        let mut n = 0;
        let result = loop {
            while n < done.len() {
                let Some(c) = self.ready.pop_front() else {
                    break;
                };
                if let Some(slot) = done.get_mut(n) {
                    *slot = c;
                }
                n += 1;
            }
            if n == done.len() || self.runner.outstanding() == 0 {
                break Ok(());
            }
            let wait = n == 0;
            let mut reaped = std::mem::take(&mut self.reaped);
            reaped.clear();
            if let Err(e) = self.runner.reap(wait, done.len() - n, &mut reaped) {
                self.reaped = reaped;
                break Err(self.engine_error(e));
            }
            let got = reaped.len();
            for d in reaped.iter().copied() {
                if let Some(c) = self.finish(arena, d) {
                    if let Some(slot) = done.get_mut(n) {
                        *slot = c;
                    }
                    n += 1;
                }
            }
            self.reaped = reaped;
            if let Err(e) = self.pump() {
                break Err(e);
            }
            if got == 0 {
                break Ok(());
            }
        };
        match result {
            Ok(()) => {
                self.accepted -= n;
                Ok(n)
            }
            Err(e) => {
                // Keep what was collected for the next call.
                for c in done.iter().take(n).rev() {
                    self.ready.push_front(*c);
                }
                Err(e)
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.accepted
    }
}

impl FlashWrite for BlockFlash {
    /// A synchronous `pwrite` of whole blocks inside the device (not bounded
    /// by `max_transfer`), staged through aligned memory under O_DIRECT.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockFlashError> {
        flash::admit_write(&self.geometry, offset, data.len())?;
        let len = u64::try_from(data.len()).map_err(|_| ErrorKind::OutOfRange)?;
        let pos = self.window.position(offset).ok_or(ErrorKind::OutOfRange)?;
        if self.report.direct.is_direct() {
            let chunk = self.geometry.max_transfer as usize;
            if self.write_stage.is_none() {
                let (m, _) = Mapping::anonymous(chunk, HugePages::Off)
                    .map_err(|e| BlockFlashError::io(Reason::Bounce, e))?;
                self.write_stage = Some(m);
            }
            let mut at = pos;
            for piece in data.chunks(chunk) {
                let stage = self
                    .write_stage
                    .as_mut()
                    .and_then(|m| m.as_mut_slice().get_mut(..piece.len()))
                    .ok_or(ErrorKind::Other)?;
                stage.copy_from_slice(piece);
                let result = self.file.write_all_at(stage, at);
                result.map_err(|e| self.write_error(e))?;
                at += piece.len() as u64;
            }
        } else {
            self.file
                .write_all_at(data, pos)
                .map_err(|e| self.write_error(e))?;
        }
        if self.write_mode == WriteMode::Dsync && !self.dsync_on_open {
            self.file
                .sync_data()
                .map_err(|e| BlockFlashError::io(Reason::Sync, e))?;
        }
        bump(&mut self.stats.writes, 1);
        bump(&mut self.stats.bytes_written, len);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), BlockFlashError> {
        if self.write_mode == WriteMode::SyncOnDemand {
            self.file
                .sync_data()
                .map_err(|e| BlockFlashError::io(Reason::Sync, e))?;
        }
        bump(&mut self.stats.syncs, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
