//! The load pass: every data byte of an image checked against its stored
//! CRCs through the device before any weight is trusted, and, for a run
//! that checks its reads, the CRC of every block recorded on the way.
//!
//! A fault on the way from the medium (a failed read, a flipped bit) must
//! not make a good image unloadable, and bytes wrong on the medium must
//! never pass. The stored CRCs cover whole tensors and bundle regions,
//! which may span many read chunks, so a mismatch is only seen where the
//! item ends. The pass therefore keeps the verifier's state at the last
//! [`MARKS`] chunk boundaries: a failure reads again from the oldest of
//! them (covering every item that began within them), and a second
//! failure at the same place from the start of the data (covering longer
//! items). Bytes that stay wrong fail every time and are reported after
//! [`MAX_READ_ATTEMPTS`] tries.

use lode_formats::image::{DataVerifier, Image};

use crate::arena::{DramArena, Slot};
use crate::flash::{BlockChecks, FlashDevice};
use crate::limits::MAX_READ_ATTEMPTS;
use crate::model::error::LoadError;

use super::io::read_extent;

/// Chunk boundaries whose verifier state is kept to read again from.
pub const MARKS: usize = 4;

/// Most times a pass reads again from an earlier boundary before it gives
/// up: at a realistic fault rate a handful; this bounds a device that
/// fails all the time.
const MAX_REREADS: usize = 64;

/// Checks every data byte of `img` (tensors, bundles, padding) against its
/// CRC by streaming it through `slot` from `dev`: the image is validated
/// before any weight is trusted.
pub fn verify_image_data<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    progress: impl FnMut(u64, u64),
) -> Result<(), LoadError> {
    verify_and_record(dev, arena, img, slot, None, progress)
}

/// [`verify_image_data`], also recording every data block's CRC in
/// `checks` (made for `meta_len..file_len`), so the streamed reads that
/// follow are checked against the bytes verified here. A chunk whose read
/// fails, or that completes an item whose CRC does not match, is read
/// again from an earlier chunk boundary (see the module's notes).
pub fn verify_and_record<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    checks: Option<&BlockChecks>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), LoadError> {
    let h = img.header();
    let (start, end) = (h.meta_len, h.file_len);
    let block = u64::from(dev.geometry().block_size.max(1));
    let block = checks.map_or(block, |c| block.max(c.block() as u64));
    let cap = arena.bytes(slot).map_err(LoadError::arena)?.len() as u64 / block * block;
    if cap == 0 {
        return Err(LoadError::Config(
            "the verification buffer is smaller than a block",
        ));
    }
    let mut v = img.data_verifier();
    let mut marks: heapless::Deque<(u64, DataVerifier<'_>), MARKS> = heapless::Deque::new();
    let _ = marks.push_back((start, v.clone()));
    let (mut at, mut failed_at, mut attempts, mut rereads) = (start, u64::MAX, 0u32, 0usize);
    while at < end {
        let n = (end - at).min(cap);
        match verify_chunk(dev, arena, slot, checks, &mut v, at, n) {
            Ok(()) => {
                at += n;
                progress(at - start, end - start);
                if marks.is_full() {
                    marks.pop_front();
                }
                let _ = marks.push_back((at, v.clone()));
            }
            Err(e @ (LoadError::Image(_) | LoadError::Read { .. })) => {
                // Bytes wrong on the medium fail at the same chunk every
                // time; transient faults land anywhere, each place with a
                // count of its own, and all of them within a bound.
                attempts = if at == failed_at { attempts + 1 } else { 1 };
                failed_at = at;
                rereads += 1;
                if attempts >= MAX_READ_ATTEMPTS || rereads > MAX_REREADS {
                    return Err(with_attempts(e, attempts));
                }
                (at, v) = if attempts == 1 {
                    marks
                        .front()
                        .cloned()
                        .unwrap_or((start, img.data_verifier()))
                } else {
                    (start, img.data_verifier())
                };
                marks.clear();
                let _ = marks.push_back((at, v.clone()));
            }
            Err(e) => return Err(e),
        }
    }
    v.finish().map_err(LoadError::Image)
}

/// Reads `n` bytes at `at` into `slot`, feeds them to `v` and records
/// their blocks' CRCs.
fn verify_chunk<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    slot: Slot,
    checks: Option<&BlockChecks>,
    v: &mut DataVerifier<'_>,
    at: u64,
    n: u64,
) -> Result<(), LoadError> {
    let len = usize::try_from(n).map_err(|_| LoadError::Internal("read too large"))?;
    read_extent(dev, arena, slot, at, len)?;
    let data = arena
        .bytes(slot)
        .map_err(LoadError::arena)?
        .get(..len)
        .ok_or(LoadError::Internal("verification buffer too small"))?;
    v.update(data).map_err(LoadError::Image)?;
    if let Some(c) = checks {
        c.record(arena, at, slot, len)?;
    }
    Ok(())
}

/// `e` with the number of tries made.
fn with_attempts(e: LoadError, attempts: u32) -> LoadError {
    match e {
        LoadError::Read { offset, kind, .. } => LoadError::Read {
            offset,
            kind,
            attempts,
        },
        e => e,
    }
}
