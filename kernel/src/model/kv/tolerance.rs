//! Tolerance-aware compression: how many bits each KV chunk keeps.
//!
//! LLMS (arXiv 2403.11805) quantizes each chunk to 8, 4 or 2 bits, more
//! bits for chunks with more information density (the attention they
//! receive, see [`density`](super::density)), so that the average meets a
//! global target (LLMS uses half of the 8-bit base, 4 bits). The paper
//! assigns levels by thresholds on the density ranking without saying how
//! the thresholds are found; this module makes that choice explicit:
//!
//! *minimise the density-weighted quantization error under the bit budget.*
//! Linear quantization at `b` bits leaves an error whose variance falls as
//! `4^-b`, so a chunk of density `d` at `b` bits costs about `d · 4^-b`.
//! Every chunk starts at 2 bits; upgrades (2 → 4 bits, then 4 → 8) are
//! bought in order of error removed per bit spent while the budget lasts.
//! The result is a ranking cut into three bands: denser chunks never get
//! fewer bits than sparser ones. Because an upgrade from 4 to 8 bits
//! removes about 30 times less error per bit than one from 2 to 4, a chunk
//! gets 8 bits only when it is far denser than the chunks left at 2 (the
//! first chunk, where the attention sink is, typically is); with equal
//! densities every chunk gets 4 bits at a 4-bit target, which is uniform
//! 4-bit quantization.

use crate::compute::KvBits;

use super::super::config::MAX_CHUNKS;

/// Error removed per bit by raising a chunk of density 1 from 2 to 4 bits:
/// `(4^-2 - 4^-4) / 2`.
const GAIN_2_TO_4: f32 = (1.0 / 16.0 - 1.0 / 256.0) / 2.0;

/// Error removed per bit from 4 to 8 bits: `(4^-4 - 4^-8) / 4`.
const GAIN_4_TO_8: f32 = (1.0 / 256.0 - 1.0 / 65536.0) / 4.0;

/// Why levels could not be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LevelsError {
    /// `levels` and `densities` differ in length, or exceed `MAX_CHUNKS`.
    Shape,
    /// The target is not a finite number of bits.
    Target,
}

impl core::fmt::Display for LevelsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LevelsError::Shape => "one level per chunk, at most MAX_CHUNKS chunks",
            LevelsError::Target => "the average bits per element must be a finite number",
        })
    }
}

impl core::error::Error for LevelsError {}

/// Data bits of a level.
pub const fn bits(level: KvBits) -> u32 {
    level.bits()
}

/// Assigns each chunk a level so the mean data bits per element is at
/// most `target` (clamped to 2..=8), denser chunks first (see the module
/// doc). `densities[i]` is chunk `i`'s density; negative or NaN densities
/// count as 0. Ties go to the older chunk.
pub fn assign_levels(
    densities: &[f32],
    target: f32,
    levels: &mut [KvBits],
) -> Result<(), LevelsError> {
    let n = densities.len();
    if levels.len() != n || n > MAX_CHUNKS {
        return Err(LevelsError::Shape);
    }
    if !target.is_finite() {
        return Err(LevelsError::Target);
    }
    levels.fill(KvBits::B2);
    // Bits left to spend, in bits per element summed over chunks.
    let budget = (target.clamp(2.0, 8.0) * n as f32 + 1e-3) as u32;
    let mut left = budget.saturating_sub(2 * n as u32);

    let d = |i: usize| {
        densities
            .get(i)
            .copied()
            .filter(|v| *v > 0.0)
            .unwrap_or(0.0)
    };
    let mut order: heapless::Vec<u16, MAX_CHUNKS> = (0..n as u16).collect();
    // Densest first; equal densities keep the older chunk first.
    order.sort_unstable_by(|&a, &b| d(b as usize).total_cmp(&d(a as usize)).then(a.cmp(&b)));

    // Two queues over the same ranking: the next chunk to raise to 4 bits
    // and the next to raise from 4 to 8. Each step buys the affordable
    // upgrade that removes the most error per bit.
    let (mut to4, mut to8) = (0usize, 0usize);
    loop {
        let up4 = order
            .get(to4)
            .map(|&i| (i as usize, GAIN_2_TO_4 * d(i as usize)));
        // Only chunks already at 4 bits can go to 8: those before `to4`.
        let up8 = (to8 < to4)
            .then(|| order.get(to8))
            .flatten()
            .map(|&i| (i as usize, GAIN_4_TO_8 * d(i as usize)));
        let pick4 = |left: u32| left >= 2 && up4.is_some();
        let pick8 = |left: u32| left >= 4 && up8.is_some();
        let take4 = match (pick4(left), pick8(left)) {
            (false, false) => break,
            (true, false) => true,
            (false, true) => false,
            // Prefer 2 -> 4 on equal gain: it spreads the bits.
            (true, true) => up4.map(|u| u.1) >= up8.map(|u| u.1),
        };
        if take4 {
            if let Some(l) = up4.and_then(|u| levels.get_mut(u.0)) {
                *l = KvBits::B4;
            }
            to4 += 1;
            left -= 2;
        } else {
            if let Some(l) = up8.and_then(|u| levels.get_mut(u.0)) {
                *l = KvBits::B8;
            }
            to8 += 1;
            left -= 4;
        }
    }
    Ok(())
}

/// Mean data bits per element of `levels` (0 for none).
pub fn mean_bits(levels: &[KvBits]) -> f32 {
    if levels.is_empty() {
        return 0.0;
    }
    levels.iter().map(|&l| bits(l)).sum::<u32>() as f32 / levels.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assign(d: &[f32], target: f32) -> std::vec::Vec<KvBits> {
        let mut l = std::vec![KvBits::B2; d.len()];
        assign_levels(d, target, &mut l).unwrap();
        l
    }

    #[test]
    fn equal_densities_at_four_bits_are_uniform_four_bit() {
        assert_eq!(assign(&[1.0; 6], 4.0), std::vec![KvBits::B4; 6]);
        assert_eq!(assign(&[0.0; 6], 4.0), std::vec![KvBits::B4; 6]);
    }

    #[test]
    fn a_sink_gets_eight_bits_and_the_sparsest_pay_for_it() {
        // Chunk 0 is 100 times denser than the rest.
        let d = [100.0, 1.0, 0.9, 0.8, 0.7];
        let l = assign(&d, 4.0);
        assert_eq!(l[0], KvBits::B8);
        assert!(mean_bits(&l) <= 4.0);
        assert_eq!(l[4], KvBits::B2, "{l:?}");
    }

    #[test]
    fn targets_outside_the_levels_clamp() {
        assert_eq!(assign(&[3.0, 1.0], 9.0), std::vec![KvBits::B8; 2]);
        assert_eq!(assign(&[3.0, 1.0], 1.0), std::vec![KvBits::B2; 2]);
        let mut l = [KvBits::B2; 2];
        assert_eq!(
            assign_levels(&[1.0, 2.0], f32::NAN, &mut l),
            Err(LevelsError::Target)
        );
        assert_eq!(assign_levels(&[1.0], 4.0, &mut l), Err(LevelsError::Shape));
    }

    proptest! {
        #[test]
        fn budget_met_and_denser_never_fewer_bits(
            d in proptest::collection::vec(0.0f32..10.0, 1..64),
            target in 2.0f32..8.0,
        ) {
            let l = assign(&d, target);
            prop_assert!(mean_bits(&l) <= target + 1e-4, "{} > {}", mean_bits(&l), target);
            // Within 2 bits of the target: nothing affordable was left unbought.
            prop_assert!(mean_bits(&l) > target - 4.0 / d.len() as f32 - 1e-4);
            for i in 0..d.len() {
                for j in 0..d.len() {
                    if d[i] > d[j] {
                        prop_assert!(bits(l[i]) >= bits(l[j]), "{d:?} {l:?}");
                    }
                }
            }
        }
    }
}
