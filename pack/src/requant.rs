//! Compression-aware re-quantization (issue 18, item 5): a block's f16
//! scale and minimum rounded to fewer mantissa bits, and its quantized
//! values chosen again for them, so the f16 fields take fewer distinct
//! values and code smaller (`--compress`), at a quality cost that `lode
//! pack --coarse-scales` measures.
//!
//! SmolLM2's Q4_1 scales carry about 8.8 of their 16 bits and its
//! minimums 7.8 (`lode bench entropy`); each mantissa bit dropped takes
//! about one bit from each, 2 of a block's 160, about 1.2% of the
//! matrices' bytes a bit. A block's weights are its dequantized values
//! (`d * q + m`); they are quantized again against the rounded `d` and
//! `m`, each value to the nearest step, so a value moves by at most half a
//! step plus what the scale's rounding moved it by.

use lode_formats::DType;
use lode_hal::compute::f16_to_f32;

/// Mantissa bits an f16 has.
pub const F16_MANTISSA: u32 = 10;

/// `bits` (an f16) rounded to the nearest value with its low `drop`
/// mantissa bits zero (a carry into the exponent is the correct rounding).
/// Infinities and NaNs are left as they are.
pub fn round_f16(bits: u16, drop: u32) -> u16 {
    if drop == 0 || bits & 0x7C00 == 0x7C00 {
        return bits;
    }
    let drop = drop.min(F16_MANTISSA);
    let sign = bits & 0x8000;
    let mag = u32::from(bits & 0x7FFF);
    let half = 1u32 << (drop - 1);
    let rounded = ((mag + half) >> drop) << drop;
    // Rounding the largest finite magnitudes up would make an infinity.
    let rounded = if rounded >= 0x7C00 {
        mag & !((1 << drop) - 1)
    } else {
        rounded
    };
    sign | rounded as u16
}

/// Re-quantizes the blocks `data` of `dtype` with their f16 fields rounded
/// to `drop` fewer mantissa bits. Types other than Q4_0, Q4_1 and Q8_0
/// are left as they are (returns `false`).
pub fn coarsen(dtype: DType, data: &mut [u8], drop: u32) -> bool {
    match dtype {
        DType::Q4_1 => data.chunks_exact_mut(20).for_each(|b| q4_1(b, drop)),
        DType::Q4_0 => data.chunks_exact_mut(18).for_each(|b| q4_0(b, drop)),
        DType::Q8_0 => data.chunks_exact_mut(34).for_each(|b| q8_0(b, drop)),
        _ => return false,
    }
    true
}

fn f16_field(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The 32 4-bit values of a Q4 block's 16 bytes (GGUF order: the low
/// nibbles are values 0..16, the high ones 16..32).
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for (i, &b) in qs.iter().enumerate().take(16) {
        v[i] = b & 15;
        v[i + 16] = b >> 4;
    }
    v
}

fn pack_nibbles(v: &[u8; 32], qs: &mut [u8]) {
    for (i, q) in qs.iter_mut().enumerate().take(16) {
        *q = v[i] | v[i + 16] << 4;
    }
}

/// The nearest step `(w - base) / step`, clamped to `lo..=hi`.
fn step_of(w: f32, base: f32, step: f32, (lo, hi): (f32, f32)) -> f32 {
    if step == 0.0 || !step.is_finite() {
        return lo.max(0.0).min(hi);
    }
    ((w - base) / step).round().clamp(lo, hi)
}

fn q4_1(b: &mut [u8], drop: u32) {
    let (d0, m0) = (f16_field(b, 0), f16_field(b, 2));
    let (d, m) = (f16_to_f32(d0), f16_to_f32(m0));
    let w = nibbles(&b[4..20]).map(|q| d * f32::from(q) + m);
    let (d1, m1) = (round_f16(d0, drop), round_f16(m0, drop));
    let (d, m) = (f16_to_f32(d1), f16_to_f32(m1));
    let q = w.map(|w| step_of(w, m, d, (0.0, 15.0)) as u8);
    b[..2].copy_from_slice(&d1.to_le_bytes());
    b[2..4].copy_from_slice(&m1.to_le_bytes());
    pack_nibbles(&q, &mut b[4..20]);
}

fn q4_0(b: &mut [u8], drop: u32) {
    let d0 = f16_field(b, 0);
    let d = f16_to_f32(d0);
    let w = nibbles(&b[2..18]).map(|q| d * (f32::from(q) - 8.0));
    let d1 = round_f16(d0, drop);
    let d = f16_to_f32(d1);
    let q = w.map(|w| (step_of(w, 0.0, d, (-8.0, 7.0)) + 8.0) as u8);
    b[..2].copy_from_slice(&d1.to_le_bytes());
    pack_nibbles(&q, &mut b[2..18]);
}

fn q8_0(b: &mut [u8], drop: u32) {
    let d0 = f16_field(b, 0);
    let d = f16_to_f32(d0);
    let d1 = round_f16(d0, drop);
    let d_new = f16_to_f32(d1);
    for q in &mut b[2..34] {
        let w = d * f32::from(*q as i8);
        *q = step_of(w, 0.0, d_new, (-127.0, 127.0)) as i8 as u8;
    }
    b[..2].copy_from_slice(&d1.to_le_bytes());
}

/// Reconstructed weights of Q4_1 blocks (for tests and measurements).
pub fn dequant_q4_1(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(20)
        .flat_map(|b| {
            let (d, m) = (f16_to_f32(f16_field(b, 0)), f16_to_f32(f16_field(b, 2)));
            nibbles(&b[4..20]).map(|q| d * f32::from(q) + m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_hal::compute::f32_to_f16;
    use lode_kernel::rng::SplitMix64;

    #[test]
    fn rounding_keeps_the_nearest_coarser_f16() {
        assert_eq!(round_f16(0x3C00, 3), 0x3C00); // 1.0 is coarse already
        assert_eq!(round_f16(0x3C03, 3), 0x3C00);
        assert_eq!(round_f16(0x3C04, 3), 0x3C08); // a tie rounds up
        assert_eq!(round_f16(0x3FFF, 3), 0x4000); // carries into the exponent
        assert_eq!(round_f16(0xBC05, 3), 0xBC08); // sign kept
        assert_eq!(round_f16(0x7BFF, 3), 0x7BF8); // no overflow to infinity
        assert_eq!(round_f16(0x7C00, 3), 0x7C00);
        assert_eq!(round_f16(0x1234, 0), 0x1234);
    }

    /// Q4_1 blocks like a model's: dropping no bit changes nothing;
    /// dropping three leaves the scales' low bits zero and every weight
    /// within a step (plus the scale's own rounding) of where it was.
    #[test]
    fn q4_1_blocks_move_by_at_most_about_a_step() {
        let mut r = SplitMix64::new(5);
        let mut data = vec![0u8; 20 * 500];
        for b in data.chunks_exact_mut(20) {
            let d = f32_to_f16(0.001 + (r.next_u64() % 1000) as f32 * 1e-5);
            let m = f32_to_f16(-0.01 - (r.next_u64() % 1000) as f32 * 1e-4);
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&m.to_le_bytes());
            for q in &mut b[4..] {
                *q = r.next_u64() as u8;
            }
        }
        let mut same = data.clone();
        assert!(coarsen(DType::Q4_1, &mut same, 0));
        assert_eq!(same, data);
        let mut coarse = data.clone();
        coarsen(DType::Q4_1, &mut coarse, 3);
        let (before, after) = (dequant_q4_1(&data), dequant_q4_1(&coarse));
        for (i, b) in coarse.chunks_exact(20).enumerate() {
            let (d, m) = (f16_field(b, 0), f16_field(b, 2));
            assert_eq!((d & 7, m & 7), (0, 0));
            let step = f16_to_f32(d);
            // |m - m'| <= 2^-8 |m|, and d's rounding moves the top value
            // by at most 15 * 2^-8 d.
            let m_err = (f16_to_f32(f16_field(&data[i * 20..], 2)) - f16_to_f32(m)).abs();
            for k in 0..32 {
                let moved = (after[i * 32 + k] - before[i * 32 + k]).abs();
                assert!(moved <= 0.5 * step + m_err + 16.0 * step / 256.0 + 1e-7);
            }
        }
        assert!(!coarsen(DType::Q6_K, &mut coarse, 3));
    }
}
