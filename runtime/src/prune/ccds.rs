//! Cluster-sampled calibration (CCDS, from EvoP): calibration windows
//! chosen evenly across clusters of the corpus, so that a search tuned on a
//! few windows sees every kind of text the corpus has rather than whatever
//! a random draw happens to favour.
//!
//! Each candidate window is embedded by the model itself: the mean of its
//! hidden rows after the first half of the layers (the rest skipped), made
//! unit length. The embeddings are clustered by k-means (k-means++ seeding,
//! Lloyd's iterations, all from one seed), and the calibration set is drawn
//! round-robin over the clusters, a random member of each in turn.

use lode_kernel::rng::SplitMix64;

use super::baselines::rows_after;
use super::PruneError;
use crate::session::Session;

/// Windows embedded by default: a larger corpus is first sampled down to
/// this many (at random, seeded), which bounds the embedding's time.
pub const DEFAULT_CANDIDATES: usize = 1024;

/// Lloyd's iterations at most (it usually settles in a few).
const MAX_ITERATIONS: usize = 100;

/// What the clustering found, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Clusters {
    /// Windows clustered.
    pub candidates: usize,
    /// Windows in each cluster.
    pub sizes: Vec<usize>,
    /// Which cluster each chosen calibration window came from.
    pub chosen_from: Vec<usize>,
}

/// The mean hidden row of each window after its first `run` layers, unit
/// length.
pub fn embed(
    session: &mut Session,
    windows: &[Vec<u32>],
    layers: usize,
    run: usize,
) -> Result<Vec<Vec<f32>>, PruneError> {
    let mut out = Vec::with_capacity(windows.len());
    for w in windows {
        let rows = rows_after(session, w, run, layers)?;
        let width = rows.first().map_or(0, Vec::len);
        let mut mean = vec![0f64; width];
        for r in &rows {
            for (m, &x) in mean.iter_mut().zip(r) {
                *m += f64::from(x);
            }
        }
        let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt().max(1e-30);
        out.push(mean.iter().map(|m| (m / norm) as f32).collect());
    }
    session.set_skipped_layers(0).map_err(PruneError::Mask)?;
    Ok(out)
}

fn dist2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum()
}

/// The index of the centre nearest `p`.
fn nearest(p: &[f32], centres: &[Vec<f32>]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (c, centre) in centres.iter().enumerate() {
        let d = dist2(p, centre);
        if d < best.1 {
            best = (c, d);
        }
    }
    best.0
}

/// k-means++ seeding: the first centre at random, each next one a point
/// drawn with probability proportional to its squared distance from the
/// nearest centre so far.
fn seed_centres(points: &[Vec<f32>], k: usize, rng: &mut SplitMix64) -> Vec<Vec<f32>> {
    let mut centres = vec![points[rng.below(points.len() as u64) as usize].clone()];
    while centres.len() < k {
        let d: Vec<f64> = points
            .iter()
            .map(|p| dist2(p, &centres[nearest(p, &centres)]))
            .collect();
        let total: f64 = d.iter().sum();
        let mut at = rng.unit_f64() * total;
        let mut pick = d.iter().rposition(|&x| x > 0.0).unwrap_or(0);
        for (i, &x) in d.iter().enumerate() {
            if at < x {
                pick = i;
                break;
            }
            at -= x;
        }
        centres.push(points[pick].clone());
    }
    centres
}

/// k-means of `points` (`1 <= k <= points.len()`): each point's cluster.
pub fn kmeans(points: &[Vec<f32>], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut centres = seed_centres(points, k, &mut rng);
    let mut assign: Vec<usize> = points.iter().map(|p| nearest(p, &centres)).collect();
    for _ in 0..MAX_ITERATIONS {
        let width = points[0].len();
        let mut sums = vec![vec![0f64; width]; k];
        let mut counts = vec![0usize; k];
        for (p, &c) in points.iter().zip(&assign) {
            counts[c] += 1;
            for (s, &x) in sums[c].iter_mut().zip(p) {
                *s += f64::from(x);
            }
        }
        for c in 0..k {
            // An emptied cluster keeps its centre.
            if counts[c] > 0 {
                let n = counts[c] as f64;
                centres[c] = sums[c].iter().map(|s| (s / n) as f32).collect();
            }
        }
        let next: Vec<usize> = points.iter().map(|p| nearest(p, &centres)).collect();
        if next == assign {
            break;
        }
        assign = next;
    }
    assign
}

/// `n` of the points, drawn round-robin over the clusters of `assign`
/// (clusters visited in a random order, a random unused member of each),
/// skipping clusters that have run out. Returned in index order.
pub fn sample_across(assign: &[usize], k: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &c) in assign.iter().enumerate() {
        members[c].push(i);
    }
    let mut order: Vec<usize> = (0..k).collect();
    for i in (1..k).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut chosen = Vec::with_capacity(n);
    while chosen.len() < n.min(assign.len()) {
        for &c in &order {
            if chosen.len() == n || members[c].is_empty() {
                continue;
            }
            let at = rng.below(members[c].len() as u64) as usize;
            chosen.push(members[c].swap_remove(at));
        }
    }
    chosen.sort_unstable();
    chosen
}

/// How [`ccds_sample`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcdsOptions {
    /// Clusters.
    pub clusters: usize,
    /// Windows to choose.
    pub windows: usize,
    /// Windows clustered at most (a larger corpus is sampled down first).
    pub candidates: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// `o.windows` calibration windows of `windows`, sampled across
/// `o.clusters` clusters of their embeddings after the first half of
/// `layers` layers. Refuses, before any evaluation, a corpus (or candidate
/// pool) of fewer windows than clusters, and fewer windows asked for than
/// clusters (some clusters would go unsampled).
pub fn ccds_sample(
    session: &mut Session,
    windows: &[Vec<u32>],
    layers: usize,
    o: &CcdsOptions,
) -> Result<(Vec<Vec<u32>>, Clusters), PruneError> {
    let (k, n, seed) = (o.clusters, o.windows, o.seed);
    check_ccds(windows.len().min(o.candidates), k, n)?;
    let pool = super::sample_windows(windows, o.candidates, seed ^ 0xCCD5);
    let points = embed(session, &pool, layers, layers.div_ceil(2))?;
    let assign = kmeans(&points, k, seed);
    let chosen = sample_across(&assign, k, n, seed);
    let mut sizes = vec![0usize; k];
    for &c in &assign {
        sizes[c] += 1;
    }
    let report = Clusters {
        candidates: pool.len(),
        sizes,
        chosen_from: chosen.iter().map(|&i| assign[i]).collect(),
    };
    Ok((chosen.iter().map(|&i| pool[i].clone()).collect(), report))
}

/// The checks of [`ccds_sample`], for callers that want them before
/// loading a model.
pub fn check_ccds(windows: usize, k: usize, n: usize) -> Result<(), PruneError> {
    if k == 0 {
        return Err(PruneError::Options("at least 1 cluster".into()));
    }
    if windows < k {
        return Err(PruneError::Options(format!(
            "the calibration texts give {windows} windows, fewer than the {k} clusters: \
             give more text or fewer clusters"
        )));
    }
    if n < k {
        return Err(PruneError::Options(format!(
            "{n} calibration windows cannot sample each of {k} clusters: ask for at least \
             {k} windows or fewer clusters"
        )));
    }
    if n > windows {
        return Err(PruneError::Options(format!(
            "{n} calibration windows asked for, but the texts give {windows}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight groups of points far apart.
    fn groups() -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(3);
        let centres = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        (0..30)
            .map(|i| {
                let c = centres[i % 3];
                vec![
                    c[0] + rng.unit_f64() as f32 * 0.1,
                    c[1] + rng.unit_f64() as f32 * 0.1,
                ]
            })
            .collect()
    }

    #[test]
    fn kmeans_finds_separated_groups_reproducibly() {
        let p = groups();
        let a = kmeans(&p, 3, 1);
        assert_eq!(a, kmeans(&p, 3, 1));
        for i in 0..p.len() {
            for j in 0..p.len() {
                assert_eq!(a[i] == a[j], i % 3 == j % 3, "{i} {j}: {a:?}");
            }
        }
    }

    #[test]
    fn sampling_covers_every_cluster_evenly() {
        let assign: Vec<usize> = (0..40)
            .map(|i| if i < 30 { 0 } else { 1 + i % 3 })
            .collect();
        let s = sample_across(&assign, 4, 8, 5);
        assert_eq!(s.len(), 8);
        let mut per = [0usize; 4];
        for &i in &s {
            per[assign[i]] += 1;
        }
        // A random draw of 8 would take about 6 from the big cluster.
        assert_eq!(per, [2, 2, 2, 2]);
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        // Clusters 1 to 3 hold 4, 3 and 3: once 2 and 3 run out, the
        // fourth round takes one each from 0 and 1.
        let s = sample_across(&assign, 4, 14, 5);
        let mut per = [0usize; 4];
        for &i in &s {
            per[assign[i]] += 1;
        }
        assert_eq!(per, [4, 4, 3, 3]);
    }

    #[test]
    fn impossible_clusterings_are_refused() {
        assert!(check_ccds(100, 8, 8).is_ok());
        let e = check_ccds(5, 8, 8).unwrap_err().to_string();
        assert!(e.contains("5 windows, fewer than the 8 clusters"), "{e}");
        let e = check_ccds(100, 8, 4).unwrap_err().to_string();
        assert!(e.contains("cannot sample each of 8 clusters"), "{e}");
        assert!(check_ccds(100, 0, 4).is_err());
        assert!(check_ccds(6, 2, 7).is_err());
    }
}
