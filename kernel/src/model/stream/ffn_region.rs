//! Finding a layer's FFN in an image: whole gate|up|down bundles,
//! down-only bundles with the gate and up tensors beside them (the split
//! layout), or the three matrices as tensors (the dense layout), each
//! checked against the model's shape.

use lode_formats::image::{BundleRegion, Image};

use crate::model::config::LlamaConfig;
use crate::model::error::LoadError;
use crate::model::BundleTypes;

use super::layout::{
    end_of, find, find_any, DenseMatrices, FfnKind, FfnRegion, SplitRows, TensorAt,
};

impl FfnRegion {
    /// Layer `layer`'s FFN in `img` (bundle region `r`), checked against
    /// `cfg`: whole gate|up|down bundles, down-only bundles with the
    /// layer's gate and up tensors beside them (the split layout), or no
    /// bundles and the three matrices as tensors (the dense layout).
    pub fn of(
        img: &Image<'_>,
        r: &BundleRegion,
        cfg: &LlamaConfig,
        layer: usize,
    ) -> Result<FfnRegion, LoadError> {
        region(img, r, cfg, layer)
    }
}

pub(super) fn region(
    img: &Image<'_>,
    r: &BundleRegion,
    cfg: &LlamaConfig,
    layer: usize,
) -> Result<FfnRegion, LoadError> {
    let bad = |why| Err(LoadError::Layout(why));
    let p = r.parts;
    if r.count == 0 && r.length == 0 {
        return dense_region(img, cfg, layer);
    }
    if r.count as usize != cfg.ffn {
        return bad("a bundle region's neuron count differs from the model's FFN size");
    }
    if r.stride != r.bundle_size {
        return bad("padded bundles (stride larger than the bundle) cannot be streamed");
    }
    let (types, split) = match (p.gate, p.up, p.down) {
        (Some(gate), Some(up), Some(down)) => {
            if gate != up {
                return bad("gate and up rows of a bundle must share a type");
            }
            (BundleTypes { rows: gate, down }, None)
        }
        (None, None, Some(down)) => {
            let name = |suffix: &str| lode_formats::gguf::layer_tensor_name(layer as u32, suffix);
            let gate = find(img, name("ffn_gate.weight")?.as_str(), cfg.ffn, cfg.hidden)?;
            let up = find(img, name("ffn_up.weight")?.as_str(), cfg.ffn, cfg.hidden)?;
            if gate.dtype != up.dtype {
                return bad("gate and up rows of a split layer must share a type");
            }
            let start = gate.offset.min(up.offset);
            let end = end_of(&gate).max(end_of(&up));
            let len = usize::try_from(end - start)
                .map_err(|_| LoadError::Layout("a split layer's rows are too large"))?;
            // The span also reads what lies between the two tensors.
            if len > (gate.len + up.len).saturating_add(64 * 1024) {
                return bad(
                    "a split layer's gate and up tensors are not stored next to each other",
                );
            }
            let rows = SplitRows {
                start,
                len,
                gate,
                up,
            };
            (
                BundleTypes {
                    rows: gate.dtype,
                    down,
                },
                Some(rows),
            )
        }
        _ => return bad("a bundle region holds neither whole bundles nor down columns only"),
    };
    let bundle = match split {
        Some(_) => crate::model::tensor::row_bytes(types.down, cfg.hidden),
        None => crate::compute::Bundles::bundle_bytes(types.rows, types.down, cfg.hidden),
    }
    .ok_or(LoadError::Layout(
        "hidden is not whole blocks of the bundle types",
    ))?;
    let len = bundle
        .checked_mul(cfg.ffn)
        .ok_or(LoadError::Layout("FFN bundles overflow"))?;
    if len as u64 != r.length || bundle != r.bundle_size as usize {
        return bad("a bundle region's length does not match its bundles");
    }
    Ok(FfnRegion {
        offset: r.offset,
        len,
        count: r.count as usize,
        bundle,
        types,
        kind: split.map_or(FfnKind::Bundled, FfnKind::Split),
    })
}

/// A dense layer: an empty bundle region and the layer's `ffn_gate`,
/// `ffn_up` and `ffn_down` tensors, stored next to each other. When any of
/// them is coded, the region is laid out as its slot holds it decoded
/// ([`decoded_layout`]).
fn dense_region(img: &Image<'_>, cfg: &LlamaConfig, layer: usize) -> Result<FfnRegion, LoadError> {
    let name = |suffix: &str| lode_formats::gguf::layer_tensor_name(layer as u32, suffix);
    let gate = find_any(img, name("ffn_gate.weight")?.as_str(), cfg.ffn, cfg.hidden)?;
    let up = find_any(img, name("ffn_up.weight")?.as_str(), cfg.ffn, cfg.hidden)?;
    let down = find_any(img, name("ffn_down.weight")?.as_str(), cfg.hidden, cfg.ffn)?;
    if gate.dtype != up.dtype {
        return Err(LoadError::Layout(
            "gate and up rows of a dense layer must share a type",
        ));
    }
    let mut all = [gate, up, down];
    let start = all.iter().map(|t| t.device().0).min().unwrap_or(0);
    let end = all
        .iter()
        .map(|t| {
            let (at, len) = t.device();
            at.saturating_add(len as u64)
        })
        .max()
        .unwrap_or(0);
    let span = usize::try_from(end - start)
        .map_err(|_| LoadError::Layout("a dense layer's matrices are too large"))?;
    // The span also reads what lies between the tensors (the FFN norm).
    let sum: usize = all.iter().map(|t| t.device().1).sum();
    if span > sum.saturating_add(64 * 1024) {
        return Err(LoadError::Layout(
            "a dense layer's FFN tensors are not stored next to each other",
        ));
    }
    let len = if all.iter().any(|t| t.stored.is_some()) {
        decoded_layout(&mut all, start, img.header().block_size as usize)
    } else {
        span
    };
    let [gate, up, down] = all;
    Ok(FfnRegion {
        offset: start,
        len,
        count: cfg.ffn,
        bundle: 0,
        types: BundleTypes {
            rows: gate.dtype,
            down: down.dtype,
        },
        kind: FfnKind::Dense(DenseMatrices { gate, up, down }),
    })
}

/// Lays a dense region with coded matrices out as a resident slot holds it
/// decoded: the matrices in device order from `start`, each at a multiple
/// of `block` (as a raw image places them, without what lies between).
/// Sets each matrix's `offset` to its place and returns the region's
/// decoded bytes. Its device extent stays `start` to the last unit's end.
fn decoded_layout(all: &mut [TensorAt; 3], start: u64, block: usize) -> usize {
    let mut order = [0usize, 1, 2];
    order.sort_unstable_by_key(|&i| all[i].device().0);
    let mut at = 0usize;
    let mut end = 0usize;
    for i in order {
        all[i].offset = start + at as u64;
        end = at + all[i].len;
        at = end.div_ceil(block.max(1)) * block.max(1);
    }
    end
}
