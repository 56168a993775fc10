//! The masks EvoP is compared against, at the same number of layers
//! dropped: ShortGPT's Block Influence, the last layers, and random masks.

use lode_kernel::rng::SplitMix64;

use super::search::random_mask;
use super::PruneError;
use crate::session::Session;

/// Each layer's Block Influence (ShortGPT, arXiv 2403.03853): one minus
/// the mean cosine similarity of its input and output rows over the
/// positions of `windows`. A layer that barely turns the residual stream
/// has a low influence and is dropped first.
///
/// Layer `l`'s input is the hidden row with layers `l..` skipped, its
/// output the row with layers `l + 1..` skipped: `layers + 1` evaluations
/// of growing prefixes a window.
pub fn block_influence(
    session: &mut Session,
    windows: &[Vec<u32>],
    layers: usize,
) -> Result<Vec<f64>, PruneError> {
    let mut sum = vec![0f64; layers];
    let mut count = 0usize;
    for w in windows {
        let mut prev = rows_after(session, w, 0, layers)?;
        for (l, s) in sum.iter_mut().enumerate() {
            let next = rows_after(session, w, l + 1, layers)?;
            for (a, b) in prev.iter().zip(&next) {
                *s += cosine(a, b);
            }
            prev = next;
        }
        count += w.len();
    }
    session.set_skipped_layers(0).map_err(PruneError::Mask)?;
    let n = count.max(1) as f64;
    Ok(sum.iter().map(|s| 1.0 - s / n).collect())
}

/// The hidden rows of `w` after its first `run` layers (the rest skipped).
pub(super) fn rows_after(
    session: &mut Session,
    w: &[u32],
    run: usize,
    layers: usize,
) -> Result<Vec<Vec<f32>>, PruneError> {
    let all = if layers >= 128 {
        u128::MAX
    } else {
        (1u128 << layers) - 1
    };
    let first_run = if run >= 128 { 0 } else { (1u128 << run) - 1 };
    session
        .set_skipped_layers(all & !first_run)
        .map_err(PruneError::Mask)?;
    let mut ctx = session.new_context();
    let mut rows = Vec::with_capacity(w.len());
    let r = session.eval_hidden(&mut ctx, w, |_, x| rows.push(x.to_vec()));
    session.delete_context(ctx)?;
    r?;
    Ok(rows)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// The `drop` layers of lowest influence.
pub fn lowest_influence(influence: &[f64], drop: usize) -> u128 {
    let mut order: Vec<usize> = (0..influence.len()).collect();
    order.sort_by(|&a, &b| influence[a].total_cmp(&influence[b]).then(a.cmp(&b)));
    order.iter().take(drop).fold(0, |m, &l| m | 1 << l)
}

/// The last `drop` of `layers` layers.
pub fn last_layers(layers: usize, drop: usize) -> u128 {
    (layers - drop.min(layers)..layers).fold(0, |m, l| m | 1 << l)
}

/// `n` random masks of `drop` layers, from `seed`.
pub fn random_masks(seed: u64, n: usize, layers: usize, drop: usize) -> Vec<u128> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| random_mask(&mut rng, layers, drop))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simple_baselines_pick_what_they_say() {
        assert_eq!(last_layers(30, 3), 0b111 << 27);
        assert_eq!(lowest_influence(&[0.5, 0.1, 0.9, 0.1, 0.3], 3), 0b11010);
        let r = random_masks(4, 5, 30, 6);
        assert_eq!(r, random_masks(4, 5, 30, 6));
        assert!(r.iter().all(|m| m.count_ones() == 6));
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-12);
    }
}
