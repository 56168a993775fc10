//! Cross-module tests of `CpuCompute`: every SIMD path against the scalar
//! path, products against a dequantize-then-f64 reference, threaded against
//! single-threaded, and the operations against naive definitions.

use lode_kernel::compute::{
    AttentionShape, Bundles, Compute, DType, ErrorKind, KvBits, KvChunk, KvGroups, QuantMatrix,
};
use lode_kernel::rng::SplitMix64;
use proptest::prelude::*;

use super::act::ActBlock;
use super::kernels::{scalar, Kernels, QType, RowType};
use super::testutil::*;
use super::*;

fn cpu(threads: usize, force_scalar: bool) -> CpuCompute<'static> {
    let cfg = CpuConfig {
        min_work_per_chunk: 1,
        spin_micros: 50,
        ..CpuConfig::new(1024)
            .with_threads(threads)
            .with_force_scalar(force_scalar)
    };
    CpuCompute::new(cfg).unwrap()
}

fn qtype(dtype: DType) -> Option<QType> {
    match RowType::of(dtype)? {
        RowType::Quant(t) => Some(t),
        RowType::Float { .. } => None,
    }
}

/// `|a - b| <= rel · scale + abs`.
fn close(a: f32, b: f32, rel: f32, scale: f32) -> bool {
    (a - b).abs() <= rel * scale + 1e-6
}

#[test]
fn simd_is_detected_where_available() {
    let c = cpu(1, false);
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
    {
        assert!(matches!(c.isa(), Isa::Avx2 | Isa::Avx2Vnni));
    }
    #[cfg(target_arch = "aarch64")]
    assert!(matches!(c.isa(), Isa::Neon | Isa::NeonDotProd));
    assert_eq!(cpu(1, true).isa(), Isa::Scalar);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Activation quantization is bit-identical on every path.
    #[test]
    fn act_quantization_matches_scalar(
        seed in any::<u64>(),
        blocks in 1usize..12,
        scale in prop_oneof![Just(1e-30f32), Just(1e-3f32), Just(1.0f32), Just(1e4f32)],
        zero_block in any::<bool>(),
    ) {
        let mut r = SplitMix64::new(seed);
        let mut x = rand_vec(&mut r, blocks * 32, scale);
        if zero_block {
            x[..32].fill(0.0);
        }
        // With amax 127 (d = 1) these are exact ties for the rounding.
        x[1] = 127.0;
        x[2] = 2.5;
        x[3] = -3.5;
        let mut a = vec![ActBlock::ZERO; blocks];
        let mut b = vec![ActBlock::ZERO; blocks];
        prop_assert!(Kernels::Scalar.quantize_act(&x, &mut a));
        prop_assert!(Kernels::detect(false).quantize_act(&x, &mut b));
        prop_assert_eq!(a, b);
    }

    /// Each SIMD kernel against the scalar one on the same inputs.
    #[test]
    fn simd_kernels_match_scalar(
        seed in any::<u64>(),
        t in 0usize..6,
        blocks in 1usize..10,
        raw in any::<bool>(),
        alpha in -2.0f32..2.0,
    ) {
        let dtype = ALL_TYPES[t];
        let cols = blocks * 32;
        let mut r = SplitMix64::new(seed);
        let row = rand_matrix(&mut r, dtype, 1, cols, raw);
        let x = rand_vec(&mut r, cols, 3.0);
        let mut act = vec![ActBlock::ZERO; blocks];
        prop_assert!(Kernels::Scalar.quantize_act(&x, &mut act));
        let simd = Kernels::detect(false);
        let rt = RowType::of(dtype).unwrap();
        let w = dequant(dtype, &row, 1, cols);
        let scale: f32 = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1.0;

        let a = Kernels::Scalar.dot_row(rt, &row, &x, &act);
        let b = simd.dot_row(rt, &row, &x, &act);
        prop_assert!(close(a, b, 2e-6, scale), "{dtype:?} dot {a} vs {b}");
        if let (Some(_), Isa::Neon | Isa::NeonDotProd) = (qtype(dtype), simd.isa()) {
            prop_assert_eq!(a.to_bits(), b.to_bits(), "NEON quantized dots are bit-identical");
        }

        let y0 = rand_vec(&mut r, cols, 1.0);
        let (mut ya, mut yb) = (y0.clone(), y0.clone());
        Kernels::Scalar.axpy_row(rt, &row, alpha, &mut ya);
        simd.axpy_row(rt, &row, alpha, &mut yb);
        for ((p, q), wj) in ya.iter().zip(&yb).zip(&w) {
            prop_assert!(close(*p, *q, 1e-6, 1.0 + (alpha * wj).abs() * 4.0), "{dtype:?} axpy {p} vs {q}");
        }

        // Paired dots and four-row axpys against their single-row forms.
        let rows4 = rand_matrix(&mut r, dtype, 4, cols, raw);
        let rb = rows4.len() / 4;
        let rs: Vec<&[u8]> = rows4.chunks_exact(rb).collect();
        let (p0, p1) = simd.dot2_row(rt, rs[0], rs[1], &x, &act);
        prop_assert_eq!(p0.to_bits(), simd.dot_row(rt, rs[0], &x, &act).to_bits());
        prop_assert_eq!(p1.to_bits(), simd.dot_row(rt, rs[1], &x, &act).to_bits());
        let w4 = dequant(dtype, &rows4, 4, cols);
        let row_scale = |k: usize| -> f32 {
            w4[k * cols..(k + 1) * cols].iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1.0
        };
        let (s0, s1) = Kernels::Scalar.dot2_row(rt, rs[0], rs[1], &x, &act);
        prop_assert!(close(s0, p0, 2e-6, row_scale(0)) && close(s1, p1, 2e-6, row_scale(1)));
        let alphas = [alpha, -0.5, 1.25, 0.0];
        let (mut ya, mut yb) = (y0.clone(), y0.clone());
        Kernels::Scalar.axpy4_row(rt, [rs[0], rs[1], rs[2], rs[3]], alphas, &mut ya);
        simd.axpy4_row(rt, [rs[0], rs[1], rs[2], rs[3]], alphas, &mut yb);
        for (j, (p, q)) in ya.iter().zip(&yb).enumerate() {
            let mag: f32 = (0..4).map(|k| (alphas[k] * w4[k * cols + j]).abs()).sum();
            prop_assert!(close(*p, *q, 1e-6, 1.0 + mag * 8.0), "{dtype:?} axpy4 {p} vs {q}");
        }

        // Odd lengths for the float helpers exercise their scalar tails.
        let n = cols - (seed % 7) as usize;
        let (fa, fb) = (rand_vec(&mut r, n, 2.0), rand_vec(&mut r, n, 2.0));
        let s: f32 = fa.iter().zip(&fb).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1.0;
        prop_assert!(close(Kernels::Scalar.dot_f32(&fa, &fb), simd.dot_f32(&fa, &fb), 2e-6, s));
        let (mut ya, mut yb) = (fb.clone(), fb.clone());
        Kernels::Scalar.axpy_f32(alpha, &fa, &mut ya);
        simd.axpy_f32(alpha, &fa, &mut yb);
        for (p, q) in ya.iter().zip(&yb) {
            prop_assert!(close(*p, *q, 1e-6, 8.0));
        }
    }

    /// Products: within the activation-rounding bound of an exact product of
    /// the dequantized matrix on every path; SIMD within float reassociation
    /// of scalar; threaded bit-identical to single-threaded.
    #[test]
    fn matvec_against_reference_and_paths(
        seed in any::<u64>(),
        t in 0usize..6,
        rows in prop_oneof![1usize..8, 9usize..80],
        blocks in 1usize..9,
        raw in any::<bool>(),
    ) {
        let dtype = ALL_TYPES[t];
        let cols = blocks * 32;
        let mut r = SplitMix64::new(seed);
        let data = rand_matrix(&mut r, dtype, rows, cols, raw);
        let x = rand_vec(&mut r, cols, 2.0);
        let w = QuantMatrix { dtype, rows, cols, data: &data };
        let dq = dequant(dtype, &data, rows, cols);
        let quantized = qtype(dtype).is_some();

        let mut outs = Vec::new();
        for (threads, scalar) in [(1, true), (1, false), (2, false), (3, true), (4, false)] {
            let mut out = vec![f32::NAN; rows];
            cpu(threads, scalar).matvec(&w, &x, &mut out).unwrap();
            for (i, &o) in out.iter().enumerate() {
                let (exact, bound) = dot_and_bound(&dq[i * cols..(i + 1) * cols], &x, quantized);
                prop_assert!((f64::from(o) - exact).abs() <= bound,
                    "{dtype:?} row {i}: {o} vs {exact} (bound {bound}) threads {threads} scalar {scalar}");
            }
            outs.push(out);
        }
        prop_assert_eq!(&outs[0], &outs[3], "scalar: threads change nothing");
        prop_assert_eq!(&outs[1], &outs[2], "simd: threads change nothing");
        prop_assert_eq!(&outs[1], &outs[4], "simd: threads change nothing");
        for (i, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
            let row = &dq[i * cols..(i + 1) * cols];
            let s: f32 = row.iter().zip(&x).map(|(p, q)| (p * q).abs()).sum::<f32>() + 1.0;
            prop_assert!(close(*a, *b, 2e-6, s), "{dtype:?} scalar {a} vs simd {b}");
        }
    }

    /// The FFN against its definition on dequantized bundles; threads and
    /// SIMD as for products.
    #[test]
    fn gated_ffn_against_naive(
        seed in any::<u64>(),
        t in 0usize..6,
        // Down column type: the same as gate/up half the time, else any.
        td in 0usize..12,
        count in 0usize..40,
        blocks in 1usize..5,
    ) {
        let dtype = ALL_TYPES[t];
        let down_dtype = ALL_TYPES.get(td).copied().unwrap_or(dtype);
        let dim = blocks * 32;
        let mut r = SplitMix64::new(seed);
        // Each bundle: gate row, up row (dtype), down column (down_dtype).
        let rows = rand_matrix(&mut r, dtype, 2 * count, dim, false);
        let downs = rand_matrix(&mut r, down_dtype, count, dim, false);
        let (rb, cb) = (rows.len() / (2 * count).max(1), downs.len() / count.max(1));
        let mut data = Vec::new();
        let mut dq = Vec::new();
        let dq_rows = dequant(dtype, &rows, 2 * count, dim);
        let dq_downs = dequant(down_dtype, &downs, count, dim);
        for i in 0..count {
            data.extend_from_slice(&rows[2 * i * rb..(2 * i + 2) * rb]);
            data.extend_from_slice(&downs[i * cb..(i + 1) * cb]);
            dq.extend_from_slice(&dq_rows[2 * i * dim..(2 * i + 2) * dim]);
            dq.extend_from_slice(&dq_downs[i * dim..(i + 1) * dim]);
        }
        let x = rand_vec(&mut r, dim, 1.0);
        let out0 = rand_vec(&mut r, dim, 1.0);
        let quantized = qtype(dtype).is_some();

        // Reference: exact gate/up dots (with their activation-rounding
        // bounds propagated to a bound on each output element).
        let mut want = out0.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let mut slack = vec![1e-4f64; dim];
        for i in 0..count {
            let g = &dq[(3 * i) * dim..(3 * i + 1) * dim];
            let u = &dq[(3 * i + 1) * dim..(3 * i + 2) * dim];
            let d = &dq[(3 * i + 2) * dim..(3 * i + 3) * dim];
            let (ge, gb) = dot_and_bound(g, &x, quantized);
            let (ue, ub) = dot_and_bound(u, &x, quantized);
            let silu = |v: f64| v / (1.0 + (-v).exp());
            let h = silu(ge) * ue;
            // |silu'| <= 1.1, so |Δh| <= 1.1·gb·(|u|+ub) + (|silu(g)|+1.1·gb)·ub.
            let dh = 1.1 * gb * (ue.abs() + ub) + (silu(ge).abs() + 1.1 * gb) * ub;
            for j in 0..dim {
                want[j] += h * f64::from(d[j]);
                slack[j] += (dh + h.abs() * 1e-5) * f64::from(d[j].abs()) + 1e-6;
            }
        }
        let bundles = Bundles { dtype, down_dtype, hidden: dim, count, data: &data };
        let mut outs = Vec::new();
        for (threads, scalar) in [(1, true), (1, false), (2, false), (3, true)] {
            let mut out = out0.clone();
            let mut hidden = vec![0.0f32; count + 3];
            cpu(threads, scalar).gated_ffn(&x, &bundles, &mut hidden, &mut out).unwrap();
            for j in 0..dim {
                prop_assert!((f64::from(out[j]) - want[j]).abs() <= slack[j],
                    "{dtype:?}/{down_dtype:?} [{j}] {} vs {} (slack {})", out[j], want[j], slack[j]);
            }
            outs.push(out);
        }
        prop_assert_eq!(&outs[0], &outs[3]);
        prop_assert_eq!(&outs[1], &outs[2]);
    }

    /// Down columns accumulated one set at a time against their definition
    /// on dequantized columns, scalar and SIMD, for every count mod 4.
    #[test]
    fn axpy_columns_against_naive(
        seed in any::<u64>(),
        t in 0usize..6,
        count in 0usize..11,
        blocks in 1usize..5,
    ) {
        let dtype = ALL_TYPES[t];
        let dim = blocks * 32;
        let mut r = SplitMix64::new(seed);
        let cols = rand_matrix(&mut r, dtype, count, dim, false);
        let cb = cols.len() / count.max(1);
        let dq = dequant(dtype, &cols, count, dim);
        let w = rand_vec(&mut r, count, 2.0);
        let out0 = rand_vec(&mut r, dim, 1.0);
        let refs: Vec<&[u8]> = (0..count).map(|i| &cols[i * cb..(i + 1) * cb]).collect();
        for scalar in [true, false] {
            let mut out = out0.clone();
            cpu(1, scalar).axpy_columns(dtype, &refs, &w, &mut out).unwrap();
            for j in 0..dim {
                let want: f64 = f64::from(out0[j])
                    + (0..count).map(|i| f64::from(w[i]) * f64::from(dq[i * dim + j])).sum::<f64>();
                let scale: f64 = 1.0 + (0..count)
                    .map(|i| (f64::from(w[i]) * f64::from(dq[i * dim + j])).abs())
                    .sum::<f64>();
                prop_assert!((f64::from(out[j]) - want).abs() <= 1e-5 * scale,
                    "{dtype:?} [{j}] {} vs {want}", out[j]);
            }
        }
        // A column of the wrong length or a weight count that differs is refused.
        if count > 0 {
            let mut out = out0.clone();
            prop_assert_eq!(
                cpu(1, false).axpy_columns(dtype, &refs, &w[1..], &mut out),
                Err(ErrorKind::ShapeMismatch)
            );
            prop_assert_eq!(
                cpu(1, false).axpy_columns(dtype, &refs, &w, &mut out[1..]),
                Err(ErrorKind::ShapeMismatch)
            );
        }
    }

    /// Attention against a naive f64 implementation, for GQA shapes, several
    /// chunks, and scores room for one or several threads.
    #[test]
    fn attention_against_naive(
        seed in any::<u64>(),
        kv_heads in 1usize..4,
        group in 1usize..4,
        head_dim in prop_oneof![Just(4usize), Just(13), Just(64)],
        chunk_tokens in proptest::collection::vec(0usize..20, 1..4),
        extra_room in 0usize..4,
    ) {
        prop_assume!(chunk_tokens.iter().sum::<usize>() > 0);
        let heads = kv_heads * group;
        let shape = AttentionShape { heads, kv_heads, head_dim };
        let mut r = SplitMix64::new(seed);
        let q = rand_vec(&mut r, heads * head_dim, 1.0);
        let kv_dim = kv_heads * head_dim;
        let stores: Vec<(Vec<f32>, Vec<f32>)> = chunk_tokens
            .iter()
            .map(|&t| (rand_vec(&mut r, t * kv_dim, 2.0), rand_vec(&mut r, t * kv_dim, 1.0)))
            .collect();
        let chunks: Vec<KvChunk<'_>> = chunk_tokens
            .iter()
            .zip(&stores)
            .map(|(&tokens, (k, v))| KvChunk { tokens, keys: k, values: v })
            .collect();
        let positions: usize = chunk_tokens.iter().sum();

        // Naive: flatten positions, per head softmax in f64.
        let keys: Vec<&[f32]> = stores.iter().flat_map(|(k, _)| k.chunks(kv_dim)).collect();
        let vals: Vec<&[f32]> = stores.iter().flat_map(|(_, v)| v.chunks(kv_dim)).collect();
        let mut want = vec![0.0f64; heads * head_dim];
        for h in 0..heads {
            let off = (h / group) * head_dim;
            let qh = &q[h * head_dim..(h + 1) * head_dim];
            let s: Vec<f64> = keys
                .iter()
                .map(|k| qh.iter().zip(&k[off..off + head_dim]).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>() / (head_dim as f64).sqrt())
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            for (p, v) in s.iter().zip(&vals) {
                for d in 0..head_dim {
                    want[h * head_dim + d] += (p - m).exp() / z * f64::from(v[off + d]);
                }
            }
        }
        for (threads, scalar) in [(1, true), (1, false), (2, false), (3, true)] {
            let mut scores = vec![0.0f32; positions * (1 + extra_room)];
            let mut out = vec![f32::NAN; heads * head_dim];
            cpu(threads, scalar).attention(&q, &chunks, shape, &mut scores, &mut out).unwrap();
            for (a, b) in out.iter().zip(&want) {
                prop_assert!((f64::from(*a) - b).abs() <= 1e-5, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn shape_errors_never_panic() {
    let mut c = cpu(2, false);
    let data = vec![0u8; 3 * 20];
    let w = QuantMatrix {
        dtype: DType::Q4_1,
        rows: 3,
        cols: 32,
        data: &data,
    };
    let mut out = [0.0f32; 3];
    assert_eq!(
        c.matvec(&w, &[0.0; 31], &mut out),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.matvec(&w, &[0.0; 32], &mut out[..2]),
        Err(ErrorKind::ShapeMismatch)
    );
    let short = QuantMatrix {
        data: &data[..59],
        ..w
    };
    assert_eq!(
        c.matvec(&short, &[0.0; 32], &mut out),
        Err(ErrorKind::ShapeMismatch)
    );
    let odd = QuantMatrix { cols: 33, ..w };
    assert_eq!(
        c.matvec(&odd, &[0.0; 33], &mut out),
        Err(ErrorKind::ShapeMismatch)
    );
    let mut x = [0.0f32; 32];
    x[3] = f32::INFINITY;
    assert_eq!(c.matvec(&w, &x, &mut out), Err(ErrorKind::NonFinite));
    // Zero-width matrices are fine: every output is an empty sum.
    let empty = QuantMatrix {
        dtype: DType::Q8_0,
        rows: 2,
        cols: 0,
        data: &[],
    };
    let mut o2 = [5.0f32; 2];
    assert_eq!(c.matvec(&empty, &[], &mut o2), Ok(()));
    assert_eq!(o2, [0.0; 2]);

    let mut small = CpuCompute::new(CpuConfig::new(32)).unwrap();
    let wide_data = vec![0u8; 40];
    let wide = QuantMatrix {
        dtype: DType::Q4_1,
        rows: 1,
        cols: 64,
        data: &wide_data,
    };
    assert_eq!(
        small.matvec(&wide, &[0.0; 64], &mut out[..1]),
        Err(ErrorKind::ScratchTooSmall)
    );
    small.reserve_cols(64).unwrap();
    assert_eq!(small.max_cols(), 64);
    assert_eq!(small.matvec(&wide, &[0.0; 64], &mut out[..1]), Ok(()));

    let b = Bundles {
        dtype: DType::Q8_0,
        down_dtype: DType::Q8_0,
        hidden: 32,
        count: 2,
        data: &[0u8; 6 * 34],
    };
    let mut h = [0.0f32; 2];
    let mut o = [0.0f32; 32];
    assert_eq!(
        c.gated_ffn(&[0.0; 31], &b, &mut h, &mut o),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.gated_ffn(&[0.0; 32], &b, &mut h[..1], &mut o),
        Err(ErrorKind::ScratchTooSmall)
    );
    let b_short = Bundles {
        data: &[0u8; 5 * 34],
        ..b
    };
    assert_eq!(
        c.gated_ffn(&[0.0; 32], &b_short, &mut h, &mut o),
        Err(ErrorKind::ShapeMismatch)
    );
    let b_odd = Bundles { hidden: 31, ..b };
    assert_eq!(
        c.gated_ffn(&[0.0; 31], &b_odd, &mut h, &mut o[..31]),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(c.gated_ffn(&[0.0; 32], &b, &mut h, &mut o), Ok(()));
    // Gate/up Q4_1 (20 B a block) with a Q8_0 down column (34 B): 74 B each.
    let b_mixed = Bundles {
        dtype: DType::Q4_1,
        data: &[0u8; 2 * 74],
        ..b
    };
    assert_eq!(c.gated_ffn(&[0.0; 32], &b_mixed, &mut h, &mut o), Ok(()));
    let b_mixed_bad = Bundles {
        data: &[0u8; 2 * 3 * 34],
        ..b_mixed
    };
    assert_eq!(
        c.gated_ffn(&[0.0; 32], &b_mixed_bad, &mut h, &mut o),
        Err(ErrorKind::ShapeMismatch)
    );

    let shape = AttentionShape {
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
    };
    let kv = [KvChunk {
        tokens: 2,
        keys: &[0.0; 32],
        values: &[0.0; 32],
    }];
    let mut s = [0.0f32; 2];
    let mut ao = [0.0f32; 32];
    assert_eq!(c.attention(&[0.0; 32], &kv, shape, &mut s, &mut ao), Ok(()));
    assert_eq!(
        c.attention(&[0.0; 31], &kv, shape, &mut s, &mut ao),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.attention(&[0.0; 32], &kv, shape, &mut s[..1], &mut ao),
        Err(ErrorKind::ScratchTooSmall)
    );
    assert_eq!(
        c.attention(&[0.0; 32], &[], shape, &mut s, &mut ao),
        Err(ErrorKind::ShapeMismatch)
    );
    let bad_kv = [KvChunk {
        tokens: 3,
        keys: &[0.0; 32],
        values: &[0.0; 32],
    }];
    assert_eq!(
        c.attention(&[0.0; 32], &bad_kv, shape, &mut s, &mut ao),
        Err(ErrorKind::ShapeMismatch)
    );
    let bad_shape = AttentionShape {
        heads: 3,
        kv_heads: 2,
        head_dim: 8,
    };
    assert_eq!(
        c.attention(&[0.0; 24], &kv, bad_shape, &mut s, &mut ao[..24]),
        Err(ErrorKind::ShapeMismatch)
    );
    let zero = AttentionShape {
        heads: 0,
        kv_heads: 0,
        head_dim: 8,
    };
    assert_eq!(
        c.attention(&[], &kv, zero, &mut s, &mut []),
        Err(ErrorKind::ShapeMismatch)
    );
    let mut nan_q = [0.0f32; 32];
    nan_q[0] = f32::NAN;
    assert_eq!(
        c.attention(&nan_q, &kv, shape, &mut s, &mut ao),
        Err(ErrorKind::NonFinite)
    );

    assert_eq!(
        c.rope(&mut [0.0; 10], 4, 0, 1e4),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.rms_norm(&mut [1.0; 3], &[1.0; 2], 1e-5),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.kv_quantize(&[0.0; 32], KvGroups::PerToken, KvBits::B8, &mut [0u8; 35]),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.kv_dequantize(&[0u8; 36], KvGroups::PerToken, KvBits::B8, &mut [0.0; 31]),
        Err(ErrorKind::ShapeMismatch)
    );
}

#[test]
fn borrowed_scratch_backend_works() {
    let mut blocks = [ActBlock::ZERO; 2];
    let mut c = CpuCompute::with_scratch(CpuConfig::new(0), &mut blocks).unwrap();
    assert_eq!(c.max_cols(), 64);
    let mut r = SplitMix64::new(3);
    let data = rand_matrix(&mut r, DType::Q8_0, 5, 64, false);
    let w = QuantMatrix {
        dtype: DType::Q8_0,
        rows: 5,
        cols: 64,
        data: &data,
    };
    let x = rand_vec(&mut r, 64, 1.0);
    let mut a = [0.0f32; 5];
    c.matvec(&w, &x, &mut a).unwrap();
    let mut b = [0.0f32; 5];
    cpu(1, false).matvec(&w, &x, &mut b).unwrap();
    assert_eq!(a, b);
    let wide = QuantMatrix {
        dtype: DType::F32,
        rows: 1,
        cols: 96,
        data: &[0u8; 384],
    };
    assert_eq!(
        c.matvec(&wide, &[1.0; 96], &mut a[..1]),
        Ok(()),
        "float rows need no scratch"
    );
}

#[test]
fn kv_round_trip_through_the_trait() {
    let mut c = cpu(1, false);
    let mut r = SplitMix64::new(9);
    let x = rand_vec(&mut r, 3072, 4.0);
    let layouts = [KvGroups::PerToken, KvGroups::PerChannel { channels: 192 }];
    for (groups, bits) in layouts
        .into_iter()
        .flat_map(|g| [KvBits::B8, KvBits::B4, KvBits::B2].map(|b| (g, b)))
    {
        let mut enc = vec![0u8; groups.packed_len(x.len(), bits).unwrap()];
        c.kv_quantize(&x, groups, bits, &mut enc).unwrap();
        let mut y = vec![0.0f32; x.len()];
        c.kv_dequantize(&enc, groups, bits, &mut y).unwrap();
        let levels = ((1u32 << kv::bits_of(bits)) - 1) as f32;
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Half a step of an 8-unit range, with f16 slack.
        assert!(
            worst <= 8.0 / levels * 0.5 * 1.01,
            "{groups:?} {bits:?}: {worst}"
        );
    }
}

/// `CpuCompute` runs the KV codec with its kernels, which write the scalar
/// path's bytes and decode its floats (the codec's own tests compare the
/// kernels directly on many more inputs).
#[test]
fn kv_codec_through_the_trait_matches_scalar() {
    let (mut simd, mut scalar) = (cpu(1, false), cpu(1, true));
    let mut r = SplitMix64::new(11);
    let x = rand_vec(&mut r, 16 * 192, 3.0);
    for groups in [KvGroups::PerToken, KvGroups::PerChannel { channels: 192 }] {
        for bits in [KvBits::B8, KvBits::B4, KvBits::B2] {
            let len = groups.packed_len(x.len(), bits).unwrap();
            let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
            scalar.kv_quantize(&x, groups, bits, &mut a).unwrap();
            simd.kv_quantize(&x, groups, bits, &mut b).unwrap();
            assert_eq!(a, b, "{groups:?} {bits:?} {:?}", simd.isa());
            let (mut ya, mut yb) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
            scalar.kv_dequantize(&a, groups, bits, &mut ya).unwrap();
            simd.kv_dequantize(&a, groups, bits, &mut yb).unwrap();
            let raw = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(raw(&ya), raw(&yb), "{groups:?} {bits:?}");
        }
    }
}

#[test]
fn rope_and_norm_through_the_trait() {
    let mut c = cpu(1, false);
    let mut x = vec![1.0f32; 128];
    c.rms_norm(&mut x, &vec![2.0; 128], 0.0).unwrap();
    assert!(x.iter().all(|&v| (v - 2.0).abs() < 1e-6));
    c.rope(&mut x, 64, 0, 1e4).unwrap();
    assert!(x.iter().all(|&v| (v - 2.0).abs() < 1e-6));
}

#[cfg(feature = "std")]
#[test]
fn env_forces_scalar() {
    // Only this test touches the variable.
    std::env::set_var("LODE_FORCE_SCALAR", "1");
    let cfg = CpuConfig::new(32).with_env();
    std::env::remove_var("LODE_FORCE_SCALAR");
    assert!(cfg.force_scalar);
    assert!(!CpuConfig::new(32).with_env().force_scalar);
    assert_eq!(CpuCompute::new(cfg).unwrap().isa(), Isa::Scalar);

    std::env::set_var("LODE_NO_VNNI", "1");
    let cfg = CpuConfig::new(32).with_env();
    std::env::remove_var("LODE_NO_VNNI");
    assert!(cfg.no_vnni && !CpuConfig::new(32).with_env().no_vnni);
    let plain = CpuCompute::new(cfg).unwrap().isa();
    let best = CpuCompute::new(CpuConfig::new(32)).unwrap().isa();
    // Only VNNI is taken away: plain AVX2 stays, other ISAs are untouched.
    let want = if best == Isa::Avx2Vnni {
        Isa::Avx2
    } else {
        best
    };
    assert_eq!(plain, want);
}

/// The scalar quantized dot against the dequantized reference at the
/// kernel level, on raw blocks (every code pattern).
#[test]
fn scalar_block_dot_matches_dequantized_codes() {
    let mut r = SplitMix64::new(11);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::Q8_0] {
        let t = qtype(dtype).unwrap();
        for _ in 0..50 {
            let row = rand_matrix(&mut r, dtype, 1, 64, true);
            let x = rand_vec(&mut r, 64, 1.0);
            let mut act = [ActBlock::ZERO; 2];
            assert!(Kernels::Scalar.quantize_act(&x, &mut act));
            // Reference on the quantized activation itself: no rounding slack.
            let xq: Vec<f32> = act
                .iter()
                .flat_map(|a| a.qs.iter().map(move |&q| f32::from(q) * a.d))
                .collect();
            let w = dequant(dtype, &row, 1, 64);
            let exact: f64 = w
                .iter()
                .zip(&xq)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let mag: f64 = w
                .iter()
                .zip(&xq)
                .map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs())
                .sum();
            let got = scalar::dot_q(t, &row, &act);
            assert!(
                (f64::from(got) - exact).abs() <= mag * 1e-5 + 1e-6,
                "{dtype:?}: {got} vs {exact}"
            );
        }
    }
}

/// Both NEON flavours (sdot and widening multiplies) give exactly the scalar
/// products: same integer block sums, same float operations in the same order.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_flavours_are_bit_identical_to_scalar() {
    let Kernels::Neon(tok) = Kernels::detect(false) else {
        panic!("aarch64 targets always have NEON");
    };
    let flavours = [Kernels::Neon(tok), Kernels::Neon(tok.without_dotprod())];
    let mut r = SplitMix64::new(5);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::Q8_0] {
        let t = qtype(dtype).unwrap();
        for raw in [false, true] {
            let (rows, cols) = (7, 160);
            let data = rand_matrix(&mut r, dtype, rows, cols, raw);
            let x = rand_vec(&mut r, cols, 3.0);
            let mut act = vec![ActBlock::ZERO; cols / 32];
            assert!(Kernels::Scalar.quantize_act(&x, &mut act));
            let rb = data.len() / rows;
            let mut want = vec![0.0f32; rows];
            Kernels::Scalar.matvec_q(t, &data, rb, &act, &mut want);
            for k in flavours {
                let mut got = vec![0.0f32; rows];
                k.matvec_q(t, &data, rb, &act, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{dtype:?} raw {raw} {:?}", k.isa());
            }
        }
    }
}

/// Both x86 flavours (AVX2 and AVX-512 VNNI) compute the same integer block
/// sums in the same lane order, so their products are bit-identical.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_flavours_agree_exactly() {
    let Kernels::Avx2(tok) = Kernels::detect(false) else {
        return; // no AVX2 on this machine: nothing to compare
    };
    let mut r = SplitMix64::new(6);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_1, DType::Q8_0] {
        let t = qtype(dtype).unwrap();
        for raw in [false, true] {
            let (rows, cols) = (7, 160);
            let data = rand_matrix(&mut r, dtype, rows, cols, raw);
            let x = rand_vec(&mut r, cols, 3.0);
            let mut act = vec![ActBlock::ZERO; cols / 32];
            assert!(Kernels::Scalar.quantize_act(&x, &mut act));
            let rb = data.len() / rows;
            let mut a = vec![0.0f32; rows];
            let mut b = vec![0.0f32; rows];
            Kernels::Avx2(tok).matvec_q(t, &data, rb, &act, &mut a);
            Kernels::Avx2(tok.without_vnni()).matvec_q(t, &data, rb, &act, &mut b);
            assert_eq!(a, b, "{dtype:?} raw {raw}");
            // Single-row entry point agrees with the paired rows.
            for (i, row) in data.chunks_exact(rb).enumerate() {
                assert_eq!(Kernels::Avx2(tok).dot_q(t, row, &act), a[i]);
            }
        }
    }
}

#[test]
fn backend_is_send_and_threads_are_capped() {
    fn send<T: Send>(_: &T) {}
    let c = cpu(100, false);
    send(&c);
    #[cfg(feature = "std")]
    assert_eq!(c.threads(), MAX_THREADS);
    assert_eq!(cpu(0, false).threads(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A batched product gives exactly the per-vector products, on one or
    /// two threads, when the batch fits the activation scratch and when it
    /// must be cut (scratch for 1024 columns holds four 256-wide vectors).
    #[test]
    fn matmul_is_matvec_per_vector(
        seed in any::<u64>(),
        ti in 0usize..ALL_TYPES.len(),
        rows in 1usize..70,
        col_blocks in 1usize..9,
        n in 1usize..10,
        threads in 1usize..3,
    ) {
        let dtype = ALL_TYPES[ti];
        let cols = col_blocks * 32;
        let mut r = SplitMix64::new(seed);
        let data = rand_matrix(&mut r, dtype, rows, cols, false);
        let w = QuantMatrix { dtype, rows, cols, data: &data };
        let x = rand_vec(&mut r, n * cols, 2.0);
        let mut c = cpu(threads, false);
        let mut want = vec![0f32; n * rows];
        for (xi, oi) in x.chunks_exact(cols).zip(want.chunks_exact_mut(rows)) {
            c.matvec(&w, xi, oi).unwrap();
        }
        let mut got = vec![f32::NAN; n * rows];
        c.matmul(&w, &x, n, &mut got).unwrap();
        prop_assert_eq!(&got, &want);
    }

    #[test]
    fn swiglu_against_naive(g in proptest::collection::vec(-30.0f32..30.0, 0..100), seed in any::<u64>()) {
        let mut r = SplitMix64::new(seed);
        let u = rand_vec(&mut r, g.len(), 3.0);
        let mut y = g.clone();
        cpu(1, false).swiglu(&mut y, &u).unwrap();
        for ((&y, &g), &u) in y.iter().zip(&g).zip(&u) {
            let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
            prop_assert!((f64::from(y) - want).abs() <= 1e-5 * want.abs().max(1.0), "{} vs {}", y, want);
        }
    }
}

#[test]
fn matmul_and_swiglu_shape_errors() {
    let mut c = cpu(2, false);
    let data = vec![0u8; 4 * 20];
    let w = QuantMatrix {
        dtype: DType::Q4_1,
        rows: 4,
        cols: 32,
        data: &data,
    };
    let mut out = [0f32; 8];
    assert_eq!(
        c.matmul(&w, &[0.0; 64], 3, &mut out),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.matmul(&w, &[0.0; 63], 2, &mut out),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(c.matmul(&w, &[], 0, &mut []), Ok(()));
    let mut x = [0.0f32; 64];
    x[40] = f32::NAN;
    assert_eq!(c.matmul(&w, &x, 2, &mut out), Err(ErrorKind::NonFinite));
    let bad = QuantMatrix { rows: 5, ..w };
    assert_eq!(
        c.matmul(&bad, &[0.0; 64], 2, &mut [0.0; 10]),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        c.swiglu(&mut [1.0; 3], &[1.0; 2]),
        Err(ErrorKind::ShapeMismatch)
    );
}
