//! The ring's reads over an in-memory device: delivery in turn with
//! prefetch, failed reads, out-of-order acquires; and the sparsity rule.

use super::*;
use crate::model::tests::naive::Naive;

/// A unit read from `start`, `len` bytes.
fn unit(start: u64, len: usize) -> Unit {
    Unit {
        start,
        len,
        skip: 0,
        head: false,
        decoded: 0,
    }
}

/// `n` I/O slots of `len` bytes, block-aligned.
fn io_slots(arena: &mut VecArena, n: usize, len: usize) -> Vec<crate::arena::Slot> {
    (0..n)
        .map(|_| arena.alloc(len, B as usize, SlotKind::IoBuffer).unwrap())
        .collect()
}

#[test]
fn the_ring_delivers_each_unit_in_turn_and_prefetches_the_next() {
    let dev = pattern_device(64 * 1024, 16, 1024);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 2, 8192);
    let units = [
        unit(0, 4096),
        unit(8192, 8192),
        Unit {
            start: 20480,
            len: 2048,
            skip: 100,
            head: true,
            decoded: 0,
        },
    ];
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    for pass in 0..3 {
        ring.begin_pass(&mut arena, true).unwrap();
        for (i, u) in units.iter().enumerate() {
            let (slot, skip) = ring.acquire(&mut arena, i, &mut Naive).unwrap();
            assert_eq!(skip, u.skip);
            let want: Vec<u8> = (u.start as usize..u.start as usize + u.len)
                .map(|i| (i * 7 + i / 251) as u8)
                .collect();
            assert_eq!(
                &arena.bytes(slot).unwrap()[..u.len],
                &want[..],
                "pass {pass} unit {i}"
            );
        }
    }
    let s = ring.stats();
    // Every unit read once a pass, in commands of at most 1 KiB, and the
    // first unit of the next pass already prefetched.
    assert_eq!(s.bytes, 3 * (4096 + 8192 + 2048) + 4096);
    assert_eq!(s.reads, 3 * (4 + 8 + 2) + 4);
    assert_eq!(s.units, 3 * 3 + 1);
    // Passes without logits skip the head piece: unit 1, then unit 0 of
    // the next pass, then unit 1 again.
    ring.begin_pass(&mut arena, false).unwrap();
    for i in 0..2 {
        ring.acquire(&mut arena, i, &mut Naive).unwrap();
    }
    ring.begin_pass(&mut arena, false).unwrap();
    ring.acquire(&mut arena, 0, &mut Naive).unwrap();
    ring.quiesce(&mut arena).unwrap();
    assert_eq!(ring.stats().bytes, s.bytes + 8192 + 4096 + 8192);
}

#[test]
fn a_failed_read_is_an_error_naming_the_unit_and_the_ring_recovers() {
    let mut dev = pattern_device(64 * 1024, 2, 4096);
    dev.fail_at = Some(12288);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 2, 8192);
    let units = [unit(0, 4096), unit(8192, 8192)];
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    ring.acquire(&mut arena, 0, &mut Naive).unwrap();
    let e = ring.acquire(&mut arena, 1, &mut Naive).unwrap_err();
    assert_eq!(
        e,
        EvalError::Read {
            offset: 8192,
            kind: FlashKind::Io,
            attempts: 3,
        }
    );
    // Everything in flight is collected; the next pass starts cleanly and
    // fails again at the same unit, never hands out its stale bytes.
    ring.quiesce(&mut arena).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    ring.acquire(&mut arena, 0, &mut Naive).unwrap();
    assert!(ring.acquire(&mut arena, 1, &mut Naive).is_err());
}

#[test]
fn an_out_of_order_acquire_restarts_the_schedule_there() {
    let dev = pattern_device(64 * 1024, 8, 4096);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 3, 4096);
    let units: Vec<Unit> = (0..5).map(|i| unit(i * 4096, 4096)).collect();
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    let (slot, _) = ring.acquire(&mut arena, 3, &mut Naive).unwrap();
    assert_eq!(
        arena.bytes(slot).unwrap()[0],
        ((3 * 4096 * 7 + 3 * 4096 / 251) as usize) as u8
    );
    let (slot, _) = ring.acquire(&mut arena, 4, &mut Naive).unwrap();
    assert_eq!(
        arena.bytes(slot).unwrap()[0],
        ((4 * 4096 * 7 + 4 * 4096 / 251) as usize) as u8
    );
    let (slot, _) = ring.acquire(&mut arena, 0, &mut Naive).unwrap();
    assert_eq!(arena.bytes(slot).unwrap()[1], 7);
}

proptest! {
    /// The sparse rule keeps at least `keep` activations, every one of them
    /// at least as strong as every one it zeroed, and changes no kept value.
    #[test]
    fn keep_strongest_keeps_the_strongest(
        vals in proptest::collection::vec(-8i32..8, 0..64),
        keep in 0usize..70,
    ) {
        let h0: Vec<f32> = vals.iter().map(|&v| v as f32 * 0.25).collect();
        let mut h = h0.clone();
        let mut scratch = vec![0f32; h.len()];
        keep_strongest(&mut h, keep, &mut scratch).unwrap();
        let kept: Vec<usize> = (0..h.len()).filter(|&i| h[i] != 0.0).collect();
        let nonzero = h0.iter().filter(|v| **v != 0.0).count();
        prop_assert!(kept.len() >= keep.min(nonzero));
        let weakest_kept = kept.iter().map(|&i| h0[i].abs()).fold(f32::INFINITY, f32::min);
        for i in 0..h.len() {
            if h[i] == 0.0 {
                prop_assert!(h0[i].abs() <= weakest_kept);
            } else {
                prop_assert_eq!(h[i], h0[i]);
            }
        }
        if keep < h.len() {
            // Ties aside, no more than `keep` survive.
            let distinct_at_cut = kept.iter().filter(|&&i| h0[i].abs() == weakest_kept).count();
            prop_assert!(kept.len() <= keep + distinct_at_cut);
        }
    }
}

#[test]
fn keep_strongest_needs_scratch() {
    let mut h = [1.0f32, -2.0, 3.0];
    let e = keep_strongest(&mut h, 1, &mut [0.0; 2]).unwrap_err();
    assert_eq!(e.kind(), crate::model::ErrorKind::Compute);
    keep_strongest(&mut h, 1, &mut [0.0; 3]).unwrap();
    assert_eq!(h, [0.0, 0.0, 3.0]);
}

#[test]
fn neurons_kept_rounds_to_the_nearest_neuron_and_keeps_one() {
    assert_eq!(neurons_kept(0.5, 1536), 768);
    assert_eq!(neurons_kept(0.0, 1536), 1536);
    assert_eq!(neurons_kept(0.34, 10), 7, "3.4 dropped rounds to 3");
    assert_eq!(neurons_kept(0.36, 10), 6, "3.6 dropped rounds to 4");
    assert_eq!(neurons_kept(0.99, 10), 1, "never none");
    assert_eq!(neurons_kept(f32::NAN, 10), 10, "NaN cuts nothing");
}
