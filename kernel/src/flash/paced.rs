//! `Paced`: a device whose reads complete no sooner, in real time, than its
//! cost model says they take.
//!
//! The fake flash charges each batch's [`CostModel::batch_ns`] to a virtual
//! clock and delivers at once, which measures a read policy's I/O exactly
//! but cannot show how I/O overlaps with real compute: a run on it waits
//! for nothing. Wrapped in `Paced`, the same device serves batches one after
//! another in real time (a batch starts when the one before it is done, or
//! when it is submitted if the device was idle) and each completion is
//! released when its batch is done, the caller sleeping until then. So
//! `fake:emmc51` behaves like an eMMC part under real compute, including
//! whatever a slow device leaves the processor free to do (decode coded
//! weights, check CRCs) while it reads. The clock and the sleeper are the
//! caller's (`no_std`): nanoseconds from any fixed start, and a sleep.

use crate::arena::DramArena;
use crate::cost::CostModel;
use crate::limits::PACED_IN_FLIGHT;

use super::{
    AdapterError, Completion, ErrorKind, ErrorType, FlashDevice, FlashWrite, Geometry, ReadRequest,
};

/// A device paced to its cost model in real time.
#[derive(Debug)]
pub struct Paced<D> {
    inner: D,
    clock: fn() -> u64,
    sleep: fn(u64),
    /// When the last batch submitted is done (clock nanoseconds).
    busy_until: u64,
    /// Completions collected from `inner`, each with when it may be seen.
    held: heapless::Vec<(Completion, u64), PACED_IN_FLIGHT>,
}

impl<D: FlashDevice> Paced<D> {
    /// `inner` paced by `clock` (nanoseconds) and `sleep` (nanoseconds).
    pub fn new(inner: D, clock: fn() -> u64, sleep: fn(u64)) -> Self {
        Paced {
            inner,
            clock,
            sleep,
            busy_until: 0,
            held: heapless::Vec::new(),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Collects every completion `inner` has, releasing at `ready`.
    fn collect<A: DramArena>(&mut self, arena: &mut A, ready: u64) -> Result<(), D::Error> {
        let mut done = [Completion::EMPTY; 16];
        while self.inner.in_flight() > 0 {
            let n = self.inner.complete(arena, &mut done)?;
            for c in done.iter().take(n) {
                // Fits: submit refuses batches past the room left.
                let _ = self.held.push((*c, ready));
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }
}

impl<D: FlashDevice> ErrorType for Paced<D> {
    type Error = AdapterError<D::Error>;
}

impl<D: FlashDevice> FlashDevice for Paced<D> {
    /// The inner geometry, with a queue no deeper than the held
    /// completions.
    fn geometry(&self) -> Geometry {
        let mut g = self.inner.geometry();
        g.queue_depth = g.queue_depth.min(PACED_IN_FLIGHT as u16);
        g
    }

    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }

    /// Submits to the inner device and books the batch after the one
    /// before it: done `batch_ns` after it starts.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error> {
        if self.held.len() + self.inner.in_flight() + reads.len() > PACED_IN_FLIGHT {
            return Err(AdapterError::Adapter(ErrorKind::QueueFull));
        }
        self.inner
            .submit(arena, reads)
            .map_err(AdapterError::Device)?;
        if reads.is_empty() {
            return Ok(());
        }
        let bytes: u64 = reads.iter().map(|r| u64::from(r.len)).sum();
        let cost = self.cost_model().batch_ns(reads.len() as u64, bytes);
        let start = self.busy_until.max((self.clock)());
        self.busy_until = start.saturating_add(cost);
        self.collect(arena, self.busy_until)
            .map_err(AdapterError::Device)
    }

    /// Sleeps until the earliest held completion is due, then returns
    /// every due one (up to `done.len()`).
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error> {
        self.collect(arena, self.busy_until)
            .map_err(AdapterError::Device)?;
        let Some(due) = self.held.iter().map(|&(_, t)| t).min() else {
            return Ok(0);
        };
        let now = (self.clock)();
        if due > now {
            (self.sleep)(due - now);
        }
        let now = (self.clock)().max(due);
        let mut n = 0;
        let mut i = 0;
        while i < self.held.len() && n < done.len() {
            match self.held.get(i) {
                Some(&(c, t)) if t <= now => {
                    done[n] = c;
                    n += 1;
                    self.held.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight() + self.held.len()
    }
}

/// Writes are not paced: they pass straight to the inner device.
impl<D: FlashWrite> FlashWrite for Paced<D> {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        self.inner.write(offset, data).map_err(AdapterError::Device)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.inner.sync().map_err(AdapterError::Device)
    }
}

#[cfg(test)]
mod tests;
