//! The flash device: geometry, a cost model, split-phase batched reads and,
//! where the medium takes them, writes.
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
//! # Reading apart from writing
//!
//! Model weights are only read; only the KV swap area is written. So the
//! read side is [`FlashDevice`] and the write side is a separate
//! [`FlashWrite`]: a read-only medium (a ROM, an APK asset, memory-mapped NOR)
//! implements one trait, not a second one that fails on every call, and code
//! that only reads asks for no more than it uses.
//!
//! # Admission
//!
//! Offsets, lengths and destination *addresses* must be multiples of
//! [`Geometry::block_size`], because direct I/O (O_DIRECT, raw partitions)
//! demands it. Every device checks a batch with the one function
//! [`admit`] (and a write with [`admit_write`]) before it queues any of it, so
//! a bad batch is refused whole and every device refuses the same requests
//! with the same [`ErrorKind`].
//!
//! # Adapters
//!
//! Policies that apply to any device are adapters over one, not features of
//! each: [`Window`] exposes a block-aligned part of a device (a partition),
//! [`FaultInjector`] injects seeded read errors, bit flips and latency spikes.
//! Both take the device by value or, through the blanket impls, as `&mut D`,
//! so a device can be lent to them and taken back.
//!
//! # Conformance
//!
//! The contract above is also a test suite, `lode_hal::conformance`: every
//! device in lode runs it, and a device written elsewhere runs it from its
//! own tests.

mod admit;
pub mod checks;
mod crc_shift;
mod device;
pub mod fault;
mod geometry;
pub mod paced;
pub mod retry;
#[cfg(test)]
pub(crate) mod testing;
pub mod window;

use core::fmt;

use crate::arena::Slot;

pub use admit::{admit, admit_read, admit_span, admit_write, destination_mut};
pub use checks::{BlockChecks, CheckError};
pub use device::{FlashDevice, FlashWrite};
pub use fault::{FaultCounts, FaultInjector, Faults};
pub use geometry::Geometry;
pub use paced::Paced;
pub use window::Window;

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

/// Binds an error type to a device.
pub trait ErrorType {
    /// The device's error type.
    type Error: Error;
}

/// A lent device has the owner's error type.
impl<T: ErrorType + ?Sized> ErrorType for &mut T {
    type Error = T::Error;
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

/// Error of an adapter over another device ([`Window`], [`FaultInjector`]):
/// the adapter's own refusal or injected failure, or the inner device's error
/// unchanged (so its detail, a path or an OS error, is not lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterError<E> {
    /// The adapter refused the request or injected the failure.
    Adapter(ErrorKind),
    /// The device under the adapter failed.
    Device(E),
}

impl<E: Error> Error for AdapterError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            AdapterError::Adapter(kind) => *kind,
            AdapterError::Device(e) => e.kind(),
        }
    }
}

impl<E> From<ErrorKind> for AdapterError<E> {
    fn from(kind: ErrorKind) -> Self {
        AdapterError::Adapter(kind)
    }
}

impl<E: fmt::Display> fmt::Display for AdapterError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdapterError::Adapter(kind) => kind.fmt(f),
            AdapterError::Device(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Display + fmt::Debug> core::error::Error for AdapterError<E> {}
