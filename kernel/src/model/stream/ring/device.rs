//! The ring's side of the device: submitting what slots still need,
//! collecting completions, and waiting for everything in flight.

use crate::arena::DramArena;
use crate::flash::{Completion, FlashDevice, ReadRequest};
use crate::limits::RING_COMPLETIONS;
use crate::model::error::EvalError;

use super::{device_err, Ring, State, ROW_TAG};

impl<D: FlashDevice> Ring<D> {
    /// Submits as many pending reads as the device's queue takes, slots
    /// in schedule order from the one consumed next.
    pub(super) fn pump<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        let g = self.dev.geometry();
        let max = (g.max_transfer as usize).max(g.block_size as usize).max(1);
        let depth = usize::from(g.queue_depth.max(1));
        let mut batch: heapless::Vec<ReadRequest, 32> = heapless::Vec::new();
        for (i, (slot, state)) in self.slots.iter_mut().enumerate() {
            let State::Loading {
                unit,
                issued,
                pending,
                ..
            } = state
            else {
                continue;
            };
            let Some(u) = self.schedule.get(*unit) else {
                continue;
            };
            while *issued < u.len && self.dev.in_flight() + batch.len() < depth && !batch.is_full()
            {
                let len = (u.len - *issued).min(max);
                let r = ReadRequest {
                    tag: i as u32,
                    offset: u.start + *issued as u64,
                    len: u32::try_from(len).map_err(|_| EvalError::Internal("read too large"))?,
                    dest: *slot,
                    dest_offset: *issued,
                };
                let _ = batch.push(r);
                *issued += len;
                *pending += 1;
                self.stats.bytes += len as u64;
                self.stats.reads += 1;
            }
        }
        if !batch.is_empty() {
            self.dev.submit(arena, &batch).map_err(device_err)?;
        }
        Ok(())
    }

    /// Collects completions (waiting for at least one) and settles slots.
    pub(super) fn poll<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        if self.dev.in_flight() == 0 {
            self.pump(arena)?;
            if self.dev.in_flight() == 0 {
                return Err(EvalError::Internal(
                    "waiting for a read that was never issued",
                ));
            }
        }
        let t0 = (self.clock)();
        let mut done = [Completion::EMPTY; RING_COMPLETIONS];
        let n = self.dev.complete(arena, &mut done).map_err(device_err)?;
        let no_checks = self.checks.is_none();
        self.stats.wait_ns += (self.clock)().saturating_sub(t0);
        for c in done.iter().take(n) {
            if c.tag == ROW_TAG {
                if let Some(r) = self.row.as_mut() {
                    r.pending = false;
                    r.failed = c.status.err();
                }
                continue;
            }
            let Some((_, state)) = self.slots.get_mut(c.tag as usize) else {
                continue;
            };
            if let State::Loading {
                unit,
                pending,
                failed,
                issued,
                attempt,
            } = state
            {
                *pending = pending.saturating_sub(1);
                if let (Err(kind), None) = (c.status, *failed) {
                    let start = self.schedule.get(*unit).map_or(0, |u| u.start);
                    *failed = Some((start, kind));
                }
                let len = self.schedule.get(*unit).map_or(0, |u| u.len);
                if *pending == 0 && *issued >= len {
                    *state = match *failed {
                        Some((offset, kind)) => State::Failed {
                            unit: *unit,
                            offset,
                            kind,
                            attempt: *attempt,
                        },
                        None => State::Ready {
                            unit: *unit,
                            attempt: *attempt,
                            checked: no_checks,
                        },
                    };
                }
            }
        }
        self.pump(arena)
    }

    /// Finishes every read the ring has started (slots keep their units),
    /// so another reader may use the device alone: the sparse fetch drives
    /// the device itself and would otherwise take the ring's completions.
    pub fn settle<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        while self.dev.in_flight() > 0
            || self
                .slots
                .iter()
                .any(|(_, s)| matches!(s, State::Loading { .. }))
        {
            self.poll(arena)?;
        }
        Ok(())
    }

    /// Counts reads made on the device outside the ring (the sparse fetch).
    pub fn account(&mut self, bytes: u64, reads: u64, wait_ns: u64) {
        self.stats.bytes += bytes;
        self.stats.reads += reads;
        self.stats.wait_ns += wait_ns;
    }

    /// Counts checks and retries made outside the ring (the sparse fetch).
    pub fn account_checks(&mut self, verified: u64, retries: u64) {
        self.stats.verified += verified;
        self.stats.retries += retries;
    }

    /// Waits for every read in flight (before the arena or device goes
    /// away, or after an error).
    pub fn quiesce<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        let mut done = [Completion::EMPTY; RING_COMPLETIONS];
        while self.dev.in_flight() > 0 {
            self.dev.complete(arena, &mut done).map_err(device_err)?;
        }
        for (_, s) in self.slots.iter_mut() {
            *s = State::Free;
        }
        if let Some(r) = self.row.as_mut() {
            r.pending = false;
        }
        self.next = 0;
        Ok(())
    }
}
