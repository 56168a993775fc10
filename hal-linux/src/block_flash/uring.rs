//! The io_uring engine: one ring per device, one `io_uring_enter` per
//! submitted batch, completions taken straight from the shared completion
//! queue.
//!
//! The ring reads into bounce memory (`bounce.rs`) only: every address in a
//! submission entry comes from [`Runner::push`](super::engine::Runner::push),
//! whose contract keeps that memory reserved and mapped until the entry's
//! completion has been taken from the queue here.
//!
//! # Deferred completions, and the thread a ring belongs to
//!
//! By default the kernel posts a completion by interrupting the submitting
//! task as soon as the device finishes, which on a disk that completes
//! requests in bursts (the virtio disk of lode's development machine) makes
//! every read of a burst look finished at the same moment, and the next
//! burst is only issued after all of them: the queue runs in lock step at
//! about 75% of fio's random-read rate. With `SINGLE_ISSUER |
//! DEFER_TASKRUN` (Linux 6.1+) completions are posted only when the owner
//! asks for them, each `complete` takes what is ready and refills the queue
//! at once, and the rate matches fio's. The price is that the ring belongs to
//! one thread: the kernel refuses `io_uring_enter` from any other (EEXIST).
//! A `BlockFlash` may move between threads (it is `Send`), so the engine
//! remembers its thread and, when used from another one with nothing in
//! flight, rebuilds the ring there; used from another thread with reads in
//! flight, it returns an error and the reads stay with the old thread.
//! Kernels without those flags get a plain ring, usable from any thread.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::thread::{self, ThreadId};

use io_uring::{opcode, types, IoUring};

use super::engine::{Done, Op};

/// A ring and what was registered with it.
struct Ring {
    ring: IoUring,
    fixed_file: bool,
    fixed_buf: bool,
    /// Single issuer with deferred completions: bound to `owner`.
    deferred: bool,
    owner: ThreadId,
}

/// Set up a ring of `entries` for `fd`, trying deferred completions first,
/// and register the file and the bounce memory where the kernel allows.
///
/// # Safety
///
/// `pool` must stay mapped for as long as the ring exists.
unsafe fn build(fd: RawFd, entries: u32, pool: (usize, usize), defer: bool) -> io::Result<Ring> {
    let deferred = if defer {
        IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
            .ok()
    } else {
        None
    };
    let (ring, deferred) = match deferred {
        Some(r) => (r, true),
        None => (IoUring::new(entries)?, false),
    };
    // IORING_OP_READ arrived in Linux 5.6, with the probe itself; a kernel
    // that cannot say it has it is treated as having no usable io_uring.
    let mut probe = io_uring::Probe::new();
    if ring.submitter().register_probe(&mut probe).is_err()
        || !probe.is_supported(opcode::Read::CODE)
        || !probe.is_supported(opcode::ReadFixed::CODE)
    {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    let fixed_file = ring.submitter().register_files(&[fd]).is_ok();
    let iov = libc::iovec {
        iov_base: pool.0 as *mut libc::c_void,
        iov_len: pool.1,
    };
    // SAFETY: the iovec names the bounce mapping, which the caller keeps
    // mapped for the ring's whole life; the kernel only pins its pages.
    // Registered buffers count against RLIMIT_MEMLOCK, so an unprivileged
    // process with a large pool goes without (plain reads then).
    let fixed_buf = unsafe { ring.submitter().register_buffers(&[iov]) }.is_ok();
    Ok(Ring {
        ring,
        fixed_file,
        fixed_buf,
        deferred,
        owner: thread::current().id(),
    })
}

/// An io_uring ring bound to one file.
pub(crate) struct UringEngine {
    ring: Ring,
    fd: RawFd,
    entries: u32,
    /// The bounce mapping `(start address, length)`, registered as buffer 0
    /// when `ring.fixed_buf`.
    pool: (usize, usize),
    outstanding: usize,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("entries", &self.entries())
            .field("fixed_file", &self.ring.fixed_file)
            .field("fixed_buf", &self.ring.fixed_buf)
            .field("deferred", &self.ring.deferred)
            .field("outstanding", &self.outstanding)
            .finish()
    }
}

impl UringEngine {
    /// Set up a ring of at least `entries` submission entries for `file`,
    /// bound to the calling thread when deferred completions are available.
    ///
    /// # Safety
    ///
    /// `pool` must be a live mapping that stays mapped for as long as the
    /// returned engine exists (the kernel pins its pages at registration).
    pub(crate) unsafe fn new(
        file: &File,
        entries: u32,
        pool: (*mut u8, usize),
    ) -> io::Result<Self> {
        let fd = file.as_raw_fd();
        let entries = entries.max(1);
        let pool = (pool.0 as usize, pool.1);
        // SAFETY: the caller keeps the pool mapped for the engine's life,
        // and the ring lives inside the engine.
        let ring = unsafe { build(fd, entries, pool, true) }?;
        Ok(UringEngine {
            ring,
            fd,
            entries,
            pool,
            outstanding: 0,
        })
    }

    /// Submission-queue entries the kernel granted.
    pub(crate) fn entries(&self) -> u32 {
        self.ring.ring.params().sq_entries()
    }

    /// Whether the file is registered with the ring.
    pub(crate) fn fixed_file(&self) -> bool {
        self.ring.fixed_file
    }

    /// Whether the bounce memory is registered with the ring.
    pub(crate) fn fixed_buffers(&self) -> bool {
        self.ring.fixed_buf
    }

    /// Whether completions are deferred (and the ring bound to a thread).
    pub(crate) fn deferred(&self) -> bool {
        self.ring.deferred
    }

    /// Make the calling thread the ring's owner: nothing to do for a plain
    /// ring or on the owner's thread; a rebuild on this thread when nothing
    /// is in flight; an error otherwise.
    fn own(&mut self) -> io::Result<()> {
        let me = thread::current().id();
        if !self.ring.deferred || self.ring.owner == me {
            return Ok(());
        }
        if self.outstanding > 0 {
            return Err(io::Error::other(
                "the io_uring ring belongs to the thread that has reads in flight on it",
            ));
        }
        // SAFETY: the same pool as at `new`, still mapped for the engine's
        // life (the caller's contract there); the old ring has no op in
        // flight and is dropped by the assignment.
        self.ring = unsafe { build(self.fd, self.entries, self.pool, true) }?;
        Ok(())
    }

    /// Queue `op` in the submission queue (flushing first if it is full).
    ///
    /// # Safety
    ///
    /// As [`Runner::push`](super::engine::Runner::push): the op's memory stays
    /// valid and untouched until its completion is reaped.
    pub(crate) unsafe fn push(&mut self, op: Op) -> io::Result<()> {
        self.own()?;
        let (start, len) = self.pool;
        let p = op.ptr as usize;
        let in_pool = p >= start && p.saturating_add(op.len as usize) <= start.saturating_add(len);
        let fixed_buf = self.ring.fixed_buf && in_pool;
        let entry = match (self.ring.fixed_file, fixed_buf) {
            (true, true) => opcode::ReadFixed::new(types::Fixed(0), op.ptr, op.len, 0)
                .offset(op.pos)
                .build(),
            (false, true) => opcode::ReadFixed::new(types::Fd(self.fd), op.ptr, op.len, 0)
                .offset(op.pos)
                .build(),
            (true, false) => opcode::Read::new(types::Fixed(0), op.ptr, op.len)
                .offset(op.pos)
                .build(),
            (false, false) => opcode::Read::new(types::Fd(self.fd), op.ptr, op.len)
                .offset(op.pos)
                .build(),
        }
        .user_data(u64::from(op.id));
        if self.ring.ring.submission().is_full() {
            self.flush()?;
        }
        // SAFETY: the entry's buffer is `op.ptr .. op.ptr + op.len`, which the
        // caller keeps valid and reserved until the completion is reaped; the
        // fd (or fixed file 0) is the device's file, which the device keeps
        // open until every op has completed (it drains in Drop).
        unsafe { self.ring.ring.submission().push(&entry) }
            .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        self.outstanding += 1;
        Ok(())
    }

    /// Submit everything queued, retrying on EINTR.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.ring.ring.submission().is_empty() {
            return Ok(());
        }
        self.own()?;
        while !self.ring.ring.submission().is_empty() {
            match self.ring.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Take up to `max` completions into `out`, first waiting for one when
    /// `wait` and anything is outstanding.
    pub(crate) fn reap(&mut self, wait: bool, max: usize, out: &mut Vec<Done>) -> io::Result<()> {
        if max == 0 || self.outstanding == 0 {
            return Ok(());
        }
        self.own()?;
        let ring = &mut self.ring.ring;
        if wait && ring.completion().is_empty() {
            loop {
                match ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                        if !ring.completion().is_empty() {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let before = out.len();
        for cqe in ring.completion().take(max) {
            let result = cqe.result();
            out.push(Done {
                // Only ids (< 256) are ever stored in user_data.
                id: u16::try_from(cqe.user_data()).unwrap_or(u16::MAX),
                result: u32::try_from(result).map_err(|_| result.saturating_neg()),
            });
        }
        self.outstanding = self.outstanding.saturating_sub(out.len() - before);
        Ok(())
    }

    /// Ops pushed and not yet reaped.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }
}
