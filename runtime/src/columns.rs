//! How a sparse session reads its down columns: the kernel's priced rule
//! ([`estimate_column_reads`]) on the session's device, unless the caller
//! forces one way ([`SessionOptions::column_reads`]); and the buffers
//! per-token reads borrow ([`OwnedScratch`]).

use lode_kernel::fetch::BundleLoc;
use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    estimate_column_reads, ColumnEstimate, ColumnReads, SparseBuffers, SparseScratch, StreamLayout,
};
use lode_kernel::plan::Extent;

use crate::device::AnyDevice;
use crate::options::SessionOptions;

/// The choice for a session: `None` for a dense one; otherwise the price
/// (when the image has a split layer to price) and how columns are read.
/// An image with no split layer gets [`ColumnReads::Sparse`], whose plan
/// then refuses it with the fix (pack with `--layout split`).
///
/// `block` is the block the run's reads are whole multiples of (the check
/// block when reads are checked), as the per-token fetch plans them.
pub(crate) fn choose(
    layout: &StreamLayout,
    dev: &AnyDevice,
    block: usize,
    opts: &SessionOptions,
) -> Option<(Option<ColumnEstimate>, ColumnReads)> {
    if opts.sparsity <= 0.0 {
        return None;
    }
    let mut geo = dev.geometry();
    geo.block_size = geo.block_size.max(u32::try_from(block).unwrap_or(u32::MAX));
    geo.max_transfer = geo.max_transfer.max(geo.block_size);
    let split = layout.ffn.iter().find(|f| f.split().is_some());
    let estimate = split.and_then(|f| {
        let mut scratch = vec![0u32; f.count];
        estimate_column_reads(f, opts.sparsity, &geo, &dev.cost_model(), &mut scratch)
    });
    let reads = opts
        .column_reads
        .or(estimate.map(|e| e.choice))
        .unwrap_or(ColumnReads::Sparse);
    Some((estimate, reads))
}

/// The sparse path's buffers, owned by the session (sized by
/// [`SparseScratch::lens`]; empty for a dense run).
#[derive(Debug, Default)]
pub struct OwnedScratch {
    positions: Vec<u32>,
    missing: Vec<u32>,
    locs: Vec<BundleLoc>,
    extents: Vec<Extent>,
}

impl OwnedScratch {
    /// The buffers a sparse run over `layout` lends its fetches on a device
    /// of `block`-byte blocks and `max_transfer`-byte reads (none for a
    /// dense run).
    pub(crate) fn new(layout: &StreamLayout, dev: &AnyDevice, sparse: bool) -> OwnedScratch {
        if !sparse {
            return OwnedScratch::default();
        }
        let g = dev.geometry();
        let (n, n_ext) =
            SparseScratch::lens(layout, g.block_size as usize, g.max_transfer as usize);
        OwnedScratch {
            positions: vec![0; n],
            missing: vec![0; n],
            locs: vec![BundleLoc::default(); n],
            extents: vec![Extent::default(); n_ext],
        }
    }

    /// Bytes these buffers hold (what they take of the budget).
    pub(crate) fn bytes(&self) -> usize {
        self.positions.len() * size_of::<u32>()
            + self.missing.len() * size_of::<u32>()
            + self.locs.len() * size_of::<BundleLoc>()
            + self.extents.len() * size_of::<Extent>()
    }
}

impl SparseBuffers for OwnedScratch {
    fn lend(&mut self) -> SparseScratch<'_> {
        SparseScratch {
            positions: &mut self.positions,
            missing: &mut self.missing,
            locs: &mut self.locs,
            extents: &mut self.extents,
        }
    }
}
