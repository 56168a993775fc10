//! Rotary position embedding, adjacent-pair (GGUF llama) convention.
//!
//! A decode step applies RoPE twice per layer (queries and keys) at the same
//! position, so the cosines and sines of one position are computed once, in
//! f64 for accuracy at large positions, and cached; later calls at that
//! position cost only the rotations.

use lode_kernel::compute::ErrorKind;

use super::math;

/// Largest `head_dim / 2` whose table is cached (head_dim 256); wider heads
/// compute their angles on every call.
const MAX_PAIRS: usize = 128;

/// Cosines and sines of the last (position, head_dim, base) seen.
pub(crate) struct RopeCache {
    key: Option<(u32, usize, u32)>,
    cos: [f32; MAX_PAIRS],
    sin: [f32; MAX_PAIRS],
}

/// (cos, sin) of pair `i`'s angle `pos · base^(-2i / head_dim)`.
fn angle(pos: u32, i: usize, head_dim: usize, base: f32) -> (f32, f32) {
    let freq = math::pow_f64(f64::from(base), -(2.0 * i as f64) / head_dim as f64);
    let (s, c) = math::sin_cos_f64(f64::from(pos) * freq);
    (c as f32, s as f32)
}

/// Rotates pair `(a, b)` by the angle with cosine `c` and sine `s`.
#[inline]
fn rotate(a: &mut f32, b: &mut f32, c: f32, s: f32) {
    let (x0, x1) = (*a, *b);
    *a = x0 * c - x1 * s;
    *b = x0 * s + x1 * c;
}

impl RopeCache {
    pub(crate) const fn new() -> RopeCache {
        RopeCache {
            key: None,
            cos: [0.0; MAX_PAIRS],
            sin: [0.0; MAX_PAIRS],
        }
    }

    /// Rotates every head of `x` in place; see
    /// [`Compute::rope`](lode_kernel::compute::Compute::rope).
    ///
    /// Errors: `ShapeMismatch` when `head_dim` is zero or odd or does not
    /// divide `x.len()`; `NonFinite` for a non-finite `theta_base`; `Other`
    /// for `theta_base <= 0` (no meaningful frequencies).
    pub(crate) fn apply(
        &mut self,
        x: &mut [f32],
        head_dim: usize,
        pos: u32,
        theta_base: f32,
    ) -> Result<(), ErrorKind> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || !x.len().is_multiple_of(head_dim) {
            return Err(ErrorKind::ShapeMismatch);
        }
        if !theta_base.is_finite() {
            return Err(ErrorKind::NonFinite);
        }
        if theta_base <= 0.0 {
            return Err(ErrorKind::Other);
        }
        let pairs = head_dim / 2;
        if pairs > MAX_PAIRS {
            for head in x.chunks_exact_mut(head_dim) {
                for (i, p) in head.chunks_exact_mut(2).enumerate() {
                    let (c, s) = angle(pos, i, head_dim, theta_base);
                    if let [a, b] = p {
                        rotate(a, b, c, s);
                    }
                }
            }
            return Ok(());
        }
        let key = (pos, head_dim, theta_base.to_bits());
        if self.key != Some(key) {
            for i in 0..pairs {
                let (c, s) = angle(pos, i, head_dim, theta_base);
                self.cos[i] = c;
                self.sin[i] = s;
            }
            self.key = Some(key);
        }
        for head in x.chunks_exact_mut(head_dim) {
            for ((p, &c), &s) in head.chunks_exact_mut(2).zip(&self.cos).zip(&self.sin) {
                if let [a, b] = p {
                    rotate(a, b, c, s);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The trait's definition, computed independently in f64.
    fn naive(x: &[f32], hd: usize, pos: u32, base: f32) -> Vec<f32> {
        let mut y = x.to_vec();
        for h in 0..x.len() / hd {
            for i in 0..hd / 2 {
                let th = pos as f64 * (base as f64).powf(-(2.0 * i as f64) / hd as f64);
                let (a, b) = (x[h * hd + 2 * i] as f64, x[h * hd + 2 * i + 1] as f64);
                y[h * hd + 2 * i] = (a * th.cos() - b * th.sin()) as f32;
                y[h * hd + 2 * i + 1] = (a * th.sin() + b * th.cos()) as f32;
            }
        }
        y
    }

    proptest! {
        #[test]
        fn matches_naive_and_cache_is_transparent(
            heads in 1usize..4,
            hd_half in prop_oneof![1usize..8, Just(32usize), Just(160usize)],
            pos in prop_oneof![0u32..20, Just(4095u32), Just(100_000u32)],
            seed in 0u64..100,
        ) {
            let hd = 2 * hd_half;
            let x: Vec<f32> = (0..heads * hd).map(|i| (((i as u64 * 31 + seed) % 17) as f32 - 8.0) / 4.0).collect();
            let want = naive(&x, hd, pos, 10000.0);
            let mut cache = RopeCache::new();
            for _ in 0..2 {
                let mut y = x.clone();
                cache.apply(&mut y, hd, pos, 10000.0).unwrap();
                for (a, b) in y.iter().zip(&want) {
                    prop_assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
            // A different position after a cached one is not served stale.
            let mut y = x.clone();
            cache.apply(&mut y, hd, pos + 1, 10000.0).unwrap();
            let want = naive(&x, hd, pos + 1, 10000.0);
            for (a, b) in y.iter().zip(&want) {
                prop_assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()));
            }
        }
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let mut c = RopeCache::new();
        let x: Vec<f32> = (0..64).map(|i| i as f32 - 30.0).collect();
        let mut y = x.clone();
        c.apply(&mut y, 64, 0, 100_000.0).unwrap();
        assert_eq!(x, y);
        c.apply(&mut y, 64, 77, 100_000.0).unwrap();
        for (p, q) in x.chunks(2).zip(y.chunks(2)) {
            let n0 = p[0] * p[0] + p[1] * p[1];
            let n1 = q[0] * q[0] + q[1] * q[1];
            assert!((n0 - n1).abs() <= 1e-4 * n0.max(1.0));
        }
        // First pair turns by exactly `pos` radians.
        let mut e = vec![0.0f32; 4];
        e[0] = 1.0;
        c.apply(&mut e, 4, 3, 10.0).unwrap();
        assert!((e[0] - 3f32.cos()).abs() < 1e-6 && (e[1] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn bad_shapes_and_bases_are_errors() {
        let mut c = RopeCache::new();
        let mut x = [0.0f32; 12];
        assert_eq!(c.apply(&mut x, 0, 1, 1e4), Err(ErrorKind::ShapeMismatch));
        assert_eq!(c.apply(&mut x, 3, 1, 1e4), Err(ErrorKind::ShapeMismatch));
        assert_eq!(c.apply(&mut x, 8, 1, 1e4), Err(ErrorKind::ShapeMismatch));
        assert_eq!(c.apply(&mut x, 4, 1, f32::NAN), Err(ErrorKind::NonFinite));
        assert_eq!(c.apply(&mut x, 4, 1, 0.0), Err(ErrorKind::Other));
    }
}
