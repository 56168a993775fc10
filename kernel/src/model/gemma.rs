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
//!   positions, and the KV cache keeps only those for local layers (their
//!   keys and values live in a chunk's window part, given up once no query
//!   can see it: [`kv::layout`](super::kv::layout)).
//!
//! [`Arch`]: super::arch::Arch

use lode_formats::gguf::layer_tensor_name;

use crate::arena::DramArena;
use crate::compute::Compute;

use super::arena_use::Footprint;
use super::config::{LlamaConfig, MAX_LAYERS};
use super::error::{EvalError, LoadError};
use super::tensor::{RawTensor, TensorRef, TensorSource};
use super::weights::{fetch, place, stored_len, Role};

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
            place(arena, name, &t, role)?
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

/// Reorders `bytes`, pieces of `piece` bytes in NEOX order head by head
/// (`head_dim` pieces a head), in place into adjacent-pair order: the
/// order lode's RoPE rotates. A Q or K matrix moves whole quantized rows;
/// an f32 per-head norm moves elements (`piece` 4). The packer stores a
/// Gemma image's Q and K this way, so a streamed read needs no reordering;
/// a GGUF load does it in DRAM. Each head's permutation is applied cycle by
/// cycle with swaps, so no row is copied aside. `false` (nothing changed)
/// when the bytes are not whole heads or `head_dim` is odd or over
/// [`MAX_HEAD_DIM`].
pub fn neox_to_adjacent(bytes: &mut [u8], piece: usize, head_dim: usize) -> bool {
    let head = piece.saturating_mul(head_dim);
    let whole = head > 0 && bytes.len().is_multiple_of(head);
    if !whole || !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM {
        return false;
    }
    for h in bytes.chunks_exact_mut(head) {
        let mut done = [0u64; MAX_HEAD_DIM / 64];
        for start in 0..head_dim {
            if done[start / 64] >> (start % 64) & 1 == 1 {
                continue;
            }
            // Position `i` takes the piece at `neox_source(i)`: swapping
            // along the cycle puts each in place, the last by the others.
            let mut i = start;
            loop {
                done[i / 64] |= 1 << (i % 64);
                let next = neox_source(i, head_dim);
                if next == start {
                    break;
                }
                swap_pieces(h, piece, i, next);
                i = next;
            }
        }
    }
    true
}

/// Swaps pieces `a` and `b` (distinct, in range) of `piece` bytes.
fn swap_pieces(h: &mut [u8], piece: usize, a: usize, b: usize) {
    let (lo, hi) = (a.min(b), a.max(b));
    let (first, second) = h.split_at_mut(hi * piece);
    if let (Some(x), Some(y)) = (
        first.get_mut(lo * piece..(lo + 1) * piece),
        second.get_mut(..piece),
    ) {
        x.swap_with_slice(y);
    }
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
    let odd = || LoadError::tensor(name, "heads are not whole or of odd size");
    let piece = match role {
        Role::Matrix { rows, .. } => t.data.len() / rows.max(1),
        Role::Norm { len } if len == head_dim => 4,
        Role::Norm { .. } => return Err(odd()),
    };
    let r = place(arena, name, t, role)?;
    let bytes = arena.bytes_mut(r.slot).map_err(LoadError::arena)?;
    if !neox_to_adjacent(bytes, piece, head_dim) {
        return Err(odd());
    }
    Ok(r)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neox_rows_move_whole_head_by_head() {
        // Two heads of 4 rows, 2 bytes a row: row r holds [r, r].
        let mut rows: heapless::Vec<u8, 16> = (0..16u8).map(|i| i / 2).collect();
        assert!(neox_to_adjacent(&mut rows, 2, 4));
        let firsts: heapless::Vec<u8, 8> = rows.chunks(2).map(|r| r[0]).collect();
        assert_eq!(firsts.as_slice(), &[0, 2, 1, 3, 4, 6, 5, 7]);
        assert!(rows.chunks(2).all(|r| r[0] == r[1]));
        assert!(!neox_to_adjacent(&mut rows[..12], 2, 4));
        assert!(!neox_to_adjacent(&mut rows, 2, 3));
        // A wide head: every piece lands where `neox_source` says.
        let mut wide: heapless::Vec<u8, 256> = (0..=255u8).collect();
        assert!(neox_to_adjacent(&mut wide, 1, 256));
        assert!((0..256).all(|i| usize::from(wide[i]) == neox_source(i, 256)));
    }

    #[test]
    fn neox_order_pairs_i_with_i_plus_half() {
        let d = 8;
        let order: heapless::Vec<usize, 8> = (0..d).map(|i| neox_source(i, d)).collect();
        assert_eq!(order.as_slice(), &[0, 4, 1, 5, 2, 6, 3, 7]);
    }
}
