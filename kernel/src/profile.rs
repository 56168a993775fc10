//! Offline activation profiling: how often each neuron fires, and how often
//! pairs fire together. Needs the `alloc` feature; never on the decode path.
//!
//! Each neuron's activity is kept as a column bitset over tokens, so the
//! co-activation count of a pair is `popcount(col_i & col_j)`: no per-token
//! pair loop (which costs `active²` per token and layer). Pairs are counted
//! for every pair of neurons that fired at least once.
//!
//! Memory is bounded. The full pair table takes `n (n - 1) / 2 * 4` bytes; it
//! is kept exactly when that fits [`ProfileLimits::exact_pair_bytes`]
//! (default 16 MiB: layers up to 2,896 neurons, so SmolLM2's 1,536 are exact).
//! Above the bound each neuron keeps only its `top_k` most specific partners
//! (default 64, by Jaccard similarity: see `LayerProfiler::finish`),
//! `n * top_k * 8` bytes: 22 MB for a 43,008-neuron layer.
//! Column bitsets take `n * ceil(tokens / 64) * 8` bytes; tokens are capped at
//! [`ProfileLimits::max_tokens`] (default 4,096).

use alloc::vec;
use alloc::vec::Vec;

/// Bounds of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileLimits {
    /// Largest exact pair table, in bytes.
    pub exact_pair_bytes: usize,
    /// Partners kept per neuron above that bound.
    pub top_k: usize,
    /// Most tokens a profile records.
    pub max_tokens: u32,
}

impl Default for ProfileLimits {
    fn default() -> Self {
        ProfileLimits {
            exact_pair_bytes: 16 << 20,
            top_k: 64,
            max_tokens: 4096,
        }
    }
}

/// Why profiling failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    /// More tokens than the limit.
    TooManyTokens,
    /// A neuron id at or beyond the layer's neuron count.
    NeuronOutOfRange,
    /// Zero neurons or a zero `top_k`.
    BadConfig,
}

impl core::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ProfileError::TooManyTokens => "more tokens than the profile's limit",
            ProfileError::NeuronOutOfRange => "neuron id outside the layer",
            ProfileError::BadConfig => "profile needs neurons and top_k above zero",
        })
    }
}

impl core::error::Error for ProfileError {}

/// Collects one layer's activity token by token.
#[derive(Debug, Clone)]
pub struct LayerProfiler {
    neurons: u32,
    limits: ProfileLimits,
    words: usize,
    tokens: u32,
    /// Neuron-major column bitsets, `words` u64 per neuron.
    columns: Vec<u64>,
}

impl LayerProfiler {
    /// A profiler for a layer of `neurons` neurons.
    pub fn new(neurons: u32, limits: ProfileLimits) -> Result<Self, ProfileError> {
        if neurons == 0 || limits.top_k == 0 {
            return Err(ProfileError::BadConfig);
        }
        let words = (limits.max_tokens as usize).div_ceil(64);
        Ok(LayerProfiler {
            neurons,
            limits,
            words,
            tokens: 0,
            columns: vec![0; neurons as usize * words],
        })
    }

    /// Record one token's active neurons.
    pub fn add_token(&mut self, active: impl IntoIterator<Item = u32>) -> Result<(), ProfileError> {
        if self.tokens >= self.limits.max_tokens {
            return Err(ProfileError::TooManyTokens);
        }
        let (w, bit) = (self.tokens as usize / 64, self.tokens % 64);
        for n in active {
            if n >= self.neurons {
                return Err(ProfileError::NeuronOutOfRange);
            }
            self.columns[n as usize * self.words + w] |= 1 << bit;
        }
        self.tokens += 1;
        Ok(())
    }

    /// Count activations and co-activations.
    pub fn finish(self) -> LayerProfile {
        let n = self.neurons as usize;
        let used = (self.tokens as usize).div_ceil(64);
        let col = |i: usize| &self.columns[i * self.words..i * self.words + used];
        let counts: Vec<u32> = (0..n)
            .map(|i| col(i).iter().map(|w| w.count_ones()).sum())
            .collect();
        let live: Vec<usize> = (0..n).filter(|&i| counts[i] > 0).collect();
        let co = |i: usize, j: usize| -> u32 {
            col(i)
                .iter()
                .zip(col(j))
                .map(|(a, b)| (a & b).count_ones())
                .sum()
        };
        let exact_bytes = n.saturating_mul(n.saturating_sub(1)) / 2 * 4;
        let pairs = if exact_bytes <= self.limits.exact_pair_bytes {
            let mut table = vec![0u32; n * n.saturating_sub(1) / 2];
            for (a, &i) in live.iter().enumerate() {
                for &j in &live[a + 1..] {
                    table[tri(n, i, j)] = co(i, j);
                }
            }
            Pairs::Exact(table)
        } else {
            // Which partners to keep is chosen by Jaccard similarity
            // (co-activations over activations of either), not by raw count:
            // a neuron that fires on every token co-occurs with everything,
            // and ranking by count would fill every list with such neurons
            // and drop the specific partners placement needs. Linking still
            // orders the kept pairs by count.
            let k = self.limits.top_k;
            let mut top = vec![(0u32, 0u32); n * k];
            let mut score = vec![0u64; n * k];
            for (a, &i) in live.iter().enumerate() {
                for &j in &live[a + 1..] {
                    let c = co(i, j);
                    if c > 0 {
                        let union = u64::from(counts[i] + counts[j] - c);
                        let s = (u64::from(c) << 32) / union;
                        let (ti, si) =
                            (&mut top[i * k..(i + 1) * k], &mut score[i * k..(i + 1) * k]);
                        offer(ti, si, j as u32, c, s);
                        let (tj, sj) =
                            (&mut top[j * k..(j + 1) * k], &mut score[j * k..(j + 1) * k]);
                        offer(tj, sj, i as u32, c, s);
                    }
                }
            }
            Pairs::TopK { k, top }
        };
        LayerProfile {
            neurons: self.neurons,
            tokens: self.tokens,
            counts,
            pairs,
        }
    }
}

/// Index of pair `(i, j)`, `i < j`, in an upper-triangular table over `n`.
fn tri(n: usize, i: usize, j: usize) -> usize {
    i * (2 * n - i - 1) / 2 + (j - i - 1)
}

/// Keep `(partner, count)` in a top-k list ordered by descending `score`
/// (`scores` runs beside `list`) if its score beats the last entry's.
fn offer(list: &mut [(u32, u32)], scores: &mut [u64], partner: u32, count: u32, score: u64) {
    let Some(&last) = scores.last() else { return };
    if score <= last {
        return;
    }
    let mut at = list.len() - 1;
    while at > 0 && scores[at - 1] < score {
        list[at] = list[at - 1];
        scores[at] = scores[at - 1];
        at -= 1;
    }
    list[at] = (partner, count);
    scores[at] = score;
}

/// Co-activation counts, exact or top-k.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pairs {
    /// Every pair `i < j`, upper-triangular.
    Exact(Vec<u32>),
    /// The `k` most specific partners of each neuron (descending Jaccard
    /// similarity) with their counts; count 0 marks an empty entry.
    TopK {
        /// Partners per neuron.
        k: usize,
        /// `neurons * k` entries of `(partner, count)`.
        top: Vec<(u32, u32)>,
    },
}

/// One layer's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProfile {
    neurons: u32,
    tokens: u32,
    counts: Vec<u32>,
    pairs: Pairs,
}

impl LayerProfile {
    /// Neurons in the layer.
    pub fn neurons(&self) -> u32 {
        self.neurons
    }

    /// Tokens profiled.
    pub fn tokens(&self) -> u32 {
        self.tokens
    }

    /// Activations of each neuron.
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    /// `true` when every pair was counted.
    pub fn is_exact(&self) -> bool {
        matches!(self.pairs, Pairs::Exact(_))
    }

    /// Co-activations of `i` and `j` (0 when not kept in a top-k profile).
    pub fn pair(&self, i: u32, j: u32) -> u32 {
        let (i, j) = (i.min(j) as usize, i.max(j) as usize);
        if i == j || j >= self.neurons as usize {
            return 0;
        }
        match &self.pairs {
            Pairs::Exact(t) => t[tri(self.neurons as usize, i, j)],
            Pairs::TopK { k, top } => {
                let find = |a: usize, b: usize| {
                    top[a * k..(a + 1) * k]
                        .iter()
                        .find(|p| p.0 as usize == b && p.1 > 0)
                };
                find(i, j).or_else(|| find(j, i)).map_or(0, |p| p.1)
            }
        }
    }

    /// Every kept pair with a non-zero count as `(count, i, j)`, `i < j`,
    /// each once.
    pub fn edges(&self) -> Vec<(u32, u32, u32)> {
        let n = self.neurons as usize;
        let mut out = Vec::new();
        match &self.pairs {
            Pairs::Exact(t) => {
                for i in 0..n {
                    for j in i + 1..n {
                        let c = t[tri(n, i, j)];
                        if c > 0 {
                            out.push((c, i as u32, j as u32));
                        }
                    }
                }
            }
            Pairs::TopK { k, top } => {
                for i in 0..n {
                    for &(j, c) in &top[i * k..(i + 1) * k] {
                        if c == 0 {
                            break;
                        }
                        out.push((c, (i as u32).min(j), (i as u32).max(j)));
                    }
                }
                out.sort_unstable();
                out.dedup();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(tokens: &[&[u32]], neurons: u32, limits: ProfileLimits) -> LayerProfile {
        let mut p = LayerProfiler::new(neurons, limits).unwrap();
        for t in tokens {
            p.add_token(t.iter().copied()).unwrap();
        }
        p.finish()
    }

    const TOKENS: &[&[u32]] = &[&[0, 1, 2], &[0, 1], &[1, 2, 5], &[0, 1, 7], &[7]];

    #[test]
    fn exact_counts() {
        let p = profile(TOKENS, 8, ProfileLimits::default());
        assert!(p.is_exact());
        assert_eq!(p.counts(), &[3, 4, 2, 0, 0, 1, 0, 2]);
        assert_eq!(p.pair(0, 1), 3);
        assert_eq!(p.pair(1, 0), 3);
        assert_eq!(p.pair(1, 2), 2);
        assert_eq!(p.pair(0, 7), 1);
        assert_eq!(p.pair(3, 4), 0);
        assert_eq!(p.pair(2, 2), 0);
        assert!(p.edges().contains(&(3, 0, 1)));
    }

    #[test]
    fn top_k_keeps_the_most_specific_partners() {
        let limits = ProfileLimits {
            exact_pair_bytes: 0,
            top_k: 1,
            max_tokens: 64,
        };
        let p = profile(TOKENS, 8, limits);
        assert!(!p.is_exact());
        // Jaccard: 0~1 = 3/4 is the best of 0 and 1; 2 has 1~2 = 2~5 = 1/2
        // and keeps the first offered (1); 5 keeps 2 (1/2 over 1/4); 7 keeps
        // 0 (1/4 over 1/5), so 1~7 is kept by neither.
        assert_eq!(p.pair(0, 1), 3);
        assert_eq!(p.pair(1, 2), 2);
        assert_eq!(p.pair(0, 7), 1);
        assert_eq!(p.pair(1, 7), 0);
        assert_eq!(p.pair(2, 5), 1);
        assert_eq!(p.edges().iter().filter(|e| e.1 == 0 && e.2 == 1).count(), 1);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = ProfileLimits {
            max_tokens: 2,
            ..Default::default()
        };
        let mut p = LayerProfiler::new(4, limits).unwrap();
        p.add_token([0]).unwrap();
        assert_eq!(p.add_token([9]), Err(ProfileError::NeuronOutOfRange));
        p.add_token([1]).unwrap();
        assert_eq!(p.add_token([1]), Err(ProfileError::TooManyTokens));
        assert_eq!(
            LayerProfiler::new(0, limits).err(),
            Some(ProfileError::BadConfig)
        );
    }

    proptest::proptest! {
        /// Exact and top-k agree on every pair top-k keeps, and column
        /// counting matches a direct per-token pair loop.
        #[test]
        fn pair_counts_match_a_direct_count(sets in proptest::collection::vec(proptest::collection::btree_set(0u32..40, 0..12), 1..100)) {
            let tokens: Vec<Vec<u32>> = sets.into_iter().map(|s| s.into_iter().collect()).collect();
            let refs: Vec<&[u32]> = tokens.iter().map(|t| t.as_slice()).collect();
            let exact = profile(&refs, 40, ProfileLimits::default());
            let topk = profile(&refs, 40, ProfileLimits { exact_pair_bytes: 0, top_k: 4, max_tokens: 128 });
            for i in 0..40 {
                for j in 0..40 {
                    let direct = tokens.iter().filter(|t| i != j && t.contains(&i) && t.contains(&j)).count() as u32;
                    proptest::prop_assert_eq!(exact.pair(i, j), direct);
                    let kept = topk.pair(i, j);
                    proptest::prop_assert!(kept == 0 || kept == direct);
                }
            }
        }
    }
}
