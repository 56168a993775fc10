//! Fetching one layer's neuron bundles for one token: take cache hits, plan
//! reads for the misses under the device's cost model, read them through the
//! [`FlashDevice`] into an I/O buffer slot, and offer them to the cache.
//!
//! This is the I/O half of a sparse FFN step, shared by `lode bench io` (which
//! replays traces through it) and the streaming decode loop. It allocates
//! nothing: the caller lends the scratch (missing positions, extents,
//! locations) and the I/O buffer, whose sizes bound the work.
//!
//! Cache keys are `key_base + placement position`: positions and neurons are
//! in bijection within a layer, so the decode path never needs the
//! permutation.

use core::fmt;

use crate::arena::{DramArena, Slot};
use crate::cache::{Admission, CacheError, NeuronCache, Policy};
use crate::flash::{self, BlockChecks, FlashDevice};
#[cfg(doc)]
use crate::limits::MAX_READ_ATTEMPTS;
use crate::plan::{self, Extent, Mode, PlanError, PlanSummary, Region};

/// Where a fetched bundle's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BundleLoc {
    /// Not fetched (scratch default).
    #[default]
    Nowhere,
    /// In cache slot `.0`.
    Cache(u32),
    /// In the I/O buffer at byte offset `.0`.
    Io(usize),
}

/// Buffers a fetch borrows. `missing` and `locs` need one entry per needed
/// bundle; `extents` as many as the plan may produce (see [`plan::plan`]).
#[derive(Debug)]
pub struct FetchScratch<'a> {
    /// Positions that missed the cache.
    pub missing: &'a mut [u32],
    /// Planned reads.
    pub extents: &'a mut [Extent],
    /// Location of each needed bundle, in the order of `positions`.
    pub locs: &'a mut [BundleLoc],
}

/// What one layer's fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Needed bundles found in the cache.
    pub hits: u32,
    /// Needed bundles read from flash.
    pub misses: u32,
    /// The read plan and its predicted cost.
    pub plan: PlanSummary,
    /// Bytes of the bundles that missed (what a perfect reader would read).
    pub needed_bytes: u64,
    /// Misses the cache took in.
    pub admitted: u32,
    /// Bytes checked against the block checksums.
    pub verified: u64,
    /// Times the reads were repeated after an error or a mismatch.
    pub retries: u32,
}

/// Why a fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError<E> {
    /// The device refused a batch or failed as a whole.
    Device(E),
    /// A read completed with an error (for example a medium error) on
    /// every attempt.
    Read {
        /// Device offset of the failed read.
        offset: u64,
        /// What the device reported.
        kind: flash::ErrorKind,
        /// Times the reads were tried.
        attempts: u32,
    },
    /// Read bytes failed their block checksum on every attempt.
    Corrupt {
        /// Device offset of the first block that failed.
        offset: u64,
        /// Times the reads were tried.
        attempts: u32,
    },
    /// The needed positions or the region are invalid.
    Plan(PlanError),
    /// The cache failed.
    Cache(CacheError),
    /// The I/O buffer slot is smaller than the plan's bytes.
    IoBufferTooSmall {
        /// Bytes the plan reads.
        needed: u64,
    },
    /// A scratch buffer is shorter than the needed positions.
    ScratchTooSmall,
    /// The arena refused the I/O buffer.
    Arena(crate::arena::ErrorKind),
    /// The device reports reads in flight but completes none of them, which
    /// the [`FlashDevice::complete`] contract rules out.
    Stalled {
        /// Reads the device still counts as in flight.
        in_flight: usize,
    },
}

impl<E: fmt::Debug> fmt::Display for FetchError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Device(e) => write!(f, "flash device failed: {e:?}"),
            FetchError::Read {
                offset,
                kind,
                attempts,
            } => write!(f, "read at byte {offset} failed {attempts} times: {kind}"),
            FetchError::Corrupt { offset, attempts } => write!(
                f,
                "bytes read at {offset} failed their checksum {attempts} times"
            ),
            FetchError::Plan(e) => write!(f, "read planning failed: {e}"),
            FetchError::Cache(e) => write!(f, "{e}"),
            FetchError::IoBufferTooSmall { needed } => {
                write!(
                    f,
                    "the I/O buffer is smaller than the {needed} bytes this layer's plan reads"
                )
            }
            FetchError::ScratchTooSmall => {
                f.write_str("fetch scratch buffers are shorter than the needed bundles")
            }
            FetchError::Arena(k) => write!(f, "I/O buffer: {k}"),
            FetchError::Stalled { in_flight } => write!(
                f,
                "the flash device holds {in_flight} reads in flight but completes none"
            ),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for FetchError<E> {}

/// Most reads submitted in one batch (bounded by the device queue too).
pub use crate::limits::MAX_FETCH_BATCH as MAX_BATCH;

/// Where a fetch's reads land and what checks them.
#[derive(Debug, Clone, Copy)]
pub struct FetchIo<'c> {
    /// The I/O buffer: an arena slot aligned to the device block size.
    pub slot: Slot,
    /// Block checksums every read is verified against before a bundle is
    /// used or cached (reads are then planned in whole check blocks), or
    /// `None` to trust the device.
    pub checks: Option<&'c BlockChecks>,
}

impl FetchIo<'_> {
    /// Reads into `slot`, trusted as delivered.
    pub fn unchecked(slot: Slot) -> FetchIo<'static> {
        FetchIo { slot, checks: None }
    }
}

/// Fetch the bundles at `positions` (strictly increasing placement positions
/// of `region`) for `token`. Hits come from `cache`; misses are planned with
/// `mode`, read into `io` and offered to the cache. A read that fails, or
/// whose bytes fail their check, is repeated up to
/// [`MAX_READ_ATTEMPTS`] times in all before the fetch fails. On return
/// `scratch.locs[i]` says where the bundle of `positions[i]` is.
#[allow(clippy::too_many_arguments)]
pub fn fetch_layer<F, A, P>(
    dev: &mut F,
    arena: &mut A,
    mut cache: Option<&mut NeuronCache<P>>,
    region: &Region,
    key_base: u32,
    positions: &[u32],
    token: u32,
    mode: Mode,
    io: FetchIo<'_>,
    scratch: &mut FetchScratch<'_>,
) -> Result<Fetched, FetchError<F::Error>>
where
    F: FlashDevice,
    A: DramArena,
    P: Policy,
{
    if scratch.missing.len() < positions.len() || scratch.locs.len() < positions.len() {
        return Err(FetchError::ScratchTooSmall);
    }
    // 1. Cache hits, held until this call has admitted its misses: an
    //    admission must not evict a bundle the caller is about to read.
    if let Some(c) = cache.as_deref_mut() {
        c.begin_hold(arena).map_err(FetchError::Cache)?;
    }
    let mut n_missing = 0usize;
    for (i, &p) in positions.iter().enumerate() {
        let hit = match cache.as_deref_mut() {
            Some(c) => c
                .lookup(arena, key_base.wrapping_add(p), token)
                .map_err(FetchError::Cache)?,
            None => None,
        };
        scratch.locs[i] = match hit {
            Some(slot) => BundleLoc::Cache(slot),
            None => {
                scratch.missing[n_missing] = p;
                n_missing += 1;
                BundleLoc::Nowhere
            }
        };
    }
    let missing = &scratch.missing[..n_missing];
    // 2. Plan, in whole check blocks when reads are checked.
    let FetchIo { slot: io, checks } = io;
    let mut geo = dev.geometry();
    if let Some(c) = checks {
        let b = u32::try_from(c.block()).unwrap_or(u32::MAX);
        geo.block_size = geo.block_size.max(b);
        geo.max_transfer = geo.max_transfer.max(geo.block_size);
    }
    let cost = dev.cost_model();
    let (n_ext, summary) = plan::plan(region, missing, &geo, &cost, mode, scratch.extents)
        .map_err(FetchError::Plan)?;
    let extents = &scratch.extents[..n_ext];
    let io_len = arena
        .bytes(io)
        .map_err(|e| FetchError::Arena(crate::arena::Error::kind(&e)))?
        .len();
    if summary.bytes > io_len as u64 {
        return Err(FetchError::IoBufferTooSmall {
            needed: summary.bytes,
        });
    }
    // 3. Read (extents land back to back) and check, again on a fault.
    let (verified, retries) = read_checked(dev, arena, extents, io, checks)?;
    // 4. Locate each miss in the I/O buffer and offer it to the cache.
    let bb = u64::from(region.bundle_bytes);
    let mut k = 0usize;
    let mut k_off = 0usize;
    let mut m = 0usize;
    let mut admitted = 0u32;
    let mut run_start = 0usize;
    for (i, &p) in positions.iter().enumerate() {
        if scratch.locs[i] != BundleLoc::Nowhere {
            continue;
        }
        let start = region.offset + u64::from(p) * u64::from(region.stride);
        let at = locate(extents, &mut k, &mut k_off, start, bb)
            .ok_or(FetchError::Plan(PlanError::BadRegion))?;
        scratch.locs[i] = BundleLoc::Io(at);
        if let Some(c) = cache.as_deref_mut() {
            // Length of the run of consecutive missing positions around p.
            if m == 0 || missing[m - 1] + 1 != p {
                run_start = m;
            }
            let mut run_end = m + 1;
            while run_end < missing.len() && missing[run_end] == missing[run_end - 1] + 1 {
                run_end += 1;
            }
            let why = Admission {
                token,
                run_len: (run_end - run_start) as u32,
            };
            if let Some(slot) = c
                .insert(arena, key_base.wrapping_add(p), &why)
                .map_err(FetchError::Cache)?
            {
                c.store(arena, slot, io, at).map_err(FetchError::Cache)?;
                admitted += 1;
            }
        }
        m += 1;
    }
    Ok(Fetched {
        hits: (positions.len() - n_missing) as u32,
        misses: n_missing as u32,
        plan: summary,
        needed_bytes: n_missing as u64 * bb,
        admitted,
        verified,
        retries,
    })
}

/// Buffer offset of the device bytes `[start, start + len)`: find an extent
/// (from the cursor `k`, whose buffer offset is `k_off`) holding `start` and
/// check the following extents continue it on the device (so the bytes are
/// contiguous in the buffer too). Per-bundle plans may contain overlapping
/// extents, hence the search rather than a plain two-pointer step.
fn locate(
    extents: &[Extent],
    k: &mut usize,
    k_off: &mut usize,
    start: u64,
    len: u64,
) -> Option<usize> {
    while *k < extents.len() && extents[*k].end() <= start {
        *k_off += extents[*k].len as usize;
        *k += 1;
    }
    let (mut j, mut j_off) = (*k, *k_off);
    while j < extents.len() && extents[j].offset <= start {
        // Does the device range continue from extent j through its successors?
        let mut end = extents[j].end();
        let mut next = j + 1;
        while end < start + len && next < extents.len() && extents[next].offset == end {
            end = extents[next].end();
            next += 1;
        }
        if end >= start + len {
            return Some(j_off + (start - extents[j].offset) as usize);
        }
        j_off += extents[j].len as usize;
        j += 1;
    }
    None
}

mod read;

use read::read_checked;

#[cfg(test)]
mod checked_tests;
#[cfg(test)]
mod tests;
