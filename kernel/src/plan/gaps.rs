//! Which gap thresholds the adaptive planner prices (Ripple's access
//! collapse at several strengths).

use crate::flash::Geometry;

use super::MAX_CANDIDATES;

/// The gap thresholds the adaptive planner tries, at most
/// `MAX_CANDIDATES - 3`, each a whole number of blocks: the one-command gap
/// `g1`, its halvings down to one block, then its doublings up to
/// `max_transfer` (bytes are free while a batch is command-bound; the
/// largest, nearly a dense read, are the ones the cap drops). The batch
/// cost is a `max` of the commands' time and the transfer's, so when
/// merging at `g1` turns a command-bound plan into a bandwidth-bound one,
/// the cheapest plan merges less: on a queue of one (the eMMC profile) a
/// token keeping 154 of 1,536 612-byte columns is read in 2.7 ms merging
/// gaps of one block against 3.6 ms at `g1` = 20 KiB (`plan/tests.rs`).
pub(super) fn gaps(g1: u64, geo: &Geometry) -> impl Iterator<Item = u64> {
    let block = u64::from(geo.block_size.max(1));
    let top = u64::from(geo.max_transfer).max(block);
    let g1 = g1.max(block);
    let up = core::iter::successors(Some(g1), move |&g| (g < top).then(|| g.saturating_mul(2)));
    let down = core::iter::successors(Some(g1), move |&g| {
        let h = g / 2 / block * block;
        (h >= block && h < g).then_some(h)
    })
    .skip(1);
    core::iter::once(g1)
        .chain(down)
        .chain(up.skip(1))
        .take(MAX_CANDIDATES - 3)
}
