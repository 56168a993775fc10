//! Read planning: from the bundles one layer needs, the device reads that
//! fetch them fastest under the device's [`CostModel`].
//!
//! A layer's FFN neurons sit in flash as a *bundle region*: `count` bundles of
//! `bundle_bytes`, one every `stride` bytes from a block-aligned offset, in
//! placement order. Given the placement positions a token needs (after cache
//! hits), the planner emits block-aligned extents. Several plans compete and
//! the cheapest by [`CostModel::batch_ns`] wins:
//!
//! - **per-bundle**: one read per needed bundle (the naive baseline);
//! - **coalesced**: bundles whose aligned ranges touch or overlap share a read;
//! - **merged at gap `g`**: also read across a gap of unneeded bytes up to `g`
//!   to save a command (Ripple's "access collapse"). The first threshold tried
//!   is the gap whose transfer costs exactly one marginal command
//!   (`command_ns / queue_depth` at the sequential bandwidth); larger ones
//!   (doubling) are tried too because the batch formula is a `max` and bytes
//!   are free while the batch is command-bound, and smaller ones (halving,
//!   down to a block) because merging at that gap can overshoot into a
//!   bandwidth-bound batch when merging less would balance the two;
//! - **dense**: the whole region in `max_transfer`-sized reads.
//!
//! Ripple's bottleneck detector (stop collapsing once bandwidth is the
//! bottleneck) falls out of the comparison: when the batch is bandwidth-bound
//! every merged plan costs more than the coalesced one and loses; the summary
//! reports [`PlanSummary::bandwidth_bound`] so a benchmark can show it.
//!
//! Every plan is computed by the same walk, first counting (no output), then
//! emitting the winner into a caller-provided slice: no heap, `O(needed)` per
//! candidate, at most [`MAX_CANDIDATES`] candidates, deterministic.

use core::fmt;

use crate::cost::CostModel;
use crate::flash::Geometry;

pub use crate::limits::MAX_CANDIDATES;

/// A layer's bundle region on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// Device offset of bundle 0 (block-aligned).
    pub offset: u64,
    /// Bytes from one bundle's start to the next (at least `bundle_bytes`).
    pub stride: u32,
    /// Bytes of one bundle.
    pub bundle_bytes: u32,
    /// Bundles in the region.
    pub count: u32,
}

impl Region {
    /// Byte range of the bundle at placement position `pos` (unchecked
    /// arithmetic is safe: validated regions fit in `u64`).
    fn bundle(&self, pos: u32) -> (u64, u64) {
        let start = self.offset + u64::from(pos) * u64::from(self.stride);
        (start, start + u64::from(self.bundle_bytes))
    }

    /// End of the last bundle.
    pub fn end(&self) -> Option<u64> {
        let body = u64::from(self.count)
            .checked_mul(u64::from(self.stride))?
            .checked_sub(u64::from(self.stride - self.bundle_bytes.min(self.stride)))?;
        self.offset.checked_add(body)
    }

    fn validate(&self, geo: &Geometry) -> Result<(), PlanError> {
        let ok = geo.block_size.is_power_of_two()
            && geo.max_transfer >= geo.block_size
            && geo.is_aligned(self.offset)
            && self.bundle_bytes > 0
            && self.stride >= self.bundle_bytes
            && self
                .end()
                .is_some_and(|e| geo.align_up(e) <= geo.capacity && e < u64::MAX / 2);
        if ok {
            Ok(())
        } else {
            Err(PlanError::BadRegion)
        }
    }
}

/// One block-aligned device read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Extent {
    /// Device offset (block-aligned).
    pub offset: u64,
    /// Length (block-aligned, at most the device's `max_transfer`).
    pub len: u32,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Which plan to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// One read per needed bundle.
    PerBundle,
    /// Touching or overlapping bundles share a read; no gap is read.
    Coalesced,
    /// Cost-based gap merging at the one-marginal-command threshold.
    Merged,
    /// The whole region.
    Dense,
    /// The cheapest of dense, per-bundle, coalesced and (when `merge`) merged
    /// plans at several gap thresholds.
    Adaptive {
        /// Whether gap merging may be used.
        merge: bool,
    },
}

/// The plan that was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Strategy {
    /// One read per needed bundle.
    PerBundle,
    /// Touching bundles shared reads.
    Coalesced,
    /// Gaps up to `max_gap` bytes were read to merge extents.
    Merged {
        /// Largest gap of unneeded bytes read.
        max_gap: u64,
    },
    /// The whole region was read.
    Dense,
    /// Nothing was needed.
    Empty,
}

/// What a plan costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PlanSummary {
    /// The plan chosen.
    pub strategy: Strategy,
    /// Read commands.
    pub commands: u32,
    /// Bytes read.
    pub bytes: u64,
    /// Predicted batch time under the cost model.
    pub cost_ns: u64,
    /// `true` when the transfer term dominates the command term.
    pub bandwidth_bound: bool,
}

impl PlanSummary {
    fn new(strategy: Strategy, commands: u32, bytes: u64, cost: &CostModel) -> Self {
        let cmd_term = u64::from(commands.saturating_sub(1)) * u64::from(cost.command_ns)
            / u64::from(cost.queue_depth.max(1));
        PlanSummary {
            strategy,
            commands,
            bytes,
            cost_ns: cost.batch_ns(u64::from(commands), bytes),
            bandwidth_bound: commands > 0 && cost.transfer_ns(bytes) >= cmd_term,
        }
    }
}

/// Why a plan could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PlanError {
    /// A needed position is not below the region's bundle count.
    NeededOutOfRange,
    /// Needed positions are not strictly increasing.
    NotSorted,
    /// The output slice holds fewer extents than the plan has.
    OutputTooSmall {
        /// Extents the chosen plan needs.
        needed: u32,
    },
    /// The region does not fit the geometry (misaligned, past capacity,
    /// stride below bundle size) or the geometry is unusable.
    BadRegion,
}

impl core::error::Error for PlanError {}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NeededOutOfRange => f.write_str("a needed bundle lies outside the region"),
            PlanError::NotSorted => f.write_str("needed bundles are not strictly increasing"),
            PlanError::OutputTooSmall { needed } => {
                write!(
                    f,
                    "the plan needs {needed} extents, more than the output holds"
                )
            }
            PlanError::BadRegion => {
                f.write_str("the bundle region does not fit the device geometry")
            }
        }
    }
}

fn dense_range(region: &Region, geo: &Geometry) -> (u64, u64) {
    let end = region.end().unwrap_or(region.offset);
    (geo.align_down(region.offset), geo.align_up(end))
}

/// The gap, in bytes, whose transfer costs one marginal command.
fn gap_for_one_command(cost: &CostModel, geo: &Geometry) -> u64 {
    let bytes =
        u128::from(cost.marginal_command_ns()) * u128::from(cost.bytes_per_sec) / 1_000_000_000;
    geo.align_down(u64::try_from(bytes).unwrap_or(u64::MAX))
}

/// The most bytes any plan of `mode` over `region` reads: the I/O buffer
/// size that can never be too small. Every mode but per-bundle reads inside
/// the region's aligned span (adaptive keeps per-bundle only when it equals
/// the coalesced plan); per-bundle reads each bundle's aligned span on its
/// own, so neighbours sharing a block read it twice.
pub fn io_bytes_bound(region: &Region, geo: &Geometry, mode: Mode) -> u64 {
    let (s, e) = dense_range(region, geo);
    match mode {
        Mode::PerBundle => {
            let b = u64::from(geo.block_size.max(1));
            let one = (u64::from(region.bundle_bytes) + b - 2) / b * b + b;
            u64::from(region.count).saturating_mul(one)
        }
        _ => e - s,
    }
}

/// The most extents any plan of `mode` over `region` emits: the output
/// slice length that can never be too short. Dense plans cut the span into
/// `max_transfer` pieces; sparse ones add at most one cut per bundle.
pub fn extents_bound(region: &Region, geo: &Geometry, mode: Mode) -> u64 {
    let (s, e) = dense_range(region, geo);
    let max = u64::from(geo.max_transfer - geo.max_transfer % geo.block_size.max(1)).max(1);
    let count = u64::from(region.count);
    match mode {
        Mode::Dense => (e - s).div_ceil(max),
        Mode::PerBundle => {
            let b = u64::from(geo.block_size.max(1));
            let one = (u64::from(region.bundle_bytes) + b - 2) / b * b + b;
            count.saturating_mul(one.div_ceil(max))
        }
        _ => (e - s).div_ceil(max).saturating_add(count),
    }
}

/// Price a plan without producing it.
pub fn estimate(
    region: &Region,
    needed: &[u32],
    geo: &Geometry,
    cost: &CostModel,
    mode: Mode,
) -> Result<PlanSummary, PlanError> {
    Ok(choose(region, needed, geo, cost, mode)?.0)
}

/// Plan the reads of `needed` (strictly increasing placement positions) in
/// `region`, write the extents into `out` in increasing offset order, and
/// return how many were written with the plan's cost. `out` needs at most
/// `needed.len() * ceil(bundle span / max_transfer)` entries for sparse plans
/// and `ceil(region / max_transfer)` for dense ones.
pub fn plan(
    region: &Region,
    needed: &[u32],
    geo: &Geometry,
    cost: &CostModel,
    mode: Mode,
    out: &mut [Extent],
) -> Result<(usize, PlanSummary), PlanError> {
    let (summary, join) = choose(region, needed, geo, cost, mode)?;
    if summary.commands as usize > out.len() {
        return Err(PlanError::OutputTooSmall {
            needed: summary.commands,
        });
    }
    let mut n = 0usize;
    let mut put = |x: Extent| {
        // Cannot fail: the count pass above sized the plan.
        let slot = out.get_mut(n).ok_or(PlanError::OutputTooSmall {
            needed: summary.commands,
        })?;
        *slot = x;
        n += 1;
        Ok(())
    };
    match join {
        None => {
            if summary.strategy == Strategy::Dense {
                let (s, e) = dense_range(region, geo);
                let max = u64::from(geo.max_transfer - geo.max_transfer % geo.block_size);
                emit_split(s, e, max, &mut put)?;
            }
        }
        Some(join) => walk(region, needed, geo, join, &mut put)?,
    }
    Ok((n, summary))
}

/// Pick the plan for `mode`; returns its summary and how to walk it (`None`
/// for dense or empty).
fn choose(
    region: &Region,
    needed: &[u32],
    geo: &Geometry,
    cost: &CostModel,
    mode: Mode,
) -> Result<(PlanSummary, Option<Join>), PlanError> {
    region.validate(geo)?;
    if needed.is_empty() {
        // Still check nothing; an empty need reads nothing in every mode.
        return Ok((PlanSummary::new(Strategy::Empty, 0, 0, cost), None));
    }
    let dense = || {
        let (s, e) = dense_range(region, geo);
        let max = u64::from(geo.max_transfer - geo.max_transfer % geo.block_size);
        let cmds = (e - s).div_ceil(max);
        PlanSummary::new(
            Strategy::Dense,
            u32::try_from(cmds).unwrap_or(u32::MAX),
            e - s,
            cost,
        )
    };
    let sparse =
        |strategy: Strategy, join: Join| -> Result<(PlanSummary, Option<Join>), PlanError> {
            let (n, bytes) = count(region, needed, geo, join)?;
            Ok((PlanSummary::new(strategy, n, bytes, cost), Some(join)))
        };
    let g1 = gap_for_one_command(cost, geo);
    match mode {
        Mode::PerBundle => sparse(Strategy::PerBundle, Join::Never),
        Mode::Coalesced => sparse(Strategy::Coalesced, Join::Gap(0)),
        Mode::Merged => sparse(Strategy::Merged { max_gap: g1 }, Join::Gap(g1)),
        Mode::Dense => {
            // Validate the needed set even though a dense read ignores it.
            count(region, needed, geo, Join::Gap(0))?;
            Ok((dense(), None))
        }
        Mode::Adaptive { merge } => {
            let mut best = sparse(Strategy::PerBundle, Join::Never)?;
            let mut consider = |c: (PlanSummary, Option<Join>)| {
                if c.0.cost_ns < best.0.cost_ns
                    || (c.0.cost_ns == best.0.cost_ns && c.0.bytes < best.0.bytes)
                {
                    best = c;
                }
            };
            consider(sparse(Strategy::Coalesced, Join::Gap(0))?);
            if merge {
                for g in gaps(g1, geo) {
                    consider(sparse(Strategy::Merged { max_gap: g }, Join::Gap(g))?);
                }
            }
            consider((dense(), None));
            Ok(best)
        }
    }
}

mod gaps;
mod walk;

use gaps::gaps;
use walk::{count, emit_split, walk, Join};

#[cfg(test)]
mod tests;
