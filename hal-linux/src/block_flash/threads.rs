//! The pread engine: a bounded pool of threads, each taking one read at a
//! time from a shared queue and doing a blocking `pread` into the bounce
//! memory the read names.
//!
//! It is what runs where io_uring is refused (seccomp filters in containers
//! and Android apps, `kernel.io_uring_disabled`), and what Android uses by
//! design with one thread pinned to a big core. The engine never touches the
//! bytes: a worker writes them, the device reads them after the worker's
//! completion has arrived through the channel (which orders the worker's
//! writes before the device's reads).
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::engine::{Done, Op};
use super::os;

#[derive(Debug)]
struct State {
    queue: VecDeque<Op>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    file: Arc<File>,
}

impl Shared {
    /// The state, even if a worker panicked while holding the lock (the
    /// queue is a plain list; no invariant can be half-updated).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why the pool could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// A thread could not be spawned.
    Spawn(io::Error),
    /// A worker could not be pinned to the CPU.
    Pin(io::Error),
}

/// A pool of pread workers over one file.
#[derive(Debug)]
pub(crate) struct ThreadEngine {
    shared: Arc<Shared>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    outstanding: usize,
    threads: u16,
    pinned: Option<usize>,
}

impl ThreadEngine {
    /// Start `threads` workers over `file`, each pinned to `pin` if given.
    /// `capacity` bounds the ops queued at once (the device's queue depth),
    /// so the queue never reallocates.
    pub(crate) fn new(
        file: Arc<File>,
        threads: u16,
        pin: Option<usize>,
        capacity: usize,
    ) -> Result<Self, StartError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity),
                stop: false,
            }),
            wake: Condvar::new(),
            file,
        });
        let (done_tx, done) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut engine = ThreadEngine {
            shared,
            done,
            workers: Vec::with_capacity(usize::from(threads)),
            outstanding: 0,
            threads,
            pinned: pin,
        };
        for i in 0..threads {
            let shared = Arc::clone(&engine.shared);
            let done_tx = done_tx.clone();
            let ready_tx = ready_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("lode-io-{i}"))
                .spawn(move || worker(&shared, &done_tx, pin, &ready_tx))
                .map_err(StartError::Spawn)?;
            engine.workers.push(handle);
        }
        drop(ready_tx);
        // Every worker reports whether it could pin itself before taking work.
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StartError::Pin(e)),
                Err(_) => {
                    return Err(StartError::Spawn(io::Error::other(
                        "a pread worker exited while starting",
                    )))
                }
            }
        }
        Ok(engine)
    }

    /// Worker threads.
    pub(crate) fn threads(&self) -> u16 {
        self.threads
    }

    /// The CPU the workers are pinned to.
    pub(crate) fn pinned(&self) -> Option<usize> {
        self.pinned
    }

    /// Queue `op` and wake a worker.
    ///
    /// # Safety
    ///
    /// As [`Runner::push`](super::engine::Runner::push): the op's memory stays
    /// valid and untouched by anyone but the worker until its `Done` is
    /// reaped.
    pub(crate) unsafe fn push(&mut self, op: Op) {
        self.shared.lock().queue.push_back(op);
        self.shared.wake.notify_one();
        self.outstanding += 1;
    }

    /// Take up to `max` completions into `out`, first waiting for one when
    /// `wait` and anything is outstanding. A pool whose workers have all
    /// gone while reads are outstanding is an error.
    pub(crate) fn reap(&mut self, wait: bool, max: usize, out: &mut Vec<Done>) -> io::Result<()> {
        let gone = || io::Error::other("the pread workers have stopped");
        let mut taken = 0;
        if max == 0 || self.outstanding == 0 {
            return Ok(());
        }
        if wait {
            let d = self.done.recv().map_err(|_| gone())?;
            out.push(d);
            taken += 1;
        }
        while taken < max {
            match self.done.try_recv() {
                Ok(d) => {
                    out.push(d);
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(gone()),
            }
        }
        self.outstanding = self.outstanding.saturating_sub(taken);
        Ok(())
    }

    /// Ops pushed and not yet reaped.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }
}

impl Drop for ThreadEngine {
    /// Stop and join every worker. A worker finishes the read it is doing
    /// (its memory is still the device's, see `bounce.rs`) and takes no
    /// other; ops still queued are dropped unread.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(
    shared: &Shared,
    done: &Sender<Done>,
    pin: Option<usize>,
    ready: &Sender<io::Result<()>>,
) {
    let pinned = pin.map_or(Ok(()), os::pin_current_thread);
    let failed = pinned.is_err();
    if ready.send(pinned).is_err() || failed {
        return;
    }
    loop {
        let op = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(op) = state.queue.pop_front() {
                    break op;
                }
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: the device reserved `op.ptr .. op.ptr + op.len` inside its
        // live bounce mapping for this op alone (Runner::push's contract), so
        // this is the only reference to those bytes until the `Done` below
        // has been received; the mapping outlives the worker (the device
        // joins the pool before unmapping it). The bytes are initialised
        // (anonymous memory is zero-filled).
        let buf = unsafe { std::slice::from_raw_parts_mut(op.ptr, op.len as usize) };
        let result = match shared.file.read_at(buf, op.pos) {
            Ok(n) => Ok(u32::try_from(n).unwrap_or(op.len)),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        if done.send(Done { id: op.id, result }).is_err() {
            return;
        }
    }
}
