//! RMSNorm.

use lode_kernel::compute::ErrorKind;

use super::math;

/// In place: `x = x / sqrt(mean(x²) + eps) · weight`.
///
/// The sum of squares is accumulated in f64 (as llama.cpp does) so a long
/// vector of large activations loses nothing to rounding; the scaling is f32.
/// Errors: `ShapeMismatch` when lengths differ or `x` is empty, `NonFinite`
/// when the scale is not finite (non-finite input, or `mean + eps <= 0`);
/// `x` is untouched on error.
pub(crate) fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) -> Result<(), ErrorKind> {
    if x.len() != weight.len() || x.is_empty() {
        return Err(ErrorKind::ShapeMismatch);
    }
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = ss / x.len() as f64;
    let scale = (1.0 / math::sqrt_f64(mean + f64::from(eps))) as f32;
    if !scale.is_finite() {
        return Err(ErrorKind::NonFinite);
    }
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = (*v * scale) * w;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_naive_definition(
            x in proptest::collection::vec(-50.0f32..50.0, 1..300),
            seed in 0u32..1000,
        ) {
            let w: Vec<f32> = (0..x.len()).map(|i| 0.5 + ((i as u32 * 7 + seed) % 13) as f32 / 10.0).collect();
            let mut y = x.clone();
            rms_norm(&mut y, &w, 1e-5).unwrap();
            let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
            let k = 1.0 / (ms + 1e-5).sqrt();
            for i in 0..x.len() {
                let want = x[i] as f64 * k * w[i] as f64;
                prop_assert!((y[i] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0));
            }
        }
    }

    #[test]
    fn errors_leave_input_alone() {
        let mut x = [1.0f32, 2.0];
        assert_eq!(rms_norm(&mut x, &[1.0], 0.0), Err(ErrorKind::ShapeMismatch));
        assert_eq!(rms_norm(&mut [], &[], 0.0), Err(ErrorKind::ShapeMismatch));
        let mut z = [0.0f32; 4];
        assert_eq!(rms_norm(&mut z, &[1.0; 4], 0.0), Err(ErrorKind::NonFinite));
        let mut n = [f32::NAN, 1.0];
        assert_eq!(rms_norm(&mut n, &[1.0; 2], 1e-5), Err(ErrorKind::NonFinite));
        assert_eq!(x, [1.0, 2.0]);
    }
}
