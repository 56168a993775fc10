//! A Gemma 3 GGUF into a lode image (format 1.3): the library half of
//! `lode pack` for the second architecture lode runs.
//!
//! Gemma images are dense only. Their FFN matrices are K-quants quantized
//! along the neuron axis for down (as GGUF stores them), and lode's
//! bundled and split kernels gate with SiLU where Gemma gates with GELU, so
//! the three matrices are copied as they are (dense streaming reads a
//! layer whole anyway). What differs from llama's image, besides the
//! `gemma3` tag:
//!
//! - the architecture section: the sliding window, the period of global
//!   layers and the local RoPE base;
//! - Q and K rows, and the elements of their per-head norms, moved from
//!   the GGUF's NEOX order into the adjacent-pair order lode's RoPE
//!   rotates ([`neox_to_adjacent`]), so a streamed read is used as read;
//! - each layer's down type in its (empty) bundle region, Q4_K or Q6_K
//!   layer by layer as the GGUF mixes them.
//!
//! Every tensor is checked to hold only finite values as it is copied.

use std::borrow::Cow;
use std::format;
use std::string::String;
use std::vec::Vec;

use lode_formats::gguf::{tokenizer_only, Gguf, TensorInfo};
use lode_formats::image::{ArchParams, ArchTag, ImageBuilder, ModelGeometry, SLIDING_WINDOW_ARCH};
use lode_formats::DType;
use lode_kernel::model::{neox_to_adjacent, BundleTypes, Gemma3, LlamaConfig};

use crate::finite::check_tensor;
use crate::image::{add_dense_layer, is_ffn_tensor, FfnLayout, PackSummary};

/// Whether tensor `name` is stored in RoPE order per head, and the bytes
/// of the piece that moves as a whole: a Q or K matrix's rows, a per-head
/// norm's f32 elements.
fn per_head(name: &str) -> Option<PieceKind> {
    if name.ends_with(".attn_q.weight") || name.ends_with(".attn_k.weight") {
        Some(PieceKind::Rows)
    } else if name.ends_with(".attn_q_norm.weight") || name.ends_with(".attn_k_norm.weight") {
        Some(PieceKind::Elements)
    } else {
        None
    }
}

enum PieceKind {
    Rows,
    Elements,
}

/// `t`'s data as the image stores it: reordered into adjacent pairs when
/// it is per head, else as it is.
fn stored<'d>(
    file: &Gguf<'d>,
    t: &TensorInfo<'d>,
    head_dim: usize,
) -> Result<Cow<'d, [u8]>, String> {
    let data = file.data(t).map_err(|e| format!("{e}"))?;
    let Some(kind) = per_head(t.name) else {
        return Ok(Cow::Borrowed(data));
    };
    let piece = match kind {
        PieceKind::Rows => usize::try_from(t.row_bytes()).map_err(|e| format!("{e}"))?,
        PieceKind::Elements if t.dtype == DType::F32 => 4,
        PieceKind::Elements => {
            return Err(format!(
                "{}: a per-head norm must be f32 to be reordered, not {}",
                t.name,
                t.dtype.name()
            ))
        }
    };
    let mut out = data.to_vec();
    if !neox_to_adjacent(&mut out, piece, head_dim) {
        return Err(format!(
            "{}: not whole heads of {head_dim} (cannot reorder for RoPE)",
            t.name
        ));
    }
    Ok(Cow::Owned(out))
}

/// The image of `file`, a Gemma 3 model of shape `cfg` and attention
/// `arch` identified by `fingerprint`: every tensor, the FFN in the dense
/// layout, the tokenizer and the architecture section. `on_tensor` is
/// called after each of the GGUF's tensors is copied (progress: as many
/// calls as the file has tensors).
///
/// With `head`, the image also holds `output.weight` of that type and
/// those bytes ([`crate::head::requantize_head`]): an untied head, which a
/// streamed token reads instead of the Q8_0 embedding table.
pub fn build_gemma_image<'d>(
    file: &Gguf<'d>,
    (cfg, arch): (&LlamaConfig, &Gemma3),
    fingerprint: u64,
    (block_size, head): (u32, Option<(DType, Vec<u8>)>),
    mut on_tensor: impl FnMut(),
) -> Result<(ImageBuilder<'d>, PackSummary), String> {
    if head.is_some() && file.tensor("output.weight").is_some() {
        return Err(
            "the model has its own output head; --head re-quantizes a head tied to the embedding"
                .into(),
        );
    }
    let tag = ArchTag::new(SLIDING_WINDOW_ARCH).ok_or("bad architecture tag")?;
    let geometry = ModelGeometry::new(tag, cfg, fingerprint).map_err(|e| format!("{e}"))?;
    let window = u32::try_from(arch.window).map_err(|_| "the sliding window is too wide")?;
    let period = u32::try_from(arch.swa_period).map_err(|_| "the layer period is too long")?;
    let tokenizer = tokenizer_only(file).map_err(|e| format!("tokenizer: {e}"))?;
    let tokenizer_bytes = tokenizer.len();
    let mut b = ImageBuilder::new(geometry);
    b.block_size(block_size)
        .tokenizer_gguf(tokenizer)
        .arch_params(ArchParams {
            window,
            period,
            local_rope_base: arch.local_rope_base,
            approx_head: head.is_some(),
        });
    let mut tensor_bytes = 0u64;
    for t in file.tensors() {
        if is_ffn_tensor(t.name) {
            continue;
        }
        check_tensor(file, &t)?;
        let data = stored(file, &t, cfg.head_dim)?;
        tensor_bytes += data.len() as u64;
        b.add_tensor(t.name, t.dtype, t.dims.as_slice(), data)
            .map_err(|e| format!("{}: {e}", t.name))?;
        on_tensor();
    }
    if let Some((dtype, bytes)) = head {
        let e = file
            .tensor("token_embd.weight")
            .ok_or("the model has no token_embd.weight")?;
        tensor_bytes += bytes.len() as u64;
        b.add_tensor("output.weight", dtype, e.dims.as_slice(), bytes)
            .map_err(|e| format!("output.weight: {e}"))?;
    }
    let dtype_of = |name: String| {
        file.tensor(&name)
            .map(|t| t.dtype)
            .ok_or(format!("the model has no {name}"))
    };
    let mut dense_bytes = 0u64;
    let mut types = None;
    for l in 0..cfg.layers {
        for part in ["ffn_gate", "ffn_up", "ffn_down"] {
            crate::finite::check_named(file, &format!("blk.{l}.{part}.weight"))?;
        }
        let layer_types = BundleTypes {
            rows: dtype_of(format!("blk.{l}.ffn_gate.weight"))?,
            down: dtype_of(format!("blk.{l}.ffn_down.weight"))?,
        };
        types.get_or_insert(layer_types);
        dense_bytes += add_dense_layer(&mut b, file, layer_types, (l, l))?;
        (0..3).for_each(|_| on_tensor());
    }
    let types = types.ok_or("the model has no layers")?;
    Ok((
        b,
        PackSummary {
            layout: FfnLayout::Dense,
            tensor_bytes,
            split_tensor_bytes: dense_bytes,
            tokenizer_bytes,
            bundle_bytes: 0,
            layer_bytes: 0,
            types,
        },
    ))
}
