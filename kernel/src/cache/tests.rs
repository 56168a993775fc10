use std::collections::VecDeque;

use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::DramArena;

fn cfg(slots: u32, keys: u32) -> CacheConfig {
    CacheConfig {
        slots,
        keys,
        bundle_bytes: 8,
    }
}

const ISOLATED: Admission = Admission {
    token: 0,
    run_len: 1,
};

/// Look up `key`; on a miss insert it and stamp its bytes. Returns hit?
fn access<P: Policy>(
    c: &mut NeuronCache<P>,
    a: &mut VecArena,
    key: u32,
    token: u32,
    run_len: u32,
) -> bool {
    if c.lookup(a, key, token).unwrap().is_some() {
        return true;
    }
    if let Some(slot) = c.insert(a, key, &Admission { token, run_len }).unwrap() {
        c.bundle_mut(a, slot).unwrap().fill(key as u8);
    }
    false
}

/// Structural invariants every policy must keep.
fn check<P: Policy>(
    c: &NeuronCache<P>,
    a: &VecArena,
    keys: u32,
) -> Result<(), proptest::test_runner::TestCaseError> {
    prop_assert!(c.occupied() <= c.config().slots);
    let mut present = 0;
    for k in 0..keys {
        if c.contains(a, k).unwrap() {
            present += 1;
        }
    }
    prop_assert_eq!(present, c.occupied());
    Ok(())
}

fn run_policy<P: Policy>(
    policy: P,
    ops: &[(u32, u32, bool)],
) -> Result<(), proptest::test_runner::TestCaseError> {
    let keys = 64;
    let mut a = VecArena::new(1 << 16);
    let mut c = NeuronCache::new(&mut a, cfg(9, keys), policy).unwrap();
    let mut token = 0;
    for &(key, run, next_token) in ops {
        let key = key % keys;
        access(&mut c, &mut a, key, token, run);
        if let Some(slot) = c.lookup(&mut a, key, token).unwrap() {
            // A cached bundle holds the bytes stamped when it was inserted.
            prop_assert_eq!(c.bundle(&a, slot).unwrap(), &[key as u8; 8]);
        }
        if next_token {
            c.end_token(&mut a, token).unwrap();
            token += 1;
        }
        check(&c, &a, keys)?;
    }
    let s = c.stats();
    prop_assert!(s.admitted - s.evicted - s.expired == u64::from(c.occupied()));
    Ok(())
}

proptest! {
    #[test]
    fn every_policy_keeps_its_invariants(ops in proptest::collection::vec((0u32..64, 1u32..8, proptest::bool::weighted(0.2)), 1..300)) {
        run_policy(Lru::new(), &ops)?;
        run_policy(Window::new(3), &ops)?;
        run_policy(HotPinned::new(&[1, 5, 9, 40]), &ops)?;
        let heat: std::vec::Vec<u8> = (0..64u8).map(|k| k % 20).collect();
        run_policy(HotWindow::new(&heat), &ops)?;
        run_policy(S3Fifo::default(), &ops)?;
        run_policy(LinkAdmission::new(S3Fifo::default(), 7), &ops)?;
    }

    /// HotWindow evicts exactly what a reference does: the entry with the
    /// least (used by the current token, heat level, time of last use).
    #[test]
    fn hot_window_matches_a_reference(ops in proptest::collection::vec((0u32..24, proptest::bool::weighted(0.15)), 1..400), heat in proptest::collection::vec(0u8..20, 24)) {
        let mut a = VecArena::new(1 << 14);
        let mut c = NeuronCache::new(&mut a, cfg(6, 24), HotWindow::new(&heat)).unwrap();
        // (key, token of last use, time of last use)
        let mut model: std::vec::Vec<(u32, u32, u32)> = std::vec::Vec::new();
        let (mut token, mut time) = (0u32, 0u32);
        let level = |k: u32| heat[k as usize].min(HEAT_LEVELS as u8 - 1);
        for (k, next) in ops {
            time += 1;
            let hit = access(&mut c, &mut a, k, token, 1);
            let at = model.iter().position(|e| e.0 == k);
            prop_assert_eq!(hit, at.is_some());
            match at {
                Some(i) => model[i] = (k, token, time),
                None => {
                    if model.len() == 6 {
                        let victim = (0..6)
                            .min_by_key(|&i| {
                                let (key, t, when) = model[i];
                                (t == token, level(key), when)
                            })
                            .unwrap();
                        model.swap_remove(victim);
                    }
                    model.push((k, token, time));
                }
            }
            if next {
                token += 1;
            }
        }
    }

    /// LRU evicts exactly what a reference LRU evicts.
    #[test]
    fn lru_matches_a_reference(keys in proptest::collection::vec(0u32..20, 1..300)) {
        let mut a = VecArena::new(1 << 14);
        let mut c = NeuronCache::new(&mut a, cfg(5, 20), Lru::new()).unwrap();
        let mut model: VecDeque<u32> = VecDeque::new();
        for k in keys {
            let hit = access(&mut c, &mut a, k, 0, 1);
            let model_hit = model.contains(&k);
            prop_assert_eq!(hit, model_hit);
            model.retain(|&x| x != k);
            model.push_front(k);
            model.truncate(5);
        }
    }
}

#[test]
fn window_keeps_only_the_last_k_tokens() {
    let mut a = VecArena::new(1 << 14);
    let mut c = NeuronCache::new(&mut a, cfg(100, 100), Window::new(2)).unwrap();
    for t in 0..10u32 {
        for k in [t, t + 50] {
            access(&mut c, &mut a, k, t, 1);
        }
        c.end_token(&mut a, t).unwrap();
        // Window after token t: tokens t-1 and t.
        for k in 0..100 {
            let expect = k == t || k == t + 50 || (t > 0 && (k == t - 1 || k == t + 49));
            assert_eq!(c.contains(&a, k).unwrap(), expect, "token {t} key {k}");
        }
    }
    assert!(c.stats().expired > 0);
}

#[test]
fn hot_neurons_are_never_evicted() {
    let hot = [0, 1, 2];
    let mut a = VecArena::new(1 << 14);
    let mut c = NeuronCache::new(&mut a, cfg(5, 1000), HotPinned::new(&hot)).unwrap();
    for &k in &hot {
        access(&mut c, &mut a, k, 0, 1);
    }
    for k in 3..1000 {
        access(&mut c, &mut a, k, 0, 1);
    }
    for &k in &hot {
        assert!(c.contains(&a, k).unwrap());
    }
    assert_eq!(c.occupied(), 5);
}

/// HotWindow evicts what the last token did not use before what it did,
/// and among those the coldest first, then the least recently used.
#[test]
fn hot_window_evicts_stale_then_cold_then_old() {
    // Keys 0..4 cold (level 0), 4..8 hot (level 15).
    let heat = [0, 0, 0, 0, 15, 15, 15, 15];
    let mut a = VecArena::new(1 << 14);
    let mut c = NeuronCache::new(&mut a, cfg(4, 8), HotWindow::new(&heat)).unwrap();
    // Token 0 uses cold 0, 1 and hot 4, 5.
    for k in [0, 4, 1, 5] {
        assert!(!access(&mut c, &mut a, k, 0, 1));
    }
    // Token 1 uses cold 0 and hot 5 again (hits): they are recent, 1 and 4 stale.
    assert!(access(&mut c, &mut a, 0, 1, 1));
    assert!(access(&mut c, &mut a, 5, 1, 1));
    // A miss evicts the stale cold 1 first (not the recent cold 0).
    assert!(!access(&mut c, &mut a, 6, 1, 1));
    assert!(!c.contains(&a, 1).unwrap());
    // The next one evicts stale hot 4: nothing stale and colder is left.
    assert!(!access(&mut c, &mut a, 7, 1, 1));
    assert!(!c.contains(&a, 4).unwrap());
    // All four are recent now; a fifth key of the same token evicts the
    // coldest recent one (0), not a hot one.
    assert!(!access(&mut c, &mut a, 2, 1, 1));
    assert!(!c.contains(&a, 0).unwrap());
    for k in [5, 6, 7, 2] {
        assert!(c.contains(&a, k).unwrap());
    }
    // At token 2 everything is stale: the least recently used of the coldest
    // level goes first (2, the only cold one), then the oldest hot (5).
    assert!(!access(&mut c, &mut a, 3, 2, 1));
    assert!(!c.contains(&a, 2).unwrap());
    assert!(access(&mut c, &mut a, 3, 2, 1));
    assert!(!access(&mut c, &mut a, 1, 2, 1));
    assert!(!c.contains(&a, 5).unwrap());
}

/// HotWindow levels are the profiled frequency in equal steps.
#[test]
fn heat_levels_scale_with_frequency() {
    assert_eq!(HotWindow::heat_level(0, 100), 0);
    assert_eq!(HotWindow::heat_level(100, 100), (HEAT_LEVELS - 1) as u8);
    assert_eq!(HotWindow::heat_level(50, 99), (HEAT_LEVELS / 2) as u8);
    assert_eq!(HotWindow::heat_level(u32::MAX, 0), (HEAT_LEVELS - 1) as u8);
}

#[test]
fn all_pinned_declines_instead_of_evicting() {
    let hot = [0, 1];
    let mut a = VecArena::new(1 << 14);
    let mut c = NeuronCache::new(&mut a, cfg(2, 10), HotPinned::new(&hot)).unwrap();
    access(&mut c, &mut a, 0, 0, 1);
    access(&mut c, &mut a, 1, 0, 1);
    assert_eq!(c.insert(&mut a, 5, &ISOLATED).unwrap(), None);
    assert_eq!(c.stats().declined, 1);
}

/// A working set re-read every round survives a scan of one-time keys under
/// S3-FIFO, and is flushed by the same scan under LRU. Reuse distance is 28:
/// more than the 20 slots (LRU loses), less than slots + ghost entries (38).
#[test]
fn s3fifo_resists_scans_where_lru_does_not() {
    fn hits<P: Policy>(p: P) -> u64 {
        let mut a = VecArena::new(1 << 16);
        let mut c = NeuronCache::new(&mut a, cfg(20, 5000), p).unwrap();
        let mut scan = 100;
        for _ in 0..50 {
            for k in 0..8 {
                access(&mut c, &mut a, k, 0, 1);
            }
            for _ in 0..20 {
                access(&mut c, &mut a, scan, 0, 1);
                scan += 1;
            }
        }
        c.stats().hits
    }
    let (s3, lru) = (hits(S3Fifo::default()), hits(Lru::new()));
    assert!(s3 > 5 * lru.max(1), "s3-fifo {s3} hits, lru {lru}");
}

#[test]
fn link_admission_prefers_isolated_neurons() {
    let mut a = VecArena::new(1 << 18);
    let mut c =
        NeuronCache::new(&mut a, cfg(5000, 5000), LinkAdmission::new(Lru::new(), 1)).unwrap();
    for k in 0..1000 {
        c.insert(&mut a, k, &ISOLATED).unwrap();
    }
    assert_eq!(c.stats().admitted, 1000);
    for k in 1000..3000 {
        c.insert(
            &mut a,
            k,
            &Admission {
                token: 0,
                run_len: 20,
            },
        )
        .unwrap();
    }
    let long = c.stats().admitted - 1000;
    // Expect ~2000/20 = 100.
    assert!(
        (40..200).contains(&long),
        "admitted {long} of 2000 long-run neurons"
    );
}

#[test]
fn failed_build_leaves_the_arena_as_it_was() {
    let mut a = VecArena::new(4096);
    let err = NeuronCache::new(
        &mut a,
        CacheConfig {
            slots: 100,
            keys: 10,
            bundle_bytes: 1080,
        },
        Lru::new(),
    );
    assert!(matches!(
        err,
        Err(CacheError::Arena(crate::arena::ErrorKind::OutOfMemory))
    ));
    assert_eq!(a.used(), 0);
    assert!(matches!(
        NeuronCache::new(&mut a, cfg(0, 10), Lru::new()),
        Err(CacheError::BadConfig)
    ));
}

#[test]
fn out_of_range_keys_are_errors() {
    let mut a = VecArena::new(4096);
    let mut c = NeuronCache::new(&mut a, cfg(4, 10), Lru::new()).unwrap();
    assert_eq!(c.lookup(&mut a, 10, 0), Err(CacheError::KeyOutOfRange));
    assert_eq!(
        c.insert(&mut a, 99, &ISOLATED),
        Err(CacheError::KeyOutOfRange)
    );
    assert_eq!(c.bundle(&a, 4).err(), Some(CacheError::SlotOutOfRange));
    let footprint = a.used();
    assert_eq!(Some(footprint), cfg(4, 10).arena_bytes(&Lru::new()));
    c.release(&mut a).unwrap();
    assert_eq!(a.used(), 0);
}
