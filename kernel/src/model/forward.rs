//! The forward pass: tokens in, KV cache extended, logits out (called
//! by `eval.rs`, which batches an evaluation into passes).
//!
//! One call processes a batch of consecutive positions (a prompt, or one
//! generated token). Per layer:
//!
//! ```text
//! xb = rms_norm(x)                      attention input
//! q, k, v = Wq xb, Wk xb, Wv xb         one weight pass for the whole batch
//! rope(q), rope(k)                      adjacent pairs, at each position
//! KV chunk[pos] = k, v
//! att = attention(q, chunks[0..=pos])   causal: each position sees itself and earlier ones
//! x += Wo att
//! x += ffn(rms_norm(x))                 through the WeightSource seam
//! ```
//!
//! then `logits = Wout rms_norm(x)` for the positions the caller wants.
//!
//! Gemma 3 runs the same loop with a few steps configured by
//! [`Arch`](super::Arch) (their pieces are in `gemma.rs`): embedding rows
//! scaled by `sqrt(hidden)`, each query and key head RMS-normalized before
//! RoPE, the attention and FFN outputs RMS-normalized before their residual
//! adds, a GELU gate in the FFN, and on local layers a sliding window over
//! the last positions with a RoPE base of their own.
//! GGUF stores llama's Q and K rows permuted so that RoPE rotates adjacent
//! pairs `(2i, 2i+1)` (llama.cpp's "normal" RoPE for llama); that is the
//! convention of [`Compute::rope`], so the weights are used as stored.
//!
//! Each phase borrows the arena once: the buffers it writes mutably, the
//! weights, KV chunks and buffers it reads shared (see [`split`]).

use lode_formats::gguf::dequantize_row;

use crate::arena::{DramArena, Slot};
use crate::compute::{AttentionShape, Compute, ErrorKind as ComputeKind};

use super::buffers::Buffers;
use super::config::LlamaConfig;
use super::error::EvalError;
use super::ffn::FfnIo;
use super::gemma::{head_norm, GemmaNorms};
use super::kv::{ChunkViews, KvCache};
use super::tensor::TensorRef;
use super::view::{f32s_mut, split};
use super::weight_source::WeightSource;
use super::weights::Attention;
use super::Model;

pub(crate) fn short() -> EvalError {
    EvalError::Compute(ComputeKind::ScratchTooSmall)
}

/// `v[r * w..(r + 1) * w]`, or an error.
pub(crate) fn rows(v: &[f32], w: usize, r: core::ops::Range<usize>) -> Result<&[f32], EvalError> {
    v.get(r.start * w..r.end * w).ok_or_else(short)
}

/// `v[r * w..(r + 1) * w]` mutably, or an error.
fn rows_mut(v: &mut [f32], w: usize, r: core::ops::Range<usize>) -> Result<&mut [f32], EvalError> {
    v.get_mut(r.start * w..r.end * w).ok_or_else(short)
}

impl<W: WeightSource> Model<W> {
    /// The embedding rows of `tokens` into `x`, decoded from the stored
    /// type.
    fn embed<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        tokens: &[u32],
    ) -> Result<(), EvalError> {
        let (b, hd) = (self.buf, self.cfg.hidden);
        let scale = self.arch.embed_scale(&self.cfg);
        for (i, &tok) in tokens.iter().enumerate() {
            let (embed, r) = self.weights.embedding_row(tok, arena, compute)?;
            let (t, m) = arena.parts_mut();
            let ([x], sh) = split(t, m, [b.x])?;
            let row = embed.row(&sh, r)?;
            let xr = rows_mut(f32s_mut(x)?, hd, i..i + 1)?;
            // The embedding's shape was checked at load: a row that does
            // not decode to `hidden` values is a broken invariant.
            dequantize_row(embed.dtype, row, xr).map_err(|_| {
                EvalError::Internal("an embedding row does not decode to the model's width")
            })?;
            if let Some(s) = scale {
                xr.iter_mut().for_each(|v| *v *= s);
            }
        }
        Ok(())
    }

    /// One batch through every layer; leaves the final residual in `x`.
    pub(super) fn forward<A: DramArena, C: Compute>(
        &mut self,
        kv: &KvCache,
        arena: &mut A,
        compute: &mut C,
        tokens: &[u32],
        pos0: usize,
    ) -> Result<(), EvalError> {
        let n = tokens.len();
        let c = self.cfg;
        let b = self.buf;
        let hd = c.hidden;
        let qd = c.heads * c.head_dim;
        let kvd = c.kv_dim();
        let ce = EvalError::compute::<C::Error>;

        self.embed(arena, compute, tokens)?;
        // Positions `0..pos0 + n` receive attention in this pass.
        arena
            .bytes_mut(b.received)
            .map_err(EvalError::arena)?
            .get_mut(..(pos0 + n) * 4)
            .ok_or_else(short)?
            .fill(0);

        let shape = AttentionShape {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
        };
        for l in 0..self.weights.layers() {
            if self.skipped >> l & 1 == 1 {
                continue;
            }
            let (attn_norm, ffn_norm) = self.weights.norms(l)?;
            norm_rows(arena, compute, b.x, b.xb, attn_norm, n, hd, c.rms_eps)?;
            let aw = self.weights.attention(l, arena, compute)?;
            let (base, window) = (self.arch.rope_base(&c, l), self.arch.window(l));
            let extra = self
                .gemma
                .get(l)
                .copied()
                .or_else(|| self.weights.extra_norms(l));

            // Projections, Gemma's Q/K norms and rotary embedding.
            let step = Step {
                n,
                pos0,
                base,
                extra,
            };
            project(arena, compute, &c, &b, &aw, step)?;

            // The new keys and values into their chunks.
            write_kv(kv, arena, &b, l, n, pos0, kvd)?;

            // Causal attention, position by position.
            {
                let (t, m) = arena.parts_mut();
                let ([att, scores, received], sh) = split(t, m, [b.att, b.scores, b.received])?;
                let att = f32s_mut(att)?;
                let scores = f32s_mut(scores)?;
                let received = f32s_mut(received)?;
                let q = sh.f32s(b.q)?;
                let mut views = ChunkViews::new();
                for i in 0..n {
                    let end = pos0 + i + 1;
                    // A sliding-window layer sees the last `w` positions.
                    let start = window.map_or(0, |w| end.saturating_sub(w));
                    kv.views(&sh, l, (start, end), &mut views)?;
                    let qr = rows(q, qd, i..i + 1)?;
                    let ar = rows_mut(att, qd, i..i + 1)?;
                    let seen = received.get_mut(start..end).ok_or_else(short)?;
                    compute
                        .attention_received(qr, &views, shape, scores, ar, seen)
                        .map_err(ce)?;
                }
            }

            // Output projection and residual.
            {
                let (t, m) = arena.parts_mut();
                let ([tmp, x], sh) = split(t, m, [b.tmp, b.x])?;
                let tmp = rows_mut(f32s_mut(tmp)?, hd, 0..n)?;
                let att = rows(sh.f32s(b.att)?, qd, 0..n)?;
                compute
                    .matmul(&aw.o.matrix(&sh)?, att, n, tmp)
                    .map_err(ce)?;
                if let Some(g) = extra {
                    head_norm(compute, tmp, g.post_attn.floats(&sh)?, c.rms_eps)?;
                }
                add_into(rows_mut(f32s_mut(x)?, hd, 0..n)?, tmp);
            }

            norm_rows(arena, compute, b.x, b.xb, ffn_norm, n, hd, c.rms_eps)?;
            let io = FfnIo {
                input: b.xb,
                output: b.tmp,
                rows: n,
            };
            self.weights.ffn(l, arena, compute, io)?;
            {
                let (t, m) = arena.parts_mut();
                let ([x, tmp], sh) = split(t, m, [b.x, b.tmp])?;
                let tmp = rows_mut(f32s_mut(tmp)?, hd, 0..n)?;
                if let Some(g) = extra {
                    head_norm(compute, tmp, g.post_ffn.floats(&sh)?, c.rms_eps)?;
                }
                add_into(rows_mut(f32s_mut(x)?, hd, 0..n)?, tmp);
            }
        }
        kv.add_received(arena, b.received, pos0 + n)
    }

    /// Logits of batch rows `first..n` (positions `pos0 + row`), through the
    /// final norm and the output head, `logit_rows` rows per weight pass.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn logits<A: DramArena, C: Compute, G: FnMut(usize, &[f32])>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        first: usize,
        n: usize,
        pos0: usize,
        on_logits: &mut G,
    ) -> Result<(), EvalError> {
        let c = self.cfg;
        let b = self.buf;
        let hd = c.hidden;
        let group = self.limits.logit_rows;
        let mut r = first;
        while r < n {
            let g = (n - r).min(group);
            {
                let (t, m) = arena.parts_mut();
                let ([xb], sh) = split(t, m, [b.xb])?;
                let xb = rows_mut(f32s_mut(xb)?, hd, 0..g)?;
                xb.copy_from_slice(rows(sh.f32s(b.x)?, hd, r..r + g)?);
                let norm = self.weights.output_norm().floats(&sh)?;
                for row in xb.chunks_exact_mut(hd) {
                    compute
                        .rms_norm(row, norm, c.rms_eps)
                        .map_err(EvalError::compute)?;
                }
            }
            let mut piece = 0;
            while let Some((head, row0)) = self.weights.head_piece(piece, arena, compute)? {
                piece += 1;
                let end = row0
                    .checked_add(head.rows)
                    .filter(|&e| e <= c.vocab)
                    .ok_or_else(short)?;
                let (t, m) = arena.parts_mut();
                let ([logits], sh) = split(t, m, [b.logits])?;
                let logits = rows_mut(f32s_mut(logits)?, c.vocab, 0..g)?;
                let xb = rows(sh.f32s(b.xb)?, hd, 0..g)?;
                let w = head.matrix(&sh)?;
                if row0 == 0 && head.rows == c.vocab {
                    compute
                        .matmul(&w, xb, g, logits)
                        .map_err(EvalError::compute)?;
                } else {
                    // A piece of the head: its rows' logits of each position.
                    for (xr, lr) in xb.chunks_exact(hd).zip(logits.chunks_exact_mut(c.vocab)) {
                        let out = lr.get_mut(row0..end).ok_or_else(short)?;
                        compute.matvec(&w, xr, out).map_err(EvalError::compute)?;
                    }
                }
            }
            self.refine_logits(arena, compute, g)?;
            let (t, m) = arena.parts_mut();
            let ([], sh) = split(t, m, [])?;
            let logits = rows(sh.f32s(b.logits)?, c.vocab, 0..g)?;
            for (i, l) in logits.chunks_exact(c.vocab).enumerate() {
                on_logits(pos0 + r + i, l);
            }
            r += g;
        }
        Ok(())
    }
}

/// One layer's batch: its rows, their first position, and the settings the
/// architecture gives the layer (RoPE base, Gemma's extra norms).
#[derive(Clone, Copy)]
struct Step {
    n: usize,
    pos0: usize,
    base: f32,
    extra: Option<GemmaNorms>,
}

/// `q, k, v = Wq xb, Wk xb, Wv xb` for the batch, then (Gemma) each query
/// and key head RMS-normalized, then RoPE at each row's position.
fn project<A: DramArena, C: Compute>(
    arena: &mut A,
    compute: &mut C,
    c: &LlamaConfig,
    b: &Buffers,
    aw: &Attention,
    s: Step,
) -> Result<(), EvalError> {
    let Step {
        n,
        pos0,
        base,
        extra,
    } = s;
    let (hd, qd, kvd) = (c.hidden, c.heads * c.head_dim, c.kv_dim());
    let ce = EvalError::compute::<C::Error>;
    let (t, m) = arena.parts_mut();
    let ([q, k, v], sh) = split(t, m, [b.q, b.k, b.v])?;
    let xb = rows(sh.f32s(b.xb)?, hd, 0..n)?;
    let q = rows_mut(f32s_mut(q)?, qd, 0..n)?;
    let k = rows_mut(f32s_mut(k)?, kvd, 0..n)?;
    let v = rows_mut(f32s_mut(v)?, kvd, 0..n)?;
    compute.matmul(&aw.q.matrix(&sh)?, xb, n, q).map_err(ce)?;
    compute.matmul(&aw.k.matrix(&sh)?, xb, n, k).map_err(ce)?;
    compute.matmul(&aw.v.matrix(&sh)?, xb, n, v).map_err(ce)?;
    let qk_norms = match extra {
        Some(g) => Some((g.q.floats(&sh)?, g.k.floats(&sh)?)),
        None => None,
    };
    for (i, (qr, kr)) in q
        .chunks_exact_mut(qd)
        .zip(k.chunks_exact_mut(kvd))
        .enumerate()
    {
        let pos = u32::try_from(pos0 + i).map_err(|_| short())?;
        if let Some((qn, kn)) = qk_norms {
            head_norm(compute, qr, qn, c.rms_eps)?;
            head_norm(compute, kr, kn, c.rms_eps)?;
        }
        compute.rope(qr, c.head_dim, pos, base).map_err(ce)?;
        compute.rope(kr, c.head_dim, pos, base).map_err(ce)?;
    }
    Ok(())
}

/// `xb[i] = rms_norm(x[i]) · w` for the first `n` rows.
#[allow(clippy::too_many_arguments)]
fn norm_rows<A: DramArena, C: Compute>(
    arena: &mut A,
    compute: &mut C,
    x: Slot,
    xb: Slot,
    w: TensorRef,
    n: usize,
    hd: usize,
    eps: f32,
) -> Result<(), EvalError> {
    let (t, m) = arena.parts_mut();
    let ([xb], sh) = split(t, m, [xb])?;
    let xb = rows_mut(f32s_mut(xb)?, hd, 0..n)?;
    xb.copy_from_slice(rows(sh.f32s(x)?, hd, 0..n)?);
    let w = w.floats(&sh)?;
    for row in xb.chunks_exact_mut(hd) {
        compute.rms_norm(row, w, eps).map_err(EvalError::compute)?;
    }
    Ok(())
}

/// Layer `l`'s new keys and values of the `n` batch rows (in `b.k`, `b.v`)
/// into their KV chunks at positions `pos0..pos0 + n`.
fn write_kv<A: DramArena>(
    kv: &KvCache,
    arena: &mut A,
    b: &Buffers,
    l: usize,
    n: usize,
    pos0: usize,
    kvd: usize,
) -> Result<(), EvalError> {
    for i in 0..n {
        let (chunk, ko, vo) = kv.row(l, pos0 + i)?;
        let (t, m) = arena.parts_mut();
        let ([dst], sh) = split(t, m, [chunk])?;
        let kr = bytemuck::cast_slice::<f32, u8>(rows(sh.f32s(b.k)?, kvd, i..i + 1)?);
        let vr = bytemuck::cast_slice::<f32, u8>(rows(sh.f32s(b.v)?, kvd, i..i + 1)?);
        dst.get_mut(ko..ko + kr.len())
            .ok_or_else(short)?
            .copy_from_slice(kr);
        dst.get_mut(vo..vo + vr.len())
            .ok_or_else(short)?
            .copy_from_slice(vr);
    }
    Ok(())
}

/// `x += y` element-wise (equal lengths).
fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
