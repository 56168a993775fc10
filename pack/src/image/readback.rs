//! A packed layer read back as whole bundles, whichever layout it has.
//!
//! `lode pack` measures the perplexity of the image it wrote by running
//! the model over bundles (gate row | up row | down column, the
//! [`Bundles`] layout the CPU FFN computes over). A bundled image stores
//! exactly that; a split image stores the same bytes cut apart (gate and up
//! rows in placement-ordered tensors, down columns in the bundle region).
//! Reading either back into bundles, checking every tensor and bundle
//! against its CRC on the way, lets one measurement cover both layouts and
//! look at the bytes on disk rather than at a second re-layout.

use lode_formats::image::{BundleRegion, Image};
use lode_formats::DType;
use lode_kernel::compute::Bundles;
use lode_kernel::model::stream::{config_of, FfnKind, FfnRegion, TensorAt};
use lode_kernel::model::{BundleTypes, LoadError};

use super::FfnLayout;

/// Layer `layer`'s bundle region, or a `Layout` error.
fn region(img: &Image<'_>, layer: usize) -> Result<BundleRegion, LoadError> {
    img.bundle_region(layer)
        .ok_or(LoadError::Layout("the image has no such layer"))
}

/// Layer `layer`'s FFN as the streaming runtime sees it (the same checks:
/// whole bundles, or down-only bundles with gate and up tensors).
fn ffn_region(img: &Image<'_>, layer: usize) -> Result<(BundleRegion, FfnRegion), LoadError> {
    let cfg = config_of(img)?;
    let r = region(img, layer)?;
    let f = FfnRegion::of(img, &r, &cfg, layer)?;
    Ok((r, f))
}

/// The layout and bundle types of layer `layer` of `img`: bundled when its
/// bundles hold gate, up and down; split when they hold the down column
/// alone and the image has the layer's gate and up tensors.
pub fn layer_layout(img: &Image<'_>, layer: usize) -> Result<(FfnLayout, BundleTypes), LoadError> {
    let (_, f) = ffn_region(img, layer)?;
    let layout = match f.kind {
        FfnKind::Split(_) => FfnLayout::Split,
        FfnKind::Dense(_) => FfnLayout::Dense,
        FfnKind::Bundled => FfnLayout::Bundled,
    };
    Ok((layout, f.types))
}

/// `len` bytes of `image` from `offset`, or a `Layout` error when the file
/// is shorter than that.
fn bytes_at(image: &[u8], offset: u64, len: u64) -> Result<&[u8], LoadError> {
    let start = usize::try_from(offset).ok();
    let end = start
        .zip(usize::try_from(len).ok())
        .and_then(|(s, l)| s.checked_add(l));
    start
        .zip(end)
        .and_then(|(s, e)| image.get(s..e))
        .ok_or(LoadError::Layout(
            "the image file is shorter than its tables say",
        ))
}

/// The content of bundle `pos` of region `r`, checked against its CRC.
fn bundle<'i>(
    img: &Image<'_>,
    image: &'i [u8],
    r: &BundleRegion,
    pos: u32,
) -> Result<&'i [u8], LoadError> {
    let at = r
        .bundle_offset(pos)
        .ok_or(LoadError::Layout("a bundle past the end of its region"))?;
    let b = bytes_at(image, at, u64::from(r.bundle_size))?;
    img.verify_bundle(r.layer, pos, b)
        .map_err(LoadError::Image)?;
    Ok(b)
}

/// The data of tensor `t`, checked against its CRC.
fn tensor_data<'i>(img: &Image<'_>, image: &'i [u8], t: &TensorAt) -> Result<&'i [u8], LoadError> {
    let d = bytes_at(image, t.offset, t.len as u64)?;
    img.verify_tensor(t.index, d).map_err(LoadError::Image)?;
    Ok(d)
}

/// Bytes of one row of `hidden` elements of `dtype`.
fn row_bytes(dtype: DType, hidden: u32) -> Result<usize, LoadError> {
    dtype
        .row_bytes(u64::from(hidden))
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b > 0)
        .ok_or(LoadError::Layout(
            "hidden is not whole blocks of a part's type",
        ))
}

/// Bytes of layer `layer` of `img` read back as whole bundles: the length
/// [`layer_bundles`] wants (`count` bundles of the types [`layer_layout`]
/// reports).
pub fn layer_bundles_len(img: &Image<'_>, layer: usize) -> Result<usize, LoadError> {
    let (layout, types) = layer_layout(img, layer)?;
    if layout == FfnLayout::Dense {
        return Err(LoadError::Config(
            "a dense layer has no bundles to read back (its matrices are the source's)",
        ));
    }
    let r = region(img, layer)?;
    usize::try_from(img.geometry().hidden)
        .ok()
        .and_then(|h| Bundles::bundle_bytes(types.rows, types.down, h))
        .and_then(|b| b.checked_mul(usize::try_from(r.count).ok()?))
        .ok_or(LoadError::Layout("a layer's bundles overflow"))
}

/// Writes layer `layer` of `img` into `out` as whole bundles (gate row |
/// up row | down column) in placement order: bundle `p` holds neuron
/// `perm[p]`, as a bundled image stores it. `image` is the whole image
/// file (offsets are absolute); every tensor and bundle read is checked
/// against its CRC. `out` must be [`layer_bundles_len`] bytes.
///
/// Errors: the layer is dense or its layout is not known (`Config`, `Tensor`),
/// `out` has the wrong length or the file is short (`Config`), a CRC
/// differs (`Image`).
pub fn layer_bundles(
    img: &Image<'_>,
    image: &[u8],
    layer: usize,
    out: &mut [u8],
) -> Result<(), LoadError> {
    if layer_bundles_len(img, layer)? != out.len() {
        return Err(LoadError::Config(
            "the bundle buffer is not the layer's bundles",
        ));
    }
    let (r, f) = ffn_region(img, layer)?;
    let Some(bb) = out.len().checked_div(r.count as usize) else {
        // No neurons: nothing to read.
        return Ok(());
    };
    let chunks = (0..r.count).zip(out.chunks_exact_mut(bb));
    match f.split() {
        None => {
            for (p, dst) in chunks {
                dst.copy_from_slice(bundle(img, image, &r, p)?);
            }
        }
        Some(split) => {
            let rb = row_bytes(f.types.rows, img.geometry().hidden)?;
            let gate = tensor_data(img, image, &split.gate)?;
            let up = tensor_data(img, image, &split.up)?;
            let rows = gate.chunks_exact(rb).zip(up.chunks_exact(rb));
            for ((p, dst), (g, u)) in chunks.zip(rows) {
                let short = || LoadError::Layout("a bundle's parts overrun it");
                let (dg, rest) = dst.split_at_mut_checked(rb).ok_or_else(short)?;
                let (du, dd) = rest.split_at_mut_checked(rb).ok_or_else(short)?;
                dg.copy_from_slice(g);
                du.copy_from_slice(u);
                let d = bundle(img, image, &r, p)?;
                if d.len() != dd.len() {
                    return Err(short());
                }
                dd.copy_from_slice(d);
            }
        }
    }
    Ok(())
}
