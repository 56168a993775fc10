//! The ring's side of the device: submitting what slots still need,
//! collecting completions, and waiting for everything in flight.

use crate::arena::DramArena;
use crate::flash::{Completion, FlashDevice, ReadRequest};
use crate::limits::RING_COMPLETIONS;
use crate::model::error::EvalError;

use super::{device_err, progress, Ring, State, MAX_RING, ROW_TAG};

impl<D: FlashDevice> Ring<D> {
    /// Bytes of one read command: the device's largest transfer, at least
    /// a block. Every unit is read in commands of this size from its start
    /// (a unit larger than one is checked command by command as they land:
    /// [`progress`]).
    pub(super) fn command_bytes(&self) -> usize {
        let g = self.dev.geometry();
        (g.max_transfer as usize).max(g.block_size as usize).max(1)
    }

    /// Submits as many pending reads as the device's queue takes, slots
    /// in schedule order from the one consumed next (the oldest in the
    /// ring), so a unit's commands never wait behind a later unit's.
    pub(super) fn pump<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        let max = self.command_bytes();
        let depth = usize::from(self.dev.geometry().queue_depth.max(1));
        let mut batch: heapless::Vec<ReadRequest, 32> = heapless::Vec::new();
        for i in self.loading_oldest_first() {
            let Some((slot, state)) = self.slots.get_mut(i) else {
                continue;
            };
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
                    tag: progress::tag(i, *issued / max)
                        .ok_or(EvalError::Internal("a streamed unit of too many reads"))?,
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

    /// The slots still loading, the unit taken soonest first: the ring
    /// holds a window of the schedule ending just before `next` (wrapping
    /// at the end of a pass), so the unit furthest behind `next` is the
    /// oldest.
    fn loading_oldest_first(&self) -> heapless::Vec<usize, MAX_RING> {
        let n = self.schedule.len().max(1);
        let behind = |unit: usize| (self.next + n - unit % n) % n;
        let mut order: heapless::Vec<(usize, usize), MAX_RING> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| match s {
                State::Loading { unit, .. } => Some((usize::MAX - behind(*unit), i)),
                _ => None,
            })
            .collect();
        order.sort_unstable();
        order.iter().map(|&(_, i)| i).collect()
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
        let cmd_bytes = self.command_bytes();
        self.stats.wait_ns += (self.clock)().saturating_sub(t0);
        for c in done.iter().take(n) {
            if c.tag == ROW_TAG {
                if let Some(r) = self.row.as_mut() {
                    r.land(c.status);
                }
                continue;
            }
            let (slot, cmd) = progress::untag(c.tag);
            let Some((_, state)) = self.slots.get_mut(slot) else {
                continue;
            };
            if let State::Loading {
                unit,
                pending,
                failed,
                issued,
                attempt,
                progress,
            } = state
            {
                *pending = pending.saturating_sub(1);
                match (c.status, *failed) {
                    (Err(kind), None) => {
                        let start = self.schedule.get(*unit).map_or(0, |u| u.start);
                        *failed = Some((start, kind));
                    }
                    (Ok(()), _) => progress.land(cmd),
                    _ => {}
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
                            verified: progress.checked_bytes(cmd_bytes, len),
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
            r.pending = 0;
        }
        self.next = 0;
        Ok(())
    }
}
