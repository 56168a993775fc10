//! IEEE-754 binary16 conversions.
//!
//! Every GGML block stores its scale (and minimum) as binary16, and the KV
//! quantizer stores its group parameters the same way. `core` has no stable
//! `f16` type; the conversions are the `half` crate's, the one f16 decoder
//! of the workspace (lode-formats decodes GGUF blocks with it too). They
//! are exact (f16 to f32) and round to nearest, ties to even (f32 to f16),
//! which is what the F16C and NEON conversion instructions do, so every
//! path agrees bit for bit. The directed roundings the KV quantizer needs
//! are built on them here.

use half::f16;

/// The f32 value of the binary16 `bits` (exact: every f16 is an f32).
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// The f32 value of the little-endian binary16 in `b`.
#[inline]
pub fn f16_le(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

/// `x` rounded to the nearest binary16 (ties to even); overflow gives
/// infinity, NaN stays NaN (quiet).
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    f16::from_f32(x).to_bits()
}

/// The largest binary16 not above `x` (`x` finite); `None` when that is
/// below the binary16 range.
///
/// Computed on the bits, not by rounding to nearest and stepping back: the
/// KV quantizer calls this (and [`f16_round_up_nonneg`]) once per group on
/// every path, and the two software conversions each way cost more than
/// the SIMD codes of the whole group.
pub fn f16_round_down(x: f32) -> Option<u16> {
    if x.is_sign_negative() {
        // Round the magnitude away from zero; -0.0 stays -0.0.
        magnitude_to_f16(-x, true).map(|h| h | 0x8000)
    } else {
        // Toward zero: a magnitude above the range gives the largest f16.
        Some(magnitude_to_f16(x, false).unwrap_or(0x7bff))
    }
}

/// The smallest binary16 not below `x` (`x` finite, `>= 0`); `None` when it
/// would be infinite.
pub fn f16_round_up_nonneg(x: f32) -> Option<u16> {
    if x.is_sign_negative() {
        // Outside the contract except -0.0; toward zero is up.
        return Some(magnitude_to_f16(-x, false).unwrap_or(0x7bff) | 0x8000);
    }
    magnitude_to_f16(x, true)
}

/// The binary16 bits of `a` (`a >= 0`, not NaN) rounded toward zero, or
/// away from zero when `away`; `None` when the result is not finite.
fn magnitude_to_f16(a: f32, away: bool) -> Option<u16> {
    /// 2^-14, the smallest normal binary16.
    const MIN_NORMAL: f32 = 1.0 / 16384.0;
    /// 2^24: one unit is the binary16 subnormal step, 2^-24.
    const SUBNORMAL_STEPS: f32 = 16_777_216.0;
    if a < MIN_NORMAL {
        // Subnormal (or the smallest normal when rounding up): the code is
        // the number of 2^-24 steps, and scaling by 2^24 is exact.
        let s = a * SUBNORMAL_STEPS;
        let k = s as u16;
        return Some(if away && f32::from(k) < s { k + 1 } else { k });
    }
    // Normal: keep the top 10 of f32's 23 mantissa bits (a carry from
    // rounding away moves into the exponent, as it should), then rebias the
    // exponent from 127 to 15.
    let b = a.to_bits();
    let mut t = b & !0x1fff;
    if away && b & 0x1fff != 0 {
        t += 0x2000;
    }
    let e = (t >> 23) as i32 - 127;
    if e > 15 {
        return None;
    }
    Some(((((e + 15) as u32) << 10) | ((t >> 13) & 0x3ff)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The directed roundings as first written: to nearest, then one step
    // back when that overshot. The bit-level versions must agree.
    /// The largest binary16 not above `x` (`x` finite); `None` when that is
    /// below the binary16 range.
    fn round_down_ref(x: f32) -> Option<u16> {
        let h = f32_to_f16(x);
        let v = f16_to_f32(h);
        if !v.is_finite() && v < 0.0 {
            return None;
        }
        if v <= x {
            return Some(h);
        }
        // One ulp toward negative infinity.
        let down = match h {
            0x0000 => 0x8001,
            h if h & 0x8000 == 0 => h - 1,
            h => h + 1,
        };
        if f16_to_f32(down).is_finite() {
            Some(down)
        } else {
            None
        }
    }

    /// The smallest binary16 not below `x` (`x` finite, `>= 0`); `None` when it
    /// would be infinite.
    fn round_up_ref(x: f32) -> Option<u16> {
        let mut h = f32_to_f16(x);
        if f16_to_f32(h) < x {
            h += 1;
        }
        if f16_to_f32(h).is_finite() {
            Some(h)
        } else {
            None
        }
    }

    #[test]
    fn every_f16_round_trips() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_nan() {
                assert!(f16_to_f32(f32_to_f16(v)).is_nan());
            } else {
                assert_eq!(f32_to_f16(v), h, "bits {h:#06x} value {v}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "rounds up to infinity");
        assert_eq!(f32_to_f16(65519.0), 0x7bff);
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0, "tie to even at zero");
        assert_eq!(f32_to_f16(2f32.powi(-25) * 1.5), 1);
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00, "tie to even");
        assert_eq!(
            f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)),
            0x3c02,
            "tie to even"
        );
    }

    /// The nearest f16 really is nearest: no neighbour is strictly closer.
    fn assert_nearest(x: f32) {
        let h = f32_to_f16(x);
        let v = f16_to_f32(h) as f64;
        let err = (v - x as f64).abs();
        for n in [h.wrapping_sub(1), h.wrapping_add(1)] {
            let w = f16_to_f32(n);
            if w.is_finite() && (n & 0x7fff) < 0x7c00 && (n ^ h) & 0x8000 == 0 {
                assert!(
                    (w as f64 - x as f64).abs() >= err,
                    "x {x} h {h:#x} n {n:#x}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn rounding_is_nearest(x in -65000.0f32..65000.0) {
            assert_nearest(x);
        }

        #[test]
        fn rounding_is_nearest_small(x in -1e-3f32..1e-3) {
            assert_nearest(x);
        }

        #[test]
        fn directed_rounding_brackets(x in -60000.0f32..60000.0) {
            let d = f16_round_down(x).map(f16_to_f32);
            prop_assert!(d.is_some_and(|d| d <= x));
            if x >= 0.0 {
                let u = f16_round_up_nonneg(x).map(f16_to_f32);
                prop_assert!(u.is_some_and(|u| u >= x));
            }
        }
    }

    #[test]
    fn directed_rounding_at_edges() {
        assert_eq!(f16_round_down(0.0), Some(0));
        assert_eq!(
            f16_round_down(-1e-9).map(f16_to_f32),
            Some(-(2f32.powi(-24)))
        );
        assert_eq!(f16_round_down(-65504.5), None);
        assert_eq!(f16_round_up_nonneg(65504.5), None);
        assert_eq!(f16_round_up_nonneg(1e-9), Some(1));
    }

    /// The bit-level directed roundings give the reference's results
    /// around every f16 (the values where the rounding changes) and at
    /// random finite f32 of every magnitude.
    #[test]
    fn directed_rounding_matches_reference_around_every_f16() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if !v.is_finite() {
                continue;
            }
            let b = v.to_bits();
            for x in [v, f32::from_bits(b.wrapping_sub(1)), f32::from_bits(b + 1)] {
                if !x.is_finite() {
                    continue;
                }
                assert_eq!(f16_round_down(x), round_down_ref(x), "down {x:e}");
                if x >= 0.0 {
                    assert_eq!(f16_round_up_nonneg(x), round_up_ref(x), "up {x:e}");
                }
            }
        }
        for x in [
            f32::MAX,
            f32::MIN,
            65504.5,
            65519.0,
            65520.0,
            -65519.0,
            1e-45,
            -1e-45,
            -0.0,
        ] {
            assert_eq!(f16_round_down(x), round_down_ref(x), "down {x:e}");
            if x >= 0.0 {
                assert_eq!(f16_round_up_nonneg(x), round_up_ref(x), "up {x:e}");
            }
        }
    }

    proptest! {
        #[test]
        fn directed_rounding_matches_reference(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            if x.is_finite() {
                prop_assert_eq!(f16_round_down(x), round_down_ref(x), "down {:e}", x);
                if x >= 0.0 {
                    prop_assert_eq!(f16_round_up_nonneg(x), round_up_ref(x), "up {:e}", x);
                }
            }
        }
    }

    /// Every finite f32 (35 s on this 2-core box): run with `--ignored` after
    /// changing the directed roundings.
    #[test]
    #[ignore]
    fn directed_rounding_matches_reference_everywhere() {
        for bits in 0..=u32::MAX {
            let x = f32::from_bits(bits);
            if x.is_finite() {
                assert_eq!(f16_round_down(x), round_down_ref(x), "down {x:e}");
                if x >= 0.0 {
                    assert_eq!(f16_round_up_nonneg(x), round_up_ref(x), "up {x:e}");
                }
            }
        }
    }
}
