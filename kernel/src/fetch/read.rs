//! A fetch's reads: the planned extents read back to back into the I/O
//! slot with the device's queue kept fed, then checked against the block
//! checksums, and read again on a fault.

use crate::arena::{DramArena, Slot};
use crate::flash::retry::{with_retries, Attempt};
use crate::flash::{BlockChecks, CheckError, Completion, FlashDevice, ReadRequest};
#[cfg(doc)]
use crate::limits::MAX_READ_ATTEMPTS;
use crate::plan::{Extent, PlanError};

use super::{FetchError, MAX_BATCH};

/// [`read_extents`] and a check of every extent against `checks`,
/// repeated on a read error or a mismatch up to [`MAX_READ_ATTEMPTS`]
/// times in all. Returns the bytes verified and the retries.
pub(super) fn read_checked<F: FlashDevice, A: DramArena>(
    dev: &mut F,
    arena: &mut A,
    extents: &[Extent],
    io: Slot,
    checks: Option<&BlockChecks>,
) -> Result<(u64, u32), FetchError<F::Error>> {
    with_retries(|attempts| match read_extents(dev, arena, extents, io) {
        Ok(()) => match verify_extents(arena, extents, io, checks) {
            Ok(None) => Attempt::Done(if checks.is_some() {
                extents.iter().map(|x| u64::from(x.len)).sum()
            } else {
                0
            }),
            Ok(Some(offset)) => Attempt::Again(FetchError::Corrupt { offset, attempts }),
            Err(e) => Attempt::Stop(e),
        },
        Err(FetchError::Read { offset, kind, .. }) => Attempt::Again(FetchError::Read {
            offset,
            kind,
            attempts,
        }),
        Err(e) => Attempt::Stop(e),
    })
}

/// The offset of the first block of `extents` (read back to back into
/// `io`) that fails its check, if any.
fn verify_extents<A: DramArena, E>(
    arena: &A,
    extents: &[Extent],
    io: Slot,
    checks: Option<&BlockChecks>,
) -> Result<Option<u64>, FetchError<E>> {
    let Some(c) = checks else {
        return Ok(None);
    };
    let mut at = 0usize;
    for x in extents {
        let len = x.len as usize;
        match c.verify_slot(arena, x.offset, io, at, len) {
            Ok(()) => {}
            Err(CheckError::Mismatch { offset }) => return Ok(Some(offset)),
            Err(_) => return Err(FetchError::Plan(PlanError::BadRegion)),
        }
        at += len;
    }
    Ok(None)
}

/// Reads `extents` into `io`, back to back, keeping the device's queue
/// fed: reads are collected at most half a queue at a time and each
/// collection is followed by as many new reads, so the device is never left
/// idle while extents remain (draining it between batches would pay the
/// fixed command latency once per batch instead of once per layer). A
/// failed read drains the rest and is reported with its offset; a device
/// that holds reads but completes none is `Stalled`.
fn read_extents<F: FlashDevice, A: DramArena>(
    dev: &mut F,
    arena: &mut A,
    extents: &[Extent],
    io: Slot,
) -> Result<(), FetchError<F::Error>> {
    let qd = usize::from(dev.geometry().queue_depth).clamp(1, MAX_BATCH);
    let collect = if qd > 1 { qd / 2 } else { 1 };
    let mut buf_off = 0usize;
    let mut next = 0usize;
    let mut batch: heapless::Vec<ReadRequest, MAX_BATCH> = heapless::Vec::new();
    let mut done = [Completion::EMPTY; MAX_BATCH];
    loop {
        let room = qd.saturating_sub(dev.in_flight());
        let take = room.min(extents.len() - next);
        if take > 0 {
            batch.clear();
            for (i, x) in extents[next..next + take].iter().enumerate() {
                let req = ReadRequest {
                    tag: (next + i) as u32,
                    offset: x.offset,
                    len: x.len,
                    dest: io,
                    dest_offset: buf_off,
                };
                // `take <= qd <= MAX_BATCH`.
                let _ = batch.push(req);
                buf_off += x.len as usize;
            }
            dev.submit(arena, &batch).map_err(FetchError::Device)?;
            next += take;
        }
        if dev.in_flight() == 0 {
            break;
        }
        let want = if next < extents.len() { collect } else { qd };
        let n = dev
            .complete(arena, &mut done[..want])
            .map_err(FetchError::Device)?;
        for c in &done[..n] {
            if let Err(kind) = c.status {
                let offset = extents.get(c.tag as usize).map_or(0, |x| x.offset);
                // Drain the rest so the device is left idle, then report.
                while dev.in_flight() > 0 {
                    if dev.complete(arena, &mut done).map_err(FetchError::Device)? == 0 {
                        break;
                    }
                }
                return Err(FetchError::Read {
                    offset,
                    kind,
                    attempts: 1,
                });
            }
        }
        if n == 0 {
            // Stop rather than spin, and never hand out unread bytes.
            return Err(FetchError::Stalled {
                in_flight: dev.in_flight(),
            });
        }
    }
    Ok(())
}
