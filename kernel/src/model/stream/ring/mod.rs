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
use crate::flash::{self, BlockChecks, FlashDevice};
#[cfg(doc)]
use crate::limits::MAX_READ_ATTEMPTS;
use crate::model::error::{EvalError, LoadError};

use super::plan::MAX_RING;

pub use crate::limits::MAX_UNITS;

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
    /// Bytes a coded unit decodes to (0: raw, used as read). A coded unit
    /// is `len` bytes of one weight-codec unit from `skip`, decoded into
    /// the ring's decode slot as it is taken.
    pub decoded: usize,
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
            decoded: 0,
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
        /// Reads of this unit before this one (0 for the first).
        attempt: u32,
        /// Its commands landed and checked so far.
        progress: Progress,
    },
    /// Read; `checked` once its bytes passed their check (always, without
    /// checks). Collecting a completion never checks, so it never holds
    /// up the next read: a unit is checked, its CRC split across the
    /// compute threads, while the caller waits for another unit's read
    /// (`acquire`'s wait), or else as it is taken.
    Ready {
        unit: usize,
        attempt: u32,
        checked: bool,
        /// Bytes from its start checked while it was loading.
        verified: usize,
    },
    /// Read, but its bytes failed their check at `offset`.
    Bad {
        unit: usize,
        offset: u64,
        attempt: u32,
    },
    /// Checked and handed to the caller.
    InUse {
        unit: usize,
    },
    Failed {
        unit: usize,
        offset: u64,
        kind: flash::ErrorKind,
        attempt: u32,
    },
}

impl State {
    /// A fresh read of `unit`, its `attempt`-th retry.
    const fn load(unit: usize, attempt: u32) -> State {
        State::Loading {
            unit,
            issued: 0,
            pending: 0,
            failed: None,
            attempt,
            progress: Progress::NONE,
        }
    }
}

impl State {
    fn unit(&self) -> Option<usize> {
        match *self {
            State::Free => None,
            State::Loading { unit, .. }
            | State::Ready { unit, .. }
            | State::Bad { unit, .. }
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
    /// Bytes checked against the block checksums before use.
    pub verified: u64,
    /// Of those, bytes checked while the rest of their unit was still
    /// being read.
    pub verified_early: u64,
    /// Reads repeated after a read error or a checksum mismatch.
    pub retries: u64,
    /// Bytes coded units decoded to.
    pub decoded: u64,
    /// Nanoseconds spent decoding them (by the caller's clock).
    pub decode_ns: u64,
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
    checks: Option<BlockChecks>,
    /// Where coded units are decoded, when the schedule has any.
    decoder: Option<Decoder>,
}

/// The slot coded units are decoded into and the decoder's tables (about
/// 56 KiB, kept here so decoding allocates nothing).
#[derive(Debug)]
struct Decoder {
    slot: Slot,
    scratch: crate::codec::Scratch,
    /// The unit the slot holds decoded.
    holds: Option<usize>,
}

fn device_err<E: flash::Error>(e: E) -> EvalError {
    EvalError::Device(e.kind())
}

impl<D: FlashDevice> Ring<D> {
    /// A ring over `slots` (allocated by the caller, each large enough for
    /// every unit) reading `schedule` from `dev`. `clock` returns
    /// nanoseconds for the wait statistics (a constant is fine). With
    /// `checks`, every unit and row is checked block by block before it
    /// is handed out, and read again (up to [`MAX_READ_ATTEMPTS`] times in
    /// all) when it fails its check or its read fails. The ring is built
    /// by the loader, so building it fails with a [`LoadError`]; taking
    /// units while evaluating fails with an [`EvalError`].
    pub fn new(
        dev: D,
        slots: &[Slot],
        schedule: &[Unit],
        row_slot: Option<Slot>,
        clock: fn() -> u64,
        checks: Option<BlockChecks>,
    ) -> Result<Ring<D>, LoadError> {
        let mut s = heapless::Vec::new();
        for &slot in slots {
            s.push((slot, State::Free))
                .map_err(|_| LoadError::Config("the ring holds 1 to 8 I/O slots"))?;
        }
        let sched = heapless::Vec::from_slice(schedule)
            .map_err(|_| LoadError::Internal("too many streamed units"))?;
        if s.is_empty() && !schedule.is_empty() {
            return Err(LoadError::Config(
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
            row: row_slot.map(RowRead::new),
            checks,
            decoder: None,
        })
    }

    /// Decodes the schedule's coded units into `slot` (large enough for
    /// the largest) as they are taken.
    pub fn decode_into(mut self, slot: Slot) -> Self {
        self.decoder = Some(Decoder {
            slot,
            scratch: crate::codec::Scratch::default(),
            holds: None,
        });
        self
    }

    /// The block checks streamed reads are verified against.
    pub fn checks(&self) -> Option<&BlockChecks> {
        self.checks.as_ref()
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
    ) -> Result<(), EvalError> {
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
    ) -> Result<(), EvalError> {
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
    fn prefetch<A: DramArena>(&mut self, arena: &mut A) -> Result<(), EvalError> {
        while let Some(free) = self.slots.iter().position(|(_, s)| *s == State::Free) {
            let unit = self.next;
            if self.holds(unit) || self.schedule.get(unit).is_none() {
                break;
            }
            if let Some((_, s)) = self.slots.get_mut(free) {
                *s = State::load(unit, 0);
            }
            self.stats.units += 1;
            self.next = self.successor(unit);
        }
        self.pump(arena)
    }
}

mod device;
mod progress;
mod rows;
mod take;

use rows::RowRead;

use progress::Progress;

#[cfg(test)]
mod coded_tests;
#[cfg(test)]
mod tests;
