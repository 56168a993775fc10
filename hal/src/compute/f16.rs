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
pub fn f16_round_down(x: f32) -> Option<u16> {
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
pub fn f16_round_up_nonneg(x: f32) -> Option<u16> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
}
