//! Reading an image through a flash device: whole extents into arena
//! slots (split into commands the device takes), the CRC check of every
//! data byte before anything is trusted, and resident slots for the
//! loader.

use lode_formats::image::Image;

use crate::arena::{DramArena, Slot, SlotKind};
use crate::flash::{BlockChecks, CheckError, FlashDevice, ReadRequest};
use crate::limits::MAX_READ_ATTEMPTS;
use crate::model::error::ModelError;
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
) -> Result<(), ModelError> {
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
                len: u32::try_from(n).map_err(|_| ModelError::Internal("read too large"))?,
                dest: slot,
                dest_offset: at,
            });
            at += n;
        }
        dev.read_blocking(arena, &batch).map_err(|e| match e {
            crate::flash::ReadError::Device(e) => ModelError::Device(crate::flash::Error::kind(&e)),
            crate::flash::ReadError::Failed { tag, kind } => ModelError::Read {
                offset: start + batch.get(tag as usize).map_or(0, |r| r.offset - start),
                kind,
                attempts: 1,
            },
        })?;
    }
    Ok(())
}

/// Checks every data byte of `img` (tensors, bundles, padding) against its
/// CRC by streaming it through `slot` from `dev`: the image is validated
/// before any weight is trusted.
pub fn verify_image_data<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    progress: impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    verify_and_record(dev, arena, img, slot, None, progress)
}

/// [`verify_image_data`], also recording every data block's CRC in
/// `checks` (made for `meta_len..file_len`), so the streamed reads that
/// follow are checked against the bytes verified here. A pass that fails
/// (a read error, a CRC that does not match) is repeated, up to
/// [`MAX_READ_ATTEMPTS`] passes in all: a fault on the way from the medium
/// does not repeat, bytes wrong on the medium do, and are reported.
pub fn verify_and_record<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    checks: Option<&BlockChecks>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match verify_pass(dev, arena, img, slot, checks, &mut progress) {
            Err(ModelError::Image(_) | ModelError::Read { .. }) if attempts < MAX_READ_ATTEMPTS => {
            }
            Err(ModelError::Read { offset, kind, .. }) => {
                return Err(ModelError::Read {
                    offset,
                    kind,
                    attempts,
                })
            }
            other => return other,
        }
    }
}

/// One pass of [`verify_and_record`].
fn verify_pass<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    checks: Option<&BlockChecks>,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    let h = img.header();
    let (start, end) = (h.meta_len, h.file_len);
    let block = u64::from(dev.geometry().block_size.max(1));
    let block = checks.map_or(block, |c| block.max(c.block() as u64));
    let cap = arena.bytes(slot).map_err(ModelError::arena)?.len() as u64 / block * block;
    if cap == 0 {
        return Err(ModelError::Config(
            "the verification buffer is smaller than a block",
        ));
    }
    let mut v = img.data_verifier();
    let mut at = start;
    while at < end {
        let n = (end - at).min(cap);
        let len = usize::try_from(n).map_err(|_| ModelError::Internal("read too large"))?;
        read_extent(dev, arena, slot, at, len)?;
        let data = arena
            .bytes(slot)
            .map_err(ModelError::arena)?
            .get(..len)
            .ok_or(ModelError::Internal("verification buffer too small"))?;
        v.update(data).map_err(ModelError::Image)?;
        if let Some(c) = checks {
            c.record(arena, at, slot, len)?;
        }
        at += n;
        progress(at - start, end - start);
    }
    v.finish().map_err(ModelError::Image)
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
pub(super) fn check_err(e: CheckError, attempts: u32) -> ModelError {
    match e {
        CheckError::Mismatch { offset } => ModelError::Corrupt { offset, attempts },
        CheckError::Arena(k) => ModelError::Arena(k),
        _ => ModelError::Internal("a read is not whole blocks of the checked data"),
    }
}

impl From<CheckError> for ModelError {
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
) -> Result<(), ModelError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let err = match read_extent(dev, arena, slot, start, len) {
            Ok(()) => match checks.map(|c| c.verify_slot(arena, start, slot, 0, len)) {
                None | Some(Ok(())) => return Ok(()),
                Some(Err(e)) => check_err(e, attempts),
            },
            Err(ModelError::Read { offset, kind, .. }) => ModelError::Read {
                offset,
                kind,
                attempts,
            },
            Err(e) => return Err(e),
        };
        if attempts >= MAX_READ_ATTEMPTS {
            return Err(err);
        }
    }
}

/// A resident slot for `len` bytes at `start`, read from `dev`.
pub(super) fn read_resident<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    start: u64,
    len: usize,
    rd: Reader,
) -> Result<Slot, ModelError> {
    let block = rd.block;
    let slot = arena
        .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::Resident)
        .map_err(ModelError::arena)?;
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
