//! A persistent pool of worker threads for splitting one operation across
//! cores.
//!
//! A 135M-parameter decode step is ~200 matrix products of 10-100 µs each;
//! spawning threads per product (10-20 µs each) or even waking sleeping ones
//! through the kernel (several µs) would eat the gain. So workers are created
//! once, and between jobs they first spin on an epoch counter for a bounded
//! time (`spin`), then sleep on a condition variable. During decode the next
//! product arrives well inside the spin window and a worker starts within
//! nanoseconds; an idle pool costs no CPU once the window has passed.
//!
//! A job is `n` chunks that participants claim one at a time from a shared
//! counter, the caller included. The caller never waits for a worker that
//! has not started: when it finds no chunk left it closes the job's gate, and
//! only workers already inside (counted by the gate) are waited for. On a
//! machine whose other core is busy with something else, a product then costs
//! about what it costs single-threaded instead of a scheduler time slice.
//!
//! [`Pool::run`] borrows a closure from the caller's stack and hands it to the
//! workers. `std::thread::scope` cannot be used (its threads end with the
//! scope), so the borrow's lifetime is erased, which is the one `unsafe`
//! operation here; its soundness argument is at the `unsafe` block.
#![allow(unsafe_code)]

use std::any::Any;
use std::boxed::Box;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::vec::Vec;

/// The job as workers see it: chunk index to work.
type Job = dyn Fn(usize) + Sync;

/// A lifetime-erased pointer to the current job.
#[derive(Clone, Copy)]
struct JobPtr(*const Job);

// SAFETY: the pointee is `Sync`, so sharing the pointer across threads only
// ever gives shared access to a `Sync` value; when it may be dereferenced is
// governed by the gate (see `Pool::run`).
unsafe impl Send for JobPtr {}

/// The gate's "job open" bit; the bits below count workers inside the job.
const OPEN: usize = 1 << (usize::BITS - 1);

/// State guarded by the pool's mutex.
struct State {
    job: Option<JobPtr>,
    /// Workers blocked in `wake.wait`.
    sleepers: usize,
    /// The caller is blocked in `done.wait`.
    caller_waiting: bool,
    /// The first panic payload of a worker during the current job.
    panic: Option<Box<dyn Any + Send>>,
}

struct Shared {
    /// Incremented once per job; workers compare it with the last one seen.
    epoch: AtomicUsize,
    /// `OPEN` while the job accepts workers, plus the workers inside it.
    gate: AtomicUsize,
    /// Next chunk to claim.
    next: AtomicUsize,
    /// Chunks in the current job.
    chunks: AtomicUsize,
    shutdown: AtomicBool,
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
    spin: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock, but recover rather than
        // propagate poisoning if that ever changes.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims and runs chunks of `f` until none are left.
    fn drain(&self, f: &(dyn Fn(usize) + Sync + '_)) {
        let n = self.chunks.load(Ordering::Acquire);
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= n {
                return;
            }
            f(i);
        }
    }

    /// Enters the gate if the job is open; `true` when entered.
    fn enter(&self) -> bool {
        let mut g = self.gate.load(Ordering::Acquire);
        loop {
            if g & OPEN == 0 {
                return false;
            }
            match self
                .gate
                .compare_exchange_weak(g, g + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => g = now,
            }
        }
    }
}

/// Worker threads plus the calling thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool of `workers` threads (so `workers + 1` threads share a job)
    /// that spin for `spin` before sleeping.
    pub(crate) fn new(workers: usize, spin: Duration) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            gate: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            chunks: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            state: Mutex::new(State {
                job: None,
                sleepers: 0,
                caller_waiting: false,
                panic: None,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            spin,
        });
        let mut pool = Pool {
            shared,
            handles: Vec::with_capacity(workers),
        };
        for i in 0..workers {
            let s = Arc::clone(&pool.shared);
            let h = std::thread::Builder::new()
                .name(std::format!("lode-compute-{}", i + 1))
                .spawn(move || worker(&s))?;
            // On error `pool` drops here and joins the workers started so far.
            pool.handles.push(h);
        }
        Ok(pool)
    }

    /// Threads that share a job: workers plus the caller.
    pub(crate) fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Calls `f(i)` exactly once for every `i` in `0..n`, spread over the
    /// caller and whichever workers join in time, and returns when all calls
    /// have returned. A panic in any call is re-raised here after all
    /// participants have left the job.
    pub(crate) fn run(&mut self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.handles.is_empty() || n <= 1 {
            for i in 0..n {
                f(i);
            }
            return;
        }
        let s = &*self.shared;
        // SAFETY: this erases the lifetime of the borrow `f`. A worker
        // dereferences the pointer only while counted inside the gate: it
        // enters with a compare-exchange that succeeds only while `OPEN` is
        // set, reads the pointer after entering, and stops using it before
        // leaving (decrementing the gate). This function clears `OPEN`
        // before returning and then waits until the count is zero, so no
        // worker can be inside or enter afterwards; it cannot return early
        // by unwinding either (the caller's share runs under
        // `catch_unwind`, and the wait cannot panic). Every dereference
        // therefore happens while `f` is still borrowed by this call. A
        // worker that saw an older epoch and enters a later job reads that
        // later job's pointer, which the same argument covers.
        let job = JobPtr(unsafe {
            core::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(
                f as *const (dyn Fn(usize) + Sync),
            )
        });
        {
            let mut st = s.lock();
            st.job = Some(job);
            s.next.store(0, Ordering::Relaxed);
            s.chunks.store(n, Ordering::Relaxed);
            // Opening publishes the job, the counter and the chunk count.
            s.gate.store(OPEN, Ordering::Release);
            // Bumped under the lock: a worker about to sleep either sees the
            // new epoch or is already waiting and gets the notification.
            s.epoch.fetch_add(1, Ordering::AcqRel);
            if st.sleepers > 0 {
                s.wake.notify_all();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| s.drain(f)));
        // No new worker may enter now; wait for those inside.
        s.gate.fetch_and(!OPEN, Ordering::AcqRel);
        self.wait_empty();
        let theirs = {
            let mut st = s.lock();
            st.job = None;
            st.panic.take()
        };
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }

    /// Blocks until no worker is inside the (closed) job: spins for the
    /// configured time, then sleeps.
    fn wait_empty(&self) {
        let s = &*self.shared;
        let start = Instant::now();
        let mut n = 0u32;
        while s.gate.load(Ordering::Acquire) != 0 {
            spin_once(&mut n);
            if n.is_multiple_of(64) && start.elapsed() > s.spin {
                let mut st = s.lock();
                st.caller_waiting = true;
                while s.gate.load(Ordering::Acquire) != 0 {
                    st = s.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                st.caller_waiting = false;
                return;
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        {
            let _st = self.shared.lock();
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            // A worker cannot panic outside `catch_unwind`; nothing to report.
            let _ = h.join();
        }
    }
}

/// One step of a spin wait. Every 256th step yields the CPU: on an idle
/// machine that returns at once, on a busy one it lets the thread we are
/// waiting for (or anyone else) run instead of burning our time slice.
#[inline]
fn spin_once(n: &mut u32) {
    core::hint::spin_loop();
    *n = n.wrapping_add(1);
    if (*n).is_multiple_of(256) {
        std::thread::yield_now();
    }
}

/// Waits until the epoch differs from `seen` (or shutdown); `false` on
/// shutdown.
fn wait_for_job(s: &Shared, seen: usize) -> bool {
    let fresh = || s.epoch.load(Ordering::Acquire) != seen;
    let stop = || s.shutdown.load(Ordering::Acquire);
    let start = Instant::now();
    let mut n = 0u32;
    while !fresh() && !stop() {
        spin_once(&mut n);
        if n.is_multiple_of(64) && start.elapsed() > s.spin {
            let mut st = s.lock();
            st.sleepers += 1;
            while !fresh() && !stop() {
                st = s.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.sleepers -= 1;
            break;
        }
    }
    !stop()
}

fn worker(s: &Shared) {
    let mut seen = 0usize;
    while wait_for_job(s, seen) {
        seen = s.epoch.load(Ordering::Acquire);
        if !s.enter() {
            continue; // the caller already finished that job alone
        }
        let job = s.lock().job;
        if let Some(JobPtr(ptr)) = job {
            // SAFETY: we are counted inside an open-then job's gate, so
            // `Pool::run` is still borrowing the closure `ptr` points to and
            // will not return before we leave (see the argument in `run`);
            // the closure is `Sync`, so shared access from here is allowed.
            let f = unsafe { &*ptr };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| s.drain(f))) {
                let mut st = s.lock();
                if st.panic.is_none() {
                    st.panic = Some(p);
                }
            }
        }
        // Leaving: from here on `ptr` must not be used.
        if s.gate.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Closed and we were the last inside: the caller may be asleep.
            let st = s.lock();
            if st.caller_waiting {
                s.done.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests;
