//! The unpruned model's next-token distributions over a set of windows,
//! and how far a layer mask moves a model away from them.
//!
//! EvoPress scores a pruned candidate by the KL divergence of its
//! next-token distribution from the unpruned model's. Holding the full
//! distribution (49,152 values) for every scored position would take
//! hundreds of MiB, so each position keeps the unpruned model's [`TOP_K`]
//! most likely tokens and the mass of all the others as one bucket. The KL
//! between these coarsened distributions is a lower bound of the full KL
//! (coarsening never increases a divergence) and is exact in the terms that
//! carry almost all of the mass.

use lode_kernel::model::WantLogits;

use super::PruneError;
use crate::error::GenerateError;
use crate::session::Session;

/// Most likely tokens kept per position.
pub const TOP_K: usize = 32;

/// One scored position of the unpruned model.
#[derive(Debug, Clone)]
struct Position {
    /// The `TOP_K` most likely ids, most likely first.
    ids: [u32; TOP_K],
    /// Their log-probabilities.
    logp: [f32; TOP_K],
    /// The token that actually follows.
    next: u32,
}

/// The unpruned model's distributions over `windows`.
#[derive(Debug, Clone)]
pub struct Reference {
    windows: Vec<Vec<u32>>,
    /// Per window, its positions but the last.
    positions: Vec<Vec<Position>>,
}

/// How a masked model compares with the unpruned one over some windows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Score {
    /// Mean KL divergence a position (nats), of the coarsened distributions.
    pub kl: f64,
    /// Perplexity of the tokens that follow.
    pub perplexity: f64,
    /// Positions whose most likely token is the unpruned model's, percent.
    pub top1_agreement_pct: f64,
    /// Positions scored.
    pub positions: usize,
}

/// `log Σ exp(z)` of a logit row.
fn log_sum_exp(z: &[f32]) -> f64 {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let s: f64 = z.iter().map(|&v| (v as f64 - m).exp()).sum();
    m + s.ln()
}

/// The ids of the `TOP_K` largest logits, largest first.
fn top_k(z: &[f32]) -> [u32; TOP_K] {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(TOP_K + 1);
    for (i, &v) in z.iter().enumerate() {
        if best.len() == TOP_K && best.last().is_some_and(|&(w, _)| v <= w) {
            continue;
        }
        let at = best.partition_point(|&(w, _)| w >= v);
        best.insert(at, (v, i as u32));
        best.truncate(TOP_K);
    }
    let mut ids = [0u32; TOP_K];
    for (d, (_, i)) in ids.iter_mut().zip(best) {
        *d = i;
    }
    ids
}

/// The logits of every position of `w` under the session's current mask,
/// handed to `f(position, logits)` in a fresh context.
pub(super) fn each_logits(
    session: &mut Session,
    w: &[u32],
    mut f: impl FnMut(usize, &[f32]),
) -> Result<(), GenerateError> {
    let mut ctx = session.new_context();
    let r = session.eval(&mut ctx, w, WantLogits::From(0), |p, z| f(p, z));
    session.delete_context(ctx)?;
    r
}

impl Reference {
    /// The unpruned model's distributions over `windows` (the session's
    /// mask is cleared first). Each window needs at least two tokens.
    pub fn new(session: &mut Session, windows: Vec<Vec<u32>>) -> Result<Reference, PruneError> {
        if windows.iter().any(|w| w.len() < 2) {
            return Err(PruneError::Options(
                "a window needs at least two tokens".into(),
            ));
        }
        session.set_skipped_layers(0).map_err(PruneError::Mask)?;
        let mut positions = Vec::with_capacity(windows.len());
        for w in &windows {
            let mut ps = Vec::with_capacity(w.len().saturating_sub(1));
            each_logits(session, w, |p, z| {
                let Some(&next) = w.get(p + 1) else { return };
                let lse = log_sum_exp(z);
                let ids = top_k(z);
                let mut logp = [0f32; TOP_K];
                for (l, &i) in logp.iter_mut().zip(&ids) {
                    *l = (z[i as usize] as f64 - lse) as f32;
                }
                ps.push(Position { ids, logp, next });
            })?;
            positions.push(ps);
        }
        Ok(Reference { windows, positions })
    }

    /// The windows, in order.
    pub fn windows(&self) -> &[Vec<u32>] {
        &self.windows
    }

    /// Windows held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// `true` with no windows.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The score of the layers of `mask` skipped, over the first `n`
    /// windows.
    pub fn score(&self, session: &mut Session, mask: u128, n: usize) -> Result<Score, PruneError> {
        session.set_skipped_layers(mask).map_err(PruneError::Mask)?;
        let (mut kl, mut nll, mut same, mut count) = (0f64, 0f64, 0usize, 0usize);
        for (w, ps) in self.windows.iter().zip(&self.positions).take(n) {
            each_logits(session, w, |p, z| {
                let Some(r) = ps.get(p) else { return };
                let lse = log_sum_exp(z);
                let (mut p_top, mut q_top) = (0f64, 0f64);
                for (&i, &lp) in r.ids.iter().zip(&r.logp) {
                    let lq = z[i as usize] as f64 - lse;
                    let pi = (lp as f64).exp();
                    kl += pi * (lp as f64 - lq);
                    p_top += pi;
                    q_top += lq.exp();
                }
                let (p_tail, q_tail) = ((1.0 - p_top).max(1e-12), (1.0 - q_top).max(1e-12));
                kl += p_tail * (p_tail.ln() - q_tail.ln());
                nll += lse - z[r.next as usize] as f64;
                let argmax = z
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0;
                same += usize::from(argmax as u32 == r.ids[0]);
                count += 1;
            })?;
        }
        let c = count.max(1) as f64;
        Ok(Score {
            kl: kl / c,
            perplexity: (nll / c).exp(),
            top1_agreement_pct: same as f64 * 100.0 / c,
            positions: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_the_largest_in_order() {
        let z: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32).collect();
        let ids = top_k(&z);
        let mut sorted: Vec<(f32, u32)> =
            z.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
        sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<f32> = sorted.iter().take(TOP_K).map(|x| x.0).collect();
        let got: Vec<f32> = ids.iter().map(|&i| z[i as usize]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn log_sum_exp_is_stable() {
        let z = [1000.0f32, 1000.0];
        assert!((log_sum_exp(&z) - (1000.0 + 2f64.ln())).abs() < 1e-9);
    }
}
