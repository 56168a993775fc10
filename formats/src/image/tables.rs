//! Decoding and checking the metadata tables: geometry, cost model, tensors,
//! bundle regions and placements.
//!
//! Each `decode_*` turns one raw record into its typed view or says what is
//! wrong with it; the reader runs them all once when an image is opened, and
//! the accessors reuse them afterwards (where they then cannot fail).

use zerocopy::little_endian::U32;

use crate::DType;

use super::codec::{tensor_dtype, TensorCodec, CODED_UNIT_MIN};
pub(crate) use super::data_cursor::DataCursor;
use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::layout::{
    CostRecord, GeometryRecord, LayerRecord, TensorRecord, CODEC_RAW, MAX_DIMS, MAX_NAME_LEN,
    MINOR_ARCH, PART_ABSENT,
};
use super::model::TensorInfo;
use super::model::{ArchTag, BundleParts, BundleRegion, ModelGeometry, Shape, StoredCostModel};

/// Decode and check the geometry section.
pub(crate) fn decode_geometry(rec: &GeometryRecord) -> Result<ModelGeometry, ImageError> {
    let at = Location::Section(SectionKind::Geometry);
    let arch = ArchTag::from_field(&rec.arch).ok_or(err(
        ErrorKind::Malformed,
        at,
        "architecture tag is not printable ASCII padded with zeros",
    ))?;
    let rope_base = rec.rope_base.get();
    let rms_eps = rec.rms_eps.get();
    let positive = |x: f32| x.is_finite() && x > 0.0;
    if !positive(rope_base) || !positive(rms_eps) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "rope base and rms eps must be finite and positive",
        ));
    }
    if rec.hidden.get() == 0 {
        return Err(err(ErrorKind::Malformed, at, "hidden width is zero"));
    }
    Ok(ModelGeometry {
        arch,
        layers: rec.layers.get(),
        hidden: rec.hidden.get(),
        ffn: rec.ffn.get(),
        heads: rec.heads.get(),
        kv_heads: rec.kv_heads.get(),
        head_dim: rec.head_dim.get(),
        vocab: rec.vocab.get(),
        context: rec.context.get(),
        rope_base,
        rms_eps,
        fingerprint: rec.fingerprint.get(),
    })
}

/// Decode and check the cost-model section.
pub(crate) fn decode_cost(rec: &CostRecord) -> Result<Option<StoredCostModel>, ImageError> {
    let at = Location::Section(SectionKind::CostModel);
    if rec.reserved.iter().any(|&b| b != 0) {
        return Err(err(ErrorKind::Malformed, at, "reserved bytes are set"));
    }
    let model = StoredCostModel {
        command_ns: rec.command_ns.get(),
        bytes_per_sec: rec.bytes_per_sec.get(),
        queue_depth: rec.queue_depth.get(),
    };
    match rec.present.get() {
        0 if model.command_ns == 0 && model.bytes_per_sec == 0 && model.queue_depth == 0 => {
            Ok(None)
        }
        0 => Err(err(
            ErrorKind::Malformed,
            at,
            "absent model has non-zero fields",
        )),
        1 if model.bytes_per_sec > 0 && model.queue_depth > 0 => Ok(Some(model)),
        1 => Err(err(
            ErrorKind::Malformed,
            at,
            "bandwidth and queue depth must be at least 1",
        )),
        _ => Err(err(
            ErrorKind::Malformed,
            at,
            "present flag is neither 0 nor 1",
        )),
    }
}

/// The name bytes of a tensor record, checked against the string section.
fn name_bytes<'a>(
    rec: &TensorRecord,
    strings: &'a [u8],
    at: Location,
) -> Result<&'a [u8], ImageError> {
    let len = rec.name_len.get();
    if len == 0 || len > MAX_NAME_LEN {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "name is empty or longer than 1024 bytes",
        ));
    }
    let start = rec.name_offset.get() as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| strings.get(start..end))
        .ok_or(err(
            ErrorKind::OutOfRange,
            at,
            "name lies outside the string section",
        ))
}

/// Decode and check tensor `index` (everything but its data placement).
pub(crate) fn decode_tensor<'a>(
    index: usize,
    rec: &TensorRecord,
    strings: &'a [u8],
    minor: u16,
) -> Result<TensorInfo<'a>, ImageError> {
    let at = Location::Tensor(index);
    let name = core::str::from_utf8(name_bytes(rec, strings, at)?)
        .map_err(|_| err(ErrorKind::Malformed, at, "name is not UTF-8"))?;
    let (dtype, codec) = tensor_dtype(rec.dtype.get(), minor, at)?;
    let n_dims = rec.n_dims.get() as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "dimension count is not 1..=4",
        ));
    }
    let mut dims = [0u64; MAX_DIMS];
    for (d, stored) in dims.iter_mut().zip(rec.dims.iter()) {
        *d = stored.get();
    }
    let (used, unused) = dims.split_at(n_dims);
    if !unused.iter().all(|&d| d == 0) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "unused dimensions are not zero",
        ));
    }
    let shape = Shape::new(used).ok_or(err(ErrorKind::Malformed, at, "a dimension is zero"))?;
    if rec.reserved.get() != 0 {
        return Err(err(ErrorKind::Malformed, at, "reserved field is set"));
    }
    let length = rec.length.get();
    let decoded = shape.byte_len(dtype);
    let fits = match codec {
        TensorCodec::Raw => decoded == Some(length),
        // A unit holds at least its 20-byte header; what it decodes to is
        // checked against the shape when its bytes are read.
        TensorCodec::Weights | TensorCodec::Chain | TensorCodec::ChainV2 => {
            decoded.is_some() && length >= CODED_UNIT_MIN
        }
    };
    if !fits {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "length does not match dtype and shape",
        ));
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        offset: rec.offset.get(),
        length,
        crc: rec.crc.get(),
        codec,
    })
}

fn decode_part(code: u32, at: Location, minor: u16) -> Result<Option<DType>, ImageError> {
    if code == PART_ABSENT {
        return Ok(None);
    }
    image_dtype(code, minor).map(Some).ok_or(err(
        ErrorKind::Malformed,
        at,
        "bundle part dtype code unknown in this image's version",
    ))
}

/// Whether images of minor version `minor` define element type `dtype`
/// (FORMAT.md's table): the 1.0 types always, GGUF's Q5_0, Q4_K and Q6_K
/// from 1.3 on. A reader refuses a code its image's version does not
/// define rather than guess, so an older reader refuses a 1.3 image that
/// holds K-quants instead of misreading it.
pub const fn in_image(dtype: DType, minor: u16) -> bool {
    match dtype {
        // Every minor, MINOR_BASE on.
        DType::F32 | DType::F16 | DType::Q4_0 | DType::Q4_1 | DType::Q5_1 | DType::Q8_0 => true,
        DType::Q5_0 | DType::Q4_K | DType::Q6_K => minor >= MINOR_ARCH,
    }
}

/// The lowest minor version whose images define `dtype`, if any does.
#[cfg(feature = "std")]
pub(crate) const fn minor_for(dtype: DType) -> Option<u16> {
    use super::layout::MINOR_BASE;
    if in_image(dtype, MINOR_BASE) {
        Some(MINOR_BASE)
    } else if in_image(dtype, MINOR_ARCH) {
        Some(MINOR_ARCH)
    } else {
        None
    }
}

/// The element type of `code`, if images of minor `minor` define it.
pub(crate) fn image_dtype(code: u32, minor: u16) -> Option<DType> {
    match DType::from_code(code) {
        Some(d) if in_image(d, minor) => Some(d),
        _ => None,
    }
}

/// Decode and check layer `layer`'s region record (not its placement in the
/// file or its per-bundle entries).
pub(crate) fn decode_layer(
    layer: usize,
    rec: &LayerRecord,
    hidden: u32,
    minor: u16,
) -> Result<BundleRegion, ImageError> {
    let at = Location::Layer(layer);
    let [gate, up, down] = rec.parts;
    let parts = BundleParts {
        gate: decode_part(gate.get(), at, minor)?,
        up: decode_part(up.get(), at, minor)?,
        down: decode_part(down.get(), at, minor)?,
    };
    let bundle_size = rec.bundle_size.get();
    let any_part = parts.in_order().iter().any(Option::is_some);
    let want = match parts.bundle_bytes(hidden) {
        Some(b) => Some(b),
        // Since 1.3 an empty (dense) region may name a down type whose row
        // of `hidden` is not whole blocks (Gemma's K-quants); it has no
        // bundles, so no bundle size.
        None if minor >= MINOR_ARCH && rec.count.get() == 0 && any_part => Some(0),
        None => None,
    };
    if want != Some(bundle_size) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "bundle size is not the sum of its parts' rows",
        ));
    }
    let stride = rec.stride.get();
    if stride < bundle_size {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "stride is smaller than a bundle",
        ));
    }
    let count = rec.count.get();
    let length = rec.length.get();
    if u64::from(count).checked_mul(u64::from(stride)) != Some(length) {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "length is not count times stride",
        ));
    }
    Ok(BundleRegion {
        layer,
        offset: rec.offset.get(),
        length,
        count,
        bundle_size,
        stride,
        parts,
        first_bundle: rec.first_bundle.get(),
    })
}

/// Check that `perm` and `inverse` are mutually inverse permutations of
/// `0..perm.len()`.
///
/// `inverse[perm[i]] == i` for every `i` is enough: it makes `perm`
/// injective, hence a bijection of `0..n`, which determines `inverse`
/// everywhere. Linear time and no scratch memory.
pub(crate) fn check_permutation(
    perm: &[U32],
    inverse: &[U32],
    at: Location,
) -> Result<(), ImageError> {
    if perm.len() != inverse.len() {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "permutation and inverse differ in length",
        ));
    }
    for (pos, neuron) in perm.iter().enumerate() {
        let Some(back) = inverse.get(neuron.get() as usize) else {
            return Err(err(
                ErrorKind::Malformed,
                at,
                "placement names a neuron out of range",
            ));
        };
        if back.get() as usize != pos {
            return Err(err(
                ErrorKind::Malformed,
                at,
                "placement is not a permutation or its inverse does not match",
            ));
        }
    }
    Ok(())
}

/// Check that every bundle of layer `layer` (its codec tags by position)
/// is stored raw, the only encoding this version defines.
///
/// A bundle in an unknown encoding would otherwise be read as raw weights
/// and silently give wrong results, so the whole image is refused when it
/// is opened, naming the first such bundle, rather than when the bundle is
/// first read in the middle of a generation.
pub(crate) fn check_codecs(tags: &[u8], layer: usize) -> Result<(), ImageError> {
    let Some(pos) = tags.iter().position(|&tag| tag != CODEC_RAW) else {
        return Ok(());
    };
    Err(err(
        ErrorKind::UnsupportedCodec,
        Location::Bundle {
            layer,
            // A layer holds at most 2^32 - 1 bundles, so this always fits.
            pos: u32::try_from(pos).unwrap_or(u32::MAX),
        },
        "codec tag is not 0 (raw), the only codec this reader decodes",
    ))
}

#[cfg(test)]
mod tests;
