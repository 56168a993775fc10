//! The resident weights: which tensors a llama model has, their expected
//! shapes, and copying them into arena slots.
//!
//! Matrices are copied byte for byte in their stored encoding (the compute
//! backend multiplies quantized rows directly); norm weights are decoded to
//! f32 once at load, since every norm reads all of them every step. The
//! same table of tensors drives [`Weights::load`] and the memory plan, so the
//! plan cannot disagree with what loading allocates.

use lode_formats::gguf::{dequantize_row, layer_tensor_name};

use crate::arena::{DramArena, SlotKind};

use super::arch::Arch;
use super::arena_use::Footprint;
use super::config::{LlamaConfig, LlamaConfigExt, MAX_LAYERS};
use super::error::{EvalError, LoadError};
use super::tensor::{row_bytes, RawTensor, TensorRef, TensorSource};
use super::view::f32s_mut;

/// Alignment of every slot the model allocates: a cache line, so no two
/// buffers share one and SIMD loads of a row start aligned.
pub use crate::limits::ALIGN;

/// `len` rounded up to [`ALIGN`]: what a slot of `len` bytes costs at most
/// in a region whose base is aligned.
pub(crate) const fn aligned(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// How a tensor is used, which fixes its shape and how it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A matrix of `rows` outputs by `cols` inputs (GGUF dims `[cols, rows]`),
    /// stored as encoded.
    Matrix { rows: usize, cols: usize },
    /// A vector of `len` weights (GGUF dims `[len]`), stored as f32.
    Norm { len: usize },
}

/// Which tensor of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

/// Per-layer tensors, GGUF suffix and part, attention first.
const LAYER_PARTS: [(&str, Part); 9] = [
    ("attn_norm.weight", Part::AttnNorm),
    ("attn_q.weight", Part::Q),
    ("attn_k.weight", Part::K),
    ("attn_v.weight", Part::V),
    ("attn_output.weight", Part::O),
    ("ffn_norm.weight", Part::FfnNorm),
    ("ffn_gate.weight", Part::Gate),
    ("ffn_up.weight", Part::Up),
    ("ffn_down.weight", Part::Down),
];

impl Part {
    /// Whether the FFN source (not the resident attention weights) owns it.
    pub(crate) const fn is_ffn(self) -> bool {
        matches!(self, Part::Gate | Part::Up | Part::Down)
    }

    fn role(self, c: &LlamaConfig) -> Role {
        let m = |rows, cols| Role::Matrix { rows, cols };
        match self {
            Part::AttnNorm | Part::FfnNorm => Role::Norm { len: c.hidden },
            Part::Q => m(c.heads * c.head_dim, c.hidden),
            Part::K | Part::V => m(c.kv_dim(), c.hidden),
            Part::O => m(c.hidden, c.heads * c.head_dim),
            Part::Gate | Part::Up => m(c.ffn, c.hidden),
            Part::Down => m(c.hidden, c.ffn),
        }
    }
}

/// Calls `f(layer, part, name, role)` for every per-layer tensor whose part
/// `keep` selects, layer by layer.
pub(crate) fn for_each_layer_tensor(
    cfg: &LlamaConfig,
    keep: fn(Part) -> bool,
    mut f: impl FnMut(usize, Part, &str, Role) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    for layer in 0..cfg.layers {
        for (suffix, part) in LAYER_PARTS {
            if keep(part) {
                let name = layer_tensor_name(layer as u32, suffix)?;
                f(layer, part, name.as_str(), part.role(cfg))?;
            }
        }
    }
    Ok(())
}

/// The model-wide tensors: (name, role), the output head only when it is
/// not tied to the embedding.
fn global_tensors(cfg: &LlamaConfig) -> heapless::Vec<(&'static str, Role), 3> {
    let mut v = heapless::Vec::new();
    let embd = Role::Matrix {
        rows: cfg.vocab,
        cols: cfg.hidden,
    };
    // Capacity 3 holds all three.
    let _ = v.push(("token_embd.weight", embd));
    let _ = v.push(("output_norm.weight", Role::Norm { len: cfg.hidden }));
    if !cfg.tied_embeddings {
        let _ = v.push(("output.weight", embd));
    }
    v
}

/// Finds `name` and checks it against `role`: the exact GGUF shape, whole
/// blocks per row, and data of exactly the implied length.
pub(crate) fn fetch<'s, S: TensorSource>(
    src: &'s S,
    name: &str,
    role: Role,
) -> Result<RawTensor<'s>, LoadError> {
    let t = src
        .tensor(name)?
        .ok_or_else(|| LoadError::tensor(name, "missing from the model file"))?;
    let (rows, cols, want): (usize, usize, &[u64]) = match role {
        Role::Matrix { rows, cols } => (rows, cols, &[cols as u64, rows as u64]),
        Role::Norm { len } => (1, len, &[len as u64]),
    };
    if t.dims.as_slice() != want {
        return Err(LoadError::tensor(
            name,
            "has a different shape than the model's hyper-parameters imply",
        ));
    }
    if !super::tensor::computable(t.dtype) {
        return Err(LoadError::tensor(name, super::tensor::NOT_COMPUTABLE));
    }
    let rb = row_bytes(t.dtype, cols)
        .ok_or_else(|| LoadError::tensor(name, "rows are not whole blocks of its type"))?;
    if rb.checked_mul(rows) != Some(t.data.len()) {
        return Err(LoadError::tensor(
            name,
            "data length does not match its shape",
        ));
    }
    Ok(t)
}

/// Arena bytes `t` occupies once stored for `role`.
pub(crate) fn stored_len(t: &RawTensor<'_>, role: Role) -> usize {
    match role {
        Role::Matrix { .. } => t.data.len(),
        Role::Norm { len } => len * 4,
    }
}

/// Copies `t` into a new resident slot of `arena`.
pub(crate) fn place<A: DramArena>(
    arena: &mut A,
    name: &str,
    t: &RawTensor<'_>,
    role: Role,
) -> Result<TensorRef, LoadError> {
    let slot = arena
        .alloc(stored_len(t, role), ALIGN, SlotKind::Resident)
        .map_err(LoadError::arena)?;
    let bytes = arena.bytes_mut(slot).map_err(LoadError::arena)?;
    let (dtype, rows, cols) = match role {
        Role::Matrix { rows, cols } => {
            bytes.copy_from_slice(t.data);
            (t.dtype, rows, cols)
        }
        Role::Norm { len } => {
            dequantize_row(t.dtype, t.data, f32s_mut(bytes)?)
                .map_err(|_| LoadError::tensor(name, "cannot be decoded to f32"))?;
            (lode_formats::DType::F32, 1, len)
        }
    };
    Ok(TensorRef {
        slot,
        offset: 0,
        dtype,
        rows,
        cols,
    })
}

/// A layer's attention projections.
#[derive(Debug, Clone, Copy)]
pub struct Attention {
    /// Query projection `[heads * head_dim] x [hidden]`.
    pub q: TensorRef,
    /// Key projection `[kv_dim] x [hidden]`.
    pub k: TensorRef,
    /// Value projection `[kv_dim] x [hidden]`.
    pub v: TensorRef,
    /// Attention output projection `[hidden] x [heads * head_dim]`.
    pub o: TensorRef,
}

/// A layer's resident weights: its norms always, its attention projections
/// when they are resident (a streaming source reads the others per token).
#[derive(Debug, Clone, Copy)]
pub struct LayerWeights {
    /// RMSNorm before attention, f32 `[hidden]`.
    pub attn_norm: TensorRef,
    /// RMSNorm before the FFN, f32 `[hidden]`.
    pub ffn_norm: TensorRef,
    /// The attention projections, `None` when streamed.
    pub attn: Option<Attention>,
}

/// Every resident weight except the FFN's (which an
/// [`FfnSource`](super::FfnSource) owns). What is `None` here is streamed by
/// the source.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embeddings `[vocab] x [hidden]`.
    pub embed: Option<TensorRef>,
    /// Final RMSNorm, f32 `[hidden]`.
    pub output_norm: TensorRef,
    /// Output head `[vocab] x [hidden]`; the embedding itself when tied.
    pub output: Option<TensorRef>,
    /// Per-layer norms and attention weights.
    pub layers: heapless::Vec<LayerWeights, MAX_LAYERS>,
}

impl Weights {
    /// Layer `layer`'s attention and FFN norms.
    pub fn norms(&self, layer: usize) -> Result<(TensorRef, TensorRef), EvalError> {
        let l = self
            .layers
            .get(layer)
            .ok_or(EvalError::Internal("layer index out of range"))?;
        Ok((l.attn_norm, l.ffn_norm))
    }

    /// Layer `layer`'s attention projections, when resident.
    pub fn attention(&self, layer: usize) -> Result<Attention, EvalError> {
        self.layers
            .get(layer)
            .ok_or(EvalError::Internal("layer index out of range"))?
            .attn
            .ok_or(EvalError::Internal("attention weights are not resident"))
    }

    /// The slots [`Weights::load`] allocates, checking every tensor on the
    /// way.
    pub fn arena_bytes<S: TensorSource>(
        src: &S,
        cfg: &LlamaConfig,
    ) -> Result<Footprint, LoadError> {
        let mut f = Footprint::default();
        let mut add = |name: &str, role: Role| -> Result<(), LoadError> {
            f.add(stored_len(&fetch(src, name, role)?, role));
            Ok(())
        };
        for (name, role) in global_tensors(cfg) {
            add(name, role)?;
        }
        for_each_layer_tensor(cfg, |p| !p.is_ffn(), |_, _, name, role| add(name, role))?;
        Ok(f)
    }

    /// Copies the embedding, output head, final norm and every layer's
    /// attention weights from `src` into resident slots of `arena`.
    pub fn load<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: &LlamaConfig,
        arena: &mut A,
    ) -> Result<Weights, LoadError> {
        Self::load_for(src, cfg, &Arch::Llama, arena)
    }

    /// [`Weights::load`] for a model of architecture `arch`: Gemma's Q and
    /// K rows are reordered for lode's RoPE (see [`super::gemma`]).
    pub fn load_for<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: &LlamaConfig,
        arch: &Arch,
        arena: &mut A,
    ) -> Result<Weights, LoadError> {
        cfg.validate()?;
        let mut globals: heapless::Vec<TensorRef, 3> = heapless::Vec::new();
        for (name, role) in global_tensors(cfg) {
            let t = fetch(src, name, role)?;
            let r = place(arena, name, &t, role)?;
            globals
                .push(r)
                .map_err(|_| LoadError::Layout("too many global tensors"))?;
        }
        let (embed, output_norm) = match globals.as_slice() {
            [e, n, ..] => (*e, *n),
            _ => return Err(LoadError::Layout("model-wide tensors missing")),
        };
        let output = globals.get(2).copied().unwrap_or(embed);

        let mut layers: heapless::Vec<LayerWeights, MAX_LAYERS> = heapless::Vec::new();
        let mut cur: [Option<TensorRef>; 6] = [None; 6];
        for_each_layer_tensor(
            cfg,
            |p| !p.is_ffn(),
            |_, part, name, role| {
                let t = fetch(src, name, role)?;
                let r = if arch.neox() && matches!(part, Part::Q | Part::K) {
                    super::gemma::place_neox(arena, name, &t, role, cfg.head_dim)?
                } else {
                    place(arena, name, &t, role)?
                };
                let i = part as usize;
                if let Some(c) = cur.get_mut(i) {
                    *c = Some(r);
                }
                if part == Part::FfnNorm {
                    let lw = match cur {
                        [Some(attn_norm), Some(q), Some(k), Some(v), Some(o), Some(ffn_norm)] => {
                            LayerWeights {
                                attn_norm,
                                ffn_norm,
                                attn: Some(Attention { q, k, v, o }),
                            }
                        }
                        _ => return Err(LoadError::tensor(name, "layer incomplete")),
                    };
                    layers
                        .push(lw)
                        .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
                    cur = [None; 6];
                }
                Ok(())
            },
        )?;
        Ok(Weights {
            embed: Some(embed),
            output_norm,
            output: Some(output),
            layers,
        })
    }
}
