//! EvoP's search: which `drop` layers to skip, by a (1+λ) evolutionary
//! search over layer masks scored against the unpruned model.
//!
//! EvoP does not publish its search parameters; EvoPress (arXiv
//! 2410.14649), the documented reference for evolutionary layer dropping,
//! does, and this follows it: a parent mask; each generation `offspring`
//! children by "level switch" mutation (a dropped layer and a kept layer
//! trade places, once or a few times, so every child drops exactly `drop`
//! layers); children scored cheaply on a few windows; the best `survivors`
//! scored again on more windows; the best of those replaces the parent only
//! when it beats the parent on the same windows. Fitness is the KL
//! divergence from the unpruned model's next-token distribution (EvoPress's
//! choice) or the perplexity of the text itself ([`Fitness`]). Every
//! random choice comes from one seeded generator, so a search replays
//! exactly.

use std::collections::HashMap;
use std::time::Instant;

use lode_kernel::rng::SplitMix64;

use super::reference::{Reference, Score};
use super::PruneError;
use crate::session::Session;

/// What the search minimizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fitness {
    /// Mean KL divergence from the unpruned model's next-token
    /// distribution (EvoPress): matches the model, not only the text.
    Kl,
    /// Perplexity of the text's own next tokens: matches the text, which
    /// the unpruned model does not predict perfectly either.
    Perplexity,
}

impl Fitness {
    /// The value of `s` this fitness minimizes.
    pub fn of(self, s: &Score) -> f64 {
        match self {
            Fitness::Kl => s.kl,
            Fitness::Perplexity => s.perplexity,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fitness::Kl => "KL",
            Fitness::Perplexity => "perplexity",
        }
    }
}

/// How the search runs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SearchOptions {
    /// What it minimizes.
    pub fitness: Fitness,
    /// Layers to drop.
    pub drop: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Generations after the initial one.
    pub generations: usize,
    /// Children a generation (EvoPress: 32).
    pub offspring: usize,
    /// Children scored again on the full windows.
    pub survivors: usize,
    /// Windows of the cheap first scoring.
    pub cheap_windows: usize,
    /// Windows of the second scoring (at most the reference's).
    pub full_windows: usize,
}

/// What one generation found.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct GenerationReport {
    /// Generation (0: the random start).
    pub generation: usize,
    /// The parent's fitness on the full windows after this generation.
    pub best_fitness: f64,
    /// The parent's mask after this generation.
    #[serde(serialize_with = "super::mask_as_layers")]
    pub best_mask: u128,
    /// Whether a child replaced the parent.
    pub improved: bool,
    /// Seconds since the search began.
    pub seconds: f64,
}

/// The search's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchResult {
    /// What it minimized.
    pub fitness: Fitness,
    /// The best mask found.
    #[serde(serialize_with = "super::mask_as_layers")]
    pub mask: u128,
    /// Its score on the full windows.
    pub score: Score,
    /// Every generation.
    pub generations: Vec<GenerationReport>,
    /// Masks scored (cheap and full scorings both count).
    pub evaluations: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A uniformly random mask of `drop` of `layers` layers.
pub fn random_mask(rng: &mut SplitMix64, layers: usize, drop: usize) -> u128 {
    let mut order: Vec<usize> = (0..layers).collect();
    for i in 0..drop.min(layers) {
        let j = i + rng.below((layers - i) as u64) as usize;
        order.swap(i, j);
    }
    order.iter().take(drop).fold(0, |m, &l| m | 1 << l)
}

/// A child of `parent`: one or more level switches (a geometric number,
/// mean about two), each trading a dropped layer for a kept one.
pub fn level_switch(rng: &mut SplitMix64, parent: u128, layers: usize) -> u128 {
    let all = if layers >= 128 {
        u128::MAX
    } else {
        (1u128 << layers) - 1
    };
    let mut child = parent;
    let mut switches = 1;
    while switches < 4 && rng.below(2) == 1 {
        switches += 1;
    }
    for _ in 0..switches {
        let dropped = child & all;
        let kept = !child & all;
        let (nd, nk) = (dropped.count_ones(), kept.count_ones());
        if nd == 0 || nk == 0 {
            break;
        }
        let d = nth_bit(dropped, rng.below(u64::from(nd)) as u32);
        let k = nth_bit(kept, rng.below(u64::from(nk)) as u32);
        child ^= (1 << d) | (1 << k);
    }
    child
}

/// The index of the `n`th set bit of `m` (from the lowest).
fn nth_bit(mut m: u128, n: u32) -> u32 {
    for _ in 0..n {
        m &= m - 1;
    }
    m.trailing_zeros()
}

/// Scores remembered per mask and number of windows.
struct Scorer<'a> {
    reference: &'a Reference,
    fitness: Fitness,
    seen: HashMap<(u128, usize), f64>,
    evaluations: usize,
}

impl Scorer<'_> {
    fn fitness(&mut self, session: &mut Session, mask: u128, n: usize) -> Result<f64, PruneError> {
        if let Some(&k) = self.seen.get(&(mask, n)) {
            return Ok(k);
        }
        let k = self.fitness.of(&self.reference.score(session, mask, n)?);
        self.evaluations += 1;
        self.seen.insert((mask, n), k);
        Ok(k)
    }

    /// The `keep` masks of `masks` with the lowest fitness over `n` windows,
    /// best first.
    fn best(
        &mut self,
        session: &mut Session,
        masks: &[u128],
        n: usize,
        keep: usize,
    ) -> Result<Vec<(f64, u128)>, PruneError> {
        let mut scored = Vec::with_capacity(masks.len());
        for &m in masks {
            scored.push((self.fitness(session, m, n)?, m));
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.truncate(keep);
        Ok(scored)
    }
}

/// Runs the search on `session` (the model held in DRAM) against
/// `reference`, calling `on_generation` after each generation.
pub fn search(
    session: &mut Session,
    reference: &Reference,
    layers: usize,
    opts: &SearchOptions,
    on_generation: &mut dyn FnMut(&GenerationReport),
) -> Result<SearchResult, PruneError> {
    super::check_drop(layers, opts.drop)?;
    if opts.offspring == 0 || opts.survivors == 0 || opts.cheap_windows == 0 {
        return Err(PruneError::Options(
            "offspring, survivors and cheap windows must be at least 1".into(),
        ));
    }
    let full = opts.full_windows.clamp(1, reference.len().max(1));
    let cheap = opts.cheap_windows.min(full);
    let t0 = Instant::now();
    let mut rng = SplitMix64::new(opts.seed);
    let mut sc = Scorer {
        reference,
        fitness: opts.fitness,
        seen: HashMap::new(),
        evaluations: 0,
    };
    let mut reports = Vec::with_capacity(opts.generations + 1);
    // Generation 0: the best of `offspring` random masks.
    let start: Vec<u128> = (0..opts.offspring)
        .map(|_| random_mask(&mut rng, layers, opts.drop))
        .collect();
    let firsts = sc.best(session, &start, cheap, opts.survivors)?;
    let firsts: Vec<u128> = firsts.iter().map(|x| x.1).collect();
    let (mut parent_fit, mut parent) = sc.best(session, &firsts, full, 1)?[0];
    let report = |g, fit, mask, improved, t0: &Instant| GenerationReport {
        generation: g,
        best_fitness: fit,
        best_mask: mask,
        improved,
        seconds: t0.elapsed().as_secs_f64(),
    };
    reports.push(report(0, parent_fit, parent, true, &t0));
    on_generation(&reports[0]);
    for g in 1..=opts.generations {
        let mut children = Vec::with_capacity(opts.offspring);
        let mut tries = 0;
        while children.len() < opts.offspring && tries < opts.offspring * 20 {
            tries += 1;
            let c = level_switch(&mut rng, parent, layers);
            if c != parent && !children.contains(&c) {
                children.push(c);
            }
        }
        let survivors: Vec<u128> = sc
            .best(session, &children, cheap, opts.survivors)?
            .iter()
            .map(|x| x.1)
            .collect();
        let improved = match sc.best(session, &survivors, full, 1)?.first() {
            Some(&(fit, m)) if fit < parent_fit => {
                (parent_fit, parent) = (fit, m);
                true
            }
            _ => false,
        };
        let r = report(g, parent_fit, parent, improved, &t0);
        on_generation(&r);
        reports.push(r);
    }
    let score = reference.score(session, parent, full)?;
    Ok(SearchResult {
        fitness: opts.fitness,
        mask: parent,
        score,
        generations: reports,
        evaluations: sc.evaluations,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_their_drop_count_and_replay_from_the_seed() {
        for layers in [2usize, 7, 30, 128] {
            for drop in [1, layers / 3, layers - 1] {
                if drop == 0 {
                    continue;
                }
                let mut a = SplitMix64::new(9);
                let mut b = SplitMix64::new(9);
                let mut m = random_mask(&mut a, layers, drop);
                assert_eq!(m, random_mask(&mut b, layers, drop));
                assert_eq!(m.count_ones() as usize, drop);
                for _ in 0..200 {
                    let c = level_switch(&mut a, m, layers);
                    assert_eq!(c, level_switch(&mut b, m, layers));
                    assert_eq!(c.count_ones() as usize, drop, "{layers} {drop}");
                    if layers < 128 {
                        assert_eq!(c >> layers, 0, "no layer past the last");
                    }
                    m = c;
                }
            }
        }
    }

    #[test]
    fn level_switches_reach_every_layer() {
        let mut rng = SplitMix64::new(1);
        let (layers, drop) = (30, 6);
        let mut m = random_mask(&mut rng, layers, drop);
        let mut ever = 0u128;
        for _ in 0..2000 {
            m = level_switch(&mut rng, m, layers);
            ever |= m;
        }
        assert_eq!(ever, (1 << layers) - 1);
    }
}
