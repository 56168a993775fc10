//! Reading an image through a flash device: whole extents into arena
//! slots (split into commands the device takes), checked against the
//! block checksums and read again on a fault, and resident slots for the
//! loader. The load pass that checks every data byte is `verify.rs`.
//!
//! These are the loader's reads, so they fail with a
//! [`LoadError`]; the reads made while evaluating go through the ring
//! (`ring/`) and the sparse fetch, which report an
//! [`EvalError`](crate::model::EvalError).

use crate::arena::{DramArena, Slot, SlotKind};
use crate::flash::retry::{with_retries, Attempt};
use crate::flash::{BlockChecks, CheckError, FlashDevice, ReadRequest};
#[cfg(doc)]
use crate::limits::MAX_READ_ATTEMPTS;
use crate::model::error::LoadError;
use crate::model::weights::ALIGN;

use super::plan::{blocks, read_slot};

/// Reads `len` bytes at block-aligned `start` into `slot` and waits:
/// commands of at most `max_transfer`, never more than the queue takes.
pub fn read_extent<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    slot: Slot,
    start: u64,
    len: usize,
) -> Result<(), LoadError> {
    let g = dev.geometry();
    let max = (g.max_transfer as usize).max(g.block_size as usize).max(1);
    let depth = usize::from(g.queue_depth.max(1)).min(16);
    let mut at = 0usize;
    while at < len {
        let mut batch: heapless::Vec<ReadRequest, 16> = heapless::Vec::new();
        while at < len && batch.len() < depth {
            let n = (len - at).min(max);
            let _ = batch.push(ReadRequest {
                tag: batch.len() as u32,
                offset: start + at as u64,
                len: u32::try_from(n).map_err(|_| LoadError::Internal("read too large"))?,
                dest: slot,
                dest_offset: at,
            });
            at += n;
        }
        dev.read_blocking(arena, &batch).map_err(|e| match e {
            crate::flash::ReadError::Device(e) => LoadError::Device(crate::flash::Error::kind(&e)),
            crate::flash::ReadError::Failed { tag, kind } => LoadError::Read {
                offset: start + batch.get(tag as usize).map_or(0, |r| r.offset - start),
                kind,
                attempts: 1,
            },
        })?;
    }
    Ok(())
}

/// How a loader reads: in whole `block`s, each read checked against
/// `checks` (and repeated on a fault) when there are checks.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    /// Every read is whole blocks of this many bytes.
    pub block: usize,
    /// What reads are checked against.
    pub checks: Option<BlockChecks>,
}

/// A check failure as the model's error.
pub(super) fn check_err(e: CheckError, attempts: u32) -> LoadError {
    match e {
        CheckError::Mismatch { offset } => LoadError::Corrupt { offset, attempts },
        CheckError::Arena(k) => LoadError::Arena(k),
        _ => LoadError::Internal("a read is not whole blocks of the checked data"),
    }
}

impl From<CheckError> for LoadError {
    fn from(e: CheckError) -> Self {
        check_err(e, 1)
    }
}

/// [`read_extent`], then a check of the bytes against `checks`; a failed
/// read or a mismatch is read again, up to [`MAX_READ_ATTEMPTS`] in all.
pub fn read_checked<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    slot: Slot,
    start: u64,
    len: usize,
    checks: Option<&BlockChecks>,
) -> Result<(), LoadError> {
    with_retries(|attempts| match read_extent(dev, arena, slot, start, len) {
        Ok(()) => match checks.map(|c| c.verify_slot(arena, start, slot, 0, len)) {
            None | Some(Ok(())) => Attempt::Done(()),
            Some(Err(e @ CheckError::Mismatch { .. })) => Attempt::Again(check_err(e, attempts)),
            Some(Err(e)) => Attempt::Stop(check_err(e, attempts)),
        },
        Err(LoadError::Read { offset, kind, .. }) => Attempt::Again(LoadError::Read {
            offset,
            kind,
            attempts,
        }),
        Err(e) => Attempt::Stop(e),
    })
    .map(|((), _)| ())
}

/// A resident slot for `len` bytes at `start`, read from `dev`.
pub(super) fn read_resident<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    start: u64,
    len: usize,
    rd: Reader,
) -> Result<Slot, LoadError> {
    let block = rd.block;
    let slot = arena
        .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::Resident)
        .map_err(LoadError::arena)?;
    read_checked(
        dev,
        arena,
        slot,
        start,
        blocks(len, block),
        rd.checks.as_ref(),
    )?;
    Ok(slot)
}

/// The block-aligned extent covering `len` bytes at `start`: its start,
/// its length, and the bytes to skip at its start.
pub(super) fn aligned_extent(start: u64, len: usize, block: usize) -> (u64, usize, usize) {
    let b = block as u64;
    let s = start / b * b;
    let skip = (start - s) as usize;
    (s, blocks(skip + len, block), skip)
}
