//! The ring of I/O slots streamed units are read into, and the schedule
//! that reads them ahead of use.
//!
//! A pass over the model consumes its streamed units in a fixed order
//! (attention of layer 0, FFN of layer 0, ..., then the head pieces). When
//! the decode loop takes a unit ([`Ring::acquire`]), every free slot is
//! given the next units of that order, so with two slots the next layer's
//! weights are read while this one computes: the split-phase
//! [`FlashDevice`] keeps the reads in flight, and only waiting for a unit
//! that is not yet complete blocks. Units are read with commands of at most
//! the device's `max_transfer`, never more in flight than its queue depth.

use crate::arena::{DramArena, Slot};
use crate::flash::{self, Completion, FlashDevice, ReadRequest};
use crate::model::error::ModelError;

use super::plan::MAX_RING;

pub use crate::limits::MAX_UNITS;
use crate::limits::RING_COMPLETIONS;

/// Tag of the embedding-row read (ring slots use their index).
const ROW_TAG: u32 = u32::MAX - 1;

/// One streamed unit: a device extent and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Block-aligned device offset of the read.
    pub start: u64,
    /// Block-rounded bytes read.
    pub len: usize,
    /// Where the unit's data starts in the slot (non-zero for head pieces).
    pub skip: usize,
    /// Whether this is a head piece (skipped in passes without logits).
    pub head: bool,
}

impl Unit {
    /// `len` bytes at block-aligned `start`, read whole in `block`s: a
    /// unit that is one tensor span (not a head piece).
    pub fn whole(start: u64, len: usize, block: usize) -> Unit {
        Unit {
            start,
            len: super::plan::blocks(len, block),
            skip: 0,
            head: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Loading {
        unit: usize,
        issued: usize,
        pending: u32,
        failed: Option<(u64, flash::ErrorKind)>,
    },
    Ready {
        unit: usize,
    },
    InUse {
        unit: usize,
    },
    Failed {
        unit: usize,
        offset: u64,
        kind: flash::ErrorKind,
    },
}

impl State {
    fn unit(&self) -> Option<usize> {
        match *self {
            State::Free => None,
            State::Loading { unit, .. }
            | State::Ready { unit }
            | State::InUse { unit }
            | State::Failed { unit, .. } => Some(unit),
        }
    }
}

/// What the ring measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoStats {
    /// Bytes read from the device.
    pub bytes: u64,
    /// Read commands.
    pub reads: u64,
    /// Units read.
    pub units: u64,
    /// Nanoseconds spent waiting for reads (by the caller's clock).
    pub wait_ns: u64,
    /// Units that were complete when taken (fully hidden by compute).
    pub ready_hits: u64,
}

/// The ring, the schedule and the device.
#[derive(Debug)]
pub struct Ring<D> {
    dev: D,
    slots: heapless::Vec<(Slot, State), MAX_RING>,
    schedule: heapless::Vec<Unit, MAX_UNITS>,
    /// Schedule index of the next unit to prefetch.
    next: usize,
    want_head: bool,
    clock: fn() -> u64,
    stats: IoStats,
    row: Option<RowRead>,
}

#[derive(Debug, Clone, Copy)]
struct RowRead {
    slot: Slot,
    pending: bool,
    failed: Option<flash::ErrorKind>,
}

fn device_err<E: flash::Error>(e: E) -> ModelError {
    ModelError::Device(e.kind())
}

impl<D: FlashDevice> Ring<D> {
    /// A ring over `slots` (allocated by the caller, each large enough for
    /// every unit) reading `schedule` from `dev`. `clock` returns
    /// nanoseconds for the wait statistics (a constant is fine).
    pub fn new(
        dev: D,
        slots: &[Slot],
        schedule: &[Unit],
        row_slot: Option<Slot>,
        clock: fn() -> u64,
    ) -> Result<Ring<D>, ModelError> {
        let mut s = heapless::Vec::new();
        for &slot in slots {
            s.push((slot, State::Free))
                .map_err(|_| ModelError::Config("the ring holds 1 to 8 I/O slots"))?;
        }
        let sched = heapless::Vec::from_slice(schedule)
            .map_err(|_| ModelError::Internal("too many streamed units"))?;
        if s.is_empty() && !schedule.is_empty() {
            return Err(ModelError::Config(
                "streamed units need at least one I/O slot",
            ));
        }
        Ok(Ring {
            dev,
            slots: s,
            schedule: sched,
            next: 0,
            want_head: true,
            clock,
            stats: IoStats::default(),
            row: row_slot.map(|slot| RowRead {
                slot,
                pending: false,
                failed: None,
            }),
        })
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// The device, mutably (to read resident units before streaming).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// What was measured so far.
    pub fn stats(&self) -> IoStats {
        self.stats
    }

    /// Streamed units in a pass.
    pub fn units(&self) -> usize {
        self.schedule.len()
    }

    /// Starts a pass: head pieces are read only when `logits`; the first
    /// units of the pass are prefetched.
    pub fn begin_pass<A: DramArena>(
        &mut self,
        arena: &mut A,
        logits: bool,
    ) -> Result<(), ModelError> {
        self.want_head = logits;
        if self.schedule.is_empty() {
            return Ok(());
        }
        // Drop prefetched head pieces a pass without logits will not take.
        if !logits {
            self.drain_where(arena, |u| u.head)?;
        }
        if !self.holds(0) && self.holds_nothing_ahead() {
            self.next = 0;
        }
        self.prefetch(arena)
    }

    fn holds(&self, unit: usize) -> bool {
        self.slots.iter().any(|(_, s)| s.unit() == Some(unit))
    }

    fn holds_nothing_ahead(&self) -> bool {
        self.slots
            .iter()
            .all(|(_, s)| matches!(s, State::Free | State::InUse { .. }))
    }

    /// Waits for the reads of slots whose unit `drop` selects, then frees
    /// them.
    fn drain_where<A: DramArena>(
        &mut self,
        arena: &mut A,
        drop: impl Fn(&Unit) -> bool,
    ) -> Result<(), ModelError> {
        let mut mask = 0u32;
        for (i, (_, st)) in self.slots.iter().enumerate() {
            if st
                .unit()
                .and_then(|u| self.schedule.get(u))
                .is_some_and(&drop)
            {
                mask |= 1 << i;
            }
        }
        let loading = |r: &Self| {
            r.slots
                .iter()
                .enumerate()
                .any(|(i, (_, s))| mask & (1 << i) != 0 && matches!(s, State::Loading { .. }))
        };
        while loading(self) {
            self.poll(arena)?;
        }
        let mut freed = false;
        for (i, (_, s)) in self.slots.iter_mut().enumerate() {
            if mask & (1 << i) != 0 && !matches!(s, State::InUse { .. }) {
                *s = State::Free;
                freed = true;
            }
        }
        if freed {
            // Prefetching resumes from the first unit of the next pass.
            self.next = 0;
        }
        Ok(())
    }

    /// The successor of schedule index `i` in this pass's order.
    fn successor(&self, i: usize) -> usize {
        let n = i + 1;
        match self.schedule.get(n) {
            Some(u) if u.head && !self.want_head => 0,
            Some(_) => n,
            None => 0,
        }
    }

    /// Hands free slots to the next units of the schedule.
    fn prefetch<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
        while let Some(free) = self.slots.iter().position(|(_, s)| *s == State::Free) {
            let unit = self.next;
            if self.holds(unit) || self.schedule.get(unit).is_none() {
                break;
            }
            if let Some((_, s)) = self.slots.get_mut(free) {
                *s = State::Loading {
                    unit,
                    issued: 0,
                    pending: 0,
                    failed: None,
                };
            }
            self.stats.units += 1;
            self.next = self.successor(unit);
        }
        self.pump(arena)
    }

    /// Submits as many pending reads as the device's queue takes, slots
    /// in schedule order from the one consumed next.
    fn pump<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
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
                    len: u32::try_from(len).map_err(|_| ModelError::Internal("read too large"))?,
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
    fn poll<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
        if self.dev.in_flight() == 0 {
            self.pump(arena)?;
            if self.dev.in_flight() == 0 {
                return Err(ModelError::Internal(
                    "waiting for a read that was never issued",
                ));
            }
        }
        let t0 = (self.clock)();
        let mut done = [Completion::EMPTY; RING_COMPLETIONS];
        let n = self.dev.complete(arena, &mut done).map_err(device_err)?;
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
                        },
                        None => State::Ready { unit: *unit },
                    };
                }
            }
        }
        self.pump(arena)
    }

    /// Takes schedule unit `unit` for computing: releases the unit taken
    /// before, starts reading it if no slot holds it, prefetches what
    /// follows, and waits until it is complete. Returns its slot and where
    /// its data starts.
    pub fn acquire<A: DramArena>(
        &mut self,
        arena: &mut A,
        unit: usize,
    ) -> Result<(Slot, usize), ModelError> {
        let u = *self
            .schedule
            .get(unit)
            .ok_or(ModelError::Internal("no such streamed unit"))?;
        for (_, s) in self.slots.iter_mut() {
            if matches!(s, State::InUse { .. }) {
                *s = State::Free;
            }
        }
        if !self.holds(unit) {
            // Out of order (a pass cut short by an error, or the first
            // use): drop what was prefetched and start from this unit.
            self.drain_where(arena, |_| true)?;
            self.next = unit;
        } else if matches!(
            self.slots.iter().find(|(_, s)| s.unit() == Some(unit)),
            Some((_, State::Ready { .. }))
        ) {
            self.stats.ready_hits += 1;
        }
        self.prefetch(arena)?;
        loop {
            let Some(i) = self.slots.iter().position(|(_, s)| s.unit() == Some(unit)) else {
                return Err(ModelError::Internal("a streamed unit left the ring"));
            };
            let Some(&(slot, state)) = self.slots.get(i) else {
                return Err(ModelError::Internal("a streamed unit left the ring"));
            };
            match state {
                State::Ready { .. } | State::InUse { .. } => {
                    if let Some((_, s)) = self.slots.get_mut(i) {
                        *s = State::InUse { unit };
                    }
                    // The slot just taken cannot receive a prefetch, but a
                    // freed one can.
                    self.prefetch(arena)?;
                    return Ok((slot, u.skip));
                }
                State::Failed { offset, kind, .. } => {
                    if let Some((_, s)) = self.slots.get_mut(i) {
                        *s = State::Free;
                    }
                    return Err(ModelError::Read { offset, kind });
                }
                _ => self.poll(arena)?,
            }
        }
    }

    /// Reads `len` bytes at block-aligned `start` into the row slot and
    /// waits for them (prefetches keep running meanwhile).
    pub fn read_row<A: DramArena>(
        &mut self,
        arena: &mut A,
        start: u64,
        len: usize,
    ) -> Result<Slot, ModelError> {
        let Some(mut row) = self.row else {
            return Err(ModelError::Internal("no slot for embedding rows"));
        };
        let r = ReadRequest {
            tag: ROW_TAG,
            offset: start,
            len: u32::try_from(len).map_err(|_| ModelError::Internal("row read too large"))?,
            dest: row.slot,
            dest_offset: 0,
        };
        // Leave room in the queue for the row read.
        let depth = usize::from(self.dev.geometry().queue_depth.max(1));
        while self.dev.in_flight() >= depth {
            self.poll(arena)?;
        }
        self.dev.submit(arena, &[r]).map_err(device_err)?;
        self.stats.bytes += len as u64;
        self.stats.reads += 1;
        row.pending = true;
        row.failed = None;
        self.row = Some(row);
        while self.row.is_some_and(|r| r.pending) {
            self.poll(arena)?;
        }
        match self.row.and_then(|r| r.failed) {
            Some(kind) => Err(ModelError::Read {
                offset: start,
                kind,
            }),
            None => Ok(row.slot),
        }
    }

    /// Finishes every read the ring has started (slots keep their units),
    /// so another reader may use the device alone: the sparse fetch drives
    /// the device itself and would otherwise take the ring's completions.
    pub fn settle<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
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

    /// Waits for every read in flight (before the arena or device goes
    /// away, or after an error).
    pub fn quiesce<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
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
