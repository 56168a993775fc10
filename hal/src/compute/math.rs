//! Float functions that `core` lacks, the same with or without `std`.
//!
//! `core` has no `sqrt`, `exp` or `sin` on stable Rust, so the crate uses
//! `libm` everywhere (not only without `std`): results then do not depend on
//! the build's feature set or on the platform C library, which keeps the
//! scalar reference paths reproducible across targets.

/// |x|.
#[inline]
pub fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// Round to nearest, ties to even: what the SIMD float-to-int conversions do
/// (`cvtps2dq`, `fcvtns`), so the scalar activation quantizer matches them.
#[inline]
pub fn rint(x: f32) -> f32 {
    libm::rintf(x)
}

/// Round to nearest, ties away from zero (C `roundf`, as GGML's weight
/// quantizers use).
#[inline]
pub fn round(x: f32) -> f32 {
    libm::roundf(x)
}

/// e^x within 2 ulp, results below the smallest normal f32 flushed to 0.
///
/// `libm::expf` costs ~25 ns, which made SiLU a fifth of a dense FFN's time;
/// this is a Cody-Waite reduction `x = n·ln2 + r` (|r| <= ln2/2) with a
/// degree-6 Taylor polynomial for e^r and the exponent written directly,
/// a few nanoseconds and the same on every target.
#[inline]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact for |n| < 2^8.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 · 2^23 rounds to an integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    if x.is_nan() {
        return x;
    }
    if x > 88.722_83 {
        return f32::INFINITY;
    }
    if x < -87.336_54 {
        return 0.0;
    }
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is in -126..=128; split the scale so neither factor overflows.
    let n = n as i32;
    let half = n / 2;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((n - half + 127) as u32) << 23);
    p * s1 * s2
}

/// √x in double precision.
#[inline]
pub fn sqrt_f64(x: f64) -> f64 {
    libm::sqrt(x)
}

/// x^y in double precision.
#[inline]
pub fn pow_f64(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// (sin x, cos x) in double precision.
#[inline]
pub fn sin_cos_f64(x: f64) -> (f64, f64) {
    libm::sincos(x)
}

/// x · sigmoid(x), the SiLU activation; finite for every finite x.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rint_ties_to_even_round_ties_away() {
        assert_eq!(rint(2.5), 2.0);
        assert_eq!(rint(3.5), 4.0);
        assert_eq!(rint(-2.5), -2.0);
        assert_eq!(round(2.5), 3.0);
        assert_eq!(round(-2.5), -3.0);
        assert_eq!(abs(-0.0), 0.0);
        assert_eq!(abs(-3.0), 3.0);
    }

    #[test]
    fn exp_is_accurate_across_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        // 2 ulp of f32 is 2.4e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn silu_known_values_and_extremes() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!(silu(-200.0).abs() < 1e-30);
        assert_eq!(silu(200.0), 200.0);
    }
}
