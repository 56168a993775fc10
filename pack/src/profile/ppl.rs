//! Perplexity of a text: the exponential of the mean negative
//! log-likelihood the model gives each next token.

/// Negative log-likelihood of `target` under `logits`: the log-softmax,
/// computed in f64 around the largest logit so large logits do not
/// overflow. `None` when `target` is not a vocabulary entry.
pub fn token_nll(logits: &[f32], target: usize) -> Option<f64> {
    let picked = f64::from(*logits.get(target)?);
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    Some(max + sum.ln() - picked)
}

/// A running sum of negative log-likelihoods.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Nll {
    sum: f64,
    count: u64,
}

impl Nll {
    /// Adds the prediction of `target` from `logits`; a target outside the
    /// vocabulary counts as an impossible prediction (infinite loss), so a
    /// bug shows in the result instead of vanishing.
    pub fn add(&mut self, logits: &[f32], target: u32) {
        self.sum += token_nll(logits, target as usize).unwrap_or(f64::INFINITY);
        self.count += 1;
    }

    /// Predictions added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `exp(mean loss)`; NaN when nothing was added.
    pub fn perplexity(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        (self.sum / self.count as f64).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uniform_logits_give_the_vocabulary_size() {
        let mut n = Nll::default();
        assert!(n.perplexity().is_nan());
        for t in 0..10 {
            n.add(&[3.0; 50], t);
        }
        assert!((n.perplexity() - 50.0).abs() < 1e-9);
        assert_eq!(n.count(), 10);
        n.add(&[0.0; 4], 4);
        assert!(n.perplexity().is_infinite());
        assert_eq!(token_nll(&[1.0, 2.0], 2), None);
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let l = [1.0e30f32, 0.0, -1.0e30];
        assert!(token_nll(&l, 0).unwrap().abs() < 1e-9);
        assert!((token_nll(&l, 1).unwrap() - 1.0e30).abs() < 1e24);
    }

    proptest! {
        #[test]
        fn probabilities_sum_to_one(logits in proptest::collection::vec(-20.0f32..20.0, 1..64)) {
            let total: f64 = (0..logits.len())
                .map(|t| (-token_nll(&logits, t).unwrap()).exp())
                .sum();
            prop_assert!((total - 1.0).abs() < 1e-9, "{}", total);
            prop_assert!((0..logits.len()).all(|t| token_nll(&logits, t).unwrap() >= 0.0));
        }
    }
}
