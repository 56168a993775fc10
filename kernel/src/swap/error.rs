//! The swap area's errors: one enum per operation, as embedded-hal 1.0
//! does, each `#[non_exhaustive]` with a [`kind`](OpenError::kind) that
//! says what a caller can do about it.

use core::fmt;

use crate::flash::{self, ReadError};
use crate::formats::swap::SwapFormatError;

/// What kind of failure an operation met, whatever the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The borrowed memory is smaller than [`memory_bytes`](super::memory_bytes).
    MemoryTooSmall,
    /// The device's block size or capacity cannot hold a swap area.
    BadGeometry,
    /// No slot holds a valid superblock: the area was never formatted (or
    /// its format was interrupted). Format it.
    NoSuperblock,
    /// The area belongs to another model (its fingerprint differs).
    WrongFingerprint,
    /// The area was written by another format version.
    UnsupportedVersion,
    /// Not enough free space; nothing committed was lost.
    Full,
    /// The directory already holds `MAX_CONTEXTS` contexts.
    TooManyContexts,
    /// No committed context has this id (or it has no such chunk).
    Unknown,
    /// Stored bytes fail their checks: recompute the chunk from its text.
    Corrupt,
    /// The caller's request is inconsistent (order, bounds, a buffer).
    InvalidArgument,
    /// The device failed.
    Device,
}

/// A device failure during a swap-area operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError<E> {
    /// A read failed.
    Read(ReadError<E>),
    /// A write or a sync failed.
    Write(E),
    /// A commit failed while its superblock was being written, so whether
    /// it took effect is unknown until the area is opened again; the area
    /// refuses further changes until then.
    Unsettled,
}

impl<E: flash::Error> DeviceError<E> {
    /// The flash error kind, if the device reported one.
    pub fn flash_kind(&self) -> Option<flash::ErrorKind> {
        match self {
            DeviceError::Read(e) => Some(flash::Error::kind(e)),
            DeviceError::Write(e) => Some(e.kind()),
            DeviceError::Unsettled => None,
        }
    }
}

macro_rules! swap_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident $( ( $ty:ty ) )? => $kind:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum $name<E> {
            $($(#[$vdoc])* $variant $( ( $ty ) )?,)*
            /// The device failed.
            Device(DeviceError<E>),
        }

        impl<E> $name<E> {
            /// What kind of failure this is.
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $($name::$variant { .. } => ErrorKind::$kind,)*
                    $name::Device(_) => ErrorKind::Device,
                }
            }
        }

        impl<E> From<DeviceError<E>> for $name<E> {
            fn from(e: DeviceError<E>) -> Self {
                $name::Device(e)
            }
        }

        impl<E: fmt::Debug> fmt::Display for $name<E> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "KV swap area: {:?}", self)
            }
        }

        impl<E: fmt::Debug> core::error::Error for $name<E> {}
    };
}

swap_error!(
    /// Error of [`SwapArea::format`](super::SwapArea::format).
    FormatError {
        /// The borrowed memory is too small.
        MemoryTooSmall => MemoryTooSmall,
        /// The device cannot hold a swap area.
        BadGeometry => BadGeometry,
    }
);

swap_error!(
    /// Error of [`SwapArea::open`](super::SwapArea::open).
    OpenError {
        /// The borrowed memory is too small.
        MemoryTooSmall => MemoryTooSmall,
        /// The device cannot hold a swap area, or the superblock's block
        /// size or length is not this device's.
        BadGeometry => BadGeometry,
        /// Neither slot holds a valid superblock.
        NoSuperblock => NoSuperblock,
        /// The newest valid superblock names another model.
        WrongFingerprint => WrongFingerprint,
        /// An intact superblock of another format version.
        UnsupportedVersion => UnsupportedVersion,
        /// Valid superblocks exist but no committed state behind them
        /// passes its checks (the first failure is kept).
        Corrupt(SwapFormatError) => Corrupt,
    }
);

swap_error!(
    /// Error of [`SwapArea::commit`](super::SwapArea::commit). Whatever
    /// the error, the previously committed state is intact and readable.
    CommitError {
        /// Not enough free space for the new payloads, record and directory.
        Full => Full,
        /// A new context, and the directory is full.
        TooManyContexts => TooManyContexts,
        /// The request is inconsistent; the text says how.
        InvalidArgument(&'static str) => InvalidArgument,
        /// A chunk to keep is in a committed record that fails its checks.
        Corrupt(SwapFormatError) => Corrupt,
    }
);

swap_error!(
    /// Error of [`SwapArea::delete`](super::SwapArea::delete).
    DeleteError {
        /// No committed context has this id.
        UnknownContext => Unknown,
        /// No free space for the new directory; nothing was deleted.
        Full => Full,
    }
);

swap_error!(
    /// Error of [`SwapArea::read_chunk`](super::SwapArea::read_chunk).
    ReadChunkError {
        /// No committed context has this id.
        UnknownContext => Unknown,
        /// The context has no committed chunk of this index.
        UnknownChunk => Unknown,
        /// The destination slot is stale or holds fewer bytes than the
        /// payload rounded up to whole blocks (the number given).
        BadDestination(usize) => InvalidArgument,
        /// The payload (or the record pointing at it) fails its CRC32C on
        /// every attempt: recompute the chunk from the context's text.
        Corrupt => Corrupt,
    }
);

swap_error!(
    /// Error of [`SwapArea::read_context`](super::SwapArea::read_context).
    ReadContextError {
        /// No committed context has this id.
        UnknownContext => Unknown,
        /// A caller buffer is shorter than the context's tokens or chunks.
        BufferTooSmall => InvalidArgument,
        /// The context's record fails its checks.
        Corrupt => Corrupt,
    }
);
