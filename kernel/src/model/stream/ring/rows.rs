//! Embedding rows read on demand, several at once: a token's own row, or
//! the rows an approximate head's likely tokens are refined from
//! ([`Model::refine_head`](crate::model::Model::refine_head)). They go
//! into the ring's row slot, one after another, all submitted together so
//! they wait once behind the prefetches in the device queue; then each is
//! checked like a unit, and the batch is read again on a read error or a
//! mismatch, up to [`MAX_READ_ATTEMPTS`](crate::limits::MAX_READ_ATTEMPTS)
//! times in all.

use crate::arena::{DramArena, Slot};
use crate::compute::Compute;
use crate::flash::retry::{with_retries, Attempt};
use crate::flash::{self, FlashDevice, ReadRequest};
use crate::model::error::EvalError;

use super::take::Checked;
use super::{device_err, Ring, ROW_TAG};

/// The ring's row slot and the reads in flight into it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowRead {
    pub(super) slot: Slot,
    /// Reads not yet completed.
    pub(super) pending: u32,
    /// The first error a completion carried.
    pub(super) failed: Option<flash::ErrorKind>,
}

impl RowRead {
    pub(super) fn new(slot: Slot) -> RowRead {
        RowRead {
            slot,
            pending: 0,
            failed: None,
        }
    }

    /// Records one completion.
    pub(super) fn land(&mut self, status: Result<(), flash::ErrorKind>) {
        self.pending = self.pending.saturating_sub(1);
        if let (Err(kind), None) = (status, self.failed) {
            self.failed = Some(kind);
        }
    }
}

impl<D: FlashDevice> Ring<D> {
    /// Reads `len` bytes at block-aligned `start` into the row slot and
    /// waits for them (prefetches keep running meanwhile); checked and
    /// retried like a unit.
    pub fn read_row<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        start: u64,
        len: usize,
        compute: &mut C,
    ) -> Result<Slot, EvalError> {
        self.read_rows(arena, &[(start, len)], len, compute)
    }

    /// Reads each `(start, len)` of `rows` (block-aligned) into the row
    /// slot, row `j` at byte `j * stride`, all at once, and waits for them;
    /// every row is checked, and the batch read again on an error or a
    /// mismatch. The slot must hold them all.
    pub fn read_rows<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        rows: &[(u64, usize)],
        stride: usize,
        compute: &mut C,
    ) -> Result<Slot, EvalError> {
        let (slot, retries) = with_retries(|attempts| {
            let slot = match self.read_rows_once(arena, rows, stride) {
                Ok(Ok(slot)) => slot,
                Ok(Err((offset, kind))) => {
                    return Attempt::Again(EvalError::Read {
                        offset,
                        kind,
                        attempts,
                    })
                }
                Err(e) => return Attempt::Stop(e),
            };
            for (j, &(start, len)) in rows.iter().enumerate() {
                let range = j * stride..j * stride + len;
                match self.check_range(arena, (slot, start), range, compute) {
                    Ok(Checked::Good) => {}
                    Ok(Checked::Bad { offset }) => {
                        return Attempt::Again(EvalError::Corrupt { offset, attempts })
                    }
                    Err(e) => return Attempt::Stop(e),
                }
            }
            Attempt::Done(slot)
        })?;
        self.stats.retries += u64::from(retries);
        Ok(slot)
    }

    /// One read of the rows: the slot, or the offset of the first row whose
    /// completion carried an error, and the error.
    fn read_rows_once<A: DramArena>(
        &mut self,
        arena: &mut A,
        rows: &[(u64, usize)],
        stride: usize,
    ) -> Result<Result<Slot, (u64, flash::ErrorKind)>, EvalError> {
        let Some(mut row) = self.row else {
            return Err(EvalError::Internal("no slot for embedding rows"));
        };
        let room = arena.bytes(row.slot).map_err(EvalError::arena)?.len();
        if rows.iter().any(|&(_, len)| len > stride) || rows.len().saturating_mul(stride) > room {
            return Err(EvalError::Internal(
                "more embedding rows than their slot holds",
            ));
        }
        let depth = usize::from(self.dev.geometry().queue_depth.max(1));
        row.pending = 0;
        row.failed = None;
        self.row = Some(row);
        for (j, &(start, len)) in rows.iter().enumerate() {
            let r = ReadRequest {
                tag: ROW_TAG,
                offset: start,
                len: u32::try_from(len).map_err(|_| EvalError::Internal("row read too large"))?,
                dest: row.slot,
                dest_offset: j * stride,
            };
            // Leave room in the queue for each row read.
            while self.dev.in_flight() >= depth {
                self.poll(arena)?;
            }
            self.dev.submit(arena, &[r]).map_err(device_err)?;
            self.stats.bytes += len as u64;
            self.stats.reads += 1;
            if let Some(r) = self.row.as_mut() {
                r.pending += 1;
            }
        }
        while self.row.is_some_and(|r| r.pending > 0) {
            self.poll(arena)?;
        }
        let first = rows.first().map_or(0, |r| r.0);
        Ok(match self.row.and_then(|r| r.failed) {
            Some(kind) => Err((first, kind)),
            None => Ok(row.slot),
        })
    }
}
