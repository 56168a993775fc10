//! Grouped-query attention of one query position over KV chunks.
//!
//! Per query head: scores against every cached key (scaled by
//! 1/sqrt(head_dim)), a softmax made stable by subtracting the maximum, and
//! the probability-weighted sum of values. Heads are independent, so when
//! the caller's `scores` scratch has room for several heads' scores the
//! heads are split across threads.

use lode_kernel::compute::{AttentionShape, ErrorKind, KvChunk};

use super::exec::{split_ranges, Exec, Parts};
use super::kernels::Kernels;
use super::math;

/// Validated sizes of one call.
#[derive(Clone, Copy)]
struct Dims {
    heads: usize,
    group: usize,
    head_dim: usize,
    kv_dim: usize,
    positions: usize,
}

fn check(
    q: &[f32],
    kv: &[KvChunk<'_>],
    shape: AttentionShape,
    scores: &[f32],
    out: &[f32],
) -> Result<Dims, ErrorKind> {
    let AttentionShape {
        heads,
        kv_heads,
        head_dim,
    } = shape;
    if heads == 0 || kv_heads == 0 || head_dim == 0 || heads % kv_heads != 0 {
        return Err(ErrorKind::ShapeMismatch);
    }
    let q_len = heads
        .checked_mul(head_dim)
        .ok_or(ErrorKind::ShapeMismatch)?;
    let kv_dim = kv_heads
        .checked_mul(head_dim)
        .ok_or(ErrorKind::ShapeMismatch)?;
    if q.len() != q_len || out.len() != q_len {
        return Err(ErrorKind::ShapeMismatch);
    }
    let mut positions = 0usize;
    for c in kv {
        let n = c
            .tokens
            .checked_mul(kv_dim)
            .ok_or(ErrorKind::ShapeMismatch)?;
        if c.keys.len() != n || c.values.len() != n {
            return Err(ErrorKind::ShapeMismatch);
        }
        positions = positions
            .checked_add(c.tokens)
            .ok_or(ErrorKind::ShapeMismatch)?;
    }
    if positions == 0 {
        // A softmax over nothing is undefined; the current token's own
        // key is always present in a well-formed call.
        return Err(ErrorKind::ShapeMismatch);
    }
    if scores.len() < positions {
        return Err(ErrorKind::ScratchTooSmall);
    }
    Ok(Dims {
        heads,
        group: heads / kv_heads,
        head_dim,
        kv_dim,
        positions,
    })
}

/// Attention for heads `first..first + out.len() / head_dim`; `false` if a
/// score was not finite. With `received`, each position's attention weight
/// (its softmax probability) is added to it, summed over these heads.
#[allow(clippy::too_many_arguments)]
fn heads_range(
    kern: Kernels,
    dims: Dims,
    q: &[f32],
    kv: &[KvChunk<'_>],
    first: usize,
    scores: &mut [f32],
    out: &mut [f32],
    mut received: Option<&mut [f32]>,
) -> bool {
    let hd = dims.head_dim;
    let scale = (1.0 / math::sqrt_f64(hd as f64)) as f32;
    let Some(scores) = scores.get_mut(..dims.positions) else {
        return false;
    };
    for (i, o) in out.chunks_exact_mut(hd).enumerate() {
        let h = first + i;
        let off = (h / dims.group) * hd;
        let Some(qh) = q.get(h * hd..(h + 1) * hd) else {
            return false;
        };
        // Scores of every position, in chunk order.
        let mut s = scores.iter_mut();
        for c in kv {
            for k in c.keys.chunks_exact(dims.kv_dim) {
                if let (Some(slot), Some(kh)) = (s.next(), k.get(off..off + hd)) {
                    *slot = kern.dot_f32(qh, kh) * scale;
                }
            }
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if !max.is_finite() || scores.iter().any(|v| v.is_nan()) {
            return false;
        }
        let mut sum = 0.0f32;
        for v in scores.iter_mut() {
            *v = math::exp(*v - max);
            sum += *v;
        }
        // sum >= 1 (the maximum contributes exp(0)).
        let inv = 1.0 / sum;
        if let Some(r) = received.as_deref_mut() {
            for (r, &w) in r.iter_mut().zip(scores.iter()) {
                *r += w * inv;
            }
        }
        o.fill(0.0);
        let mut p = scores.iter();
        for c in kv {
            for v in c.values.chunks_exact(dims.kv_dim) {
                if let (Some(&w), Some(vh)) = (p.next(), v.get(off..off + hd)) {
                    kern.axpy_f32(w * inv, vh, o);
                }
            }
        }
    }
    true
}

/// See [`Compute::attention`](lode_kernel::compute::Compute::attention)
/// and [`Compute::attention_received`](lode_kernel::compute::Compute::attention_received).
///
/// Errors: `ShapeMismatch` for inconsistent shapes (including no positions
/// at all, or a `received` of another length), `ScratchTooSmall` when
/// `scores` is shorter than the number of positions (twice that with
/// `received`), `NonFinite` when a score is NaN or ±∞.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    kern: Kernels,
    exec: &mut Exec,
    q: &[f32],
    kv: &[KvChunk<'_>],
    shape: AttentionShape,
    scores: &mut [f32],
    out: &mut [f32],
    mut received: Option<&mut [f32]>,
) -> Result<(), ErrorKind> {
    let dims = check(q, kv, shape, scores, out)?;
    if received.as_ref().is_some_and(|r| r.len() != dims.positions) {
        return Err(ErrorKind::ShapeMismatch);
    }
    // Each part needs `positions` of scores, and as many again to sum its
    // heads' weights in when they are wanted (parts run in parallel, so
    // they cannot share `received`).
    let per_part = dims.positions * if received.is_some() { 2 } else { 1 };
    if scores.len() < per_part {
        return Err(ErrorKind::ScratchTooSmall);
    }
    let work = dims
        .positions
        .saturating_mul(dims.heads)
        .saturating_mul(dims.head_dim)
        .saturating_mul(2);
    let room = scores.len() / per_part;
    let parts = exec.chunks_for(work, dims.heads).min(room).max(1);
    if parts <= 1 {
        return if heads_range(kern, dims, q, kv, 0, scores, out, received) {
            Ok(())
        } else {
            Err(ErrorKind::NonFinite)
        };
    }
    // (first head, scores, its weights, out, finite)
    type Part<'s> = (
        usize,
        &'s mut [f32],
        Option<&'s mut [f32]>,
        &'s mut [f32],
        bool,
    );
    let mut items: Parts<Part<'_>> = Parts::new();
    let mut rest_s = scores;
    let mut rest_o = out;
    for (a, b) in split_ranges(dims.heads, 1, parts) {
        let (s, ts) = core::mem::take(&mut rest_s).split_at_mut(per_part);
        let (s, w) = s.split_at_mut(dims.positions);
        let w = received.is_some().then(|| {
            w.fill(0.0);
            w
        });
        let (o, to) = core::mem::take(&mut rest_o).split_at_mut((b - a) * dims.head_dim);
        rest_s = ts;
        rest_o = to;
        if let Err(mut it) = items.push((a, s, w, o, true)) {
            // No room for another part (unreachable: `parts` is at most
            // the pool's chunk count): run it here.
            if !heads_range(kern, dims, q, kv, it.0, it.1, it.3, it.2.as_deref_mut()) {
                return Err(ErrorKind::NonFinite);
            }
            add_weights(received.as_deref_mut(), it.2.as_deref());
        }
    }
    exec.for_each(&mut items, &|it| {
        it.4 = heads_range(kern, dims, q, kv, it.0, it.1, it.3, it.2.as_deref_mut());
    });
    if !items.iter().all(|it| it.4) {
        return Err(ErrorKind::NonFinite);
    }
    for it in items.iter() {
        add_weights(received.as_deref_mut(), it.2.as_deref());
    }
    Ok(())
}

/// `received += weights` when both are present.
fn add_weights(received: Option<&mut [f32]>, weights: Option<&[f32]>) {
    if let (Some(r), Some(w)) = (received, weights) {
        for (r, &w) in r.iter_mut().zip(w) {
            *r += w;
        }
    }
}
