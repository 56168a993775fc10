//! Reading an image through a flash device: whole extents into arena
//! slots (split into commands the device takes), the CRC check of every
//! data byte before anything is trusted, and resident slots for the
//! loader.

use lode_formats::image::Image;

use crate::arena::{DramArena, Slot, SlotKind};
use crate::flash::{FlashDevice, ReadRequest};
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
    mut progress: impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    let h = img.header();
    let (start, end) = (h.meta_len, h.file_len);
    let block = u64::from(dev.geometry().block_size.max(1));
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
        at += n;
        progress(at - start, end - start);
    }
    v.finish().map_err(ModelError::Image)
}

/// A resident slot for `len` bytes at `start`, read from `dev`.
pub(super) fn read_resident<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    start: u64,
    len: usize,
    block: usize,
) -> Result<Slot, ModelError> {
    let slot = arena
        .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::Resident)
        .map_err(ModelError::arena)?;
    read_extent(dev, arena, slot, start, blocks(len, block))?;
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
