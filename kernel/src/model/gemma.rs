//! Gemma 3's pieces of the layer pass, each small, so that `forward.rs`
//! stays one decode loop for both architectures (see [`Arch`]).
//!
//! - four more norm weights per layer ([`GemmaNorms`]): per-head Q and K
//!   norms, and the norms after attention and after the FFN;
//! - loading Q and K in the RoPE order lode's compute rotates: a Gemma
//!   GGUF keeps HF's "NEOX" head layout (pair `i` with `i + head_dim/2`),
//!   which llama's converter permutes away but Gemma's does not. Permuting
//!   the rows of Q and K (and their norm weights) the same way at load
//!   leaves every dot product `q · k` unchanged and makes the rotation the
//!   adjacent-pair one, with the same angles, so no second RoPE is needed;
//! - the sliding window: a local layer's query sees only the last `window`
//!   positions. The KV cache still keeps every position of every layer
//!   (simple, and what the global layers need anyway); keeping only the
//!   window for local layers is a later saving.
//!
//! [`Arch`]: super::arch::Arch

use lode_formats::gguf::{dequantize_row, layer_tensor_name};

use crate::arena::{DramArena, SlotKind};
use crate::compute::Compute;

use super::arena_use::Footprint;
use super::config::{LlamaConfig, MAX_LAYERS};
use super::error::{EvalError, LoadError};
use super::kv::ChunkViews;
use super::tensor::{RawTensor, TensorRef, TensorSource};
use super::view::f32s_mut;
use super::weights::{fetch, stored_len, Role, ALIGN};

/// Gemma's extra norm weights of one layer, each f32.
#[derive(Debug, Clone, Copy)]
pub struct GemmaNorms {
    /// RMSNorm of each query head, `[head_dim]`, in RoPE order.
    pub q: TensorRef,
    /// RMSNorm of each key head, `[head_dim]`, in RoPE order.
    pub k: TensorRef,
    /// RMSNorm of the attention output before the residual add, `[hidden]`.
    pub post_attn: TensorRef,
    /// RMSNorm of the FFN output before the residual add, `[hidden]`.
    pub post_ffn: TensorRef,
}

/// Per-layer suffixes of the extra norms, in [`GemmaNorms`] field order,
/// and whether each is per head (`head_dim` long, reordered) or `hidden`.
pub(crate) const NORMS: [(&str, bool); 4] = [
    ("attn_q_norm.weight", true),
    ("attn_k_norm.weight", true),
    ("post_attention_norm.weight", false),
    ("post_ffw_norm.weight", false),
];

/// Widest head whose norm weights are reordered on the stack at load.
const MAX_HEAD_DIM: usize = 1024;

/// Calls `f(name, role, per_head)` for every extra norm of every layer.
fn for_each_norm(
    cfg: &LlamaConfig,
    mut f: impl FnMut(&str, Role, bool) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    for layer in 0..cfg.layers {
        for (suffix, per_head) in NORMS {
            let len = if per_head { cfg.head_dim } else { cfg.hidden };
            let name = layer_tensor_name(layer as u32, suffix)?;
            f(name.as_str(), Role::Norm { len }, per_head)?;
        }
    }
    Ok(())
}

/// The slots [`load_norms`] allocates, checking every tensor on the way.
pub(crate) fn norms_bytes<S: TensorSource>(
    src: &S,
    cfg: &LlamaConfig,
) -> Result<Footprint, LoadError> {
    let mut f = Footprint::default();
    for_each_norm(cfg, |name, role, _| {
        f.add(stored_len(&fetch(src, name, role)?, role));
        Ok(())
    })?;
    Ok(f)
}

/// Copies every layer's extra norms into resident slots, the per-head ones
/// reordered like Q and K.
pub(crate) fn load_norms<S: TensorSource, A: DramArena>(
    src: &S,
    cfg: &LlamaConfig,
    arena: &mut A,
) -> Result<heapless::Vec<GemmaNorms, MAX_LAYERS>, LoadError> {
    let mut out = heapless::Vec::new();
    let mut cur: [Option<TensorRef>; 4] = [None; 4];
    let mut i = 0;
    for_each_norm(cfg, |name, role, per_head| {
        let t = fetch(src, name, role)?;
        let r = if per_head {
            place_neox(arena, name, &t, role, cfg.head_dim)?
        } else {
            super::weights::place(arena, name, &t, role)?
        };
        if let Some(c) = cur.get_mut(i % 4) {
            *c = Some(r);
        }
        i += 1;
        if i % 4 == 0 {
            let [Some(q), Some(k), Some(post_attn), Some(post_ffn)] = cur else {
                return Err(LoadError::tensor(name, "layer incomplete"));
            };
            out.push(GemmaNorms {
                q,
                k,
                post_attn,
                post_ffn,
            })
            .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
            cur = [None; 4];
        }
        Ok(())
    })?;
    Ok(out)
}

/// Where element (or row) `i` of a head in adjacent-pair RoPE order comes
/// from in NEOX order: pair `j` is `(j, j + d/2)` there, `(2j, 2j + 1)` here.
const fn neox_source(i: usize, d: usize) -> usize {
    if i.is_multiple_of(2) {
        i / 2
    } else {
        d / 2 + i / 2
    }
}

/// Copies `src`, rows of `row_bytes` in NEOX order head by head
/// (`head_dim` rows a head), into `dst` in adjacent-pair order: the order
/// lode's RoPE rotates. A Q or K matrix moves whole quantized rows; an f32
/// per-head norm moves elements (`row_bytes` 4). The packer stores a Gemma
/// image's Q and K this way, so a streamed read needs no reordering.
/// `false` (nothing useful written) when the lengths are not whole heads
/// or `head_dim` is odd.
pub fn neox_to_adjacent(src: &[u8], dst: &mut [u8], row_bytes: usize, head_dim: usize) -> bool {
    let head = row_bytes.saturating_mul(head_dim);
    if head == 0 || !head_dim.is_multiple_of(2) || src.len() != dst.len() {
        return false;
    }
    if !src.len().is_multiple_of(head) {
        return false;
    }
    for (r, out) in dst.chunks_exact_mut(row_bytes).enumerate() {
        let from = r - r % head_dim + neox_source(r % head_dim, head_dim);
        match src.get(from * row_bytes..(from + 1) * row_bytes) {
            Some(row) => out.copy_from_slice(row),
            None => return false,
        }
    }
    true
}

/// [`place`](super::weights::place) for a Q or K matrix (rows reordered
/// head by head) or a per-head norm (elements reordered), from NEOX order
/// into adjacent-pair order.
pub(crate) fn place_neox<A: DramArena>(
    arena: &mut A,
    name: &str,
    t: &RawTensor<'_>,
    role: Role,
    head_dim: usize,
) -> Result<TensorRef, LoadError> {
    let slot = arena
        .alloc(stored_len(t, role), ALIGN, SlotKind::Resident)
        .map_err(LoadError::arena)?;
    let bytes = arena.bytes_mut(slot).map_err(LoadError::arena)?;
    let odd = || LoadError::tensor(name, "heads are not whole or of odd size");
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM {
        return Err(odd());
    }
    let (dtype, rows, cols) = match role {
        Role::Matrix { rows, cols } => {
            if !rows.is_multiple_of(head_dim) {
                return Err(odd());
            }
            let rb = t.data.len() / rows.max(1);
            if !neox_to_adjacent(t.data, bytes, rb, head_dim) {
                return Err(odd());
            }
            (t.dtype, rows, cols)
        }
        Role::Norm { len } => {
            if len != head_dim {
                return Err(odd());
            }
            let mut neox = [0f32; MAX_HEAD_DIM];
            let neox = neox.get_mut(..len).ok_or_else(odd)?;
            dequantize_row(t.dtype, t.data, neox)
                .map_err(|_| LoadError::tensor(name, "cannot be decoded to f32"))?;
            for (i, v) in f32s_mut(bytes)?.iter_mut().enumerate() {
                *v = neox.get(neox_source(i, len)).copied().ok_or_else(odd)?;
            }
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

/// RMSNorm of every `w.len()`-wide piece of `x` (each head of each row,
/// or each row) with the same weights `w`.
pub(crate) fn head_norm<C: Compute>(
    compute: &mut C,
    x: &mut [f32],
    w: &[f32],
    eps: f32,
) -> Result<(), EvalError> {
    for head in x.chunks_exact_mut(w.len().max(1)) {
        compute.rms_norm(head, w, eps).map_err(EvalError::compute)?;
    }
    Ok(())
}

/// Drops from `views` (chunks of consecutive positions from 0) every
/// position before `start`: what a sliding-window layer's query does not
/// see. `kv_dim` is the values per position.
pub(crate) fn keep_from(views: &mut ChunkViews<'_>, start: usize, kv_dim: usize) {
    let mut first = 0;
    views.retain_mut(|c| {
        let end = first + c.tokens;
        let skip = start.saturating_sub(first).min(c.tokens);
        first = end;
        if skip == c.tokens {
            return false;
        }
        c.tokens -= skip;
        c.keys = c.keys.get(skip * kv_dim..).unwrap_or(&[]);
        c.values = c.values.get(skip * kv_dim..).unwrap_or(&[]);
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::KvChunk;

    #[test]
    fn neox_rows_move_whole_head_by_head() {
        // Two heads of 4 rows, 2 bytes a row: row r holds [r, r].
        let src: heapless::Vec<u8, 16> = (0..16u8).map(|i| i / 2).collect();
        let mut dst = [0u8; 16];
        assert!(neox_to_adjacent(&src, &mut dst, 2, 4));
        let rows: heapless::Vec<u8, 8> = dst.chunks(2).map(|r| r[0]).collect();
        assert_eq!(rows.as_slice(), &[0, 2, 1, 3, 4, 6, 5, 7]);
        assert!(dst.chunks(2).all(|r| r[0] == r[1]));
        assert!(!neox_to_adjacent(&src[..12], &mut dst[..12], 2, 4));
        assert!(!neox_to_adjacent(&src, &mut dst, 2, 3));
    }

    #[test]
    fn neox_order_pairs_i_with_i_plus_half() {
        let d = 8;
        let order: heapless::Vec<usize, 8> = (0..d).map(|i| neox_source(i, d)).collect();
        assert_eq!(order.as_slice(), &[0, 4, 1, 5, 2, 6, 3, 7]);
    }

    #[test]
    fn window_drops_leading_positions() {
        let k: [f32; 64] = core::array::from_fn(|i| i as f32);
        let mut v = ChunkViews::new();
        for c in 0..3 {
            let s = &k[c * 16..c * 16 + 16];
            let _ = v.push(KvChunk {
                tokens: 16,
                keys: s,
                values: s,
            });
        }
        keep_from(&mut v, 20, 1);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].tokens, 12);
        assert_eq!(v[0].keys[0], 20.0);
        assert_eq!(v[1].keys[0], 32.0);
        keep_from(&mut v, 0, 1);
        assert_eq!(v.len(), 2);
    }
}
