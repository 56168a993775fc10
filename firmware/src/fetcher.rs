//! The fetch phase: for each token of the trace and each layer, the firing
//! neurons' bundles through the kernel's cost-model planner and an S3-FIFO
//! neuron cache, each checked against its CRC32C where the fetch left it.

use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, Slot};
use lode_kernel::cache::{NeuronCache, S3Fifo};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchIo, FetchScratch};
use lode_kernel::formats::image::Image;
use lode_kernel::formats::trace::Trace;
use lode_kernel::plan::{Extent, Mode, Region, Strategy};

use crate::error::Error;
use crate::report::Fnv;
use crate::rom::RomFlash;
use crate::{MAX_EXTENTS, MAX_NEURONS, SLOTS};

/// Totals of the fetch phase.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) needed: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) dense_layers: u64,
    pub(crate) bytes_needed: u64,
}

/// The fetch scratch, on the stack.
pub(crate) struct Scratch {
    pub(crate) positions: [u32; MAX_NEURONS],
    pub(crate) missing: [u32; MAX_NEURONS],
    pub(crate) extents: [Extent; MAX_EXTENTS],
    pub(crate) locs: [BundleLoc; MAX_NEURONS],
}

/// Where the fetch phase reads from and keeps its state.
pub(crate) struct Fetcher<'i, 'd, 'a, 'm> {
    pub(crate) img: &'i Image<'m>,
    pub(crate) trace: &'i Trace<'i>,
    pub(crate) dev: &'i mut RomFlash<'d>,
    pub(crate) arena: &'i mut SliceArena<'a, SLOTS>,
    pub(crate) cache: &'i mut NeuronCache<S3Fifo>,
    pub(crate) io: Slot,
    pub(crate) sum: Fnv,
    pub(crate) totals: Totals,
}

impl Fetcher<'_, '_, '_, '_> {
    /// Fetch the bundles of the neurons that fire at `token` in `layer`,
    /// check each against its CRC32C where the fetch left it, and add its
    /// bytes to the checksum. Returns (needed, hits).
    pub(crate) fn layer(
        &mut self,
        s: &mut Scratch,
        token: u32,
        layer: usize,
    ) -> Result<(u32, u32), Error> {
        let r = self
            .img
            .bundle_region(layer)
            .ok_or(Error::Config("layer out of range"))?;
        let placement = self
            .img
            .placement(layer)
            .ok_or(Error::Config("layer out of range"))?;
        // The firing neurons' placement positions, in increasing order.
        let mut m = 0usize;
        for n in self.trace.active(token, layer as u32)?.iter() {
            let p = placement
                .position_of(n)
                .ok_or(Error::Config("a traced neuron is not in the image"))?;
            *s.positions
                .get_mut(m)
                .ok_or(Error::Config("more firing neurons than the scratch"))? = p;
            m += 1;
        }
        let positions = &mut s.positions[..m];
        positions.sort_unstable();
        let mut scratch = FetchScratch {
            missing: &mut s.missing,
            extents: &mut s.extents,
            locs: &mut s.locs,
        };
        let key_base =
            u32::try_from(r.first_bundle).map_err(|_| Error::Config("too many bundles"))?;
        let got = fetch_layer(
            self.dev,
            self.arena,
            Some(self.cache),
            &region_of(&r),
            key_base,
            positions,
            token,
            MODE,
            FetchIo::unchecked(self.io),
            &mut scratch,
        )
        .map_err(|err| Error::Fetch { token, layer, err })?;
        let size = r.bundle_size as usize;
        for (&pos, loc) in positions.iter().zip(scratch.locs.iter()) {
            let bytes = match *loc {
                BundleLoc::Cache(slot) => self.cache.bundle(self.arena, slot)?,
                BundleLoc::Io(at) => self
                    .arena
                    .bytes(self.io)?
                    .get(at..at.saturating_add(size))
                    .ok_or(Error::Config("a bundle lies past the I/O buffer"))?,
                BundleLoc::Nowhere => return Err(Error::Config("a bundle was not fetched")),
            };
            self.img
                .verify_bundle(layer, pos, bytes)
                .map_err(|err| Error::Bundle { token, layer, err })?;
            self.sum.update(bytes);
        }
        let t = &mut self.totals;
        t.needed += m as u64;
        t.hits += u64::from(got.hits);
        t.misses += u64::from(got.misses);
        t.bytes_needed += got.needed_bytes;
        t.dense_layers += u64::from(got.plan.strategy == Strategy::Dense);
        Ok((m as u32, got.hits))
    }
}

/// The read planner's mode: the cheapest of per-bundle, coalesced, merged
/// and dense reads under the device's cost model.
pub(crate) const MODE: Mode = Mode::Adaptive { merge: true };

/// The planner's view of a layer's bundle region.
pub(crate) fn region_of(r: &lode_kernel::formats::image::BundleRegion) -> Region {
    Region {
        offset: r.offset,
        stride: r.stride,
        bundle_bytes: r.bundle_size,
        count: r.count,
    }
}
