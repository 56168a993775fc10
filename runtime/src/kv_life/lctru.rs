//! LCTRU: which idle context or chunk gives up DRAM next.
//!
//! LLMS keeps one LRU queue per compression level and reclaims from the
//! least-compressed level first: the memory it frees is the largest and
//! the quality it costs (a later restore reads or recomputes) is paid
//! where compressing harder would cost more. Here the levels, least
//! compressed first, are:
//!
//! 1. resident contexts (f32): parked, least recently used first, which
//!    frees most of their memory and keeps compressed copies;
//! 2. compressed chunks of parked contexts, by level: f32 (partial last
//!    chunks), 8-bit, 4-bit, 2-bit; within a level, the least recently
//!    used context first, its last chunk first (recomputing a context's
//!    tail is cheapest, and a restore then reads its head while it
//!    recomputes the tail's neighbours).
//!
//! Freeing a chunk costs nothing more once it is committed to the swap
//! area, which ahead-of-time swap-out arranges.

use std::time::SystemTime;

use super::{Held, KvState};

/// A parked chunk's place in the queues (level rank, last used, chunk
/// from the end): the smallest goes first.
type Order = (u8, SystemTime, std::cmp::Reverse<usize>);

/// What to reclaim next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Victim<K> {
    /// Park this resident context.
    Park(K),
    /// Free this parked chunk's DRAM copy.
    Evict(K, usize),
}

/// The next victim among idle contexts `(key, last used, resident, state)`,
/// or `None` when none holds DRAM it could give up.
pub(crate) fn next_victim<'a, K: Copy + 'a>(
    idle: impl Iterator<Item = (K, SystemTime, bool, &'a KvState)>,
) -> Option<Victim<K>> {
    let mut resident: Option<(SystemTime, K)> = None;
    let mut chunk: Option<(Order, K, usize)> = None;
    for (key, used, is_resident, state) in idle {
        if is_resident {
            if resident.is_none_or(|(t, _)| used < t) {
                resident = Some((used, key));
            }
            continue;
        }
        for (i, c) in state.parked.iter().flatten().enumerate() {
            if !matches!(c.held, Held::Dram(_)) {
                continue;
            }
            // f32 (code 32) first, then 8, 4, 2 bits.
            let rank = u8::MAX - c.level.code();
            let order = (rank, used, std::cmp::Reverse(i));
            if chunk.as_ref().is_none_or(|(o, _, _)| order < *o) {
                chunk = Some((order, key, i));
            }
        }
    }
    if let Some((_, k)) = resident {
        return Some(Victim::Park(k));
    }
    chunk.map(|(_, k, i)| Victim::Evict(k, i))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lode_kernel::arena::Slot;
    use lode_kernel::compute::KvBits;
    use lode_kernel::model::kv::codec::ChunkLevel;

    use super::super::ParkedChunk;
    use super::*;

    fn slot() -> Slot {
        use lode_hal::slice_arena::SliceArena;
        use lode_kernel::arena::{DramArena, SlotKind};
        let mut mem = [0u8; 64];
        let mut a = SliceArena::new(&mut mem);
        a.alloc(8, 8, SlotKind::Scratch).expect("a slot")
    }

    fn parked(levels: &[ChunkLevel]) -> KvState {
        KvState {
            parked: Some(
                levels
                    .iter()
                    .map(|&level| ParkedChunk {
                        level,
                        held: Held::Dram(slot()),
                        tokens: 16,
                        payload: 8,
                    })
                    .collect(),
            ),
            ..KvState::default()
        }
    }

    #[test]
    fn resident_lru_first_then_least_compressed_then_oldest() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + Duration::from_secs(1);
        let q = |b| ChunkLevel::Quantized(b);
        let a = parked(&[q(KvBits::B4), q(KvBits::B2)]);
        let b = parked(&[q(KvBits::B8), q(KvBits::B4)]);
        let none = KvState::default();
        let all = [
            ("r1", t1, true, &none),
            ("a", t0, false, &a),
            ("r0", t0, true, &none),
            ("b", t1, false, &b),
        ];
        assert_eq!(next_victim(all.iter().copied()), Some(Victim::Park("r0")));
        let parked_only = [("a", t0, false, &a), ("b", t1, false, &b)];
        // b's 8-bit chunk before a's older 4-bit one.
        assert_eq!(
            next_victim(parked_only.iter().copied()),
            Some(Victim::Evict("b", 0))
        );
        let fours = [
            ("a", t0, false, &a),
            ("b", t1, false, &parked(&[q(KvBits::B4), q(KvBits::B4)])),
        ];
        // Same level: the older context, its last chunk first.
        assert_eq!(
            next_victim(fours.iter().copied()),
            Some(Victim::Evict("a", 0))
        );
        let same = [("b", t1, false, &parked(&[q(KvBits::B4), q(KvBits::B4)]))];
        assert_eq!(
            next_victim(same.iter().copied()),
            Some(Victim::Evict("b", 1))
        );
        assert_eq!(next_victim([("n", t0, false, &none)].into_iter()), None);
    }
}
