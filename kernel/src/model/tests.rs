//! The forward pass against an independent f32 reference on a tiny random
//! model, with a naive [`Compute`] (f64 accumulation, no quantized
//! activations), so any difference is the loop's plumbing: KV chunking,
//! batching, GQA head mapping, RoPE positions, residuals, tied heads.

use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::{dequantize_row, Dims};
use lode_formats::DType;

use super::*;
use crate::arena::testing::VecArena;
use crate::compute::{
    AttentionShape, Bundles, Compute, ErrorKind as CK, KvBits, KvChunk, KvGroups, QuantMatrix,
};
use crate::rng::SplitMix64;

/// Textbook arithmetic in f64.
struct Naive;

impl Compute for Naive {
    type Error = CK;
    fn matvec(&mut self, w: &QuantMatrix<'_>, x: &[f32], out: &mut [f32]) -> Result<(), CK> {
        w.check()?;
        if x.len() != w.cols || out.len() != w.rows {
            return Err(CK::ShapeMismatch);
        }
        let rb = w.row_bytes().ok_or(CK::ShapeMismatch)?;
        let mut row = vec![0f32; w.cols];
        for (o, r) in out.iter_mut().zip(w.data.chunks_exact(rb.max(1))) {
            dequantize_row(w.dtype, r, &mut row).map_err(|_| CK::UnsupportedType)?;
            *o = row
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32;
        }
        Ok(())
    }
    fn rms_norm(&mut self, x: &mut [f32], w: &[f32], eps: f32) -> Result<(), CK> {
        if x.len() != w.len() {
            return Err(CK::ShapeMismatch);
        }
        let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
        let k = 1.0 / (ms + eps as f64).sqrt();
        x.iter_mut()
            .zip(w)
            .for_each(|(v, &w)| *v = (*v as f64 * k * w as f64) as f32);
        Ok(())
    }
    fn rope(&mut self, x: &mut [f32], hd: usize, pos: u32, base: f32) -> Result<(), CK> {
        for head in x.chunks_exact_mut(hd) {
            for (i, p) in head.chunks_exact_mut(2).enumerate() {
                let th = pos as f64 * (base as f64).powf(-(2.0 * i as f64) / hd as f64);
                let (a, b) = (p[0] as f64, p[1] as f64);
                p[0] = (a * th.cos() - b * th.sin()) as f32;
                p[1] = (a * th.sin() + b * th.cos()) as f32;
            }
        }
        Ok(())
    }
    fn attention(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        s: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        let kvd = s.kv_heads * s.head_dim;
        let keys: Vec<&[f32]> = kv.iter().flat_map(|c| c.keys.chunks_exact(kvd)).collect();
        let vals: Vec<&[f32]> = kv.iter().flat_map(|c| c.values.chunks_exact(kvd)).collect();
        if scores.len() < keys.len() {
            return Err(CK::ScratchTooSmall);
        }
        let hd = s.head_dim;
        for h in 0..s.heads {
            let off = h / (s.heads / s.kv_heads) * hd;
            let qh = &q[h * hd..(h + 1) * hd];
            let sc: Vec<f64> = keys
                .iter()
                .map(|k| {
                    qh.iter()
                        .zip(&k[off..off + hd])
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[h * hd + d] = (e
                    .iter()
                    .zip(&vals)
                    .map(|(p, v)| p * v[off + d] as f64)
                    .sum::<f64>()
                    / z) as f32;
            }
        }
        Ok(())
    }
    fn gated_ffn(
        &mut self,
        x: &[f32],
        b: &Bundles<'_>,
        hid: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        let d = b.hidden;
        let rb = b.dtype.row_bytes(d as u64).ok_or(CK::ShapeMismatch)? as usize;
        let bb = Bundles::bundle_bytes(b.dtype, b.down_dtype, d).ok_or(CK::ShapeMismatch)?;
        if x.len() != d || out.len() != d || bb * b.count != b.data.len() {
            return Err(CK::ShapeMismatch);
        }
        let hid = hid.get_mut(..b.count).ok_or(CK::ScratchTooSmall)?;
        let (mut g, mut u, mut dn) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
        let dot = |w: &[f32]| {
            w.iter()
                .zip(x)
                .map(|(&a, &c)| a as f64 * c as f64)
                .sum::<f64>()
        };
        let mut acc: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        for (bundle, h) in b.data.chunks_exact(bb.max(1)).zip(hid.iter_mut()) {
            let bad = |_| CK::UnsupportedType;
            dequantize_row(b.dtype, &bundle[..rb], &mut g).map_err(bad)?;
            dequantize_row(b.dtype, &bundle[rb..2 * rb], &mut u).map_err(bad)?;
            dequantize_row(b.down_dtype, &bundle[2 * rb..], &mut dn).map_err(bad)?;
            let gv = dot(&g);
            let hv = gv / (1.0 + (-gv).exp()) * dot(&u);
            *h = hv as f32;
            acc.iter_mut()
                .zip(&dn)
                .for_each(|(a, &w)| *a += hv * w as f64);
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        Ok(())
    }
    fn axpy_columns(
        &mut self,
        dtype: DType,
        cols: &[&[u8]],
        w: &[f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        if cols.len() != w.len() {
            return Err(CK::ShapeMismatch);
        }
        let mut col = vec![0f32; out.len()];
        let mut acc: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        for (c, &a) in cols.iter().zip(w) {
            dequantize_row(dtype, c, &mut col).map_err(|_| CK::UnsupportedType)?;
            acc.iter_mut()
                .zip(&col)
                .for_each(|(s, &v)| *s += a as f64 * v as f64);
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        Ok(())
    }
    fn swiglu(&mut self, g: &mut [f32], u: &[f32]) -> Result<(), CK> {
        g.iter_mut().zip(u).for_each(|(g, &u)| {
            let x = *g as f64;
            *g = (x / (1.0 + (-x).exp()) * u as f64) as f32;
        });
        Ok(())
    }
    fn kv_quantize(&mut self, _: &[f32], _: KvGroups, _: KvBits, _: &mut [u8]) -> Result<(), CK> {
        Err(CK::Other)
    }
    fn kv_dequantize(&mut self, _: &[u8], _: KvGroups, _: KvBits, _: &mut [f32]) -> Result<(), CK> {
        Err(CK::Other)
    }
}

fn tiny(tied: bool) -> LlamaConfig {
    LlamaConfig {
        layers: 2,
        hidden: 64,
        ffn: 96,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        vocab: 50,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 64,
        tied_embeddings: tied,
    }
}

/// A named tensor stored in memory.
struct T {
    name: String,
    dtype: DType,
    dims: Vec<u64>,
    data: Vec<u8>,
    /// The values as f32 (for the reference).
    values: Vec<f32>,
}

/// A model's tensors in memory.
struct Src(Vec<T>);

impl TensorSource for Src {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
        Ok(self.0.iter().find(|t| t.name == name).map(|t| RawTensor {
            dtype: t.dtype,
            dims: Dims::new(&t.dims).unwrap(),
            data: &t.data,
        }))
    }
}

impl Src {
    fn get(&self, name: &str) -> &[f32] {
        &self.0.iter().find(|t| t.name == name).unwrap().values
    }
    fn find_mut(&mut self, name: &str) -> &mut T {
        self.0.iter_mut().find(|t| t.name == name).unwrap()
    }
}

fn f32_tensor(name: String, dims: &[u64], rng: &mut SplitMix64, scale: f32, offset: f32) -> T {
    let n: u64 = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| offset + scale * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0))
        .collect();
    T {
        name,
        dtype: DType::F32,
        dims: dims.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        values,
    }
}

/// A Q8_0 tensor with scale 1/16 and random codes: exactly representable.
fn q8_tensor(name: String, dims: &[u64], rng: &mut SplitMix64) -> T {
    let n: u64 = dims.iter().product();
    let mut data = Vec::new();
    let mut values = Vec::new();
    for _ in 0..n / 32 {
        data.extend_from_slice(&0x2C00u16.to_le_bytes()); // f16 0.0625
        for _ in 0..32 {
            let q = (rng.next_u64() % 61) as i8 - 30;
            data.push(q as u8);
            values.push(q as f32 * 0.0625);
        }
    }
    T {
        name,
        dtype: DType::Q8_0,
        dims: dims.to_vec(),
        data,
        values,
    }
}

fn model_src(c: &LlamaConfig, seed: u64) -> Src {
    let mut r = SplitMix64::new(seed);
    let (h, f, v, kvd) = (
        c.hidden as u64,
        c.ffn as u64,
        c.vocab as u64,
        c.kv_dim() as u64,
    );
    let mut t = vec![
        q8_tensor("token_embd.weight".into(), &[h, v], &mut r),
        f32_tensor("output_norm.weight".into(), &[h], &mut r, 0.2, 1.0),
    ];
    if !c.tied_embeddings {
        t.push(f32_tensor(
            "output.weight".into(),
            &[h, v],
            &mut r,
            0.3,
            0.0,
        ));
    }
    for l in 0..c.layers {
        let n = |s: &str| std::format!("blk.{l}.{s}");
        let s = 1.0 / (c.hidden as f32).sqrt();
        t.push(f32_tensor(n("attn_norm.weight"), &[h], &mut r, 0.2, 1.0));
        t.push(f32_tensor(
            n("attn_q.weight"),
            &[h, h],
            &mut r,
            2.0 * s,
            0.0,
        ));
        t.push(f32_tensor(
            n("attn_k.weight"),
            &[h, kvd],
            &mut r,
            2.0 * s,
            0.0,
        ));
        t.push(f32_tensor(n("attn_v.weight"), &[h, kvd], &mut r, s, 0.0));
        t.push(f32_tensor(n("attn_output.weight"), &[h, h], &mut r, s, 0.0));
        t.push(f32_tensor(n("ffn_norm.weight"), &[h], &mut r, 0.2, 1.0));
        t.push(f32_tensor(n("ffn_gate.weight"), &[h, f], &mut r, s, 0.0));
        t.push(f32_tensor(n("ffn_up.weight"), &[h, f], &mut r, s, 0.0));
        t.push(f32_tensor(
            n("ffn_down.weight"),
            &[f, h],
            &mut r,
            1.0 / (c.ffn as f32).sqrt(),
            0.0,
        ));
    }
    Src(t)
}

/// `out[r] = Σ_c m[r * cols + c] · x[c]`, f64.
fn mv(m: &[f32], x: &[f32]) -> Vec<f32> {
    m.chunks_exact(x.len())
        .map(|r| {
            r.iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

fn norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let k = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &w)| (v as f64 * k * w as f64) as f32)
        .collect()
}

fn rope(x: &mut [f32], hd: usize, pos: usize, base: f32) {
    for h in 0..x.len() / hd {
        for i in 0..hd / 2 {
            let th = pos as f64 * (base as f64).powf(-(2.0 * i as f64) / hd as f64);
            let (a, b) = (x[h * hd + 2 * i] as f64, x[h * hd + 2 * i + 1] as f64);
            x[h * hd + 2 * i] = (a * th.cos() - b * th.sin()) as f32;
            x[h * hd + 2 * i + 1] = (a * th.sin() + b * th.cos()) as f32;
        }
    }
}

/// Logits after every position, written from the llama definition with
/// plain vectors (keys and values kept per layer in growing lists).
fn reference(src: &Src, c: &LlamaConfig, tokens: &[u32]) -> Vec<Vec<f32>> {
    let (hd, dh) = (c.hidden, c.head_dim);
    let group = c.heads / c.kv_heads;
    let embd = src.get("token_embd.weight");
    let out_w = if c.tied_embeddings {
        embd
    } else {
        src.get("output.weight")
    };
    let mut keys: Vec<Vec<Vec<f32>>> = vec![Vec::new(); c.layers];
    let mut vals: Vec<Vec<Vec<f32>>> = vec![Vec::new(); c.layers];
    let mut all = Vec::new();
    for (pos, &t) in tokens.iter().enumerate() {
        let mut x = embd[t as usize * hd..(t as usize + 1) * hd].to_vec();
        for l in 0..c.layers {
            let w = |s: &str| src.get(&std::format!("blk.{l}.{s}"));
            let xb = norm(&x, w("attn_norm.weight"), c.rms_eps);
            let mut q = mv(w("attn_q.weight"), &xb);
            let mut k = mv(w("attn_k.weight"), &xb);
            let v = mv(w("attn_v.weight"), &xb);
            rope(&mut q, dh, pos, c.rope_base);
            rope(&mut k, dh, pos, c.rope_base);
            keys[l].push(k);
            vals[l].push(v);
            let mut att = vec![0f32; hd];
            for h in 0..c.heads {
                let kh = h / group;
                let s: Vec<f64> = keys[l]
                    .iter()
                    .map(|k| {
                        (0..dh)
                            .map(|d| q[h * dh + d] as f64 * k[kh * dh + d] as f64)
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                for d in 0..dh {
                    att[h * dh + d] = (s
                        .iter()
                        .zip(&vals[l])
                        .map(|(sv, v)| (sv - m).exp() / z * v[kh * dh + d] as f64)
                        .sum::<f64>()) as f32;
                }
            }
            let o = mv(w("attn_output.weight"), &att);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xb = norm(&x, w("ffn_norm.weight"), c.rms_eps);
            let g = mv(w("ffn_gate.weight"), &xb);
            let u = mv(w("ffn_up.weight"), &xb);
            let hmid: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let d = mv(w("ffn_down.weight"), &hmid);
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        let xn = norm(&x, src.get("output_norm.weight"), c.rms_eps);
        all.push(mv(out_w, &xn));
    }
    all
}

fn arena_for(src: &Src, c: &LlamaConfig, l: &Limits) -> (VecArena, MemoryPlan) {
    let plan = MemoryPlan::dense(src, c, l).unwrap();
    (VecArena::new(plan.total()), plan)
}

/// Runs `tokens` through a fresh model in calls of the given lengths,
/// returning the logits of every position.
fn run(src: &Src, c: &LlamaConfig, l: Limits, tokens: &[u32], calls: &[usize]) -> Vec<Vec<f32>> {
    let (mut arena, plan) = arena_for(src, c, &l);
    let mut m = Model::load(src, *c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let mut out = Vec::new();
    let mut at = 0;
    for &n in calls {
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &tokens[at..at + n],
            WantLogits::From(0),
            |p, lg| {
                assert_eq!(p, out.len());
                out.push(lg.to_vec());
            },
        )
        .unwrap();
        at += n;
    }
    assert_eq!(ctx.len(), tokens.len());
    assert!(arena.peak() <= plan.total());
    out
}

fn close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (p, (x, y)) in a.iter().zip(b).enumerate() {
        for (i, (u, v)) in x.iter().zip(y).enumerate() {
            assert!(
                (u - v).abs() <= tol * (1.0 + v.abs()),
                "position {p} logit {i}: {u} vs {v}"
            );
        }
    }
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| (r.next_u64() % vocab as u64) as u32)
        .collect()
}

#[test]
fn matches_the_reference_across_chunk_boundaries() {
    for tied in [true, false] {
        let c = tiny(tied);
        let src = model_src(&c, 7);
        let toks = tokens(40, c.vocab, 1);
        let want = reference(&src, &c, &toks);
        // One position at a time, then batches of 8 that straddle chunks.
        close(
            &run(&src, &c, Limits::new(48, 1), &toks, &[40]),
            &want,
            1e-4,
        );
        let l = Limits::new(48, 8).with_logit_rows(3);
        close(&run(&src, &c, l, &toks, &[13, 1, 1, 20, 5]), &want, 1e-4);
    }
}

#[test]
fn logits_are_reported_only_where_wanted() {
    let c = tiny(true);
    let src = model_src(&c, 3);
    let l = Limits::new(32, 4).with_logit_rows(2);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let toks = tokens(10, c.vocab, 2);
    let mut seen = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks[..7],
        WantLogits::Last,
        |p, _| seen.push(p),
    )
    .unwrap();
    assert_eq!(seen, [6]);
    seen.clear();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks[7..],
        WantLogits::From(8),
        |p, _| seen.push(p),
    )
    .unwrap();
    assert_eq!(seen, [8, 9]);
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &[1],
        WantLogits::None,
        |_, _| panic!("no logits wanted"),
    )
    .unwrap();
    assert_eq!(ctx.len(), 11);
}

#[test]
fn reset_frees_the_context_and_repeats_exactly() {
    let c = tiny(true);
    let src = model_src(&c, 5);
    let l = Limits::new(40, 8);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let toks = tokens(33, c.vocab, 4);
    let mut first = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks,
        WantLogits::Last,
        |_, lg| first = lg.to_vec(),
    )
    .unwrap();
    assert_eq!(ctx.kv().chunks().len(), 3);
    let kv_bytes = arena.used_by(crate::arena::SlotKind::KvChunk);
    assert_eq!(kv_bytes, 3 * KvCache::chunk_bytes(&c));
    ctx.clear(&mut arena).unwrap();
    assert!(ctx.is_empty());
    assert_eq!(arena.used_by(crate::arena::SlotKind::KvChunk), 0);
    let mut again = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks,
        WantLogits::Last,
        |_, lg| again = lg.to_vec(),
    )
    .unwrap();
    assert_eq!(first, again);
}

/// Greedy continuation of `prompt` by `n` tokens in `ctx`, with every
/// position's logits.
fn greedy<W: WeightSource>(
    m: &mut Model<W>,
    ctx: &mut Context,
    arena: &mut VecArena,
    prompt: &[u32],
    n: usize,
) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    let mut feed = prompt.to_vec();
    for _ in 0..n {
        m.eval(ctx, arena, &mut Naive, &feed, WantLogits::Last, |_, lg| {
            out.push(lg.to_vec())
        })
        .unwrap();
        let l = out.last().unwrap();
        let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        feed = vec![best as u32];
    }
    out
}

#[test]
fn contexts_over_one_model_equal_each_alone() {
    let c = tiny(true);
    let src = model_src(&c, 21);
    let prompts = [
        tokens(19, c.vocab, 1),
        tokens(5, c.vocab, 2),
        tokens(33, c.vocab, 3),
    ];
    // Each conversation alone, in a model of its own.
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| {
            let l = Limits::new(48, 8);
            let (mut arena, _) = arena_for(&src, &c, &l);
            let mut m = Model::load(&src, c, l, &mut arena).unwrap();
            let mut ctx = m.new_context();
            greedy(&mut m, &mut ctx, &mut arena, p, 6)
        })
        .collect();
    // All three over one model in one arena planned for three contexts,
    // interleaved token by token.
    let l = Limits::new(48, 8).with_contexts(3);
    let (mut arena, plan) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctxs: Vec<Context> = prompts.iter().map(|_| m.new_context()).collect();
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
    let mut feed: Vec<Vec<u32>> = prompts.to_vec();
    for _ in 0..6 {
        for i in [2, 0, 1] {
            m.eval(
                &mut ctxs[i],
                &mut arena,
                &mut Naive,
                &feed[i],
                WantLogits::Last,
                |_, lg| got[i].push(lg.to_vec()),
            )
            .unwrap();
            let l = got[i].last().unwrap();
            feed[i] = vec![(0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32];
        }
    }
    assert_eq!(got, alone, "interleaved contexts differ from each alone");
    for (ctx, p) in ctxs.iter().zip(&prompts) {
        assert_eq!(ctx.len(), p.len() + 5);
    }
    assert!(arena.peak() <= plan.total());
    // Clearing one context frees only its chunks; the others go on.
    let before = arena.used_by(crate::arena::SlotKind::KvChunk);
    let freed = ctxs[1].chunks().len() * KvCache::chunk_bytes(&c);
    ctxs[1].clear(&mut arena).unwrap();
    assert_eq!(
        arena.used_by(crate::arena::SlotKind::KvChunk),
        before - freed
    );
    let mut again = m.new_context();
    assert_eq!(
        greedy(&mut m, &mut again, &mut arena, &prompts[1], 6),
        alone[1]
    );
}

#[test]
fn a_context_of_another_model_is_refused() {
    let c = tiny(true);
    let src = model_src(&c, 4);
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let longer = Context::new(&c, &Limits::new(64, 4));
    let other = LlamaConfig {
        layers: c.layers + 1,
        ..c
    };
    for mut ctx in [longer, Context::new(&other, &l)] {
        let r = m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1],
            WantLogits::Last,
            |_, _| {},
        );
        assert_eq!(r, Err(EvalError::ForeignContext));
        assert!(ctx.is_empty());
    }
}

#[test]
fn full_context_and_bad_tokens_are_errors_that_change_nothing() {
    let c = tiny(true);
    let src = model_src(&c, 9);
    let l = Limits::new(20, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &tokens(18, c.vocab, 1),
        WantLogits::None,
        |_, _| {},
    )
    .unwrap();
    let used = arena.used();
    assert_eq!(
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1, 2, 3],
            WantLogits::Last,
            |_, _| {}
        ),
        Err(EvalError::ContextFull { max: 20 })
    );
    assert_eq!(
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1, 50],
            WantLogits::Last,
            |_, _| {}
        )
        .map_err(|e| e.kind()),
        Err(ErrorKind::BadToken)
    );
    assert_eq!((ctx.len(), arena.used()), (18, used));
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &[1, 2],
        WantLogits::Last,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(ctx.len(), 20);
}

#[test]
fn the_plan_is_exact_and_a_smaller_arena_fails_cleanly() {
    let c = tiny(false);
    let src = model_src(&c, 11);
    let l = Limits::new(64, 16).with_logit_rows(4);
    let plan = MemoryPlan::dense(&src, &c, &l).unwrap();
    let mut arena = VecArena::new(plan.total());
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    // Loading allocated exactly what the plan counted, kind by kind.
    assert_eq!(plan.arena_use.check(&arena), Ok(()));
    let mut ctx = m.new_context();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &tokens(64, c.vocab, 5),
        WantLogits::Last,
        |_, _| {},
    )
    .unwrap();
    // Every planned byte was used, up to each slot's alignment padding.
    assert!(arena.peak() <= plan.total());
    assert!(
        plan.total() - arena.peak() < plan.slots * ALIGN,
        "{plan:?} peak {}",
        arena.peak()
    );
    assert_eq!(arena.parts().0.live(), plan.slots);
    assert_eq!(arena.used_by(crate::arena::SlotKind::KvChunk), plan.kv);
    assert_eq!(plan.arena_use.check(&arena), Ok(()));

    let mut small = VecArena::new(plan.total() - KvCache::chunk_bytes(&c));
    let mut m = Model::load(&src, c, l, &mut small).unwrap();
    let mut ctx = m.new_context();
    let err = m.eval(
        &mut ctx,
        &mut small,
        &mut Naive,
        &tokens(64, c.vocab, 5),
        WantLogits::Last,
        |_, _| {},
    );
    assert_eq!(
        err,
        Err(EvalError::Arena(crate::arena::ErrorKind::OutOfMemory))
    );
    let mut tiny_arena = VecArena::new(plan.weights / 2);
    assert_eq!(
        Model::load(&src, c, l, &mut tiny_arena)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::Arena)
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let c = tiny(true);
    let l = Limits::new(16, 4);
    let mut src = model_src(&c, 1);
    src.find_mut("blk.1.ffn_down.weight").name = "blk.1.ffn_down.bias".into();
    let mut a = VecArena::new(1 << 20);
    match Model::load(&src, c, l, &mut a) {
        Err(LoadError::Tensor { name, .. }) => assert_eq!(name.as_str(), "blk.1.ffn_down.weight"),
        other => panic!("{other:?}"),
    }
    let mut src = model_src(&c, 1);
    src.find_mut("blk.0.attn_k.weight").dims = vec![64, 64];
    assert!(matches!(
        MemoryPlan::dense(&src, &c, &l),
        Err(LoadError::Tensor { .. })
    ));
    let mut src = model_src(&c, 1);
    src.find_mut("output_norm.weight").data.pop();
    assert!(matches!(
        MemoryPlan::dense(&src, &c, &l),
        Err(LoadError::Tensor { .. })
    ));
    // An untied config needs output.weight, which this source lacks.
    let src = model_src(&c, 1);
    assert!(matches!(
        MemoryPlan::dense(&src, &tiny(false), &l),
        Err(LoadError::Tensor { .. })
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    /// However a sequence is cut into calls and batches, every position's
    /// logits are the same.
    #[test]
    fn batching_does_not_change_results(
        seed in 0u64..1000,
        len in 1usize..30,
        batch in 1usize..12,
        cut in 0usize..30,
    ) {
        let c = tiny(true);
        let src = model_src(&c, seed);
        let toks = tokens(len, c.vocab, seed + 1);
        let one = run(&src, &c, Limits::new(32, 1), &toks, &[len]);
        let cut = cut.min(len);
        let calls: Vec<usize> = [cut, len - cut].into_iter().filter(|&n| n > 0).collect();
        let many = run(&src, &c, Limits::new(32, batch.min(32)), &toks, &calls);
        for (a, b) in one.iter().zip(&many) {
            for (x, y) in a.iter().zip(b) {
                proptest::prop_assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()));
            }
        }
    }
}

/// F32 bundles of layer `layer` written from `src`: gate row, up row and
/// down column of each neuron in turn.
fn f32_bundles(src: &Src, c: &LlamaConfig, layer: usize, out: &mut [u8]) {
    let (h, f) = (c.hidden, c.ffn);
    let gate = src.get(&std::format!("blk.{layer}.ffn_gate.weight"));
    let up = src.get(&std::format!("blk.{layer}.ffn_up.weight"));
    let down = src.get(&std::format!("blk.{layer}.ffn_down.weight"));
    let mut vals = Vec::with_capacity(3 * h * f);
    for n in 0..f {
        vals.extend_from_slice(&gate[n * h..(n + 1) * h]);
        vals.extend_from_slice(&up[n * h..(n + 1) * h]);
        vals.extend((0..h).map(|r| down[r * f + n]));
    }
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.copy_from_slice(&bytes);
}

#[test]
fn bundle_ffn_matches_the_reference() {
    let c = tiny(false);
    let src = model_src(&c, 11);
    let toks = tokens(20, c.vocab, 2);
    let want = reference(&src, &c, &toks);
    let types = BundleTypes {
        rows: DType::F32,
        down: DType::F32,
    };
    let l = Limits::new(32, 4);
    let dense = MemoryPlan::dense(&src, &c, &l).unwrap();
    let (bytes, slots) = BundleFfn::arena_bytes(&c, types).unwrap();
    let plan = MemoryPlan {
        ffn: bytes,
        slots: dense.slots + slots,
        ..dense
    };
    let mut arena = VecArena::new(plan.total());
    let ffn = BundleFfn::load(&c, &l, types, &mut arena, |layer, out| {
        f32_bundles(&src, &c, layer, out);
        Ok(())
    })
    .unwrap();
    assert_eq!(ffn.types(), types);
    let mut m = Model::with_ffn(&src, c, l, &mut arena, ffn).unwrap();
    let mut ctx = m.new_context();
    let mut got = Vec::new();
    for chunk in toks.chunks(3) {
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            chunk,
            WantLogits::From(0),
            |_, lg| got.push(lg.to_vec()),
        )
        .unwrap();
    }
    close(&got, &want, 1e-4);
    assert!(arena.peak() <= plan.total());
}

#[test]
fn bundle_ffn_calls_out_of_range_are_errors() {
    let c = tiny(true);
    let src = model_src(&c, 3);
    let types = BundleTypes {
        rows: DType::F32,
        down: DType::F32,
    };
    let mut arena = VecArena::new(1 << 20);
    let mut ffn = BundleFfn::load(&c, &Limits::new(8, 2), types, &mut arena, |layer, out| {
        f32_bundles(&src, &c, layer, out);
        Ok(())
    })
    .unwrap();
    let input = arena
        .alloc(4 * 3 * c.hidden, 64, crate::arena::SlotKind::Scratch)
        .unwrap();
    let output = arena
        .alloc(4 * 3 * c.hidden, 64, crate::arena::SlotKind::Scratch)
        .unwrap();
    let io = |rows| FfnIo {
        input,
        output,
        rows,
    };
    assert!(ffn.run(2, &mut arena, &mut Naive, io(1)).is_err());
    assert!(ffn.run(0, &mut arena, &mut Naive, io(0)).is_err());
    assert!(ffn.run(0, &mut arena, &mut Naive, io(3)).is_err());
    // Two rows: each output row is its own input's FFN, overwritten.
    arena.bytes_mut(output).unwrap().fill(0x7f);
    let x: Vec<f32> = (0..2 * c.hidden)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    arena.bytes_mut(input).unwrap()[..xb.len()].copy_from_slice(&xb);
    ffn.run(1, &mut arena, &mut Naive, io(2)).unwrap();
    let got = view::f32s(arena.bytes(output).unwrap()).unwrap().to_vec();
    let (h, f) = (c.hidden, c.ffn);
    let gate = src.get("blk.1.ffn_gate.weight");
    let up = src.get("blk.1.ffn_up.weight");
    let down = src.get("blk.1.ffn_down.weight");
    for r in 0..2 {
        let xr = &x[r * h..(r + 1) * h];
        let act: Vec<f32> = (0..f)
            .map(|n| {
                let g = mv(&gate[n * h..(n + 1) * h], xr)[0];
                let u = mv(&up[n * h..(n + 1) * h], xr)[0];
                g / (1.0 + (-g).exp()) * u
            })
            .collect();
        let want = mv(down, &act);
        for (a, b) in got[r * h..(r + 1) * h].iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn bundle_ffn_rejects_types_that_do_not_fit_hidden() {
    let mut c = tiny(true);
    c.hidden = 48; // not whole Q8_0 blocks
    let types = BundleTypes {
        rows: DType::Q8_0,
        down: DType::Q8_0,
    };
    assert!(matches!(
        BundleFfn::layer_bytes(&c, types),
        Err(LoadError::Config(_))
    ));
    let c = tiny(true);
    let mut arena = VecArena::new(1 << 16);
    // The fill's error comes back unchanged and nothing is half-built.
    let err = BundleFfn::load(&c, &Limits::new(8, 1), types, &mut arena, |_, _| {
        Err(LoadError::Config("fill failed"))
    })
    .unwrap_err();
    assert!(matches!(err, LoadError::Config("fill failed")));
}

mod errors;
