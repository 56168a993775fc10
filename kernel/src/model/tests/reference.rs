//! The llama forward pass written from its definition with plain
//! vectors, and the helpers that run the kernel's model against it.

use super::*;

/// `out[r] = Σ_c m[r * cols + c] · x[c]`, f64.
pub(super) fn mv(m: &[f32], x: &[f32]) -> Vec<f32> {
    m.chunks_exact(x.len())
        .map(|r| {
            r.iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

pub(super) fn norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let k = 1.0 / (ms + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &w)| (v as f64 * k * w as f64) as f32)
        .collect()
}

pub(super) fn rope(x: &mut [f32], hd: usize, pos: usize, base: f32) {
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
pub(super) fn reference(src: &Src, c: &LlamaConfig, tokens: &[u32]) -> Vec<Vec<f32>> {
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

pub(super) fn arena_for(src: &Src, c: &LlamaConfig, l: &Limits) -> (VecArena, MemoryPlan) {
    let plan = MemoryPlan::dense(src, c, l).unwrap();
    (VecArena::new(plan.total()), plan)
}

/// Runs `tokens` through a fresh model in calls of the given lengths,
/// returning the logits of every position.
pub(super) fn run(
    src: &Src,
    c: &LlamaConfig,
    l: Limits,
    tokens: &[u32],
    calls: &[usize],
) -> Vec<Vec<f32>> {
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

pub(super) fn close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32) {
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

pub(super) fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| (r.next_u64() % vocab as u64) as u32)
        .collect()
}
