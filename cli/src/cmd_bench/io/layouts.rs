//! Where `lode bench io` puts the bundle regions it replays against:
//! back to back on block boundaries for a synthetic device, or read from an
//! image's metadata prefix.

use std::error::Error;
use std::path::Path;

use lode_formats::image::{read_prefix, Image};
use lode_formats::input::Input;
use lode_kernel::plan::Region;

use super::super::replay::Layout;

/// Lay out `layers` regions of `neurons` bundles back to back, each starting
/// on a block boundary.
pub(super) fn contiguous_layout(
    layers: u32,
    neurons: u32,
    bundle_bytes: u32,
    block: u32,
) -> Layout {
    let mut offset = 0u64;
    let regions = (0..layers)
        .map(|_| {
            let r = Region {
                offset,
                stride: bundle_bytes,
                bundle_bytes,
                count: neurons,
            };
            let end = offset + u64::from(neurons) * u64::from(bundle_bytes);
            offset = end.div_ceil(u64::from(block)) * u64::from(block);
            r
        })
        .collect();
    Layout { regions, neurons }
}

/// The bundle regions of the image at `path`, from its metadata prefix
/// alone (bounded by `MAX_PREFIX`; the data is not read).
pub(super) fn image_layout(
    path: &Path,
    layers: u32,
    neurons: u32,
) -> Result<Layout, Box<dyn Error>> {
    let input = Input::open(path)?;
    let prefix = read_prefix(&mut input.file()).map_err(|e| format!("{}: {e}", path.display()))?;
    let img = Image::parse(&prefix).map_err(|e| format!("{}: {e}", path.display()))?;
    if img.layer_count() != layers as usize {
        return Err(format!(
            "{} has {} bundle layers but the trace has {layers}",
            path.display(),
            img.layer_count()
        )
        .into());
    }
    let mut regions = Vec::new();
    for l in 0..img.layer_count() {
        let r = img.bundle_region(l).ok_or("image layer missing")?;
        if r.count != neurons {
            return Err(format!(
                "{} layer {l} has {} bundles but the trace has {neurons} neurons",
                path.display(),
                r.count
            )
            .into());
        }
        regions.push(Region {
            offset: r.offset,
            stride: r.stride,
            bundle_bytes: r.bundle_size,
            count: r.count,
        });
    }
    Ok(Layout { regions, neurons })
}
