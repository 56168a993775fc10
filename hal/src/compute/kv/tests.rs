//! The codec's layout, round trip and errors, and SIMD against scalar.

use super::*;

const T: KvGroups = KvGroups::PerToken;
use proptest::prelude::*;

const ALL: [KvBits; 3] = [KvBits::B8, KvBits::B4, KvBits::B2];

#[test]
fn sizes() {
    assert_eq!(group_bytes(32, KvBits::B8), 36);
    assert_eq!(group_bytes(32, KvBits::B4), 20);
    assert_eq!(group_bytes(32, KvBits::B2), 12);
    assert_eq!(group_bytes(16, KvBits::B2), 8);
    // One 16-token SmolLM2 chunk of keys: 16 · 3 · 64 values.
    assert_eq!(packed_len(3072, T, KvBits::B4), Some(96 * 20));
    assert_eq!(packed_len(33, T, KvBits::B8), None);
}

#[test]
fn per_channel_groups_are_channels_in_order() {
    // 16 positions x 4 channels; channel c holds c * 100 + position.
    let x: Vec<f32> = (0..16 * 4)
        .map(|i| ((i % 4) * 100 + i / 4) as f32)
        .collect();
    let g = KvGroups::PerChannel { channels: 4 };
    assert_eq!(packed_len(64, g, KvBits::B4), Some(4 * 12));
    let mut enc = [0u8; 48];
    quantize(&x, g, KvBits::B4, &mut enc).unwrap();
    for c in 0..4 {
        let grp = &enc[c * 12..c * 12 + 12];
        // Each channel spans 0..=15 above its own minimum: step 1, exact.
        assert_eq!(f16_to_f32(u16::from_le_bytes([grp[0], grp[1]])), 1.0);
        assert_eq!(
            f16_to_f32(u16::from_le_bytes([grp[2], grp[3]])),
            (c * 100) as f32
        );
        // Codes are the positions 0..16, two per byte.
        assert_eq!(grp[4], 0x10);
        assert_eq!(grp[11], 0xfe);
    }
    let mut y = vec![0.0f32; 64];
    dequantize(&enc, g, KvBits::B4, &mut y).unwrap();
    assert_eq!(y, x);
    // A block that is not whole positions, or positions not a multiple of 4.
    assert_eq!(packed_len(63, g, KvBits::B4), None);
    assert_eq!(packed_len(4 * 6, g, KvBits::B4), None);
    let too_tall = KvGroups::PerChannel { channels: 1 };
    assert_eq!(
        quantize(&[0.0; 512], too_tall, KvBits::B8, &mut [0u8; 516]),
        Err(ErrorKind::ShapeMismatch)
    );
}

#[test]
fn layout_is_as_documented() {
    let mut x = [0.0f32; 32];
    for (j, v) in x.iter_mut().enumerate() {
        *v = (j % 4) as f32; // codes 0,1,2,3 with d = 1, m = 0
    }
    let mut g = [0u8; 12];
    quantize(&x, T, KvBits::B2, &mut g).unwrap();
    assert_eq!(u16::from_le_bytes([g[0], g[1]]), 0x3c00, "d = 1.0");
    assert_eq!(u16::from_le_bytes([g[2], g[3]]), 0, "m = 0");
    // Element j at bits 2j % 8 of byte j / 4: 0 | 1<<2 | 2<<4 | 3<<6.
    assert!(g[4..].iter().all(|&b| b == 0b11_10_01_00));
    // 4 bits: x_j = (j % 16) / 4 has step 0.25 (exact in f16), codes j % 16,
    // element j in the low (even j) or high (odd j) nibble of byte j / 2.
    let x: Vec<f32> = (0..32).map(|j| (j % 16) as f32 / 4.0).collect();
    let mut g = [0u8; 20];
    quantize(&x, T, KvBits::B4, &mut g).unwrap();
    assert_eq!(f16_to_f32(u16::from_le_bytes([g[0], g[1]])), 0.25);
    assert_eq!(g[4], 0x10);
    assert_eq!(g[5], 0x32);
    assert_eq!(g[11], 0xfe);
    let mut y = [0.0f32; 32];
    dequantize(&g, T, KvBits::B4, &mut y).unwrap();
    assert_eq!(&y[..], &x[..]);
}

proptest! {
    #[test]
    fn round_trip_within_half_a_step(
        x in proptest::collection::vec(-300.0f32..300.0, 96),
        shift in -1000.0f32..1000.0,
        b in 0usize..3,
    ) {
        let bits = ALL[b];
        let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
        let mut enc = vec![0u8; packed_len(96, T, bits).unwrap()];
        quantize(&x, T, bits, &mut enc).unwrap();
        let mut y = vec![0.0f32; 96];
        dequantize(&enc, T, bits, &mut y).unwrap();
        let levels = ((1u32 << bits_of(bits)) - 1) as f32;
        for (xs, (ys, g)) in x.chunks(32).zip(y.chunks(32).zip(enc.chunks(group_bytes(32, bits)))) {
            let d = f16_to_f32(u16::from_le_bytes([g[0], g[1]]));
            let lo = xs.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // The step is the range over the levels, widened only by f16 rounding.
            prop_assert!(d <= ((hi - lo) + lo.abs() / 1024.0) / levels * (1.0 + 1.0 / 512.0) + 1e-6);
            for (a, b) in xs.iter().zip(ys) {
                prop_assert!((a - b).abs() <= d * 0.5 + 1e-4 * a.abs().max(1.0), "{a} vs {b} (d {d})");
            }
        }
    }
}

#[test]
fn errors() {
    let mut enc = [0u8; 36];
    assert_eq!(
        quantize(&[0.0; 31], T, KvBits::B8, &mut enc),
        Err(ErrorKind::ShapeMismatch)
    );
    assert_eq!(
        quantize(&[0.0; 32], T, KvBits::B4, &mut enc),
        Err(ErrorKind::ShapeMismatch)
    );
    let mut bad = [0.0f32; 32];
    bad[7] = f32::NAN;
    assert_eq!(
        quantize(&bad, T, KvBits::B8, &mut enc),
        Err(ErrorKind::NonFinite)
    );
    // A minimum below the f16 range cannot be stored.
    bad[7] = -1e6;
    assert_eq!(
        quantize(&bad, T, KvBits::B8, &mut enc),
        Err(ErrorKind::NonFinite)
    );
    // Nor can a 2-bit step of 1e6 / 3, while 1e6 / 255 fits.
    bad[7] = 1e6;
    assert_eq!(
        quantize(&bad, T, KvBits::B2, &mut enc[..12]),
        Err(ErrorKind::NonFinite)
    );
    assert_eq!(quantize(&bad, T, KvBits::B8, &mut enc), Ok(()));
    let mut y = [0.0f32; 32];
    assert_eq!(
        dequantize(&enc[..35], T, KvBits::B8, &mut y),
        Err(ErrorKind::ShapeMismatch)
    );
    // Constant groups decode exactly when the constant is an f16.
    quantize(&[0.75; 32], T, KvBits::B2, &mut enc[..12]).unwrap();
    dequantize(&enc[..12], T, KvBits::B2, &mut y).unwrap();
    assert_eq!(y, [0.75; 32]);
}
