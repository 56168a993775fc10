//! Calibration scores: a bounded, uniform sample of neuron scores per layer
//! and the per-layer thresholds taken from it.
//!
//! Calibrating on every token would keep `tokens * layers * neurons` floats
//! (2048 tokens of SmolLM2 are 377 MB); a quantile needs far fewer. Each
//! layer keeps the full score rows of at most [`MAX_SAMPLE_TOKENS`] tokens,
//! and at most [`MAX_SAMPLE_SCORES`] scores in all (so 512 tokens of
//! SmolLM2's 1536 neurons, 94 MB over its 30 layers; 95 tokens of a 7B
//! model's 11,008). Tokens are chosen by reservoir sampling (Vitter's
//! algorithm R), so every token of the text is equally likely to be kept
//! whatever its length, and the same tokens are kept in every layer. The
//! sampling is seeded, so a profile is reproducible.

use lode_kernel::rng::SplitMix64;

/// Most tokens whose scores one layer keeps.
pub const MAX_SAMPLE_TOKENS: usize = 512;
/// Most scores one layer keeps (4 MiB of f32), which caps the tokens kept
/// for wide FFNs.
pub const MAX_SAMPLE_SCORES: usize = 1 << 20;

/// Seed of the token reservoir.
const SEED: u64 = 0x6C6F_6465_7072_6F66;

/// Why a score could not be recorded or a threshold not computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleError {
    /// A layer, slot or score row that does not fit the sample's shape.
    Shape,
    /// No scores were collected.
    Empty,
    /// Calibration has already ended.
    Finished,
    /// A layer's scores contain NaN at the quantile (the model produced
    /// non-finite activations).
    NonFinite {
        /// The layer.
        layer: usize,
    },
}

impl core::fmt::Display for SampleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SampleError::Shape => f.write_str("calibration sample: score row of the wrong shape"),
            SampleError::Empty => f.write_str("calibration sample: no scores collected"),
            SampleError::Finished => f.write_str("calibration sample: calibration already ended"),
            SampleError::NonFinite { layer } => {
                write!(f, "layer {layer}: non-finite FFN activations")
            }
        }
    }
}

impl std::error::Error for SampleError {}

/// Score rows of a uniform sample of tokens, per layer.
#[derive(Debug, Clone)]
pub struct ScoreSample {
    neurons: usize,
    capacity: usize,
    offered: u64,
    rng: SplitMix64,
    /// Per layer: the kept tokens' score rows back to back.
    layers: Vec<Vec<f32>>,
}

impl ScoreSample {
    /// An empty sample for `layers` layers of `neurons` neurons.
    pub fn new(layers: usize, neurons: usize) -> Self {
        let capacity = (MAX_SAMPLE_SCORES / neurons.max(1)).clamp(1, MAX_SAMPLE_TOKENS);
        ScoreSample {
            neurons,
            capacity,
            offered: 0,
            rng: SplitMix64::new(SEED),
            layers: vec![Vec::new(); layers],
        }
    }

    /// Tokens kept so far (the same in every layer once each layer has
    /// stored the admitted tokens).
    pub fn kept(&self) -> usize {
        self.layers
            .first()
            .map_or(0, |l| l.len() / self.neurons.max(1))
    }

    /// Offers the next token: the slot its scores go to in every layer, or
    /// `None` when the reservoir passes it over. Call once per token, before
    /// storing its layers.
    pub fn admit(&mut self) -> Option<usize> {
        let t = self.offered;
        self.offered += 1;
        let slot = if t < self.capacity as u64 {
            t
        } else {
            self.rng.below(t + 1)
        };
        usize::try_from(slot).ok().filter(|&s| s < self.capacity)
    }

    /// Stores the scores of a token admitted into `slot` for `layer`.
    /// Slots fill in order, so a slot is either the next free one or one
    /// already filled (replaced).
    pub fn store(&mut self, layer: usize, slot: usize, scores: &[f32]) -> Result<(), SampleError> {
        let n = self.neurons;
        let kept = self.layers.get_mut(layer).ok_or(SampleError::Shape)?;
        if scores.len() != n || slot >= self.capacity {
            return Err(SampleError::Shape);
        }
        let at = slot * n;
        if at == kept.len() {
            kept.extend_from_slice(scores);
            Ok(())
        } else {
            kept.get_mut(at..at + n)
                .ok_or(SampleError::Shape)?
                .copy_from_slice(scores);
            Ok(())
        }
    }

    /// The threshold of every layer for `sparsity` (see
    /// [`quantile_threshold`]). Works on a copy of one layer at a time, so
    /// the sample's rows stay whole.
    pub fn thresholds(&self, sparsity: f64) -> Result<Vec<f32>, SampleError> {
        self.layers
            .iter()
            .enumerate()
            .map(
                |(layer, s)| match quantile_threshold(&mut s.clone(), sparsity) {
                    Some(t) if !t.is_nan() => Ok(t),
                    Some(_) => Err(SampleError::NonFinite { layer }),
                    None => Err(SampleError::Empty),
                },
            )
            .collect()
    }
}

/// The score below which a fraction `sparsity` of `scores` lies: the value
/// of rank `floor(sparsity * n)` in increasing order, so that at most that
/// many scores are strictly below it and a neuron is active when its score
/// is at or above it. A sparsity that rounds to rank 0 gives 0, which every
/// score (an absolute value) reaches: nothing is cut, even for tokens that
/// were not sampled. `None` for no scores. Reorders `scores`.
pub fn quantile_threshold(scores: &mut [f32], sparsity: f64) -> Option<f32> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len();
    // In range: sparsity is clamped to [0, 1] and the rank to n - 1.
    let rank = ((sparsity.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n - 1);
    if rank == 0 {
        return Some(0.0);
    }
    let (_, &mut t, _) = scores.select_nth_unstable_by(rank, f32::total_cmp);
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_threshold_cuts_the_asked_fraction(
            scores in proptest::collection::vec(0.0f32..10.0, 1..400),
            sparsity in 0.0f64..1.0,
        ) {
            let mut s = scores.clone();
            let t = quantile_threshold(&mut s, sparsity).unwrap();
            let below = scores.iter().filter(|&&x| x < t).count();
            let at_or_below = scores.iter().filter(|&&x| x <= t).count();
            let rank = (sparsity * scores.len() as f64).floor() as usize;
            prop_assert!(below <= rank, "{} below, rank {}", below, rank);
            if rank > 0 {
                prop_assert!(at_or_below > rank, "{} at or below, rank {}", at_or_below, rank);
            } else {
                prop_assert_eq!(t, 0.0);
            }
        }

        #[test]
        fn the_reservoir_keeps_a_bounded_uniform_prefix(tokens in 1usize..2000) {
            let mut s = ScoreSample::new(2, 4);
            let cap = s.capacity;
            prop_assert_eq!(cap, MAX_SAMPLE_TOKENS);
            for t in 0..tokens {
                let slot = s.admit();
                if t < cap {
                    prop_assert_eq!(slot, Some(t));
                }
                if let Some(slot) = slot {
                    let row = vec![t as f32; s.neurons];
                    s.store(0, slot, &row).unwrap();
                    s.store(1, slot, &row).unwrap();
                }
            }
            prop_assert_eq!(s.kept(), tokens.min(cap));
            // Every layer kept the same tokens, each row whole.
            prop_assert_eq!(&s.layers[0], &s.layers[1]);
            for row in s.layers[0].chunks(s.neurons) {
                prop_assert!(row.iter().all(|&v| v == row[0]));
            }
        }
    }

    #[test]
    fn late_tokens_are_kept_about_as_often_as_early_ones() {
        // 10,000 tokens into 512 slots: the second half should fill about
        // half of the reservoir.
        let mut s = ScoreSample::new(1, 4);
        for t in 0..10_000u32 {
            if let Some(slot) = s.admit() {
                s.store(0, slot, &[t as f32; 4]).unwrap();
            }
        }
        let late = s.layers[0].chunks(4).filter(|r| r[0] >= 5_000.0).count();
        assert!(
            (206..=306).contains(&late),
            "{late} of 512 from the second half"
        );
    }

    #[test]
    fn wide_layers_keep_fewer_tokens_and_shapes_are_checked() {
        assert_eq!(ScoreSample::new(1, 1536).capacity, 512);
        assert_eq!(ScoreSample::new(1, 11_008).capacity, 95);
        assert_eq!(ScoreSample::new(1, 1 << 24).capacity, 1);
        let mut s = ScoreSample::new(2, 3);
        assert_eq!(s.store(2, 0, &[0.0; 3]), Err(SampleError::Shape));
        assert_eq!(s.store(0, 0, &[0.0; 2]), Err(SampleError::Shape));
        assert_eq!(s.store(0, 1, &[0.0; 3]), Err(SampleError::Shape));
        assert_eq!(s.thresholds(0.5), Err(SampleError::Empty));
        s.store(0, 0, &[1.0, f32::NAN, f32::NAN]).unwrap();
        s.store(1, 0, &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.thresholds(0.9), Err(SampleError::NonFinite { layer: 0 }));
        assert_eq!(s.thresholds(0.0), Ok(vec![0.0, 0.0]));
    }
}
