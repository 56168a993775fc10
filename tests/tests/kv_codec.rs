//! The KV chunk codec through the CPU backend: sizes as documented, F32
//! exact, quantized levels within half a step of each group's range, and
//! wrong sizes refused.

use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_kernel::compute::KvBits;
use lode_kernel::model::kv::codec::{decode_chunk, encode_chunk, ChunkLevel, ChunkShape};
use lode_kernel::rng::SplitMix64;
use proptest::prelude::*;

/// SmolLM2's chunk shape: 30 layers of 3 KV heads of 64.
const SMOL: ChunkShape = ChunkShape {
    layers: 30,
    kv_dim: 192,
};

const LEVELS: [ChunkLevel; 4] = [
    ChunkLevel::F32,
    ChunkLevel::Quantized(KvBits::B8),
    ChunkLevel::Quantized(KvBits::B4),
    ChunkLevel::Quantized(KvBits::B2),
];

fn cpu() -> CpuCompute<'static> {
    CpuCompute::new(CpuConfig::new(64).with_threads(1)).expect("a CPU backend")
}

/// A chunk slot of random floats (8-byte aligned through a `Vec<f32>`).
fn random_chunk(shape: ChunkShape, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..shape.slot_bytes() / 4)
        .map(|_| (r.next_u64() as i64 as f32 / i64::MAX as f32) * scale)
        .collect()
}

#[test]
fn payload_sizes_are_as_documented() {
    // Per layer: keys 192 channels x (4 + 16 x bits / 8), values 96 groups
    // x (4 + 32 x bits / 8); then 64 bytes of tallies.
    let at = |bits: usize| 30 * (192 * (4 + 2 * bits) + 96 * (4 + 4 * bits)) + 64;
    assert_eq!(SMOL.slot_bytes(), 30 * 2 * 16 * 192 * 4 + 64);
    assert_eq!(SMOL.payload_bytes(LEVELS[0]), Some(SMOL.slot_bytes()));
    assert_eq!(SMOL.payload_bytes(LEVELS[1]), Some(at(8)));
    assert_eq!(SMOL.payload_bytes(LEVELS[2]), Some(at(4)));
    assert_eq!(SMOL.payload_bytes(LEVELS[3]), Some(at(2)));
    // 4 bits: 5.8x smaller than the f32 slot.
    assert_eq!(at(4), 126_784);
    for l in LEVELS {
        assert_eq!(ChunkLevel::from_code(l.code()), Some(l));
    }
    assert_eq!(ChunkLevel::from_code(16), None);
    let odd = ChunkShape {
        layers: 1,
        kv_dim: 5,
    };
    assert_eq!(
        odd.payload_bytes(LEVELS[2]),
        None,
        "16 x 5 values are not groups of 32"
    );
}

#[test]
fn f32_is_exact_and_wrong_sizes_are_refused() {
    let mut c = cpu();
    let chunk = random_chunk(SMOL, 1, 3.0);
    let bytes: &[u8] = bytemuck_bytes(&chunk);
    let mut out = vec![0u8; SMOL.slot_bytes()];
    encode_chunk(&mut c, SMOL, ChunkLevel::F32, bytes, &mut out).unwrap();
    assert_eq!(out, bytes);
    let mut back = vec![0f32; chunk.len()];
    decode_chunk(
        &mut c,
        SMOL,
        ChunkLevel::F32,
        &out,
        bytemuck_bytes_mut(&mut back),
    )
    .unwrap();
    assert_eq!(back, chunk);
    let l4 = LEVELS[2];
    let mut short = vec![0u8; SMOL.payload_bytes(l4).unwrap() - 1];
    assert!(encode_chunk(&mut c, SMOL, l4, bytes, &mut short).is_err());
    assert!(decode_chunk(&mut c, SMOL, l4, &short, bytemuck_bytes_mut(&mut back)).is_err());
    assert!(encode_chunk(&mut c, SMOL, l4, &bytes[4..], &mut out).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn quantized_levels_decode_within_half_a_step(seed in any::<u64>(), l in 1usize..4) {
        let shape = ChunkShape { layers: 2, kv_dim: 64 };
        let level = LEVELS[l];
        let ChunkLevel::Quantized(bits) = level else { unreachable!() };
        let mut c = cpu();
        let chunk = random_chunk(shape, seed, 4.0);
        let mut enc = vec![0u8; shape.payload_bytes(level).unwrap()];
        encode_chunk(&mut c, shape, level, bytemuck_bytes(&chunk), &mut enc).unwrap();
        let mut back = vec![0f32; chunk.len()];
        decode_chunk(&mut c, shape, level, &enc, bytemuck_bytes_mut(&mut back)).unwrap();
        // Every group spans at most 8 (values in -4..4); the tallies are exact.
        let step = 8.0 / ((1u32 << bits.bits()) - 1) as f32;
        let data = chunk.len() - 16;
        for (a, b) in chunk[..data].iter().zip(&back[..data]) {
            prop_assert!((a - b).abs() <= step * 0.5 * 1.01, "{a} vs {b}");
        }
        prop_assert_eq!(&chunk[data..], &back[data..]);
    }
}

fn bytemuck_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

fn bytemuck_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    bytemuck::cast_slice_mut(v)
}
