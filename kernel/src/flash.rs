//! The flash device: geometry, a cost model and split-phase batched reads.
//!
//! # Why split-phase
//!
//! A decode step must read layer `l + 1`'s neurons while it computes layer
//! `l`. lode gets that overlap without an async runtime (which firmware does not
//! have) by splitting a read into two calls: [`FlashDevice::submit`] queues a
//! batch of reads into arena slots and returns at once; the caller computes;
//! [`FlashDevice::complete`] later collects completions, in whatever order the
//! device finished them. This is the shape of io_uring (submission queue,
//! completion queue, tags in `user_data`), of NVMe and UFS command queues, and
//! of a pread thread pool, so each binding is a thin layer. A device that can
//! only read synchronously does the work in `complete` (or `submit`) and is
//! still correct; it just does not overlap.
//!
//! Destinations are arena [`Slot`]s, not borrowed slices: a borrow cannot
//! outlive `submit` in safe Rust, but a queued read must. A slot handle can, and
//! the arena checks it again when the data lands. Data in a destination is
//! defined only after its completion has been collected.
//!
//! # Alignment
//!
//! Offsets, lengths and destination *addresses* must be multiples of
//! [`Geometry::block_size`], because direct I/O (O_DIRECT, raw partitions)
//! demands it. Every device checks requests with [`Geometry::check_read`]
//! before it queues any of them, so a bad batch is refused whole.

use core::fmt;

use crate::arena::{DramArena, Slot};
use crate::cost::CostModel;

/// What went wrong with a flash request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// Offset, length or destination address not a multiple of the block size.
    Misaligned,
    /// The extent reaches past the device's capacity.
    OutOfRange,
    /// A single request is longer than the device's largest transfer.
    TooLarge,
    /// More requests than the device's queue can hold at once.
    QueueFull,
    /// The destination slot is stale or too small for the read.
    BadDestination,
    /// The medium or transport failed the command.
    Io,
    /// The device lost power (or was removed); it accepts nothing more.
    PowerLoss,
    /// The device does not support this operation (for example writes).
    Unsupported,
    /// Anything else the implementation reports.
    Other,
}

impl core::error::Error for ErrorKind {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Misaligned => {
                "offset, length or buffer not aligned to the device block size"
            }
            ErrorKind::OutOfRange => "extent reaches past the end of the device",
            ErrorKind::TooLarge => "request longer than the device's largest transfer",
            ErrorKind::QueueFull => "more requests than the device queue holds",
            ErrorKind::BadDestination => "destination slot is stale or too small",
            ErrorKind::Io => "device I/O error",
            ErrorKind::PowerLoss => "device lost power",
            ErrorKind::Unsupported => "operation not supported by this device",
            ErrorKind::Other => "flash device error",
        })
    }
}

/// A flash error: anything that can say which [`ErrorKind`] it is.
pub trait Error: fmt::Debug {
    /// The generic kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// A device's fixed shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Logical block size in bytes (a power of two): offsets, lengths and
    /// buffer addresses must be multiples of it.
    pub block_size: u32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Largest single transfer in bytes (a multiple of `block_size`).
    pub max_transfer: u32,
    /// Requests the device accepts in flight at once.
    pub queue_depth: u16,
}

impl Geometry {
    /// `true` when `x` is a multiple of the block size.
    pub fn is_aligned(&self, x: u64) -> bool {
        self.block_size != 0 && x.is_multiple_of(u64::from(self.block_size))
    }

    /// Round `x` down to a block boundary.
    pub fn align_down(&self, x: u64) -> u64 {
        x - x % u64::from(self.block_size.max(1))
    }

    /// Round `x` up to a block boundary; saturates at the last boundary
    /// that fits in a `u64`.
    pub fn align_up(&self, x: u64) -> u64 {
        let b = u64::from(self.block_size.max(1));
        x.div_ceil(b)
            .checked_mul(b)
            .unwrap_or(u64::MAX - u64::MAX % b)
    }

    /// Check one extent of the device: aligned, non-empty, not too long,
    /// inside the capacity.
    pub fn check_extent(&self, offset: u64, len: u64) -> Result<(), ErrorKind> {
        if len == 0 || !self.is_aligned(offset) || !self.is_aligned(len) {
            return Err(ErrorKind::Misaligned);
        }
        if len > u64::from(self.max_transfer) {
            return Err(ErrorKind::TooLarge);
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(ErrorKind::OutOfRange),
        }
    }

    /// Check a whole batch of reads against this geometry and the arena that
    /// will receive them, before any is queued.
    pub fn check_batch<A: DramArena>(
        &self,
        arena: &A,
        reads: &[ReadRequest],
    ) -> Result<(), ErrorKind> {
        if reads.len() > usize::from(self.queue_depth) {
            return Err(ErrorKind::QueueFull);
        }
        for r in reads {
            self.check_read(arena, r)?;
        }
        Ok(())
    }

    /// Check one read: its extent, and that its destination is a live slot
    /// with room and a block-aligned address.
    pub fn check_read<A: DramArena>(&self, arena: &A, r: &ReadRequest) -> Result<(), ErrorKind> {
        self.check_extent(r.offset, u64::from(r.len))?;
        let dest = arena.bytes(r.dest).map_err(|_| ErrorKind::BadDestination)?;
        let end = r.dest_offset.checked_add(r.len as usize);
        let Some(window) = end.and_then(|end| dest.get(r.dest_offset..end)) else {
            return Err(ErrorKind::BadDestination);
        };
        if !self.is_aligned(window.as_ptr() as usize as u64) {
            return Err(ErrorKind::Misaligned);
        }
        Ok(())
    }
}

/// One read of a batch: `len` bytes at device `offset` into `dest` at
/// `dest_offset`. `tag` comes back in the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadRequest {
    /// Caller's label, returned in the [`Completion`].
    pub tag: u32,
    /// Device byte offset (block-aligned).
    pub offset: u64,
    /// Bytes to read (block-aligned, at most `max_transfer`).
    pub len: u32,
    /// Destination slot.
    pub dest: Slot,
    /// Byte offset inside the destination slot.
    pub dest_offset: usize,
}

/// The outcome of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Completion {
    /// The request's tag.
    pub tag: u32,
    /// `Ok` when the destination now holds the data.
    pub status: Result<(), ErrorKind>,
}

impl Completion {
    /// A placeholder to initialise completion buffers with.
    pub const EMPTY: Completion = Completion {
        tag: u32::MAX,
        status: Err(ErrorKind::Other),
    };
}

/// Binds an error type to a device.
pub trait ErrorType {
    /// The device's error type.
    type Error: Error;
}

/// A flash device with split-phase batched reads, writes and a cost model.
///
/// A minimal in-memory device, reading synchronously at `complete` time:
///
/// ```
/// use lode_kernel::arena::{DramArena, ErrorKind as ArenaKind, SlotKind, SlotTable, Slots};
/// use lode_kernel::cost::CostModel;
/// use lode_kernel::flash::{Completion, ErrorKind, ErrorType, FlashDevice, Geometry, ReadRequest};
///
/// struct Ram { data: [u8; 1024], queued: heapless::Vec<ReadRequest, 4> }
///
/// impl ErrorType for Ram { type Error = ErrorKind; }
///
/// impl FlashDevice for Ram {
///     fn geometry(&self) -> Geometry {
///         Geometry { block_size: 1, capacity: 1024, max_transfer: 1024, queue_depth: 4 }
///     }
///     fn cost_model(&self) -> CostModel {
///         CostModel { command_ns: 0, bytes_per_sec: u64::MAX, queue_depth: 4 }
///     }
///     fn submit<A: DramArena>(&mut self, arena: &mut A, reads: &[ReadRequest]) -> Result<(), ErrorKind> {
///         self.geometry().check_batch(arena, reads)?;
///         if self.queued.len() + reads.len() > 4 { return Err(ErrorKind::QueueFull); }
///         self.queued.extend_from_slice(reads).map_err(|_| ErrorKind::QueueFull)
///     }
///     fn complete<A: DramArena>(&mut self, arena: &mut A, done: &mut [Completion]) -> Result<usize, ErrorKind> {
///         let mut n = 0;
///         while n < done.len() {
///             let Some(r) = self.queued.pop() else { break };
///             let src = &self.data[r.offset as usize..][..r.len as usize];
///             let status = match arena.bytes_mut(r.dest) {
///                 Ok(dst) => { dst[r.dest_offset..][..src.len()].copy_from_slice(src); Ok(()) }
///                 Err(_) => Err(ErrorKind::BadDestination),
///             };
///             done[n] = Completion { tag: r.tag, status };
///             n += 1;
///         }
///         Ok(n)
///     }
///     fn in_flight(&self) -> usize { self.queued.len() }
///     fn write(&mut self, _: u64, _: &[u8]) -> Result<(), ErrorKind> { Err(ErrorKind::Unsupported) }
///     fn sync(&mut self) -> Result<(), ErrorKind> { Ok(()) }
/// }
///
/// # struct Tiny { table: SlotTable<4>, mem: [u8; 64] }
/// # impl DramArena for Tiny {
/// #     type Error = ArenaKind;
/// #     fn parts(&self) -> (&dyn Slots, &[u8]) { (&self.table, &self.mem) }
/// #     fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) { (&mut self.table, &mut self.mem) }
/// # }
/// let mut flash = Ram { data: core::array::from_fn(|i| i as u8), queued: heapless::Vec::new() };
/// let mut arena = Tiny { table: SlotTable::new(), mem: [0; 64] };
/// let slot = arena.alloc(16, 1, SlotKind::IoBuffer).unwrap();
/// let read = ReadRequest { tag: 1, offset: 100, len: 16, dest: slot, dest_offset: 0 };
/// flash.read_blocking(&mut arena, &[read]).unwrap();
/// assert_eq!(arena.bytes(slot).unwrap()[0], 100);
/// ```
pub trait FlashDevice: ErrorType {
    /// The device's fixed shape.
    fn geometry(&self) -> Geometry;

    /// How the device prices reads (measured by `lode calibrate`, or a profile).
    fn cost_model(&self) -> CostModel;

    /// Queue a batch of reads. The whole batch is validated first (see
    /// [`Geometry::check_batch`]); on error nothing is queued. Returns once the
    /// reads are queued, not when they are done.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error>;

    /// Collect up to `done.len()` completions, in any order, waiting until at
    /// least one is available if any read is in flight. Returns how many were
    /// written into `done` (0 when nothing is in flight). A failed read is a
    /// completion with an error status; `Err` means the device itself failed.
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error>;

    /// Reads submitted but not yet collected.
    fn in_flight(&self) -> usize;

    /// Write `data` at `offset` (both block-aligned). Durable only after
    /// [`sync`](FlashDevice::sync).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Make every completed write durable.
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Submit a batch and wait for all of it; the first failed read's kind is
    /// returned as the error after every read has completed.
    fn read_blocking<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ReadError<Self::Error>> {
        self.submit(arena, reads).map_err(ReadError::Device)?;
        let mut first_failure = None;
        let mut done = [Completion::EMPTY; 16];
        while self.in_flight() > 0 {
            let n = self.complete(arena, &mut done).map_err(ReadError::Device)?;
            for c in &done[..n] {
                if let (Err(kind), None) = (c.status, first_failure) {
                    first_failure = Some((c.tag, kind));
                }
            }
        }
        match first_failure {
            Some((tag, kind)) => Err(ReadError::Failed { tag, kind }),
            None => Ok(()),
        }
    }
}

/// Error of [`FlashDevice::read_blocking`]: the device refused or failed, or
/// one read of the batch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The device refused the batch or failed as a whole.
    Device(E),
    /// The read tagged `tag` completed with an error.
    Failed {
        /// Tag of the first failed read.
        tag: u32,
        /// What went wrong.
        kind: ErrorKind,
    },
}

impl<E: Error> Error for ReadError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            ReadError::Device(e) => e.kind(),
            ReadError::Failed { kind, .. } => *kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        block_size: 512,
        capacity: 1 << 20,
        max_transfer: 64 << 10,
        queue_depth: 8,
    };

    #[test]
    fn extent_checks() {
        assert_eq!(G.check_extent(0, 512), Ok(()));
        assert_eq!(G.check_extent(1, 512), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 0), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 100), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 128 << 10), Err(ErrorKind::TooLarge));
        assert_eq!(
            G.check_extent((1 << 20) - 512, 1024),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            G.check_extent(u64::MAX - 511, 512),
            Err(ErrorKind::OutOfRange)
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(G.align_down(1000), 512);
        assert_eq!(G.align_up(1000), 1024);
        assert_eq!(G.align_up(1024), 1024);
        assert_eq!(G.align_up(u64::MAX), u64::MAX - 511);
    }
}

/// Devices for the kernel's own tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::vec::Vec;

    /// An in-memory device that reads at completion time and can fail one offset.
    pub(crate) struct RamFlash {
        pub(crate) data: Vec<u8>,
        pub(crate) geo: Geometry,
        pub(crate) queued: heapless::Vec<ReadRequest, 64>,
        pub(crate) fail_at: Option<u64>,
        pub(crate) commands: u64,
        /// Submits into an empty queue: how often the host let it drain.
        pub(crate) idle_submits: u64,
        /// Break the `complete` contract: report reads in flight, complete none.
        pub(crate) stall: bool,
    }

    impl ErrorType for RamFlash {
        type Error = ErrorKind;
    }

    impl RamFlash {
        /// A device over `data` with `geo`.
        pub(crate) fn new(data: Vec<u8>, geo: Geometry) -> Self {
            RamFlash {
                data,
                geo,
                queued: heapless::Vec::new(),
                fail_at: None,
                commands: 0,
                idle_submits: 0,
                stall: false,
            }
        }
    }

    impl FlashDevice for RamFlash {
        fn geometry(&self) -> Geometry {
            self.geo
        }
        fn cost_model(&self) -> CostModel {
            CostModel {
                command_ns: 8_000,
                bytes_per_sec: 4_200_000_000,
                queue_depth: 2,
            }
        }
        fn submit<A: DramArena>(
            &mut self,
            arena: &mut A,
            reads: &[ReadRequest],
        ) -> Result<(), ErrorKind> {
            self.geo.check_batch(arena, reads)?;
            if self.queued.len() + reads.len() > usize::from(self.geo.queue_depth) {
                return Err(ErrorKind::QueueFull);
            }
            if self.queued.is_empty() && !reads.is_empty() {
                self.idle_submits += 1;
            }
            self.commands += reads.len() as u64;
            self.queued
                .extend_from_slice(reads)
                .map_err(|_| ErrorKind::QueueFull)
        }
        fn complete<A: DramArena>(
            &mut self,
            arena: &mut A,
            done: &mut [Completion],
        ) -> Result<usize, ErrorKind> {
            let mut n = 0;
            while n < done.len() && !self.stall {
                let Some(r) = self.queued.pop() else { break };
                let status = if Some(r.offset) == self.fail_at {
                    Err(ErrorKind::Io)
                } else {
                    let src = &self.data[r.offset as usize..][..r.len as usize];
                    arena.bytes_mut(r.dest).unwrap()[r.dest_offset..][..src.len()]
                        .copy_from_slice(src);
                    Ok(())
                };
                done[n] = Completion { tag: r.tag, status };
                n += 1;
            }
            Ok(n)
        }
        fn in_flight(&self) -> usize {
            self.queued.len()
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), ErrorKind> {
            Err(ErrorKind::Unsupported)
        }
        fn sync(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }
}
