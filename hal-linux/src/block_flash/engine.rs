//! The I/O engines behind `BlockFlash`: io_uring, or a pool of pread
//! threads. Both take the same operations and return the same completions,
//! so the device's bookkeeping (bounce buffers, short reads, copies into the
//! arena) is written once.
#![allow(unsafe_code)]

use std::io;

use super::threads::ThreadEngine;
use super::uring::UringEngine;

/// One read for an engine: `len` bytes at file position `pos` into `ptr`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    /// The device's request index, returned in the [`Done`].
    pub(crate) id: u16,
    /// Where the bytes go: inside a live bounce slot reserved for this read.
    pub(crate) ptr: *mut u8,
    /// Bytes to read.
    pub(crate) len: u32,
    /// File offset.
    pub(crate) pos: u64,
}

// SAFETY: an `Op` is a description of a read, passed to the worker thread
// that performs it. The memory its pointer names is reserved for that one
// read by the device (see `bounce.rs`, points 2 and 4) until the `Done` comes
// back, so the worker is the only writer wherever the `Op` travels.
unsafe impl Send for Op {}

/// The outcome of one [`Op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Done {
    /// The op's `id`.
    pub(crate) id: u16,
    /// Bytes read (possibly fewer than asked), or the errno.
    pub(crate) result: Result<u32, i32>,
}

/// An io_uring ring or a pread pool: the engine that runs.
#[derive(Debug)]
pub(crate) enum Runner {
    Uring(Box<UringEngine>),
    Threads(ThreadEngine),
}

impl Runner {
    /// Queue `op`; it may not reach the kernel until [`flush`](Self::flush).
    ///
    /// # Safety
    ///
    /// `op.ptr .. op.ptr + op.len` must be writable memory that stays valid,
    /// and that nothing else reads or writes, until this engine returns the
    /// `Done` with `op.id` (or, if that never happens, forever).
    pub(crate) unsafe fn push(&mut self, op: Op) -> io::Result<()> {
        match self {
            // SAFETY: the caller's contract is the engine's contract.
            Runner::Uring(e) => unsafe { e.push(op) },
            Runner::Threads(e) => {
                // SAFETY: as above.
                unsafe { e.push(op) };
                Ok(())
            }
        }
    }

    /// Hand every queued op to the kernel (one system call for io_uring).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Runner::Uring(e) => e.flush(),
            Runner::Threads(_) => Ok(()),
        }
    }

    /// Move up to `out.capacity() - out.len()` completions into `out`,
    /// blocking for the first one when `wait` and anything is outstanding.
    pub(crate) fn reap(&mut self, wait: bool, max: usize, out: &mut Vec<Done>) -> io::Result<()> {
        match self {
            Runner::Uring(e) => e.reap(wait, max, out),
            Runner::Threads(e) => e.reap(wait, max, out),
        }
    }

    /// Ops pushed whose `Done` has not been reaped.
    pub(crate) fn outstanding(&self) -> usize {
        match self {
            Runner::Uring(e) => e.outstanding(),
            Runner::Threads(e) => e.outstanding(),
        }
    }

    /// Wait for every outstanding op and discard the results. After `Ok`,
    /// the kernel holds no pointer into the bounce memory any more.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        let mut sink = Vec::with_capacity(64);
        while self.outstanding() > 0 {
            sink.clear();
            self.flush()?;
            self.reap(true, 64, &mut sink)?;
        }
        Ok(())
    }
}
