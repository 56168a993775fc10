//! Where each piece of a model lies in a lode image, checked against the
//! model's shape: the units the memory plan keeps resident or streams.
//!
//! Three kinds of unit, each one contiguous device extent so it is read with
//! a few large commands:
//! - a layer's **attention span**: its norms and Q, K, V, O projections (the
//!   image stores tensors sorted by name, so a layer's tensors are
//!   neighbours; the span runs from the first to the end of the last);
//! - a layer's **FFN region**: its neuron bundles, or in a dense image its
//!   gate, up and down matrices as the source stored them (read whole when
//!   resident; streamed one matrix at a time, in the order they multiply);
//! - the **output head** (the embedding itself when tied), streamed in
//!   pieces of whole rows.

use lode_formats::image::Image;

use crate::limits::REFINED_LOGITS;
use crate::model::config::{LlamaConfig, LlamaConfigExt, MAX_LAYERS};

use super::ffn_region::region;
use super::image_model::arch_of;
pub(super) use super::tensor_at::{end_of, find, find_any, norm};
pub use super::tensor_at::{StoredAt, TensorAt};
use crate::model::arch::{Arch, Gate};
use crate::model::error::LoadError;
use crate::model::BundleTypes;

/// A layer's attention span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnSpan {
    /// First byte of the span (the lowest tensor offset).
    pub start: u64,
    /// Bytes from `start` to the end of the last tensor.
    pub len: usize,
    /// RMSNorm before attention (f32).
    pub attn_norm: TensorAt,
    /// RMSNorm before the FFN (f32).
    pub ffn_norm: TensorAt,
    /// Q, K, V and O projections, in that order.
    pub proj: [TensorAt; 4],
}

/// A layer's FFN bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfnRegion {
    /// Absolute device offset of the first bundle.
    pub offset: u64,
    /// Bytes of all bundles (`count * bundle`; bundles are packed).
    pub len: usize,
    /// Bundles (one per neuron, in placement order).
    pub count: usize,
    /// Bytes of one bundle.
    pub bundle: usize,
    /// Element types of the rows and the down column.
    pub types: BundleTypes,
    /// How the layer is stored.
    pub kind: FfnKind,
}

/// How a layer's FFN is stored: one of three layouts, so a layer is never
/// half split and half dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnKind {
    /// Neuron bundles, each holding its gate row, up row and down column.
    Bundled,
    /// The gate and up rows stored apart as tensors; the bundles hold only
    /// down columns.
    Split(SplitRows),
    /// The three matrices as the source stored them: `offset` and `len`
    /// span them and there are no bundles (`bundle` is 0).
    Dense(DenseMatrices),
}

/// A dense layer's FFN: the gate, up and down matrices copied from the
/// source (neurons in the source's order, down quantized along the neuron
/// axis as GGUF stores it), next to each other so one read fetches all
/// three. Dense streaming reads whole layers anyway; this layout reads
/// fewer bytes than bundles (no down column is re-quantized to a wider
/// type) and computes with three dense products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseMatrices {
    /// Gate projection `[ffn] x [hidden]`.
    pub gate: TensorAt,
    /// Up projection `[ffn] x [hidden]`.
    pub up: TensorAt,
    /// Down projection `[hidden] x [ffn]`.
    pub down: TensorAt,
}

/// A split layer's gate and up matrices: tensors whose row `p` belongs to
/// the neuron at bundle position `p` (so activations line up with bundles
/// without a permutation), stored next to each other so one read fetches
/// both. Sparse streaming needs them apart from the down columns: choosing
/// the firing neurons takes every gate and up row, the down columns only
/// of the neurons that fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitRows {
    /// First byte of the span holding both tensors.
    pub start: u64,
    /// Bytes of the span.
    pub len: usize,
    /// Gate projection `[ffn] x [hidden]`.
    pub gate: TensorAt,
    /// Up projection `[ffn] x [hidden]`.
    pub up: TensorAt,
}

impl FfnRegion {
    /// Bytes a resident copy of the layer's FFN takes (rows and bundles).
    pub fn resident_len(&self) -> usize {
        self.len.saturating_add(self.split().map_or(0, |s| s.len))
    }

    /// A split layer's gate and up rows.
    pub fn split(&self) -> Option<SplitRows> {
        match self.kind {
            FfnKind::Split(r) => Some(r),
            _ => None,
        }
    }

    /// A dense layer's matrices.
    pub fn dense(&self) -> Option<DenseMatrices> {
        match self.kind {
            FfnKind::Dense(m) => Some(m),
            _ => None,
        }
    }

    /// The bundles as the read planner sees them (packed: the stride is a
    /// bundle), or `None` when a size does not fit its fields.
    pub fn plan_region(&self) -> Option<crate::plan::Region> {
        let bundle = u32::try_from(self.bundle).ok()?;
        Some(crate::plan::Region {
            offset: self.offset,
            stride: bundle,
            bundle_bytes: bundle,
            count: u32::try_from(self.count).ok()?,
        })
    }
}

/// Every unit of a model in an image.
#[derive(Debug, Clone)]
pub struct StreamLayout {
    /// Attention span of each layer.
    pub attn: heapless::Vec<AttnSpan, MAX_LAYERS>,
    /// FFN region of each layer.
    pub ffn: heapless::Vec<FfnRegion, MAX_LAYERS>,
    /// Token embeddings `[vocab] x [hidden]`.
    pub embed: TensorAt,
    /// The output head (equal to `embed` when tied).
    pub head: TensorAt,
    /// Final RMSNorm (f32).
    pub output_norm: TensorAt,
    /// The FFN's gate activation (the architecture's).
    pub gate: Gate,
    /// Gemma's four extra norms of each layer (f32, in [`GemmaNorms`]
    /// field order: Q and K heads of `head_dim`, after attention and after
    /// the FFN of `hidden`), as device offsets; empty for llama.
    ///
    /// [`GemmaNorms`]: crate::model::GemmaNorms
    pub extra_norms: heapless::Vec<[u64; 4], MAX_LAYERS>,
    /// The architecture (its sliding window sizes the KV cache).
    pub arch: Arch,
    /// Embedding rows read at once: 1, or with an approximate head
    /// ([`Model::refine_head`](crate::model::Model::refine_head)) the rows
    /// its likely tokens are refined from, [`REFINED_LOGITS`].
    pub row_reads: usize,
}

impl StreamLayout {
    /// Refuses a layout any of whose layers is not split: what a sparse
    /// run (per-token column reads, or skipping dropped neurons' columns)
    /// needs, one message for both.
    pub fn require_split(&self) -> Result<(), LoadError> {
        if self.ffn.iter().all(|f| f.split().is_some()) {
            return Ok(());
        }
        Err(LoadError::Layout(
            "sparse streaming needs an image whose FFN is split (pack with --layout split)",
        ))
    }

    /// Bytes of the slot embedding rows are read into: [`row_reads`]
    /// rows, each at a block-aligned place, each taking the blocks a row at
    /// any offset spans.
    ///
    /// [`row_reads`]: StreamLayout::row_reads
    pub fn row_stride(&self, block: usize) -> usize {
        super::plan::blocks(self.embed.row_bytes().saturating_add(block), block)
    }

    /// Bytes of the decode slot a source over this layout keeps (0 when
    /// no tensor is coded): a streamed coded unit is decoded into it as the
    /// ring hands it out, and at load each matrix of a resident layer with
    /// a coded matrix is read into it (a block of skip included) before it
    /// is decoded or copied into the layer's slot. So: the most any matrix
    /// of such a layer takes decoded or as read.
    pub fn decode_slot_len(&self, block: usize) -> usize {
        self.ffn
            .iter()
            .filter_map(|f| f.dense())
            .filter(|m| [m.gate, m.up, m.down].iter().any(|t| t.stored.is_some()))
            .flat_map(|m| [m.gate, m.up, m.down])
            .map(|t| t.len.max(t.device().1.saturating_add(block)))
            .max()
            .unwrap_or(0)
    }

    /// [`StreamLayout::row_stride`] times the rows read at once.
    pub fn row_slot_len(&self, block: usize) -> usize {
        self.row_stride(block).saturating_mul(self.row_reads.max(1))
    }

    /// I/O slots a ring needs so one whole streamed FFN layer can be read
    /// ahead while the unit before it computes: the most ring units a layer
    /// streams as, plus one (a dense layer is three, one a matrix; a split
    /// layer's rows and, unless fetched sparsely, its down columns; bundles
    /// one), at least 2 and at most [`MAX_RING`](super::MAX_RING). Fewer
    /// slots cannot prefetch a dense layer whole: measured on SmolLM2 with
    /// 28 of 30 layers resident, 2 slots decode about a quarter slower than 4.
    pub fn ring_for(&self, sparse: bool) -> usize {
        let units = self
            .ffn
            .iter()
            .map(|f| match f.kind {
                FfnKind::Bundled => 1,
                FfnKind::Split(_) if sparse => 1,
                FfnKind::Split(_) => 2,
                FfnKind::Dense(_) => 3,
            })
            .max()
            .unwrap_or(1);
        (units + 1).clamp(2, super::MAX_RING)
    }

    /// Finds and checks every unit of `cfg`'s model in `img`.
    pub fn new(img: &Image<'_>, cfg: &LlamaConfig) -> Result<StreamLayout, LoadError> {
        cfg.validate()?;
        if img.layer_count() != cfg.layers {
            return Err(LoadError::Layout(
                "the image has another number of bundle layers",
            ));
        }
        let mut attn = heapless::Vec::new();
        let mut ffn = heapless::Vec::new();
        let qd = cfg.heads * cfg.head_dim;
        let kvd = cfg.kv_dim();
        for l in 0..cfg.layers {
            let name = |suffix: &str| lode_formats::gguf::layer_tensor_name(l as u32, suffix);
            let attn_norm = norm(img, name("attn_norm.weight")?.as_str(), cfg.hidden)?;
            let ffn_norm = norm(img, name("ffn_norm.weight")?.as_str(), cfg.hidden)?;
            let proj = [
                find(img, name("attn_q.weight")?.as_str(), qd, cfg.hidden)?,
                find(img, name("attn_k.weight")?.as_str(), kvd, cfg.hidden)?,
                find(img, name("attn_v.weight")?.as_str(), kvd, cfg.hidden)?,
                find(img, name("attn_output.weight")?.as_str(), cfg.hidden, qd)?,
            ];
            // The FFN norm is read on its own (it may sit among a split
            // layer's FFN tensors), so the span covers attention only.
            let all = [attn_norm, proj[0], proj[1], proj[2], proj[3]];
            let start = all.iter().map(|t| t.offset).min().unwrap_or(0);
            let end = all.iter().map(end_of).max().unwrap_or(0);
            let len = usize::try_from(end - start)
                .map_err(|_| LoadError::Layout("an attention span is too large"))?;
            let sum: usize = all.iter().map(|t| t.len).sum();
            // The span also reads the padding and anything stored between
            // the layer's tensors; refuse a layout where that is most of it.
            if len > sum.saturating_mul(2).saturating_add(64 * 1024) {
                return Err(LoadError::Layout(
                    "a layer's attention tensors are not stored next to each other",
                ));
            }
            let span = AttnSpan {
                start,
                len,
                attn_norm,
                ffn_norm,
                proj,
            };
            let r = img
                .bundle_region(l)
                .ok_or(LoadError::Layout("the image lacks a bundle region"))?;
            attn.push(span)
                .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
            ffn.push(region(img, &r, cfg, l)?)
                .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
        }
        let arch = arch_of(img)?;
        let extra_norms = if arch.is_gemma() {
            gemma_norms(img, cfg, &ffn)?
        } else {
            heapless::Vec::new()
        };
        let embed = find(img, "token_embd.weight", cfg.vocab, cfg.hidden)?;
        let head = if cfg.tied_embeddings {
            embed
        } else {
            find(img, "output.weight", cfg.vocab, cfg.hidden)?
        };
        let output_norm = norm(img, "output_norm.weight", cfg.hidden)?;
        Ok(StreamLayout {
            attn,
            ffn,
            embed,
            head,
            output_norm,
            gate: arch.gate(),
            extra_norms,
            arch,
            row_reads: if img.arch_params().is_some_and(|a| a.approx_head) {
                REFINED_LOGITS
            } else {
                1
            },
        })
    }
}

/// Gemma's extra norms of every layer, found and checked (f32, their
/// lengths); refuses layers stored other than dense, since the bundled and
/// split kernels gate with SiLU.
fn gemma_norms(
    img: &Image<'_>,
    cfg: &LlamaConfig,
    ffn: &[FfnRegion],
) -> Result<heapless::Vec<[u64; 4], MAX_LAYERS>, LoadError> {
    if ffn.iter().any(|f| f.dense().is_none()) {
        return Err(LoadError::Layout(
            "lode streams Gemma 3 in the dense layout only (repack with --layout dense)",
        ));
    }
    let mut out = heapless::Vec::new();
    for l in 0..cfg.layers {
        let mut at = [0u64; 4];
        for (o, (suffix, per_head)) in at.iter_mut().zip(crate::model::gemma::NORMS) {
            let len = if per_head { cfg.head_dim } else { cfg.hidden };
            let name = lode_formats::gguf::layer_tensor_name(l as u32, suffix)?;
            *o = norm(img, name.as_str(), len)?.offset;
        }
        out.push(at)
            .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
    }
    Ok(out)
}
