//! Turning a GGUF llama model into a lode image laid out for streaming: the
//! library half of `lode pack`, so tests and tools build the same image.
//!
//! Everything but the FFN (embeddings, norms, attention, output head) is
//! copied as tensors, byte for byte. Each layer's FFN becomes one region of
//! neuron bundles (gate row | up row | down column) in the order the caller
//! gives, the down column re-quantized to `down` (GGUF quantizes the down
//! matrix along the neuron axis, see [`crate::bundle`]). The tokenizer goes
//! into the image's tokenizer section so the image runs on its own.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::{tokenizer_only, Gguf};
use lode_formats::image::{ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry};
use lode_formats::DType;
use lode_kernel::model::{BundleFfn, BundleTypes, LlamaConfig};

use crate::bundle::fill_layer;

/// What [`build_image`] put in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSummary {
    /// Bytes of the tensors copied as they are.
    pub tensor_bytes: u64,
    /// Bytes of the tokenizer section.
    pub tokenizer_bytes: usize,
    /// Bytes of one layer's bundles.
    pub layer_bytes: usize,
    /// The bundles' types.
    pub types: BundleTypes,
}

/// Whether a GGUF tensor belongs to the FFN (packed as bundles, not copied).
pub fn is_ffn_tensor(name: &str) -> bool {
    ["ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The image of `file` (a llama model of shape `cfg`, identified by
/// `fingerprint`): tensors, tokenizer and one bundle region per layer in the
/// order `perm_of(layer)` returns (`perm[p]` is the neuron stored at
/// position `p`). `on_layer` is called after each layer (progress).
pub fn build_image<'d>(
    file: &Gguf<'d>,
    cfg: &LlamaConfig,
    fingerprint: u64,
    down: DType,
    block_size: u32,
    mut perm_of: impl FnMut(usize) -> Vec<u32>,
    mut on_layer: impl FnMut(usize),
) -> Result<(ImageBuilder<'d>, PackSummary), String> {
    let rows = file
        .tensor("blk.0.ffn_gate.weight")
        .ok_or("the model has no blk.0.ffn_gate.weight")?
        .dtype;
    let types = BundleTypes { rows, down };
    let layer_bytes = BundleFfn::layer_bytes(cfg, types).map_err(|e| format!("{e}"))?;
    let u32_of = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| format!("model {what} {v} does not fit an image"))
    };
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").ok_or("bad architecture tag")?,
        layers: u32_of(cfg.layers, "layers")?,
        hidden: u32_of(cfg.hidden, "hidden size")?,
        ffn: u32_of(cfg.ffn, "FFN size")?,
        heads: u32_of(cfg.heads, "heads")?,
        kv_heads: u32_of(cfg.kv_heads, "KV heads")?,
        head_dim: u32_of(cfg.head_dim, "head size")?,
        vocab: u32_of(cfg.vocab, "vocabulary")?,
        context: u32_of(cfg.context, "context")?,
        rope_base: cfg.rope_base,
        rms_eps: cfg.rms_eps,
        fingerprint,
    };
    let tokenizer = tokenizer_only(file).map_err(|e| format!("tokenizer: {e}"))?;
    let tokenizer_bytes = tokenizer.len();
    let mut b = ImageBuilder::new(geometry);
    b.block_size(block_size).tokenizer_gguf(tokenizer);
    let mut tensor_bytes = 0u64;
    for t in file.tensors() {
        if is_ffn_tensor(t.name) {
            continue;
        }
        let data = file.data(&t).map_err(|e| format!("{e}"))?;
        tensor_bytes += data.len() as u64;
        b.add_tensor(t.name, t.dtype, t.dims.as_slice(), data)
            .map_err(|e| format!("{e}"))?;
    }
    let parts = BundleParts {
        gate: Some(types.rows),
        up: Some(types.rows),
        down: Some(types.down),
    };
    for l in 0..cfg.layers {
        let perm = perm_of(l);
        let mut data = vec![0u8; layer_bytes];
        fill_layer(file, cfg, types, l, Some(&perm), &mut data)
            .map_err(|e| format!("layer {l}: {e}"))?;
        b.add_layer(LayerSpec::new(parts, data, perm));
        on_layer(l);
    }
    Ok((
        b,
        PackSummary {
            tensor_bytes,
            tokenizer_bytes,
            layer_bytes,
            types,
        },
    ))
}
