//! KV-block quantization to 8, 4 or 2 bits per element.
//!
//! LLMS-style tolerance-aware compression stores each KV chunk at a bit
//! width picked per chunk; this module is the codec. Values are quantized
//! asymmetrically (a step and a minimum per group), grouped as
//! [`KvGroups`] says: per token (32 consecutive elements) or per channel
//! (one channel over the block's positions, KIVI's choice for keys).
//!
//! # Byte layout
//!
//! A block is `rows` positions of `channels` f32 values, position-major.
//! It is split into groups (per token: elements `32g..32g + 32` in order;
//! per channel: channel `c`'s values of positions `0..rows`, channels in
//! order), and each group of `n` elements is stored as, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | `d`: f16 step |
//! | 2 | 2 | `m`: f16 minimum |
//! | 4 | `n · bits / 8` | codes `q_j`, `bits` each, packed LSB-first: element `j` of the group occupies bits `(j · bits) % 8 ..` of byte `j · bits / 8` |
//!
//! so a 32-element group is 36 (8-bit), 20 (4-bit) or 12 (2-bit) bytes, a
//! 16-position channel 20, 12 or 8, and element `j` decodes as
//! `d · q_j + m`.
//!
//! The encoder rounds `m` down and `d` up to f16 before computing codes, so
//! no code needs clamping and every value decodes within `d / 2` of the
//! original (plus f32 rounding).

use lode_kernel::compute::{ErrorKind, KvBits, KvGroups};

use super::f16::{f16_round_down, f16_round_up_nonneg, f16_to_f32};
use super::math;

/// Elements per per-token group.
pub const GROUP: usize = 32;

/// Most positions a per-channel group may span (a gather buffer on the
/// stack): 16 in a KV chunk.
pub const MAX_CHANNEL_GROUP: usize = 256;

/// Bits per element of `bits`.
pub const fn bits_of(bits: KvBits) -> usize {
    bits.bits() as usize
}

/// Bytes of one encoded group of `n` elements.
pub const fn group_bytes(n: usize, bits: KvBits) -> usize {
    4 + n * bits_of(bits) / 8
}

/// Encoded size of a block of `elems` values, `None` when it does not
/// split into `groups` (see [`KvGroups::packed_len`]).
pub const fn packed_len(elems: usize, groups: KvGroups, bits: KvBits) -> Option<usize> {
    groups.packed_len(elems, bits)
}

/// Elements per group, checked against the gather buffer.
fn group_of(elems: usize, groups: KvGroups) -> Result<usize, ErrorKind> {
    match (groups.group_len(elems), groups) {
        (Some(g), KvGroups::PerChannel { .. }) if g > MAX_CHANNEL_GROUP => {
            Err(ErrorKind::ShapeMismatch)
        }
        (Some(g), _) => Ok(g),
        (None, _) => Err(ErrorKind::ShapeMismatch),
    }
}

/// Encodes `src` into `dst` (exactly [`packed_len`] bytes).
///
/// Errors: `ShapeMismatch` for lengths that do not match, `NonFinite` when a
/// value is NaN or ±∞ or a group's range does not fit f16 (|x| ≳ 65504).
pub fn quantize(
    src: &[f32],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    let g = group_of(src.len(), groups)?;
    if packed_len(src.len(), groups, bits) != Some(dst.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    let out = dst.chunks_exact_mut(group_bytes(g, bits));
    match groups {
        KvGroups::PerToken => {
            for (x, enc) in src.chunks_exact(g).zip(out) {
                encode_group(x, bits, enc)?;
            }
        }
        KvGroups::PerChannel { channels } => {
            let mut buf = [0.0f32; MAX_CHANNEL_GROUP];
            let x = buf.get_mut(..g).ok_or(ErrorKind::ShapeMismatch)?;
            for (c, enc) in out.enumerate() {
                for (v, row) in x.iter_mut().zip(src.chunks_exact(channels)) {
                    *v = row.get(c).copied().unwrap_or(0.0);
                }
                encode_group(x, bits, enc)?;
            }
        }
    }
    Ok(())
}

/// Encodes one group `x` into `g` (`group_bytes(x.len(), bits)` bytes).
fn encode_group(x: &[f32], bits: KvBits, g: &mut [u8]) -> Result<(), ErrorKind> {
    let nb = bits_of(bits);
    let levels = (1u32 << nb) - 1;
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    for &v in x {
        if !v.is_finite() {
            return Err(ErrorKind::NonFinite);
        }
        min = min.min(v);
        max = max.max(v);
    }
    let m16 = f16_round_down(min).ok_or(ErrorKind::NonFinite)?;
    let m = f16_to_f32(m16);
    let d16 = f16_round_up_nonneg((max - m) / levels as f32).ok_or(ErrorKind::NonFinite)?;
    let d = f16_to_f32(d16);
    let (head, codes) = g.split_at_mut(4);
    head[..2].copy_from_slice(&d16.to_le_bytes());
    head[2..].copy_from_slice(&m16.to_le_bytes());
    codes.fill(0);
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (j, &v) in x.iter().enumerate() {
        let q = (math::rint((v - m) * inv) as u32).min(levels);
        let bit = j * nb;
        if let Some(b) = codes.get_mut(bit / 8) {
            *b |= (q << (bit % 8)) as u8;
        }
    }
    Ok(())
}

/// Decodes `src` (exactly [`packed_len`]`(dst.len())` bytes) into `dst`.
///
/// Errors: `ShapeMismatch` for lengths that do not match.
pub fn dequantize(
    src: &[u8],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [f32],
) -> Result<(), ErrorKind> {
    let g = group_of(dst.len(), groups)?;
    if packed_len(dst.len(), groups, bits) != Some(src.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    let encoded = src.chunks_exact(group_bytes(g, bits));
    match groups {
        KvGroups::PerToken => {
            for (enc, y) in encoded.zip(dst.chunks_exact_mut(g)) {
                decode_group(enc, bits, y);
            }
        }
        KvGroups::PerChannel { channels } => {
            let mut buf = [0.0f32; MAX_CHANNEL_GROUP];
            let y = buf.get_mut(..g).ok_or(ErrorKind::ShapeMismatch)?;
            for (c, enc) in encoded.enumerate() {
                decode_group(enc, bits, y);
                for (&v, row) in y.iter().zip(dst.chunks_exact_mut(channels)) {
                    if let Some(o) = row.get_mut(c) {
                        *o = v;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Decodes one group `g` into `y`.
fn decode_group(g: &[u8], bits: KvBits, y: &mut [f32]) {
    let nb = bits_of(bits);
    let mask = (1u32 << nb) - 1;
    let (head, codes) = g.split_at(4);
    let d = f16_to_f32(u16::from_le_bytes([head[0], head[1]]));
    let m = f16_to_f32(u16::from_le_bytes([head[2], head[3]]));
    for (j, o) in y.iter_mut().enumerate() {
        let bit = j * nb;
        let byte = codes.get(bit / 8).copied().unwrap_or(0);
        let q = (u32::from(byte) >> (bit % 8)) & mask;
        *o = d * q as f32 + m;
    }
}

#[cfg(test)]
mod tests {
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
}
