//! Handing units out: a unit checked against the block checksums while
//! the caller waits for another unit, or else as it is taken, read again
//! on a read error or a mismatch, up to [`MAX_READ_ATTEMPTS`] times in
//! all, before anything uses it (rows: [`rows`](super::rows)).

use crate::arena::{DramArena, Slot};
use crate::compute::Compute;
use crate::flash::{CheckError, FlashDevice};
use crate::limits::MAX_READ_ATTEMPTS;
use crate::model::error::EvalError;

use super::super::decode::{decode_unit, on_compute, CodedIn, DecodeFail};
use super::{Ring, State, Unit};

/// What checking a read found.
pub(super) enum Checked {
    Good,
    Bad { offset: u64 },
}

impl<D: FlashDevice> Ring<D> {
    /// Checks bytes `range` of `slot`, read at device offset `at`.
    pub(super) fn check_range<A: DramArena, C: Compute>(
        &mut self,
        arena: &A,
        (slot, at): (Slot, u64),
        range: core::ops::Range<usize>,
        compute: &mut C,
    ) -> Result<Checked, EvalError> {
        let Some(c) = self.checks.as_ref().filter(|_| !range.is_empty()) else {
            return Ok(Checked::Good);
        };
        let len = range.len() as u64;
        let data = arena
            .bytes(slot)
            .map_err(EvalError::arena)?
            .get(range)
            .ok_or(EvalError::Internal("a streamed read outside its slot"))?;
        match c.verify_on(arena, at, data, compute) {
            Ok(()) => {
                self.stats.verified += len;
                Ok(Checked::Good)
            }
            Err(CheckError::Mismatch { offset }) => Ok(Checked::Bad { offset }),
            Err(_) => Err(EvalError::Internal(
                "a streamed read is not whole blocks of the checked data",
            )),
        }
    }

    /// Takes schedule unit `unit` for computing: releases the unit taken
    /// before, starts reading it if no slot holds it, prefetches what
    /// follows, and waits until it is complete. Returns its slot and where
    /// its data starts.
    pub fn acquire<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        unit: usize,
        compute: &mut C,
    ) -> Result<(Slot, usize), EvalError> {
        let u = *self
            .schedule
            .get(unit)
            .ok_or(EvalError::Internal("no such streamed unit"))?;
        for (_, s) in self.slots.iter_mut() {
            if matches!(s, State::InUse { .. }) {
                *s = State::Free;
            }
        }
        if let Some(d) = self.decoder.as_ref().filter(|d| d.holds == Some(unit)) {
            // Taken again while its decoded bytes are still there (its
            // read slot went back to the ring when it was decoded).
            return Ok((d.slot, 0));
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
                return Err(EvalError::Internal("a streamed unit left the ring"));
            };
            let Some(&(slot, state)) = self.slots.get(i) else {
                return Err(EvalError::Internal("a streamed unit left the ring"));
            };
            let retry = match state {
                State::Ready {
                    checked: true,
                    attempt,
                    ..
                } => {
                    if let Some((_, s)) = self.slots.get_mut(i) {
                        *s = State::InUse { unit };
                    }
                    match self.decoded(arena, compute, (slot, unit), u) {
                        // A coded unit that fails its own checks (its CRC
                        // when nothing else checked the read) is read
                        // again like a block-check mismatch.
                        Err(EvalError::Corrupt { offset, .. }) => (
                            attempt + 1,
                            EvalError::Corrupt {
                                offset,
                                attempts: attempt + 1,
                            },
                        ),
                        r => return r,
                    }
                }
                // Not checked while waiting: checked now, with every free
                // slot's read already started, so the disk works meanwhile.
                State::Ready { .. } => {
                    self.check_slot(arena, i, compute)?;
                    continue;
                }
                State::Bad {
                    offset, attempt, ..
                } => (
                    attempt + 1,
                    EvalError::Corrupt {
                        offset,
                        attempts: attempt + 1,
                    },
                ),
                State::InUse { .. } => return self.decoded(arena, compute, (slot, unit), u),
                State::Failed {
                    offset,
                    kind,
                    attempt,
                    ..
                } => (
                    attempt + 1,
                    EvalError::Read {
                        offset,
                        kind,
                        attempts: attempt + 1,
                    },
                ),
                _ => {
                    self.poll(arena)?;
                    self.check_while_waiting(arena, compute)?;
                    continue;
                }
            };
            self.reread(arena, i, unit, retry)?;
        }
    }

    /// Where unit `u`, read into `slot`, is to be used: the slot itself, or
    /// for a coded unit the decode slot, decoded into now unless it holds
    /// the unit already.
    fn decoded<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        (slot, unit): (Slot, usize),
        u: Unit,
    ) -> Result<(Slot, usize), EvalError> {
        if u.decoded == 0 {
            return Ok((slot, u.skip));
        }
        let checked = self.checks.is_some();
        let d = self
            .decoder
            .as_mut()
            .ok_or(EvalError::Internal("a coded unit and no decode slot"))?;
        if d.holds != Some(unit) {
            d.holds = None;
            let src = CodedIn {
                slot,
                at: u.skip,
                len: u.len - u.skip,
            };
            let dst = (d.slot, 0, u.decoded);
            let t0 = (self.clock)();
            let r = decode_unit(
                arena,
                src,
                dst,
                checked,
                on_compute(compute, &mut d.scratch),
            );
            self.stats.decode_ns += (self.clock)().saturating_sub(t0);
            r.map_err(|e| match e {
                DecodeFail::Arena(k) => EvalError::arena(k),
                DecodeFail::Compute(k) => EvalError::Compute(k),
                DecodeFail::Corrupt => EvalError::Corrupt {
                    offset: u.start,
                    attempts: 1,
                },
            })?;
            d.holds = Some(unit);
            self.stats.decoded += u.decoded as u64;
        }
        let decoded = d.slot;
        // Its bytes are in the decode slot now: the read slot takes the
        // next unit's read while this one computes, so a coded unit holds
        // a read slot only for its decode, not for its products too.
        for (_, s) in self.slots.iter_mut() {
            if *s == (State::InUse { unit }) {
                *s = State::Free;
            }
        }
        self.prefetch(arena)?;
        Ok((decoded, 0))
    }

    /// Checks the units already read but not checked, called while the
    /// caller's own unit is still on its way: time this thread and the
    /// compute threads would otherwise spend waiting.
    fn check_while_waiting<A: DramArena, C: Compute>(
        &mut self,
        arena: &A,
        compute: &mut C,
    ) -> Result<(), EvalError> {
        for i in 0..self.slots.len() {
            match self.slots.get(i) {
                Some((_, State::Ready { checked: false, .. })) => {
                    self.check_slot(arena, i, compute)?
                }
                Some((_, State::Loading { .. })) => self.check_landed(arena, i, compute)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the commands of slot `i`'s read that landed, in order from
    /// the first unchecked one (see [`progress`](super::progress)). A
    /// command that fails its check is left unchecked: the whole-unit check
    /// at the end finds it again and the unit is read again.
    fn check_landed<A: DramArena, C: Compute>(
        &mut self,
        arena: &A,
        i: usize,
        compute: &mut C,
    ) -> Result<(), EvalError> {
        let cmd = self.command_bytes();
        if self
            .checks
            .as_ref()
            .is_none_or(|c| !cmd.is_multiple_of(c.block()))
        {
            return Ok(());
        }
        loop {
            let Some(&(
                slot,
                State::Loading {
                    unit,
                    failed: None,
                    progress,
                    ..
                },
            )) = self.slots.get(i)
            else {
                return Ok(());
            };
            let (Some(next), Some(u)) = (progress.next(), self.schedule.get(unit).copied()) else {
                return Ok(());
            };
            let from = (next as usize).saturating_mul(cmd).min(u.len);
            let to = from.saturating_add(cmd).min(u.len);
            let at = u.start + from as u64;
            match self.check_range(arena, (slot, at), from..to, compute)? {
                Checked::Good => {
                    self.stats.verified_early += (to - from) as u64;
                    if let Some((_, State::Loading { progress, .. })) = self.slots.get_mut(i) {
                        progress.advance();
                    }
                }
                Checked::Bad { .. } => return Ok(()),
            }
        }
    }

    /// Checks the unchecked `Ready` unit of slot `i`: it becomes checked,
    /// or `Bad` (read again when it is taken).
    fn check_slot<A: DramArena, C: Compute>(
        &mut self,
        arena: &A,
        i: usize,
        compute: &mut C,
    ) -> Result<(), EvalError> {
        let Some(&(
            slot,
            State::Ready {
                unit,
                attempt,
                verified,
                ..
            },
        )) = self.slots.get(i)
        else {
            return Ok(());
        };
        let u = *self
            .schedule
            .get(unit)
            .ok_or(EvalError::Internal("no such streamed unit"))?;
        let rest = verified.min(u.len)..u.len;
        let at = u.start + rest.start as u64;
        let next = match self.check_range(arena, (slot, at), rest, compute)? {
            Checked::Good => State::Ready {
                unit,
                attempt,
                checked: true,
                verified: u.len,
            },
            Checked::Bad { offset } => State::Bad {
                unit,
                offset,
                attempt,
            },
        };
        if let Some((_, s)) = self.slots.get_mut(i) {
            *s = next;
        }
        Ok(())
    }

    /// Reads slot `i`'s `unit` again as attempt `retry.0`, or gives the
    /// slot up and returns `retry.1` when the attempts are spent.
    fn reread<A: DramArena>(
        &mut self,
        arena: &mut A,
        i: usize,
        unit: usize,
        (attempt, err): (u32, EvalError),
    ) -> Result<(), EvalError> {
        let Some((_, s)) = self.slots.get_mut(i) else {
            return Err(EvalError::Internal("a streamed unit left the ring"));
        };
        if attempt >= MAX_READ_ATTEMPTS {
            *s = State::Free;
            return Err(err);
        }
        *s = State::load(unit, attempt);
        self.stats.retries += 1;
        self.stats.units += 1;
        self.pump(arena)
    }
}
