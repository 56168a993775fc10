//! How a sparse session reads its down columns: the kernel's priced rule
//! ([`estimate_column_reads`]) on the session's device, unless the caller
//! forces one way ([`SessionOptions::column_reads`]).

use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    estimate_column_reads, ColumnEstimate, ColumnReads, StreamLayout,
};

use crate::device::AnyDevice;
use crate::options::SessionOptions;

/// The choice for a session: `None` for a dense one; otherwise the price
/// (when the image has a split layer to price) and how columns are read.
/// An image with no split layer gets [`ColumnReads::Sparse`], whose plan
/// then refuses it with the fix (pack with `--layout split`).
pub(crate) fn choose(
    layout: &StreamLayout,
    dev: &AnyDevice,
    opts: &SessionOptions,
) -> Option<(Option<ColumnEstimate>, ColumnReads)> {
    if opts.sparsity <= 0.0 {
        return None;
    }
    let estimate = layout
        .ffn
        .iter()
        .find(|f| f.split().is_some())
        .and_then(|f| {
            let mut scratch = vec![0u32; f.count];
            estimate_column_reads(
                f,
                opts.sparsity,
                &dev.geometry(),
                &dev.cost_model(),
                &mut scratch,
            )
        });
    let reads = opts
        .column_reads
        .or(estimate.map(|e| e.choice))
        .unwrap_or(ColumnReads::Sparse);
    Some((estimate, reads))
}
