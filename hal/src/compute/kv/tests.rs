//! The codec's layout, round trip and errors, and SIMD against scalar.

use super::*;
use crate::compute::kernels::Kernels;

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

/// What a block is filled with, to reach every branch of the codec.
#[derive(Debug, Clone, Copy)]
enum Fill {
    /// Uniform in `shift ± scale`.
    Random,
    /// Random, with every fourth group constant (code 0, step 0).
    Constant,
    /// Half-integers in `0..=levels` (steps of 1 and exact rounding ties),
    /// with `-0.0` for zero half of the time.
    Ties,
    /// Random, then one NaN or infinity.
    NonFinite,
    /// Random, then one value whose range does not fit f16.
    TooWide,
}

/// A block of `n` values for `groups`.
fn block(
    seed: u64,
    n: usize,
    groups: KvGroups,
    bits: KvBits,
    fill: Fill,
    scale: f32,
    shift: f32,
) -> Vec<f32> {
    let mut r = lode_kernel::rng::SplitMix64::new(seed);
    let levels = (1u64 << bits_of(bits)) - 1;
    let mut x: Vec<f32> = (0..n)
        .map(|_| match fill {
            Fill::Ties => {
                let h = r.below(2 * levels + 1) as f32 / 2.0;
                if h == 0.0 && r.below(2) == 0 {
                    -0.0
                } else {
                    h
                }
            }
            _ => ((r.unit_f64() * 2.0 - 1.0) * f64::from(scale)) as f32 + shift,
        })
        .collect();
    let at = r.below(n as u64) as usize;
    match fill {
        Fill::Constant => {
            let c = x[at];
            let g = groups.group_len(n).unwrap();
            for grp in (0..n / g).step_by(4) {
                for j in 0..g {
                    let i = match groups {
                        KvGroups::PerToken => grp * g + j,
                        KvGroups::PerChannel { channels } => j * channels + grp,
                    };
                    x[i] = c;
                }
            }
        }
        Fill::NonFinite => {
            x[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][r.below(3) as usize]
        }
        Fill::TooWide => x[at] = if r.below(2) == 0 { 7e4 } else { -7e4 },
        Fill::Random | Fill::Ties => {}
    }
    x
}

/// Float bit patterns, so that `-0.0 != 0.0` in comparisons.
fn float_bits(y: &[f32]) -> Vec<u32> {
    y.iter().map(|v| v.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The SIMD codec writes the scalar codec's bytes (or its error), and
    /// decodes them to the scalar codec's floats, for every grouping, width
    /// and kind of input; including channel counts that leave a tail after
    /// the last whole vector, and random bytes as input to the decoder.
    #[test]
    fn simd_matches_scalar_bit_for_bit(
        seed in any::<u64>(),
        shape in prop_oneof![
            (1usize..6).prop_map(|k| (KvGroups::PerToken, 32 * k)),
            Just((KvGroups::PerChannel { channels: 192 }, 16 * 192)),
            (1usize..40, 1usize..9)
                .prop_map(|(c, r)| (KvGroups::PerChannel { channels: c }, 4 * r * c)),
        ],
        b in 0usize..3,
        fill in prop_oneof![
            4 => Just(Fill::Random),
            1 => Just(Fill::Constant),
            1 => Just(Fill::Ties),
            1 => Just(Fill::NonFinite),
            1 => Just(Fill::TooWide),
        ],
        scale in prop_oneof![Just(1e-6f32), Just(1.0f32), Just(300.0f32), Just(3e4f32)],
        shift in prop_oneof![Just(0.0f32), -1000.0f32..1000.0, Just(-3e4f32), Just(3e4f32)],
    ) {
        let (groups, n) = shape;
        let bits = ALL[b];
        let simd = Kernels::detect(false);
        let x = block(seed, n, groups, bits, fill, scale, shift);
        let len = packed_len(n, groups, bits).unwrap();
        let (mut want, mut got) = (vec![0u8; len], vec![0u8; len]);
        let r_want = quantize_with(Kernels::Scalar, &x, groups, bits, &mut want);
        let r_got = quantize_with(simd, &x, groups, bits, &mut got);
        prop_assert_eq!(r_want, r_got, "{:?}", simd.isa());
        if matches!(fill, Fill::NonFinite) {
            prop_assert_eq!(r_want, Err(ErrorKind::NonFinite));
        }
        if r_want.is_ok() {
            prop_assert_eq!(&want, &got, "{:?}", simd.isa());
        } else {
            // Random codes under finite headers: the decoder's other inputs.
            let mut r = lode_kernel::rng::SplitMix64::new(seed ^ 0x5eed);
            want.iter_mut().for_each(|v| *v = r.next_u64() as u8);
            let gb = group_bytes(groups.group_len(n).unwrap(), bits);
            for g in want.chunks_exact_mut(gb) {
                let d = super::super::f16::f32_to_f16(r.unit_f64() as f32 * scale);
                let m = super::super::f16::f32_to_f16(shift - scale);
                g[..2].copy_from_slice(&d.to_le_bytes());
                g[2..4].copy_from_slice(&m.to_le_bytes());
            }
        }
        let (mut ya, mut yb) = (vec![0.0f32; n], vec![1.0f32; n]);
        dequantize_with(Kernels::Scalar, &want, groups, bits, &mut ya).unwrap();
        dequantize_with(simd, &want, groups, bits, &mut yb).unwrap();
        prop_assert_eq!(float_bits(&ya), float_bits(&yb), "{:?}", simd.isa());
    }
}

/// A group whose minimum is `-0.0` next to `+0.0` stores `+0.0` whichever
/// zero a path's min returns.
#[test]
fn signed_zero_minimum_is_stored_as_plus_zero() {
    let mut x = [1.0f32; 32];
    x[3] = -0.0;
    x[9] = 0.0;
    for k in [Kernels::Scalar, Kernels::detect(false)] {
        let mut enc = [0u8; 20];
        quantize_with(k, &x, T, KvBits::B4, &mut enc).unwrap();
        assert_eq!(&enc[2..4], &[0, 0], "{:?}", k.isa());
        let mut only_neg = x;
        only_neg[9] = 1.0;
        quantize_with(k, &only_neg, T, KvBits::B4, &mut enc).unwrap();
        assert_eq!(&enc[2..4], &[0, 0], "{:?}", k.isa());
    }
}
