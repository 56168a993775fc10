//! Placement: the order in which a layer's neuron bundles are laid out in
//! flash. A permutation `perm` maps a placement position to a neuron
//! (`perm[p] = n`), and its inverse maps a neuron to its position.
//!
//! - [`identity`]: the model's own order (baseline).
//! - [`by_frequency`]: hottest neurons first (Ripple's Neuralink-S variant):
//!   hot neurons cluster at the front, which helps dense prefixes and caches
//!   but ignores who fires with whom.
//! - [`by_coactivation`]: Ripple's greedy linking. Pairs are taken in
//!   descending co-activation count; two neurons are linked only when both
//!   are ends of different chains (degree below 2, different union-find
//!   sets), which grows vertex-disjoint paths, an approximate Hamiltonian
//!   path maximising co-activation between neighbours. Chains are then laid
//!   out hottest first (by total activations), singletons last.
//!
//! Needs `alloc`; runs offline.

use alloc::vec;
use alloc::vec::Vec;

use crate::profile::LayerProfile;

/// The model's own order.
pub fn identity(neurons: u32) -> Vec<u32> {
    (0..neurons).collect()
}

/// Neurons by descending activation count, ties by id.
pub fn by_frequency(counts: &[u32]) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..counts.len() as u32).collect();
    perm.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    perm
}

/// Union-find with path halving and union by size.
struct Sets {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl Sets {
    fn new(n: usize) -> Self {
        Sets {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = self.parent[x as usize];
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if self.size[a as usize] < self.size[b as usize] {
            core::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
    }
}

const NONE: u32 = u32::MAX;

/// Ripple's greedy co-activation linking (see the module docs).
pub fn by_coactivation(profile: &LayerProfile) -> Vec<u32> {
    let n = profile.neurons() as usize;
    let mut edges = profile.edges();
    // Descending count; ties broken by ids for determinism.
    edges.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut link = vec![[NONE; 2]; n];
    let degree = |l: &[u32; 2]| l.iter().filter(|&&x| x != NONE).count();
    let mut sets = Sets::new(n);
    for &(_, i, j) in &edges {
        let (iu, ju) = (i as usize, j as usize);
        if degree(&link[iu]) < 2 && degree(&link[ju]) < 2 && sets.find(i) != sets.find(j) {
            let free = |l: &mut [u32; 2], v: u32| {
                if l[0] == NONE {
                    l[0] = v;
                } else {
                    l[1] = v;
                }
            };
            free(&mut link[iu], j);
            free(&mut link[ju], i);
            sets.union(i, j);
        }
    }
    // Walk each path from one end.
    let counts = profile.counts();
    let mut seen = vec![false; n];
    let mut chains: Vec<(u64, Vec<u32>)> = Vec::new();
    for start in 0..n {
        if seen[start] || degree(&link[start]) == 2 {
            continue;
        }
        let mut chain = Vec::new();
        let (mut prev, mut cur) = (NONE, start as u32);
        while cur != NONE && !seen[cur as usize] {
            seen[cur as usize] = true;
            chain.push(cur);
            let l = link[cur as usize];
            let next = if l[0] != prev { l[0] } else { l[1] };
            prev = cur;
            cur = next;
        }
        let heat = chain.iter().map(|&x| u64::from(counts[x as usize])).sum();
        chains.push((heat, chain));
    }
    // Linking never closes a cycle, so every neuron is on a path with an end.
    debug_assert!(seen.iter().all(|&s| s));
    chains.sort_by(|a, b| b.0.cmp(&a.0).then(a.1[0].cmp(&b.1[0])));
    chains.into_iter().flat_map(|(_, c)| c).collect()
}

/// `true` when `perm` holds each of `0..perm.len()` exactly once.
pub fn is_permutation(perm: &[u32]) -> bool {
    let mut seen = vec![false; perm.len()];
    perm.iter().all(|&x| match seen.get_mut(x as usize) {
        Some(s) if !*s => {
            *s = true;
            true
        }
        _ => false,
    })
}

/// The inverse permutation (`inv[perm[p]] = p`), or `None` when `perm` is
/// not a permutation.
pub fn inverse(perm: &[u32]) -> Option<Vec<u32>> {
    if !is_permutation(perm) {
        return None;
    }
    let mut inv = vec![0u32; perm.len()];
    for (p, &n) in perm.iter().enumerate() {
        inv[n as usize] = p as u32;
    }
    Some(inv)
}

/// Number of maximal runs of consecutive positions among `positions`
/// (sorted, distinct): the read commands a coalescing plan needs at one
/// bundle per block, and Ripple's measure of a placement.
pub fn runs(positions: &[u32]) -> u32 {
    let mut r = 0;
    let mut prev: Option<u32> = None;
    for &p in positions {
        if prev.is_none_or(|q| q + 1 != p) {
            r += 1;
        }
        prev = Some(p);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{LayerProfiler, ProfileLimits};

    fn profile_of(tokens: &[Vec<u32>], n: u32, limits: ProfileLimits) -> LayerProfile {
        let mut p = LayerProfiler::new(n, limits).unwrap();
        for t in tokens {
            p.add_token(t.iter().copied()).unwrap();
        }
        p.finish()
    }

    /// Positions of a token's active neurons under `perm`.
    fn positions(active: &[u32], inv: &[u32]) -> Vec<u32> {
        let mut p: Vec<u32> = active.iter().map(|&n| inv[n as usize]).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn frequency_puts_hot_first() {
        assert_eq!(by_frequency(&[1, 5, 5, 0, 9]), vec![4, 1, 2, 0, 3]);
    }

    #[test]
    fn linking_recovers_planted_groups() {
        // Groups {3, 17, 9, 25} and {4, 30, 11} always fire together; their
        // members are scattered in the original order.
        let groups: [&[u32]; 2] = [&[3, 17, 9, 25], &[4, 30, 11]];
        let tokens: Vec<Vec<u32>> = (0..20).map(|t| groups[t % 2].to_vec()).collect();
        let p = profile_of(&tokens, 32, ProfileLimits::default());
        let perm = by_coactivation(&p);
        assert!(is_permutation(&perm));
        let inv = inverse(&perm).unwrap();
        for g in groups {
            assert_eq!(
                runs(&positions(g, &inv)),
                1,
                "group {g:?} not contiguous in {perm:?}"
            );
            assert!(runs(&positions(g, &identity(32))) > 1);
        }
    }

    #[test]
    fn inverse_and_runs() {
        assert_eq!(inverse(&[2, 0, 1]), Some(vec![1, 2, 0]));
        assert_eq!(inverse(&[0, 0, 1]), None);
        assert_eq!(inverse(&[0, 3]), None);
        assert_eq!(runs(&[1, 2, 3, 7, 8, 10]), 3);
        assert_eq!(runs(&[]), 0);
    }

    proptest::proptest! {
        /// Every placement is a permutation, the inverse inverts it, and on
        /// exact and top-k profiles alike.
        #[test]
        fn placements_are_permutations(sets in proptest::collection::vec(proptest::collection::btree_set(0u32..50, 0..15), 0..60), exact in proptest::bool::ANY) {
            let tokens: Vec<Vec<u32>> = sets.into_iter().map(|s| s.into_iter().collect()).collect();
            let limits = if exact { ProfileLimits::default() } else { ProfileLimits { exact_pair_bytes: 0, top_k: 3, max_tokens: 64 } };
            let p = profile_of(&tokens, 50, limits);
            for perm in [identity(50), by_frequency(p.counts()), by_coactivation(&p)] {
                proptest::prop_assert!(is_permutation(&perm));
                let inv = inverse(&perm).unwrap();
                for (pos, &n) in perm.iter().enumerate() {
                    proptest::prop_assert_eq!(inv[n as usize] as usize, pos);
                }
            }
        }
    }
}
