//! What a sparse run needs beyond the dense one: the buffers a layer's
//! column fetch borrows (owned by a host runtime or lent by firmware),
//! the neuron cache sized from what the plan left over, and counters.

use crate::arena::{DramArena, Slot, SlotKind};
use crate::cache::{CacheConfig, NeuronCache, Policy};
use crate::fetch::{BundleLoc, FetchError, Fetched};
use crate::model::config::LlamaConfig;
use crate::model::error::{EvalError, LoadError};
use crate::model::weights::ALIGN;
use crate::plan::{Extent, Strategy};

use super::layout::StreamLayout;
use super::plan::{read_slot, StreamPlan};
use super::sparsity::neurons_kept;

/// Buffers a sparse run lends the source (no heap on the decode path):
/// sized by [`SparseScratch::lens`].
#[derive(Debug)]
pub struct SparseScratch<'s> {
    /// Placement positions one layer needs (`lens().0` entries).
    pub positions: &'s mut [u32],
    /// Positions that missed the cache (`lens().0`).
    pub missing: &'s mut [u32],
    /// Where each needed column is (`lens().0`).
    pub locs: &'s mut [BundleLoc],
    /// Planned reads (`lens().1`).
    pub extents: &'s mut [Extent],
}

/// Where a sparse run's scratch lives: borrowed from the caller
/// ([`SparseScratch`] itself, what firmware lends from its statics) or
/// owned by a host runtime. The source asks for the buffers each time it
/// fetches, so it can own them without borrowing from its owner.
pub trait SparseBuffers {
    /// The buffers, lent for one fetch.
    fn lend(&mut self) -> SparseScratch<'_>;
}

impl SparseBuffers for SparseScratch<'_> {
    fn lend(&mut self) -> SparseScratch<'_> {
        SparseScratch {
            positions: &mut *self.positions,
            missing: &mut *self.missing,
            locs: &mut *self.locs,
            extents: &mut *self.extents,
        }
    }
}

impl<B: SparseBuffers + ?Sized> SparseBuffers for &mut B {
    fn lend(&mut self) -> SparseScratch<'_> {
        (**self).lend()
    }
}

impl SparseScratch<'_> {
    /// Entries of the position buffers and of the extents for `layout`
    /// on a device of `block` bytes per block and `max_transfer` bytes per
    /// read: a per-bundle plan reads each needed column with at most
    /// `ceil((column + 2 blocks) / max_transfer)` commands, a dense one the
    /// region in `max_transfer` pieces.
    pub fn lens(layout: &StreamLayout, block: usize, max_transfer: usize) -> (usize, usize) {
        let block = block.max(1);
        let mt = (max_transfer / block * block).max(block);
        let (mut n, mut ext) = (0usize, 1usize);
        for f in &layout.ffn {
            let per = f.bundle.saturating_add(2 * block).div_ceil(mt);
            let dense = f.len.saturating_add(2 * block).div_ceil(mt);
            n = n.max(f.count);
            ext = ext.max(f.count.saturating_mul(per).max(dense).saturating_add(1));
        }
        (n, ext)
    }
}

/// How a sparse run chooses neurons and caches their columns.
#[derive(Debug)]
pub struct SparseSetup<P, B> {
    /// Fraction of each layer's neurons skipped per token, `0.0..1.0`: the
    /// ones whose activation `|silu(gate·x)·(up·x)|` is smallest.
    pub sparsity: f32,
    /// The neuron cache's policy; `None` runs without a cache.
    pub policy: Option<P>,
    /// The buffers (see [`SparseBuffers`]).
    pub scratch: B,
}

/// What the sparse fetches did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SparseStats {
    /// Layer fetches (one per streamed layer per pass).
    pub fetches: u64,
    /// Down columns needed, summed over fetches.
    pub needed: u64,
    /// Needed columns found in the cache.
    pub hits: u64,
    /// Needed columns read from flash.
    pub misses: u64,
    /// Fetches the planner served with one dense read of the region.
    pub dense_plans: u64,
    /// Bytes of the columns that missed (what a perfect reader reads).
    pub needed_bytes: u64,
    /// Bytes the plans read.
    pub read_bytes: u64,
}

/// A sparse run's state inside the source.
#[derive(Debug)]
pub(super) struct Sparse<P: Policy, B> {
    /// Neurons kept per token and layer.
    pub(super) keep: usize,
    pub(super) io: Slot,
    pub(super) cache: Option<NeuronCache<P>>,
    pub(super) scratch: B,
    pub(super) stats: SparseStats,
    pub(super) pass: u32,
}

impl SparseStats {
    /// Counts one layer fetch of `needed` columns.
    pub(super) fn add(&mut self, got: &Fetched, needed: usize) {
        self.fetches += 1;
        self.needed += needed as u64;
        self.hits += u64::from(got.hits);
        self.misses += u64::from(got.misses);
        self.dense_plans += u64::from(got.plan.strategy == Strategy::Dense);
        self.needed_bytes += got.needed_bytes;
        self.read_bytes += got.plan.bytes;
    }
}

impl<P: Policy, B: SparseBuffers> Sparse<P, B> {
    /// The sparse state of a run with `setup`: checks the lent buffers
    /// against [`SparseScratch::lens`], allocates the column-read slot and
    /// the neuron cache (in what the plan left over).
    pub(super) fn build<A: DramArena>(
        mut setup: SparseSetup<P, B>,
        arena: &mut A,
        layout: &StreamLayout,
        cfg: &LlamaConfig,
        plan: &StreamPlan,
        max_transfer: usize,
    ) -> Result<Self, LoadError> {
        if !(0.0..1.0).contains(&setup.sparsity) {
            return Err(LoadError::Config("sparsity must be at least 0 and below 1"));
        }
        let block = plan.block;
        let (n, ext) = SparseScratch::lens(layout, block, max_transfer);
        let sc = setup.scratch.lend();
        if sc.positions.len() < n
            || sc.missing.len() < n
            || sc.locs.len() < n
            || sc.extents.len() < ext
        {
            return Err(LoadError::Config(
                "the sparse scratch is smaller than SparseScratch::lens asks",
            ));
        }
        let down_max = layout.ffn.iter().map(|f| f.len).max().unwrap_or(0);
        let io = arena
            .alloc(
                read_slot(down_max.saturating_add(2 * block), block),
                block.max(ALIGN),
                SlotKind::IoBuffer,
            )
            .map_err(LoadError::arena)?;
        let bundle = layout.ffn.first().map_or(0, |f| f.bundle);
        let keys = u32::try_from(cfg.ffn.saturating_mul(cfg.layers))
            .map_err(|_| LoadError::Config("too many neurons for a cache"))?;
        let cache = match setup.policy {
            Some(policy) if plan.bytes.cache > 0 => {
                match cache_config(&policy, plan.bytes.cache, keys, bundle as u32) {
                    Some(c) => Some(
                        NeuronCache::new(arena, c, policy)
                            .map_err(|_| LoadError::Internal("the neuron cache failed"))?,
                    ),
                    None => None,
                }
            }
            _ => None,
        };
        Ok(Sparse {
            keep: neurons_kept(setup.sparsity, cfg.ffn),
            io,
            cache,
            scratch: setup.scratch,
            stats: SparseStats::default(),
            pass: 0,
        })
    }
}

/// A sparse fetch's error (fetches run while evaluating) as an evaluation's.
pub(super) fn fetch_err<E: crate::flash::Error>(e: FetchError<E>) -> EvalError {
    match e {
        FetchError::Device(e) => EvalError::Device(e.kind()),
        FetchError::Read {
            offset,
            kind,
            attempts,
        } => EvalError::Read {
            offset,
            kind,
            attempts,
        },
        FetchError::Corrupt { offset, attempts } => EvalError::Corrupt { offset, attempts },
        FetchError::Arena(k) => EvalError::Arena(k),
        FetchError::IoBufferTooSmall { .. } => {
            EvalError::Internal("a sparse read plan is larger than its I/O slot")
        }
        FetchError::ScratchTooSmall => {
            EvalError::Internal("the sparse scratch is smaller than a layer's neurons")
        }
        FetchError::Plan(_) => EvalError::Internal("the sparse read plan failed"),
        FetchError::Cache(_) => EvalError::Internal("the neuron cache failed"),
        FetchError::Stalled { .. } => EvalError::Device(crate::flash::ErrorKind::Other),
    }
}

/// Slots of a cache of `bundle`-byte entries over `keys` keys with
/// `policy` that fits in `bytes` (with room for two slot alignments).
pub(super) fn cache_config<P: Policy>(
    policy: &P,
    bytes: usize,
    keys: u32,
    bundle: u32,
) -> Option<CacheConfig> {
    let room = bytes.checked_sub(2 * 64 + 2 * ALIGN)?;
    let mut cfg = CacheConfig {
        slots: u32::try_from(room / bundle.max(1) as usize)
            .unwrap_or(u32::MAX)
            .min(keys),
        keys,
        bundle_bytes: bundle,
    };
    // Shrink until the metadata fits too (a few rounds: proportional).
    for _ in 0..64 {
        if cfg.slots == 0 {
            return None;
        }
        let need = cfg.arena_bytes(policy)?;
        if need <= room {
            return Some(cfg);
        }
        let over = need - room;
        let per = (bundle as usize).saturating_add(8).max(1);
        cfg.slots = cfg
            .slots
            .saturating_sub(u32::try_from(over.div_ceil(per)).unwrap_or(u32::MAX).max(1));
    }
    None
}
