//! Turning logits into a token: greedy, or temperature sampling with top-k
//! and top-p (nucleus) truncation, reproducible from a seed.
//!
//! No allocation: the caller lends a `u32` scratch of one index per logit.
//! Randomness comes from the kernel's [`SplitMix64`], so a given seed, logits
//! and parameters pick the same token on every target.
//!
//! Order of operations (as in llama.cpp's default chain): top-k keeps the
//! `k` largest logits; probabilities are the softmax of the kept logits over
//! the temperature; top-p keeps the smallest prefix, in decreasing
//! probability, whose probability mass reaches `p`; one token is drawn in
//! proportion to the kept probabilities. Ties between equal logits are
//! broken toward the lower token id, everywhere.

use core::cmp::Ordering;
use core::fmt;

use lode_kernel::compute::{Error, ErrorKind};
use lode_kernel::rng::SplitMix64;

use super::math;

/// Sampling parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `0` means greedy. Finite and `>= 0`.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` means no limit.
    pub top_k: usize,
    /// Keep the smallest most-likely set with probability `>= top_p`;
    /// in `(0, 1]`, `1` means no limit.
    pub top_p: f32,
}

impl SamplerConfig {
    /// Always the most likely token.
    pub const GREEDY: SamplerConfig = SamplerConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
    };

    /// Parameters as given (checked when sampling).
    pub const fn new(temperature: f32, top_k: usize, top_p: f32) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
        }
    }

    /// `Ok` when the parameters are in range.
    pub fn validate(&self) -> Result<(), SampleError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SampleError::InvalidTemperature);
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SampleError::InvalidTopP);
        }
        Ok(())
    }
}

/// Why no token could be sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleError {
    /// No logits, or more than `u32::MAX` of them.
    BadLength,
    /// A logit is NaN or infinite.
    NonFinite,
    /// Temperature negative or not finite.
    InvalidTemperature,
    /// `top_p` outside `(0, 1]`.
    InvalidTopP,
    /// The index scratch is shorter than the logits.
    ScratchTooSmall,
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SampleError::BadLength => "logits empty or longer than u32::MAX",
            SampleError::NonFinite => "a logit is NaN or infinite",
            SampleError::InvalidTemperature => "temperature must be finite and >= 0",
            SampleError::InvalidTopP => "top_p must be in (0, 1]",
            SampleError::ScratchTooSmall => "index scratch shorter than the logits",
        })
    }
}

impl Error for SampleError {
    fn kind(&self) -> ErrorKind {
        match self {
            SampleError::BadLength => ErrorKind::ShapeMismatch,
            SampleError::NonFinite => ErrorKind::NonFinite,
            SampleError::ScratchTooSmall => ErrorKind::ScratchTooSmall,
            SampleError::InvalidTemperature | SampleError::InvalidTopP => ErrorKind::Other,
        }
    }
}

fn check_logits(logits: &[f32]) -> Result<(), SampleError> {
    if logits.is_empty() || u32::try_from(logits.len()).is_err() {
        return Err(SampleError::BadLength);
    }
    if logits.iter().any(|v| !v.is_finite()) {
        return Err(SampleError::NonFinite);
    }
    Ok(())
}

/// The id of the largest logit (the lowest id among equals).
pub fn greedy(logits: &[f32]) -> Result<u32, SampleError> {
    check_logits(logits)?;
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    Ok(best as u32)
}

/// Logit of token `i` (callers pass ids below `logits.len()`).
#[inline]
fn logit(logits: &[f32], i: u32) -> f32 {
    logits.get(i as usize).copied().unwrap_or(f32::NEG_INFINITY)
}

/// Descending by logit, ascending by id among equals: a total order.
fn by_rank(logits: &[f32]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| {
        logit(logits, b)
            .total_cmp(&logit(logits, a))
            .then(a.cmp(&b))
    }
}

/// Draws a token from `logits` per `cfg`, using `rng` and `scratch` (at
/// least `logits.len()` entries). Temperature 0 and `top_k == 1` are greedy
/// and consume no randomness.
pub fn sample(
    logits: &[f32],
    cfg: &SamplerConfig,
    rng: &mut SplitMix64,
    scratch: &mut [u32],
) -> Result<u32, SampleError> {
    cfg.validate()?;
    check_logits(logits)?;
    // A temperature so small its inverse overflows is greedy too.
    if cfg.temperature == 0.0 || cfg.top_k == 1 || !(1.0 / cfg.temperature).is_finite() {
        return greedy(logits);
    }
    let n = logits.len();
    let idx = scratch.get_mut(..n).ok_or(SampleError::ScratchTooSmall)?;
    for (i, s) in idx.iter_mut().enumerate() {
        *s = i as u32;
    }
    let rank = by_rank(logits);
    let k = if cfg.top_k == 0 { n } else { cfg.top_k.min(n) };
    let cand: &mut [u32] = if k < n {
        idx.select_nth_unstable_by(k - 1, &rank);
        idx.get_mut(..k).unwrap_or(&mut [])
    } else {
        idx
    };
    // Unnormalized probabilities relative to the best logit (never overflow).
    let best = logit(logits, greedy(logits)?);
    let inv_t = 1.0 / cfg.temperature;
    let weight = |i: u32| f64::from(math::exp((logit(logits, i) - best) * inv_t));
    let total: f64 = cand.iter().map(|&i| weight(i)).sum();

    let kept: &[u32] = if cfg.top_p < 1.0 {
        let target = f64::from(cfg.top_p) * total;
        let m = nucleus_len(cand, &rank, &weight, target);
        cand.get(..m).unwrap_or(&[])
    } else {
        cand
    };
    let mass: f64 = if kept.len() == cand.len() {
        total
    } else {
        kept.iter().map(|&i| weight(i)).sum()
    };
    let r = rng.unit_f64() * mass;
    let mut acc = 0.0f64;
    for &i in kept {
        acc += weight(i);
        if r < acc {
            return Ok(i);
        }
    }
    // Rounding left `r` at the very top: the last kept token.
    Ok(kept.last().copied().unwrap_or(0))
}

/// Sorts the most likely prefix of `cand` and returns the length of the
/// smallest prefix whose weight reaches `target`.
///
/// Sorting all of a 49k vocabulary per token is wasteful when the nucleus is
/// a few dozen tokens, so candidates are partitioned (linear time) around a
/// growing rank `m` until the top `m` hold enough mass; only those are sorted.
fn nucleus_len(
    cand: &mut [u32],
    rank: &impl Fn(&u32, &u32) -> Ordering,
    weight: &impl Fn(u32) -> f64,
    target: f64,
) -> usize {
    let len = cand.len();
    let mut m = 64.min(len);
    loop {
        if m < len {
            cand.select_nth_unstable_by(m - 1, rank);
        }
        let head = cand.get_mut(..m).unwrap_or(&mut []);
        let mass: f64 = head.iter().map(|&i| weight(i)).sum();
        if mass >= target || m == len {
            head.sort_unstable_by(rank);
            let mut acc = 0.0f64;
            for (j, &i) in head.iter().enumerate() {
                acc += weight(i);
                if acc >= target {
                    return j + 1;
                }
            }
            return m;
        }
        m = m.saturating_mul(4).min(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn logits_from(seed: u64, n: usize) -> Vec<f32> {
        let mut r = SplitMix64::new(seed);
        (0..n)
            .map(|_| (r.unit_f64() * 20.0 - 10.0) as f32)
            .collect()
    }

    #[test]
    fn greedy_picks_lowest_id_among_maxima() {
        assert_eq!(greedy(&[1.0, 3.0, 3.0, -1.0]), Ok(1));
        assert_eq!(greedy(&[]), Err(SampleError::BadLength));
        assert_eq!(greedy(&[1.0, f32::NAN]), Err(SampleError::NonFinite));
    }

    #[test]
    fn invalid_parameters_are_errors() {
        let l = [0.0f32; 4];
        let mut s = [0u32; 4];
        let mut r = SplitMix64::new(1);
        for (cfg, e) in [
            (
                SamplerConfig::new(-1.0, 0, 1.0),
                SampleError::InvalidTemperature,
            ),
            (
                SamplerConfig::new(f32::NAN, 0, 1.0),
                SampleError::InvalidTemperature,
            ),
            (
                SamplerConfig::new(f32::INFINITY, 0, 1.0),
                SampleError::InvalidTemperature,
            ),
            (SamplerConfig::new(1.0, 0, 0.0), SampleError::InvalidTopP),
            (SamplerConfig::new(1.0, 0, 1.5), SampleError::InvalidTopP),
            (
                SamplerConfig::new(1.0, 0, f32::NAN),
                SampleError::InvalidTopP,
            ),
        ] {
            assert_eq!(sample(&l, &cfg, &mut r, &mut s), Err(e));
            assert_eq!(e.kind(), ErrorKind::Other);
        }
        let cfg = SamplerConfig::new(1.0, 0, 1.0);
        assert_eq!(
            sample(&l, &cfg, &mut r, &mut s[..3]),
            Err(SampleError::ScratchTooSmall)
        );
    }

    proptest! {
        #[test]
        fn top_k_one_and_zero_temperature_are_greedy(seed in 0u64..1000, n in 1usize..300, t in 0.1f32..3.0) {
            let l = logits_from(seed, n);
            let mut s = vec![0u32; n];
            let mut r = SplitMix64::new(seed);
            let g = greedy(&l).unwrap();
            prop_assert_eq!(sample(&l, &SamplerConfig::new(t, 1, 0.9), &mut r, &mut s), Ok(g));
            prop_assert_eq!(sample(&l, &SamplerConfig::new(0.0, 50, 0.5), &mut r, &mut s), Ok(g));
            prop_assert_eq!(sample(&l, &SamplerConfig::new(1e-45, 0, 1.0), &mut r, &mut s), Ok(g));
        }

        #[test]
        fn same_seed_same_token(seed in 0u64..1000, n in 1usize..500, k in 0usize..40, p in 0.05f32..1.0) {
            let l = logits_from(seed ^ 0xabc, n);
            let cfg = SamplerConfig::new(0.8, k, p);
            let mut s = vec![0u32; n];
            let a = sample(&l, &cfg, &mut SplitMix64::new(seed), &mut s).unwrap();
            let b = sample(&l, &cfg, &mut SplitMix64::new(seed), &mut s).unwrap();
            prop_assert_eq!(a, b);
            prop_assert!((a as usize) < n);
        }

        #[test]
        fn sampled_token_is_inside_top_k_and_nucleus(seed in 0u64..500, n in 2usize..2000, k in 0usize..100, p in 0.01f32..1.0, t in 0.2f32..2.0) {
            let l = logits_from(seed, n);
            let cfg = SamplerConfig::new(t, k, p);
            let mut s = vec![0u32; n];
            let tok = sample(&l, &cfg, &mut SplitMix64::new(seed + 7), &mut s).unwrap() as usize;
            // Reference: full sort, top-k, softmax, smallest prefix reaching p.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| l[b].total_cmp(&l[a]).then(a.cmp(&b)));
            let kk = if k == 0 { n } else { k.min(n) };
            order.truncate(kk);
            let best = l[order[0]];
            let w: Vec<f64> = order.iter().map(|&i| (((l[i] - best) / t) as f64).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            let mut keep = kk;
            if p < 1.0 {
                for (j, wj) in w.iter().enumerate() {
                    acc += wj;
                    if acc >= p as f64 * total * (1.0 - 1e-6) {
                        keep = j + 1;
                        break;
                    }
                }
            }
            // Allow one more token for f32/f64 rounding at the boundary.
            let allowed = &order[..(keep + 1).min(kk)];
            prop_assert!(allowed.contains(&tok), "token {} not in the first {} of {:?}", tok, keep, &order[..kk.min(8)]);
        }
    }

    #[test]
    fn nucleus_is_smallest_prefix_reaching_p() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1.
        let l = [2f32.ln() * 2.0, 2f32.ln(), 0.0, 0.0];
        let mut s = [0u32; 4];
        let rank = by_rank(&l);
        let best = l[0];
        let w = |i: u32| ((l[i as usize] - best) as f64).exp();
        let total: f64 = (0..4).map(w).sum();
        for (p, want) in [(0.5, 1), (0.51, 2), (0.75, 2), (0.76, 3), (1.0, 4)] {
            for (i, v) in s.iter_mut().enumerate() {
                *v = 3 - i as u32; // start from the worst order
            }
            let m = nucleus_len(&mut s, &rank, &w, p * total * (1.0 - 1e-9));
            assert_eq!(m, want, "p = {p}");
            assert_eq!(s[0], 0);
        }
        // With p = 0.5 only token 0 can ever come out.
        let cfg = SamplerConfig::new(1.0, 0, 0.5);
        for seed in 0..200 {
            assert_eq!(sample(&l, &cfg, &mut SplitMix64::new(seed), &mut s), Ok(0));
        }
    }

    #[test]
    fn frequencies_follow_probabilities() {
        let l = [2f32.ln() * 2.0, 2f32.ln(), 0.0, 0.0];
        let cfg = SamplerConfig::new(1.0, 0, 1.0);
        let mut s = [0u32; 4];
        let mut r = SplitMix64::new(42);
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            counts[sample(&l, &cfg, &mut r, &mut s).unwrap() as usize] += 1;
        }
        let want = [0.5, 0.25, 0.125, 0.125];
        for (c, w) in counts.iter().zip(want) {
            assert!((*c as f64 / 20_000.0 - w).abs() < 0.015, "{counts:?}");
        }
        // top-k = 2 renormalizes over the first two: 2/3, 1/3.
        let cfg = SamplerConfig::new(1.0, 2, 1.0);
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            counts[sample(&l, &cfg, &mut r, &mut s).unwrap() as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0);
        assert!(
            (counts[0] as f64 / 20_000.0 - 2.0 / 3.0).abs() < 0.015,
            "{counts:?}"
        );
    }
}
