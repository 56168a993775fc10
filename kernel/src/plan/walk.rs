//! The walk over a layer's needed bundles that every plan shares: each
//! bundle's block-aligned span, joined with its neighbours as the mode's
//! gap allows, cut into reads of at most the device's largest transfer.

use crate::flash::Geometry;

use super::{Extent, PlanError, Region};

/// How the walk joins consecutive bundles.
#[derive(Clone, Copy)]
pub(super) enum Join {
    Never,
    Gap(u64),
}

/// Walk the needed bundles and hand each finished extent to `emit`, merging
/// per `join`, never exceeding `max_transfer`.
pub(super) fn walk(
    region: &Region,
    needed: &[u32],
    geo: &Geometry,
    join: Join,
    emit: &mut impl FnMut(Extent) -> Result<(), PlanError>,
) -> Result<(), PlanError> {
    let max = u64::from(geo.max_transfer - geo.max_transfer % geo.block_size);
    let mut cur: Option<(u64, u64)> = None;
    let mut prev: Option<u32> = None;
    // End of everything emitted so far: neighbours' aligned ranges may share
    // a block, and a shared block is read once (except per-bundle, which is
    // the naive baseline and reads each bundle on its own).
    let mut done = 0u64;
    for &pos in needed {
        if pos >= region.count {
            return Err(PlanError::NeededOutOfRange);
        }
        if prev.is_some_and(|p| p >= pos) {
            return Err(PlanError::NotSorted);
        }
        prev = Some(pos);
        let (s, e) = region.bundle(pos);
        let (mut s, e) = (geo.align_down(s), geo.align_up(e));
        let gap = match join {
            Join::Never => None,
            Join::Gap(g) => {
                s = s.max(done);
                Some(g)
            }
        };
        cur = match cur {
            Some((cs, ce)) => {
                let reach = gap.map(|g| ce.saturating_add(g));
                if reach.is_some_and(|r| s.min(e) <= r) && e.max(ce) - cs <= max {
                    Some((cs, e.max(ce)))
                } else {
                    emit_split(cs, ce, max, emit)?;
                    done = ce;
                    if gap.is_some() {
                        s = s.max(done);
                    }
                    (s < e).then_some((s, e))
                }
            }
            None => (s < e).then_some((s, e)),
        };
    }
    if let Some((cs, ce)) = cur {
        emit_split(cs, ce, max, emit)?;
    }
    Ok(())
}

/// Emit `[s, e)` as reads of at most `max` bytes.
pub(super) fn emit_split(
    mut s: u64,
    e: u64,
    max: u64,
    emit: &mut impl FnMut(Extent) -> Result<(), PlanError>,
) -> Result<(), PlanError> {
    while s < e {
        let len = (e - s).min(max);
        emit(Extent {
            offset: s,
            len: len as u32,
        })?;
        s += len;
    }
    Ok(())
}

/// Reads and bytes of the plan [`walk`] makes with `join`.
pub(super) fn count(
    region: &Region,
    needed: &[u32],
    geo: &Geometry,
    join: Join,
) -> Result<(u32, u64), PlanError> {
    let (mut n, mut bytes) = (0u32, 0u64);
    walk(region, needed, geo, join, &mut |x| {
        n += 1;
        bytes += u64::from(x.len);
        Ok(())
    })?;
    Ok((n, bytes))
}
