//! `FaultInjector`: seeded faults as an adapter over any device.
//!
//! Storage fails in ways a test bench rarely shows: a read returns an error,
//! a read returns data with a flipped bit (read disturb, a bus error), a
//! command stalls for milliseconds (garbage collection, thermal throttling).
//! Policies above the device must survive all three, on the fake flash and on
//! real storage alike, so the faults are middleware around any
//! [`FlashDevice`] rather than a feature of one device.
//!
//! Every read fault is drawn from one [`SplitMix64`] at *submit* time, in
//! request order, so the same seed and the same calls give the same faults even over
//! a device whose completion order varies from run to run (a thread pool, a
//! real queue). A batch refused by admission draws nothing.
//!
//! - **Read errors** (a rate, or every read overlapping a chosen
//!   [bad extent](FaultInjector::fail_reads)): the read is not forwarded; it
//!   completes with [`ErrorKind::Io`] and its destination is untouched.
//! - **Bit flips**: the read is forwarded; when it completes successfully,
//!   one drawn bit of the delivered copy is inverted.
//! - **Latency spikes**: the read's completion is reported late by
//!   `spike_ns`. The injector adds it to a virtual clock
//!   ([`FaultCounts::added_ns`]) for simulations, and calls an optional
//!   sleeper (see [`FaultInjector::with_sleep`]) so a real device really
//!   stalls.
//! - **Write errors**: a write fails with `Io` and writes nothing.
//!
//! The injector tags forwarded reads with its own table index (the caller's
//! tags may repeat), so it holds at most `N` reads in flight and reports a
//! queue depth of at most `N`.

use crate::arena::DramArena;
use crate::cost::CostModel;
use crate::rng::SplitMix64;

use super::{
    admit, admit_write, destination_mut, AdapterError, Completion, ErrorKind, ErrorType,
    FlashDevice, FlashWrite, Geometry, ReadRequest,
};

mod faults;

pub use faults::{FaultCounts, Faults};

pub use crate::limits::FAULT_BATCH;

pub use crate::limits::MAX_BAD_EXTENTS;

/// What was decided for one read at submit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fate {
    fail: bool,
    /// Bit of the delivered copy to invert.
    flip: Option<u64>,
    spike_ns: u64,
}

/// A read in flight: the caller's request and its fate.
#[derive(Debug, Clone, Copy)]
struct Entry {
    read: ReadRequest,
    fate: Fate,
}

/// Any device `D` with seeded faults; see the [module docs](self).
///
/// With [`Faults::none`] and no bad extents it is transparent: the same
/// bytes, refusals and completions as `D` (with a queue depth of at most
/// `N`).
#[derive(Debug)]
pub struct FaultInjector<D, const N: usize = FAULT_BATCH> {
    inner: D,
    faults: Faults,
    rng: SplitMix64,
    bad: heapless::Vec<(u64, u64), MAX_BAD_EXTENTS>,
    /// Forwarded reads, indexed by the tag the device was given.
    table: [Option<Entry>; N],
    /// Injected failures, completed on the next `complete` without the
    /// device: `(completion, spike_ns)`.
    failed: heapless::Deque<(Completion, u64), N>,
    counts: FaultCounts,
    sleep: Option<fn(u64)>,
}

impl<D: FlashDevice, const N: usize> FaultInjector<D, N> {
    /// `inner` with `faults`.
    pub fn new(inner: D, faults: Faults) -> Self {
        FaultInjector {
            inner,
            faults,
            rng: SplitMix64::new(faults.seed),
            bad: heapless::Vec::new(),
            table: [None; N],
            failed: heapless::Deque::new(),
            counts: FaultCounts::default(),
            sleep: None,
        }
    }

    /// Also stall for real: `sleep(ns)` is called before a spiked read's
    /// completion is returned (at most once per `complete` call, with the
    /// longest spike among the completions it returns, since their reads
    /// were in flight together). On a host pass a function that calls
    /// `std::thread::sleep`; leave it unset for virtual time only.
    pub fn with_sleep(mut self, sleep: fn(u64)) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// Replace the fault rates; the generator restarts from the new seed.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.rng = SplitMix64::new(faults.seed);
    }

    /// The fault rates in force.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Fail every read that overlaps `offset .. offset + len` with `Io`, as
    /// a bad block would. `false` (and nothing set) when
    /// [`MAX_BAD_EXTENTS`] are set already.
    #[must_use]
    pub fn fail_reads(&mut self, offset: u64, len: u64) -> bool {
        self.bad.push((offset, offset.saturating_add(len))).is_ok()
    }

    /// Forget the bad extents.
    pub fn heal(&mut self) {
        self.bad.clear();
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.counts
    }

    /// The device under the injector.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Give the device back (reads still in flight stay its business).
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn in_bad_extent(&self, r: &ReadRequest) -> bool {
        let end = r.offset.saturating_add(u64::from(r.len));
        self.bad.iter().any(|&(lo, hi)| r.offset < hi && lo < end)
    }

    /// Draw one read's fate, in a fixed order: error, then (if it survives)
    /// bit flip, then spike.
    fn draw(&mut self, r: &ReadRequest) -> Fate {
        let fail = self.in_bad_extent(r) | self.rng.chance_ppm(self.faults.read_error_ppm);
        let flip = if !fail && self.rng.chance_ppm(self.faults.bit_flip_ppm) {
            Some(self.rng.below(u64::from(r.len).saturating_mul(8)))
        } else {
            None
        };
        let spiked = self.faults.spike_ns > 0 && self.rng.chance_ppm(self.faults.spike_ppm);
        let spike_ns = if spiked { self.faults.spike_ns } else { 0 };
        Fate {
            fail,
            flip,
            spike_ns,
        }
    }

    /// Count a spike and note it for the sleeper.
    fn spike(&mut self, ns: u64, longest: &mut u64) {
        if ns > 0 {
            let c = &mut self.counts;
            c.latency_spikes = c.latency_spikes.saturating_add(1);
            c.added_ns = c.added_ns.saturating_add(ns);
            *longest = (*longest).max(ns);
        }
    }

    /// Invert bit `bit` of the bytes `r` delivered.
    fn flip<A: DramArena>(&mut self, arena: &mut A, r: &ReadRequest, bit: u64) {
        let Ok(bytes) = destination_mut(arena, r) else {
            return;
        };
        let byte = usize::try_from(bit / 8).ok().and_then(|i| bytes.get_mut(i));
        if let Some(byte) = byte {
            *byte ^= 1 << (bit % 8);
            self.counts.bit_flips = self.counts.bit_flips.saturating_add(1);
        }
    }

    /// Return the held injected failures, without waiting on the device.
    fn complete_failed(&mut self, done: &mut [Completion]) -> usize {
        let mut n = 0;
        let mut longest = 0;
        for out in done.iter_mut() {
            let Some((c, spike_ns)) = self.failed.pop_front() else {
                break;
            };
            *out = c;
            self.spike(spike_ns, &mut longest);
            n += 1;
        }
        self.stall(longest);
        n
    }

    fn stall(&self, ns: u64) {
        if let (Some(sleep), true) = (self.sleep, ns > 0) {
            sleep(ns);
        }
    }
}

impl<D: FlashDevice, const N: usize> ErrorType for FaultInjector<D, N> {
    type Error = AdapterError<D::Error>;
}

impl<D: FlashDevice, const N: usize> FlashDevice for FaultInjector<D, N> {
    /// The device's, with a queue depth of at most `N`.
    fn geometry(&self) -> Geometry {
        let g = self.inner.geometry();
        let n = u16::try_from(N).unwrap_or(u16::MAX);
        Geometry {
            queue_depth: g.queue_depth.min(n),
            ..g
        }
    }

    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }

    /// Admit the batch, draw each read's fate, forward the reads that are
    /// not to fail (retagged with table indices) and hold the failures.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error> {
        admit(&self.geometry(), self.in_flight(), arena, reads)?;
        let mut fates: heapless::Vec<Fate, N> = heapless::Vec::new();
        for r in reads {
            // Cannot fail: admission bounds the batch by the queue depth,
            // which is at most N.
            fates.push(self.draw(r)).map_err(|_| ErrorKind::QueueFull)?;
        }
        let mut forward: heapless::Vec<ReadRequest, N> = heapless::Vec::new();
        let mut placed: heapless::Vec<(usize, Entry), N> = heapless::Vec::new();
        let mut held: heapless::Vec<(Completion, u64), N> = heapless::Vec::new();
        // Every read in flight holds a table entry or a place in `failed`,
        // and admission left room for this batch, so neither runs out.
        let mut free = (0..N).filter(|&i| self.table.get(i).is_some_and(Option::is_none));
        for (r, fate) in reads.iter().zip(fates) {
            if fate.fail {
                let c = Completion {
                    tag: r.tag,
                    status: Err(ErrorKind::Io),
                };
                held.push((c, fate.spike_ns))
                    .map_err(|_| ErrorKind::QueueFull)?;
                continue;
            }
            let index = free.next().ok_or(ErrorKind::QueueFull)?;
            let tag = u32::try_from(index).map_err(|_| ErrorKind::QueueFull)?;
            forward
                .push(ReadRequest { tag, ..*r })
                .map_err(|_| ErrorKind::QueueFull)?;
            placed
                .push((index, Entry { read: *r, fate }))
                .map_err(|_| ErrorKind::QueueFull)?;
        }
        if !forward.is_empty() {
            self.inner
                .submit(arena, &forward)
                .map_err(AdapterError::Device)?;
        }
        for (index, entry) in placed {
            if let Some(e) = self.table.get_mut(index) {
                *e = Some(entry);
            }
        }
        let errors = held.len() as u64;
        for h in held {
            let _ = self.failed.push_back(h);
        }
        self.counts.read_errors = self.counts.read_errors.saturating_add(errors);
        Ok(())
    }

    /// Held failures first (without waiting on the device); otherwise the
    /// device's completions, retagged, with bit flips applied.
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error> {
        if !self.failed.is_empty() {
            return Ok(self.complete_failed(done));
        }
        let n = self
            .inner
            .complete(arena, done)
            .map_err(AdapterError::Device)?;
        let mut longest = 0;
        for c in done.iter_mut().take(n) {
            let index = usize::try_from(c.tag).unwrap_or(usize::MAX);
            let Some(entry) = self.table.get_mut(index).and_then(Option::take) else {
                // Not a tag this injector gave: the device broke its
                // contract. Pass the completion on as it is.
                continue;
            };
            c.tag = entry.read.tag;
            if let (Ok(()), Some(bit)) = (c.status, entry.fate.flip) {
                self.flip(arena, &entry.read, bit);
            }
            self.spike(entry.fate.spike_ns, &mut longest);
        }
        self.stall(longest);
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight().saturating_add(self.failed.len())
    }
}

impl<D: FlashWrite, const N: usize> FlashWrite for FaultInjector<D, N> {
    /// Admitted like any write; then either failed with `Io` (nothing
    /// written) or forwarded.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        admit_write(&self.geometry(), offset, data.len())?;
        if self.rng.chance_ppm(self.faults.write_error_ppm) {
            self.counts.write_errors = self.counts.write_errors.saturating_add(1);
            return Err(AdapterError::Adapter(ErrorKind::Io));
        }
        self.inner.write(offset, data).map_err(AdapterError::Device)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.inner.sync().map_err(AdapterError::Device)
    }
}

#[cfg(test)]
mod tests;
