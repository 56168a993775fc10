//! The KV-chunk codec at SmolLM2-135M's shapes: scalar against SIMD.
//!
//! One chunk is 30 layers × 2 blocks (keys, values) of 16 positions × 192
//! channels, quantized to 4 bits per token and per channel, and decoded
//! back. Throughput counts the f32 bytes of the chunk (368,640 bytes), so
//! both directions compare on the same scale. Run briefly with
//! `cargo bench -p lode-hal --bench kv_codec -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_kernel::compute::{Compute, KvBits, KvGroups};
use lode_kernel::rng::SplitMix64;

/// Positions per chunk, channels per position, blocks per chunk.
const ROWS: usize = 16;
const CHANNELS: usize = 192;
const BLOCKS: usize = 30 * 2;
const BLOCK: usize = ROWS * CHANNELS;

fn backend(force_scalar: bool) -> CpuCompute<'static> {
    let cfg = CpuConfig::new(CHANNELS).with_force_scalar(force_scalar);
    CpuCompute::new(cfg).expect("no threads to spawn")
}

fn kv_codec(c: &mut Criterion) {
    let mut r = SplitMix64::new(7);
    // Keys-like values: a few units wide, with an offset per channel.
    let x: Vec<f32> = (0..BLOCKS * BLOCK)
        .map(|i| (r.unit_f64() * 4.0 - 2.0) as f32 + (i % CHANNELS) as f32 * 0.05)
        .collect();
    let bits = KvBits::B4;
    let layouts = [
        ("per-token", KvGroups::PerToken),
        ("per-channel", KvGroups::PerChannel { channels: CHANNELS }),
    ];
    let mut g = c.benchmark_group("kv_codec");
    g.throughput(Throughput::Bytes((BLOCKS * BLOCK * 4) as u64));
    for (name, groups) in layouts {
        let pb = groups.packed_len(BLOCK, bits).expect("whole groups");
        let mut enc = vec![0u8; BLOCKS * pb];
        let mut y = vec![0.0f32; BLOCKS * BLOCK];
        for (label, scalar) in [("scalar", true), ("simd", false)] {
            let mut cpu = backend(scalar);
            g.bench_function(BenchmarkId::new(format!("quantize-{name}"), label), |b| {
                b.iter(|| {
                    for (xs, e) in x.chunks_exact(BLOCK).zip(enc.chunks_exact_mut(pb)) {
                        cpu.kv_quantize(black_box(xs), groups, bits, e)
                            .expect("finite input");
                    }
                })
            });
            g.bench_function(BenchmarkId::new(format!("dequantize-{name}"), label), |b| {
                b.iter(|| {
                    for (e, ys) in enc.chunks_exact(pb).zip(y.chunks_exact_mut(BLOCK)) {
                        cpu.kv_dequantize(black_box(e), groups, bits, ys)
                            .expect("whole groups");
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, kv_codec);
criterion_main!(benches);
