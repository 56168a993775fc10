//! One pruning level, every method side by side: EvoP's search and the
//! baselines at the same number of layers dropped, each scored on the
//! calibration windows and on held-out windows nothing was tuned on.

use lode_kernel::rng::SplitMix64;

use super::baselines::{last_layers, lowest_influence, random_masks};
use super::reference::{Reference, Score};
use super::search::{search, GenerationReport, SearchOptions, SearchResult};
use super::PruneError;
use crate::session::Session;

/// One method's mask and scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MethodResult {
    /// `evop`, `block-influence`, `last-layers` or `random`.
    pub method: &'static str,
    /// The layers it drops.
    #[serde(serialize_with = "super::mask_as_layers")]
    pub dropped: u128,
    /// On the calibration windows (what EvoP minimizes).
    pub calibration: Score,
    /// On the held-out windows.
    pub held_out: Score,
}

/// A level's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LevelResult {
    /// Layers dropped.
    pub drop: usize,
    /// Every method, EvoP first.
    pub methods: Vec<MethodResult>,
    /// The search itself.
    pub search: SearchResult,
}

/// Windows cut from `tokens`, `len` tokens each, not overlapping (a short
/// tail is dropped).
pub fn cut_windows(tokens: &[u32], len: usize) -> Vec<Vec<u32>> {
    if len < 2 {
        return Vec::new();
    }
    tokens.chunks_exact(len).map(<[u32]>::to_vec).collect()
}

/// `n` of `windows` chosen at random (seeded), in their original order.
pub fn sample_windows(windows: &[Vec<u32>], n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut idx: Vec<usize> = (0..windows.len()).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..n.min(idx.len()) {
        let j = i + rng.below((idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx.sort_unstable();
    idx.iter().map(|&i| windows[i].clone()).collect()
}

/// Runs EvoP and the baselines at `opts.drop` layers. `influence` is the
/// Block Influence of every layer (computed once for all levels);
/// `random` random masks are scored and the one of median held-out
/// perplexity is reported.
pub fn compare_level(
    session: &mut Session,
    layers: usize,
    (calib, held): (&Reference, &Reference),
    influence: &[f64],
    opts: &SearchOptions,
    random: usize,
    on_generation: &mut dyn FnMut(&GenerationReport),
) -> Result<LevelResult, PruneError> {
    let found = search(session, calib, layers, opts, on_generation)?;
    let score = |session: &mut Session, method, mask| -> Result<MethodResult, PruneError> {
        Ok(MethodResult {
            method,
            dropped: mask,
            calibration: calib.score(session, mask, calib.len())?,
            held_out: held.score(session, mask, held.len())?,
        })
    };
    let mut methods = vec![
        score(session, "evop", found.mask)?,
        score(
            session,
            "block-influence",
            lowest_influence(influence, opts.drop),
        )?,
        score(session, "last-layers", last_layers(layers, opts.drop))?,
    ];
    let mut randoms = Vec::new();
    for m in random_masks(opts.seed ^ 0x5eed, random, layers, opts.drop) {
        randoms.push(score(session, "random", m)?);
    }
    randoms.sort_by(|a, b| a.held_out.perplexity.total_cmp(&b.held_out.perplexity));
    if let Some(median) = randoms.get(randoms.len() / 2) {
        methods.push(median.clone());
    }
    session.set_skipped_layers(0).map_err(PruneError::Mask)?;
    Ok(LevelResult {
        drop: opts.drop,
        methods,
        search: found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_cut_whole_and_sampled_reproducibly() {
        let t: Vec<u32> = (0..1000).collect();
        let w = cut_windows(&t, 128);
        assert_eq!(w.len(), 7);
        assert_eq!(w[1][0], 128);
        let a = sample_windows(&w, 3, 7);
        assert_eq!(a, sample_windows(&w, 3, 7));
        assert_eq!(a.len(), 3);
        assert!(a.windows(2).all(|p| p[0][0] < p[1][0]), "in order");
        assert_eq!(sample_windows(&w, 50, 1).len(), 7);
        assert!(cut_windows(&t, 1).is_empty());
    }
}
