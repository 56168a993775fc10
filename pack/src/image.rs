//! Turning a GGUF llama model into a lode image laid out for streaming: the
//! library half of `lode pack`, so tests and tools build the same image.
//!
//! Everything but the FFN (embeddings, norms, attention, output head) is
//! copied as tensors, byte for byte. Each layer's FFN is stored in the
//! neuron order the caller gives (its placement), in one of three layouts
//! ([`FfnLayout`]): one bundle per neuron (gate row | up row | down
//! column), or the gate and up matrices as tensors with their rows in
//! placement order and bundles of the down column alone; in both the down
//! column is re-quantized to `down` (GGUF quantizes the down matrix along
//! the neuron axis, see [`crate::bundle`]). The third, dense, copies the
//! three matrices as they are and has no bundles. The tokenizer goes into
//! the image's tokenizer section so the image runs on its own.
//!
//! [`readback`] turns a layer of a written image, of either layout, back
//! into whole bundles, so what an image holds can be checked and measured.

pub mod readback;
#[cfg(test)]
mod tests;

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::{tokenizer_only, Gguf};
use lode_formats::image::{ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry};
use lode_formats::DType;
use lode_kernel::model::{BundleTypes, LlamaConfig};

use crate::bundle::{fill_layer, split_layer};
use crate::finite::{check_named, check_tensor};
use crate::prune::image_name;

/// How each layer's FFN is laid out in an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum FfnLayout {
    /// One bundle per neuron: gate row | up row | down column. A dense
    /// stream reads a layer as one extent, and a neuron's three pieces sit
    /// together. It cannot serve sparse reads: choosing the neurons that
    /// fire needs every neuron's gate and up rows, which here are
    /// interleaved with the down columns, so the whole region is read
    /// anyway.
    #[default]
    Bundled,
    /// The gate and up matrices as ordinary tensors
    /// (`blk.{L}.ffn_gate.weight`, `blk.{L}.ffn_up.weight`, GGUF shape and
    /// type) whose row `p` is neuron `perm[p]`, and bundles holding only
    /// the down column. Sparse FFN streaming reads the gate and up rows of
    /// every neuron (it scores each one by |silu(gate·x)·(up·x)|), then
    /// the down columns of the firing neurons alone. Rows in placement
    /// order make activation `p` line up with down bundle `p`.
    Split,
    /// No bundles: the gate, up and down matrices copied from the source
    /// byte for byte as tensors (`blk.{L}.ffn_gate/ffn_up/ffn_down.weight`)
    /// beside an empty bundle region, neurons in the source's order. Dense
    /// streaming reads a layer whole anyway, so this is its best layout:
    /// nothing is re-quantized (the model is exactly the source's, and the
    /// layer is smaller than with a wider down type) and the FFN runs as
    /// three dense products. It cannot serve sparse reads.
    Dense,
}

impl FfnLayout {
    /// The layout's name on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            FfnLayout::Bundled => "bundled",
            FfnLayout::Split => "split",
            FfnLayout::Dense => "dense",
        }
    }

    /// The parts a bundle holds in this layout.
    pub fn parts(self, types: BundleTypes) -> BundleParts {
        match self {
            FfnLayout::Bundled => BundleParts {
                gate: Some(types.rows),
                up: Some(types.rows),
                down: Some(types.down),
            },
            // A dense layer's empty region names the down matrix's type.
            FfnLayout::Split | FfnLayout::Dense => BundleParts {
                gate: None,
                up: None,
                down: Some(types.down),
            },
        }
    }
}

/// What [`build_image`] put in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSummary {
    /// How the FFN is laid out.
    pub layout: FfnLayout,
    /// Bytes of the tensors copied from the GGUF as they are (every
    /// non-FFN tensor).
    pub tensor_bytes: u64,
    /// Bytes of the FFN stored as tensors, all layers together: the split
    /// layout's gate and up (rows reordered, not re-encoded), the dense
    /// layout's three matrices; 0 when bundled.
    pub split_tensor_bytes: u64,
    /// Bytes of the tokenizer section.
    pub tokenizer_bytes: usize,
    /// Bytes of one bundle: gate row + up row + down column when bundled,
    /// the down column alone when split.
    pub bundle_bytes: usize,
    /// Bytes of one layer's bundle region (`ffn` bundles), which is all of
    /// the layer's FFN when bundled and only its down columns when split.
    pub layer_bytes: usize,
    /// The rows' (stored) and the down columns' (re-quantized) types.
    pub types: BundleTypes,
}

/// Whether a GGUF tensor belongs to the FFN (packed by layer, not copied).
pub fn is_ffn_tensor(name: &str) -> bool {
    ["ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The image geometry of `cfg`.
fn geometry(cfg: &LlamaConfig, fingerprint: u64) -> Result<ModelGeometry, String> {
    let arch = ArchTag::new("llama").ok_or("bad architecture tag")?;
    ModelGeometry::new(arch, cfg, fingerprint).map_err(|e| format!("{e}"))
}

/// Adds source layer `src`'s FFN to `b` as image layer `l` in the split
/// layout: gate and up as tensors of their GGUF shape and type, rows in
/// `perm` order, and the down-only bundles. Returns the bytes of the two
/// tensors.
fn add_split_layer<'d>(
    b: &mut ImageBuilder<'d>,
    file: &Gguf<'d>,
    cfg: &LlamaConfig,
    types: BundleTypes,
    (src, l): (usize, usize),
    perm: Vec<u32>,
) -> Result<u64, String> {
    let s = split_layer(file, cfg, types, src, &perm).map_err(|e| format!("layer {src}: {e}"))?;
    let mut bytes = 0u64;
    for (part, rows) in [("ffn_gate", s.gate), ("ffn_up", s.up)] {
        let name = format!("blk.{src}.{part}.weight");
        let t = file
            .tensor(&name)
            .ok_or(format!("the model has no {name}"))?;
        bytes += rows.len() as u64;
        b.add_tensor(
            format!("blk.{l}.{part}.weight"),
            t.dtype,
            t.dims.as_slice(),
            rows,
        )
        .map_err(|e| format!("{e}"))?;
    }
    b.add_layer(LayerSpec::new(FfnLayout::Split.parts(types), s.down, perm));
    Ok(bytes)
}

/// Adds source layer `src`'s FFN to `b` as image layer `l` in the dense
/// layout: the three matrices copied as they are and an empty bundle
/// region. Returns their bytes.
pub(crate) fn add_dense_layer<'d>(
    b: &mut ImageBuilder<'d>,
    file: &Gguf<'d>,
    types: BundleTypes,
    (src, l): (usize, usize),
) -> Result<u64, String> {
    let mut bytes = 0u64;
    for part in ["ffn_gate", "ffn_up", "ffn_down"] {
        let name = format!("blk.{src}.{part}.weight");
        let t = file
            .tensor(&name)
            .ok_or(format!("the model has no {name}"))?;
        let data = file.data(&t).map_err(|e| format!("{e}"))?;
        bytes += data.len() as u64;
        b.add_tensor(
            format!("blk.{l}.{part}.weight"),
            t.dtype,
            t.dims.as_slice(),
            data,
        )
        .map_err(|e| format!("{e}"))?;
    }
    b.add_layer(LayerSpec::new(
        FfnLayout::Dense.parts(types),
        Vec::new(),
        Vec::new(),
    ));
    Ok(bytes)
}

/// The image of `file` (a llama model of shape `cfg`, identified by
/// `fingerprint`): tensors, tokenizer and each layer's FFN in `layout`,
/// neurons in the order `perm_of(layer)` returns (`perm[p]` is the neuron
/// stored at position `p`; it must name `cfg.ffn` neurons). The down
/// columns are re-quantized to `down`. `on_layer` is called after each
/// layer (progress). Every tensor the image gets is checked to hold only
/// finite values as it is converted ([`crate::finite`]); the error names
/// the first that does not.
#[allow(clippy::too_many_arguments)] // each is one knob of `lode pack`
pub fn build_image<'d>(
    file: &Gguf<'d>,
    cfg: &LlamaConfig,
    fingerprint: u64,
    down: DType,
    layout: FfnLayout,
    block_size: u32,
    perm_of: impl FnMut(usize) -> Vec<u32>,
    on_layer: impl FnMut(usize),
) -> Result<(ImageBuilder<'d>, PackSummary), String> {
    let all: Vec<usize> = (0..cfg.layers).collect();
    let shape = (cfg, all.as_slice());
    build_image_keeping(
        file,
        shape,
        fingerprint,
        down,
        layout,
        block_size,
        perm_of,
        on_layer,
    )
}

/// [`build_image`] of source layers `kept` alone (strictly increasing):
/// image layer `i` is source layer `kept[i]`, its tensors renamed to
/// `blk.{i}.*` ([`crate::prune`]), and the tensors of the other layers
/// left out. `cfg` is the source's shape; the image's geometry has
/// `kept.len()` layers and `fingerprint`. `perm_of` and `on_layer` are
/// called with source layers. The caller records the lineage
/// (`ImageBuilder::lineage`) when `kept` is not every layer.
#[allow(clippy::too_many_arguments)] // each is one knob of `lode pack`
pub fn build_image_keeping<'d>(
    file: &Gguf<'d>,
    (cfg, kept): (&LlamaConfig, &[usize]),
    fingerprint: u64,
    down: DType,
    layout: FfnLayout,
    block_size: u32,
    mut perm_of: impl FnMut(usize) -> Vec<u32>,
    mut on_layer: impl FnMut(usize),
) -> Result<(ImageBuilder<'d>, PackSummary), String> {
    if kept.is_empty()
        || kept.windows(2).any(|w| w[0] >= w[1])
        || kept.iter().any(|&l| l >= cfg.layers)
    {
        return Err(format!(
            "layers to keep {kept:?}: not increasing layers of the model's {}",
            cfg.layers
        ));
    }
    let rows = file
        .tensor("blk.0.ffn_gate.weight")
        .ok_or("the model has no blk.0.ffn_gate.weight")?
        .dtype;
    // A dense layer keeps the source's down matrix, whatever `down` says.
    let down = match layout {
        FfnLayout::Dense => {
            file.tensor("blk.0.ffn_down.weight")
                .ok_or("the model has no blk.0.ffn_down.weight")?
                .dtype
        }
        _ => down,
    };
    let types = BundleTypes { rows, down };
    let hidden = u32::try_from(cfg.hidden).map_err(|_| "hidden size does not fit an image")?;
    let bundle_bytes = layout
        .parts(types)
        .bundle_bytes(hidden)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or("the hidden size is not whole blocks of the bundle types")?;
    let (bundle_bytes, layer_bytes) = match layout {
        FfnLayout::Dense => (0, 0),
        _ => (
            bundle_bytes,
            bundle_bytes
                .checked_mul(cfg.ffn)
                .ok_or("a layer's bundles overflow")?,
        ),
    };
    let tokenizer = tokenizer_only(file).map_err(|e| format!("tokenizer: {e}"))?;
    let tokenizer_bytes = tokenizer.len();
    let shape = LlamaConfig {
        layers: kept.len(),
        ..*cfg
    };
    let mut b = ImageBuilder::new(geometry(&shape, fingerprint)?);
    b.block_size(block_size).tokenizer_gguf(tokenizer);
    let mut tensor_bytes = 0u64;
    for t in file.tensors() {
        if is_ffn_tensor(t.name) {
            continue;
        }
        let Some(name) = image_name(t.name, kept)? else {
            continue;
        };
        check_tensor(file, &t)?;
        let data = file.data(&t).map_err(|e| format!("{e}"))?;
        tensor_bytes += data.len() as u64;
        b.add_tensor(name, t.dtype, t.dims.as_slice(), data)
            .map_err(|e| format!("{e}"))?;
    }
    let mut split_tensor_bytes = 0u64;
    for (at, &l) in kept.iter().enumerate() {
        let perm = perm_of(l);
        if perm.len() != cfg.ffn {
            return Err(format!(
                "layer {l}: a placement of {} neurons for an FFN of {}",
                perm.len(),
                cfg.ffn
            ));
        }
        for part in ["ffn_gate", "ffn_up", "ffn_down"] {
            check_named(file, &format!("blk.{l}.{part}.weight"))?;
        }
        match layout {
            FfnLayout::Bundled => {
                let mut data = vec![0u8; layer_bytes];
                fill_layer(file, cfg, types, l, Some(&perm), &mut data)
                    .map_err(|e| format!("layer {l}: {e}"))?;
                b.add_layer(LayerSpec::new(layout.parts(types), data, perm));
            }
            FfnLayout::Split => {
                split_tensor_bytes += add_split_layer(&mut b, file, cfg, types, (l, at), perm)?;
            }
            FfnLayout::Dense => {
                if perm.iter().enumerate().any(|(p, &n)| p as u32 != n) {
                    return Err(format!(
                        "layer {l}: the dense layout keeps the model's neuron order; \
                         it takes the identity placement only"
                    ));
                }
                split_tensor_bytes += add_dense_layer(&mut b, file, types, (l, at))?;
            }
        }
        on_layer(l);
    }
    Ok((
        b,
        PackSummary {
            layout,
            tensor_bytes,
            split_tensor_bytes,
            tokenizer_bytes,
            bundle_bytes,
            layer_bytes,
            types,
        },
    ))
}
