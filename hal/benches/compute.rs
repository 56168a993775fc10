//! `CpuCompute` products at SmolLM2-135M's shapes: scalar against SIMD, one
//! thread against two.
//!
//! Shapes are rows × cols: 1536 × 576 (FFN gate/up), 576 × 1536 (FFN down),
//! 49152 × 576 (the tied-embedding output head, Q8_0). The FFN shapes run in
//! Q4_1 (the model's type) and Q8_0. Kept short: each case measures for
//! about a second. Run with `cargo bench -p lode-hal --bench compute`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lode_hal::compute::quant::quantize_row;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_kernel::compute::{Bundles, Compute, DType, QuantMatrix};
use lode_kernel::rng::SplitMix64;

fn rand_vec(r: &mut SplitMix64, n: usize) -> Vec<f32> {
    (0..n).map(|_| (r.unit_f64() * 2.0 - 1.0) as f32).collect()
}

/// A `rows × cols` matrix of `dtype` quantized from uniform noise.
fn matrix(r: &mut SplitMix64, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = dtype.row_bytes(cols as u64).expect("whole blocks") as usize;
    let mut data = vec![0u8; rows * rb];
    for row in data.chunks_exact_mut(rb) {
        quantize_row(dtype, &rand_vec(r, cols), row).expect("finite input");
    }
    data
}

/// The four backends compared: (label, scalar?, threads).
const VARIANTS: [(&str, bool, usize); 4] = [
    ("scalar-1t", true, 1),
    ("simd-1t", false, 1),
    ("scalar-2t", true, 2),
    ("simd-2t", false, 2),
];

fn backend(force_scalar: bool, threads: usize) -> CpuCompute<'static> {
    let cfg = CpuConfig::new(1536)
        .with_threads(threads)
        .with_force_scalar(force_scalar);
    CpuCompute::new(cfg).expect("threads spawn")
}

fn matvec(c: &mut Criterion) {
    let mut r = SplitMix64::new(1);
    let shapes = [
        (DType::Q4_1, 1536, 576),
        (DType::Q4_1, 576, 1536),
        (DType::Q8_0, 1536, 576),
        (DType::Q8_0, 576, 1536),
        (DType::Q8_0, 49152, 576),
    ];
    for (dtype, rows, cols) in shapes {
        let data = matrix(&mut r, dtype, rows, cols);
        let x = rand_vec(&mut r, cols);
        let w = QuantMatrix {
            dtype,
            rows,
            cols,
            data: &data,
        };
        let mut g = c.benchmark_group(format!("matvec-{}-{rows}x{cols}", dtype.name()));
        g.throughput(Throughput::Elements((rows * cols) as u64));
        for (label, scalar, threads) in VARIANTS {
            let mut cpu = backend(scalar, threads);
            let mut out = vec![0.0f32; rows];
            g.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    cpu.matvec(&w, black_box(&x), &mut out)
                        .expect("shapes match");
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}

/// The FFN of one SmolLM2 layer, dense: all 1536 Q4_1 bundles.
fn gated_ffn(c: &mut Criterion) {
    let mut r = SplitMix64::new(2);
    let (dim, count) = (576, 1536);
    let data = matrix(&mut r, DType::Q4_1, 3 * count, dim);
    let x = rand_vec(&mut r, dim);
    let bundles = Bundles {
        dtype: DType::Q4_1,
        down_dtype: DType::Q4_1,
        hidden: dim,
        count,
        data: &data,
    };
    let mut g = c.benchmark_group("gated_ffn-q4_1-1536x576");
    g.throughput(Throughput::Elements((3 * count * dim) as u64));
    for (label, scalar, threads) in VARIANTS {
        let mut cpu = backend(scalar, threads);
        let mut hidden = vec![0.0f32; count];
        let mut out = vec![0.0f32; dim];
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                cpu.gated_ffn(black_box(&x), &bundles, &mut hidden, &mut out)
                    .expect("shapes match");
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = matvec, gated_ffn
}
criterion_main!(benches);
