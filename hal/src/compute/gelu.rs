//! GELU-gated FFN step (Gemma's `gelu(gate) ⊙ up`), rounded as ggml rounds.
//!
//! GELU here is the tanh approximation
//! `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`. ggml's CPU backend does
//! not evaluate it directly: it looks it up in a table of binary16 results
//! indexed by the binary16 rounding of `x` (and passes `x` through above 10,
//! gives 0 below -10). To agree with llama.cpp bit for bit we round the same
//! way: `x` to binary16, GELU in f32, the result to binary16. The rounding
//! error (about 2^-11 relative) is what llama.cpp's logits carry too.

use lode_kernel::compute::ErrorKind;

use super::f16::{f16_to_f32, f32_to_f16};
use super::math;

/// `√(2/π)`.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh approximation.
const COEF_A: f32 = 0.044_715;

/// `tanh(z)` from one exponential; exact enough that the binary16 rounding
/// after it decides the result.
fn tanh(z: f32) -> f32 {
    if z > 15.0 {
        return 1.0;
    }
    if z < -15.0 {
        return -1.0;
    }
    1.0 - 2.0 / (math::exp(2.0 * z) + 1.0)
}

/// GELU (tanh approximation) of `x`, rounded through binary16 as ggml's
/// table is.
pub(crate) fn gelu(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    let h = f16_to_f32(f32_to_f16(x));
    let y = 0.5 * h * (1.0 + tanh(SQRT_2_OVER_PI * h * (1.0 + COEF_A * h * h)));
    f16_to_f32(f32_to_f16(y))
}

/// See [`Compute::geglu`](lode_kernel::compute::Compute::geglu).
///
/// Errors: `ShapeMismatch` when the lengths differ.
pub(crate) fn geglu(gate: &mut [f32], up: &[f32]) -> Result<(), ErrorKind> {
    if gate.len() != up.len() {
        return Err(ErrorKind::ShapeMismatch);
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu(*g) * u;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the formula in f64 (through the same binary16 roundings).
    #[test]
    fn gelu_matches_the_formula_within_binary16() {
        for i in -1200..=1200 {
            let x = i as f32 / 100.0;
            let h = f64::from(f16_to_f32(f32_to_f16(x)));
            let z = 0.797_884_560_802_865_4 * h * (1.0 + 0.044_715 * h * h);
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                f64::from(x)
            } else {
                0.5 * h * (1.0 + z.tanh())
            };
            let got = f64::from(gelu(x));
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1e-2),
                "{x}: {got} vs {want}"
            );
        }
        assert_eq!(gelu(0.0), 0.0);
        let mut g = [1.0f32, -1.0];
        assert_eq!(geglu(&mut g, &[2.0]), Err(ErrorKind::ShapeMismatch));
    }
}
