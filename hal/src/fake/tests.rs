//! Behaviour of the fake flash as a whole: validation, the clock, counters,
//! completion order and every injected fault.

extern crate std;

use std::format;
use std::vec;
use std::vec::Vec;

use lode_kernel::arena::{DramArena, Slot, SlotKind};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    Completion, ErrorKind, FlashDevice, FlashWrite, Geometry, ReadError, ReadRequest,
};
use lode_kernel::rng::SplitMix64;
use proptest::prelude::*;

use super::{Counters, FakeFlash, FaultPlan, Profile, MAX_IN_FLIGHT};
use crate::slice_arena::SliceArena;

const B: usize = 4096;
const BLOCKS: u64 = 64;
/// DRAM for a full queue of 4-block reads plus one batch being built, twice
/// over so first-fit fragmentation never runs a test out of memory.
const DRAM: usize = 2 * (MAX_IN_FLIGHT + 8) * 4 * B;

/// Deterministic, position-dependent content, so a read from the wrong
/// offset cannot go unnoticed.
fn pattern(len: usize, salt: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(salt);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        for b in rng.next_u64().to_le_bytes() {
            if v.len() < len {
                v.push(b);
            }
        }
    }
    v
}

fn flash(profile: &Profile, plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    FakeFlash::new(pattern(BLOCKS as usize * B, 0xF1A5), profile, plan)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn io_slot(arena: &mut SliceArena<'_>, len: usize) -> Slot {
    arena.alloc(len, B, SlotKind::IoBuffer).unwrap()
}

fn read(tag: u32, block: u64, blocks: u32, dest: Slot) -> ReadRequest {
    ReadRequest {
        tag,
        offset: block * B as u64,
        len: blocks * B as u32,
        dest,
        dest_offset: 0,
    }
}

// ---------------------------------------------------------------------------
// Basics and validation
// ---------------------------------------------------------------------------

#[test]
fn geometry_follows_the_store_and_the_queue_bound() {
    let f = FakeFlash::new(vec![0u8; 10 * B + 100], &Profile::NVME, FaultPlan::none());
    let g = f.geometry();
    assert_eq!(
        g.capacity,
        10 * B as u64,
        "tail past the last block is not addressable"
    );
    assert_eq!(
        g.queue_depth as usize, MAX_IN_FLIGHT,
        "NVMe's 1024 is capped"
    );
    assert_eq!(g.block_size, 4096);
    assert_eq!(f.cost_model(), Profile::NVME.cost);
    let f = FakeFlash::new(vec![0u8; B], &Profile::UFS31, FaultPlan::none());
    assert_eq!(f.geometry().queue_depth, 32);
}

#[test]
fn one_read_delivers_the_bytes_and_charges_the_model() {
    let mut f = flash(&Profile::DISK, FaultPlan::none());
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, 2 * B);
    f.read_blocking(&mut arena, &[read(5, 3, 2, s)]).unwrap();
    assert_eq!(arena.bytes(s).unwrap(), &f.storage()[3 * B..5 * B]);
    let c = f.counters();
    assert_eq!(c.batches, 1);
    assert_eq!(c.read_commands, 1);
    assert_eq!(c.bytes_read, 2 * B as u64);
    assert_eq!(c.completions, 1);
    assert_eq!(c.virtual_ns, 50_000 + Profile::DISK.cost.transfer_ns(8192));
    assert_eq!(f.now_ns(), c.virtual_ns);
    assert_eq!(f.in_flight(), 0);
}

/// Reads submitted while others are queued extend the device's running
/// batch: eight single-block reads cost the same whether submitted at once or
/// four and four with the queue kept non-empty in between, and less than two
/// batches with the queue drained between them (which pay the fixed command
/// latency twice).
#[test]
fn a_fed_queue_is_one_batch_and_a_drained_one_pays_again() {
    let cost = Profile::UFS40.cost;
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let slots: Vec<Slot> = (0..8).map(|_| io_slot(&mut arena, B)).collect();
    let reqs: Vec<ReadRequest> = (0..8u32)
        .map(|i| read(i, u64::from(i) * 3, 1, slots[i as usize]))
        .collect();
    let mut done = [Completion::EMPTY; 8];

    let mut whole = flash(&Profile::UFS40, FaultPlan::none());
    whole.submit(&mut arena, &reqs).unwrap();
    while whole.complete(&mut arena, &mut done).unwrap() > 0 {}
    assert_eq!(whole.now_ns(), cost.batch_ns(8, 8 * B as u64));

    let mut fed = flash(&Profile::UFS40, FaultPlan::none());
    fed.submit(&mut arena, &reqs[..4]).unwrap();
    assert_eq!(fed.complete(&mut arena, &mut done[..2]).unwrap(), 2);
    fed.submit(&mut arena, &reqs[4..]).unwrap();
    while fed.complete(&mut arena, &mut done).unwrap() > 0 {}
    assert_eq!(fed.now_ns(), whole.now_ns());

    let mut drained = flash(&Profile::UFS40, FaultPlan::none());
    drained.read_blocking(&mut arena, &reqs[..4]).unwrap();
    drained.read_blocking(&mut arena, &reqs[4..]).unwrap();
    assert_eq!(drained.now_ns(), 2 * cost.batch_ns(4, 4 * B as u64));
    assert!(drained.now_ns() > fed.now_ns());
}

#[test]
fn empty_batches_and_empty_completion_buffers_do_nothing() {
    let mut f = flash(&Profile::UFS40, FaultPlan::none());
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    f.submit(&mut arena, &[]).unwrap();
    assert_eq!(f.counters(), Counters::default());
    let s = io_slot(&mut arena, B);
    f.submit(&mut arena, &[read(1, 0, 1, s)]).unwrap();
    assert_eq!(f.complete(&mut arena, &mut []), Ok(0));
    assert_eq!(f.in_flight(), 1);
    let mut done = [Completion::EMPTY; 4];
    assert_eq!(f.complete(&mut arena, &mut done), Ok(1));
    assert_eq!(f.complete(&mut arena, &mut done), Ok(0));
}

/// Every kind of bad request is refused, whole batch at once, wherever it
/// sits in the batch: nothing is queued, no time is charged, nothing counted.
#[test]
fn bad_requests_refuse_the_whole_batch() {
    let mut f = flash(&Profile::UFS31, FaultPlan::none());
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let good = io_slot(&mut arena, B);
    let big = io_slot(&mut arena, 2 * B);
    let stale = io_slot(&mut arena, B);
    arena.free(stale).unwrap();
    let max = Profile::UFS31.geometry.max_transfer;

    let ok = read(1, 0, 1, good);
    let cases: [(ReadRequest, ErrorKind); 9] = [
        (ReadRequest { offset: 100, ..ok }, ErrorKind::Misaligned),
        (ReadRequest { len: 100, ..ok }, ErrorKind::Misaligned),
        (ReadRequest { len: 0, ..ok }, ErrorKind::Misaligned),
        (
            ReadRequest {
                offset: BLOCKS * B as u64,
                ..ok
            },
            ErrorKind::OutOfRange,
        ),
        (
            ReadRequest {
                offset: u64::MAX - 4095,
                ..ok
            },
            ErrorKind::OutOfRange,
        ),
        // Length is checked before the destination, so the small slot is fine.
        (
            ReadRequest {
                len: max + B as u32,
                ..ok
            },
            ErrorKind::TooLarge,
        ),
        (ReadRequest { dest: stale, ..ok }, ErrorKind::BadDestination),
        (
            ReadRequest {
                len: 2 * B as u32,
                ..ok
            },
            ErrorKind::BadDestination,
        ),
        (
            ReadRequest {
                dest: big,
                dest_offset: 512,
                ..ok
            },
            ErrorKind::Misaligned,
        ),
    ];
    for (bad, kind) in cases {
        for batch in [[bad, ok], [ok, bad]] {
            assert_eq!(f.submit(&mut arena, &batch), Err(kind), "{bad:?}");
            assert_eq!(f.in_flight(), 0);
            assert_eq!(f.now_ns(), 0);
            assert_eq!(f.counters(), Counters::default());
        }
    }
    // A destination offset inside a larger slot is fine when aligned.
    f.submit(
        &mut arena,
        &[ReadRequest {
            dest: big,
            dest_offset: B,
            ..ok
        }],
    )
    .unwrap();
    assert_eq!(f.in_flight(), 1);
}

#[test]
fn the_queue_is_bounded_across_batches() {
    let mut f = flash(&Profile::UFS31, FaultPlan::none());
    let depth = usize::from(f.geometry().queue_depth);
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, B);
    let one = read(0, 0, 1, s);
    let too_many = vec![one; depth + 1];
    assert_eq!(f.submit(&mut arena, &too_many), Err(ErrorKind::QueueFull));
    f.submit(&mut arena, &vec![one; depth - 1]).unwrap();
    let before = (f.counters(), f.now_ns());
    assert_eq!(f.submit(&mut arena, &[one, one]), Err(ErrorKind::QueueFull));
    assert_eq!((f.counters(), f.now_ns()), before);
    assert_eq!(f.in_flight(), depth - 1);
    f.submit(&mut arena, &[one]).unwrap();
    assert_eq!(f.in_flight(), depth);
}

/// A slot freed between submit and complete gets an error completion, and
/// nothing is written through the stale handle.
#[test]
fn a_slot_freed_in_flight_completes_with_bad_destination() {
    let mut f = flash(&Profile::EMMC51, FaultPlan::none());
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, B);
    f.submit(&mut arena, &[read(9, 1, 1, s)]).unwrap();
    arena.free(s).unwrap();
    let again = io_slot(&mut arena, B);
    assert_eq!(again.offset(), s.offset(), "same place, new generation");
    arena.bytes_mut(again).unwrap().fill(0xEE);
    let mut done = [Completion::EMPTY; 2];
    assert_eq!(f.complete(&mut arena, &mut done), Ok(1));
    assert_eq!(
        done[0],
        Completion {
            tag: 9,
            status: Err(ErrorKind::BadDestination)
        }
    );
    assert!(arena.bytes(again).unwrap().iter().all(|&b| b == 0xEE));
    assert_eq!(f.counters().failed_reads, 1);
    assert_eq!(f.counters().faults.total(), 0, "not an injected fault");
}

#[test]
fn the_fake_works_over_a_borrowed_slice() {
    let mut medium = pattern(8 * B, 3);
    let expect = medium[B..2 * B].to_vec();
    let mut f = FakeFlash::new(&mut medium[..], &Profile::NVME, FaultPlan::none());
    let mut mem = vec![0u8; 3 * B];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, B);
    f.read_blocking(&mut arena, &[read(0, 1, 1, s)]).unwrap();
    assert_eq!(arena.bytes(s).unwrap(), &expect[..]);
    f.write(0, &[7u8; B]).unwrap();
    assert_eq!(f.into_storage()[..B], [7u8; B]);
}

// ---------------------------------------------------------------------------
// Counters, the clock and completion order
// ---------------------------------------------------------------------------

/// Reads outstanding in a test, by tag.
struct Pending {
    tag: u32,
    slot: Slot,
    offset: usize,
    len: usize,
}

/// Collect up to `want` completions and check each against the medium.
fn collect_and_check(
    f: &mut FakeFlash<Vec<u8>>,
    arena: &mut SliceArena<'_>,
    pending: &mut Vec<Pending>,
    want: usize,
) -> Result<usize, TestCaseError> {
    let mut done = vec![Completion::EMPTY; want];
    let n = f.complete(arena, &mut done).unwrap();
    prop_assert_eq!(n, want.min(pending.len()));
    for c in &done[..n] {
        prop_assert_eq!(c.status, Ok(()));
        let i = pending.iter().position(|p| p.tag == c.tag);
        prop_assert!(i.is_some(), "unknown or repeated tag {}", c.tag);
        let p = pending.swap_remove(i.unwrap_or_default());
        prop_assert_eq!(
            arena.bytes(p.slot).unwrap(),
            &f.storage()[p.offset..p.offset + p.len]
        );
        arena.free(p.slot).unwrap();
    }
    Ok(n)
}

proptest! {
    /// Over random batches on every profile, in order or not: counters add up
    /// to the sums of what was submitted, each accepted batch advances the
    /// clock by exactly what it adds to `cost.batch_ns` of the reads
    /// submitted since the queue was last empty (so a batch into an idle
    /// device costs `batch_ns` of itself), refused batches charge nothing,
    /// and every completion carries the right bytes into the right slot.
    #[test]
    fn counters_add_up_and_time_is_the_cost_model(
        profile in 0..Profile::ALL.len(),
        reorder in any::<bool>(),
        seed in any::<u64>(),
        steps in proptest::collection::vec(
            (proptest::collection::vec((0..BLOCKS + 2, 1u32..=4), 0..8), 0usize..12),
            1..40,
        ),
    ) {
        let profile = &Profile::ALL[profile];
        let mut f = flash(profile, FaultPlan { seed, reorder, ..FaultPlan::none() });
        let depth = usize::from(f.geometry().queue_depth);
        let mut mem = vec![0u8; DRAM];
        let mut arena = SliceArena::new(&mut mem);
        let mut pending: Vec<Pending> = Vec::new();
        let mut tag = 0u32;
        let (mut batches, mut commands, mut bytes, mut time, mut completed) = (0u64, 0u64, 0u64, 0u64, 0u64);
        // Commands and bytes since the queue was last empty.
        let mut open = (0u64, 0u64);

        for (batch, collect) in steps {
            if pending.len() + batch.len() > depth {
                let k = pending.len();
                completed += collect_and_check(&mut f, &mut arena, &mut pending, k)? as u64;
            }
            let mut reqs = Vec::new();
            for &(block, blocks) in &batch {
                let slot = io_slot(&mut arena, blocks as usize * B);
                reqs.push(read(tag, block, blocks, slot));
                tag += 1;
            }
            let in_range = batch.iter().all(|&(b, n)| b + u64::from(n) <= BLOCKS);
            let before = f.now_ns();
            let idle = pending.is_empty();
            let result = f.submit(&mut arena, &reqs);
            if in_range {
                prop_assert_eq!(result, Ok(()));
                let n = reqs.len() as u64;
                let b: u64 = reqs.iter().map(|r| u64::from(r.len)).sum();
                let charge = if n == 0 {
                    0
                } else {
                    if idle {
                        open = (0, 0);
                    }
                    let was = profile.cost.batch_ns(open.0, open.1);
                    open = (open.0 + n, open.1 + b);
                    profile.cost.batch_ns(open.0, open.1) - was
                };
                if idle {
                    prop_assert_eq!(charge, profile.cost.batch_ns(n, b));
                }
                prop_assert_eq!(f.now_ns() - before, charge);
                if n > 0 {
                    batches += 1;
                }
                commands += n;
                bytes += b;
                time += charge;
                for r in &reqs {
                    pending.push(Pending {
                        tag: r.tag,
                        slot: r.dest,
                        offset: r.offset as usize,
                        len: r.len as usize,
                    });
                }
            } else {
                prop_assert_eq!(result, Err(ErrorKind::OutOfRange));
                prop_assert_eq!(f.now_ns(), before);
                for r in &reqs {
                    arena.free(r.dest).unwrap();
                }
            }
            prop_assert_eq!(f.in_flight(), pending.len());
            completed += collect_and_check(&mut f, &mut arena, &mut pending, collect)? as u64;
        }
        let k = pending.len();
        completed += collect_and_check(&mut f, &mut arena, &mut pending, k)? as u64;

        let c = f.counters();
        prop_assert_eq!(c.batches, batches);
        prop_assert_eq!(c.read_commands, commands);
        prop_assert_eq!(c.bytes_read, bytes);
        prop_assert_eq!(c.completions, commands);
        prop_assert_eq!(completed, commands);
        prop_assert_eq!(c.failed_reads, 0);
        prop_assert_eq!(c.virtual_ns, time);
        prop_assert_eq!(f.now_ns(), time);
        prop_assert_eq!(c.faults.total(), 0);
        prop_assert_eq!(arena.used(), 0, "every slot came back");
    }

    /// With latency spikes on, time still only moves forward, and it is the
    /// model's price plus exactly one `spike_ns` per counted spike; resetting
    /// the counters does not rewind the clock.
    #[test]
    fn time_is_monotone_and_spikes_add_up(
        seed in any::<u64>(),
        spike_ppm in 0u32..=1_000_000,
        spike_ns in 0u64..10_000_000,
        batches in proptest::collection::vec(proptest::collection::vec((0..BLOCKS, 1u32..=2), 1..6), 1..30),
    ) {
        let plan = FaultPlan { seed, spike_ppm, spike_ns, ..FaultPlan::none() };
        let mut f = flash(&Profile::UFS40, plan);
        let mut mem = vec![0u8; DRAM];
        let mut arena = SliceArena::new(&mut mem);
        let mut model = 0u64;
        let mut last = 0u64;
        let mut spikes_before_reset = 0u64;
        for (i, batch) in batches.iter().enumerate() {
            let reqs: Vec<ReadRequest> = batch
                .iter()
                .map(|&(b, n)| read(0, b.min(BLOCKS - u64::from(n)), n, io_slot(&mut arena, n as usize * B)))
                .collect();
            let bytes: u64 = reqs.iter().map(|r| u64::from(r.len)).sum();
            model += Profile::UFS40.cost.batch_ns(reqs.len() as u64, bytes);
            f.read_blocking(&mut arena, &reqs).unwrap();
            for r in &reqs {
                arena.free(r.dest).unwrap();
            }
            prop_assert!(f.now_ns() > last, "a non-empty batch always costs time");
            last = f.now_ns();
            if i == batches.len() / 2 {
                spikes_before_reset = f.counters().faults.latency_spikes;
                f.reset_counters();
                prop_assert_eq!(f.counters(), Counters::default());
                prop_assert_eq!(f.now_ns(), last);
            }
        }
        let c = f.counters();
        let spikes = spikes_before_reset + c.faults.latency_spikes;
        prop_assert_eq!(f.now_ns(), model + spikes * spike_ns);
        let commands: u64 = batches.iter().map(|b| b.len() as u64).sum();
        prop_assert!(spikes <= commands);
        if spike_ppm == 1_000_000 && spike_ns > 0 {
            prop_assert_eq!(spikes, commands, "certain spikes hit every command");
        }
        if spike_ns == 0 || spike_ppm == 0 {
            prop_assert_eq!(spikes, 0);
        }
    }
}

#[test]
fn spikes_cost_exactly_spike_ns_each() {
    let plan = FaultPlan {
        spike_ppm: 1_000_000,
        spike_ns: 7_000_000,
        ..FaultPlan::none()
    };
    let mut f = flash(&Profile::EMMC51, plan);
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let a = io_slot(&mut arena, B);
    let b = io_slot(&mut arena, B);
    f.submit(&mut arena, &[read(0, 0, 1, a), read(1, 5, 1, b)])
        .unwrap();
    let c = f.counters();
    assert_eq!(c.faults.latency_spikes, 2);
    assert_eq!(
        c.virtual_ns,
        Profile::EMMC51.cost.batch_ns(2, 2 * B as u64) + 2 * 7_000_000
    );
}

/// In-order mode completes in submission order; reorder mode, over enough
/// reads, does not (for this seed), yet both deliver the same bytes.
#[test]
fn reorder_changes_order_not_data() {
    let mut orders = Vec::new();
    for reorder in [false, true] {
        let mut f = flash(
            &Profile::UFS31,
            FaultPlan {
                seed: 11,
                reorder,
                ..FaultPlan::none()
            },
        );
        let mut mem = vec![0u8; DRAM];
        let mut arena = SliceArena::new(&mut mem);
        let reqs: Vec<ReadRequest> = (0..16u32)
            .map(|t| read(t, u64::from(t) * 3, 1, io_slot(&mut arena, B)))
            .collect();
        f.submit(&mut arena, &reqs).unwrap();
        let mut done = [Completion::EMPTY; 5];
        let mut order = Vec::new();
        while f.in_flight() > 0 {
            let n = f.complete(&mut arena, &mut done).unwrap();
            order.extend(done[..n].iter().map(|c| c.tag));
        }
        for r in &reqs {
            let at = r.offset as usize;
            assert_eq!(arena.bytes(r.dest).unwrap(), &f.storage()[at..at + B]);
        }
        orders.push(order);
    }
    assert_eq!(orders[0], (0..16).collect::<Vec<u32>>());
    let mut sorted = orders[1].clone();
    sorted.sort_unstable();
    assert_eq!(sorted, orders[0], "every tag exactly once");
    assert_ne!(orders[1], orders[0]);
}

// ---------------------------------------------------------------------------
// Read faults
// ---------------------------------------------------------------------------

#[test]
fn read_errors_leave_the_destination_untouched() {
    let plan = FaultPlan {
        read_error_ppm: 1_000_000,
        ..FaultPlan::none()
    };
    let mut f = flash(&Profile::DISK, plan);
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, B);
    arena.bytes_mut(s).unwrap().fill(0xAB);
    let r = f.read_blocking(&mut arena, &[read(4, 2, 1, s)]);
    assert_eq!(
        r,
        Err(ReadError::Failed {
            tag: 4,
            kind: ErrorKind::Io
        })
    );
    assert!(arena.bytes(s).unwrap().iter().all(|&b| b == 0xAB));
    let c = f.counters();
    assert_eq!(
        (c.faults.read_errors, c.failed_reads, c.completions),
        (1, 1, 1)
    );
}

proptest! {
    /// A bit flip changes exactly one bit of the delivered copy and never
    /// the medium.
    #[test]
    fn bit_flips_hit_one_bit_of_the_copy(seed in any::<u64>(), block in 0..BLOCKS - 4, blocks in 1u32..=4) {
        let plan = FaultPlan { seed, bit_flip_ppm: 1_000_000, ..FaultPlan::none() };
        let mut f = flash(&Profile::UFS40, plan);
        let medium = f.storage().to_vec();
        let mut mem = vec![0u8; DRAM];
        let mut arena = SliceArena::new(&mut mem);
        let s = io_slot(&mut arena, blocks as usize * B);
        f.read_blocking(&mut arena, &[read(0, block, blocks, s)]).unwrap();
        let at = block as usize * B;
        let want = &medium[at..at + blocks as usize * B];
        let flipped: u32 = arena
            .bytes(s)
            .unwrap()
            .iter()
            .zip(want)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        prop_assert_eq!(flipped, 1);
        prop_assert_eq!(f.storage(), &medium[..]);
        prop_assert_eq!(f.counters().faults.bit_flips, 1);
    }
}

// ---------------------------------------------------------------------------
// Writes, torn writes and power loss
// ---------------------------------------------------------------------------

#[test]
fn writes_are_validated_and_counted() {
    let mut f = flash(&Profile::UFS31, FaultPlan::none());
    assert_eq!(f.write(1, &[0; B]), Err(ErrorKind::Misaligned));
    assert_eq!(f.write(0, &[0; 100]), Err(ErrorKind::Misaligned));
    assert_eq!(f.write(0, &[]), Err(ErrorKind::Misaligned));
    assert_eq!(
        f.write(BLOCKS * B as u64, &[0; B]),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(
        f.write(u64::MAX - 4095, &[0; B]),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(f.counters(), Counters::default());
    let data = pattern(3 * B, 77);
    f.write(2 * B as u64, &data).unwrap();
    f.sync().unwrap();
    assert_eq!(&f.storage()[2 * B..5 * B], &data[..]);
    let c = f.counters();
    assert_eq!(
        (c.write_commands, c.bytes_written, c.syncs),
        (1, 3 * B as u64, 1)
    );
    assert_eq!(c.virtual_ns, 0, "writes are not priced by the read model");
}

/// With volatile writes, blocks written since the last sync survive a
/// power loss or not, block by block and by seed; synced blocks always do.
/// Without them every completed write survives.
#[test]
fn volatile_writes_lose_a_seeded_subset_of_unsynced_blocks() {
    let old = pattern(8 * B, 1);
    let new = pattern(8 * B, 2);
    let run = |volatile_writes: bool, seed: u64| {
        let plan = FaultPlan {
            seed,
            volatile_writes,
            // The third write (one block) is where the power goes.
            power_loss_after_bytes: Some(16 * B as u64 + 1),
            ..FaultPlan::none()
        };
        let mut f = flash(&Profile::UFS31, plan);
        f.write(0, &old).unwrap();
        f.sync().unwrap();
        f.write(0, &new).unwrap();
        // Reads see the cached writes.
        assert_eq!(&f.storage()[..8 * B], &new[..]);
        assert_eq!(f.write(8 * B as u64, &[7; B]), Err(ErrorKind::PowerLoss));
        f.power_cycle();
        (0..8)
            .map(|b| {
                let got = &f.storage()[b * B..(b + 1) * B];
                if got == &new[b * B..(b + 1) * B] {
                    true
                } else {
                    assert_eq!(got, &old[b * B..(b + 1) * B], "block {b} is old or new");
                    false
                }
            })
            .collect::<Vec<bool>>()
    };
    for seed in 0..8 {
        assert!(run(false, seed).iter().all(|&kept| kept));
    }
    let outcomes: Vec<Vec<bool>> = (0..8).map(|seed| run(true, seed)).collect();
    let kept: usize = outcomes.iter().flatten().filter(|&&k| k).count();
    assert!(
        kept > 0 && kept < 64,
        "some blocks kept, some lost: {kept} of 64"
    );
    assert_ne!(outcomes[0], outcomes[1], "the seed picks the lost blocks");
    assert_eq!(outcomes[3], run(true, 3), "and replays");
    // A sync makes everything before it durable.
    let plan = FaultPlan {
        volatile_writes: true,
        power_loss_after_bytes: Some(8 * B as u64 + 1),
        ..FaultPlan::none()
    };
    let mut f = flash(&Profile::UFS31, plan);
    f.write(0, &new).unwrap();
    f.sync().unwrap();
    assert_eq!(f.write(8 * B as u64, &[7; B]), Err(ErrorKind::PowerLoss));
    f.power_cycle();
    assert_eq!(&f.storage()[..8 * B], &new[..]);
}

proptest! {
    /// A torn write persists a prefix of whole blocks, never the whole write,
    /// reports `Io`, and counts exactly the persisted bytes.
    #[test]
    fn torn_writes_keep_a_block_prefix(seed in any::<u64>(), block in 0..BLOCKS - 8, blocks in 1usize..=8) {
        let plan = FaultPlan { seed, torn_write_ppm: 1_000_000, ..FaultPlan::none() };
        let mut f = flash(&Profile::EMMC51, plan);
        let old = f.storage().to_vec();
        let new = pattern(blocks * B, seed ^ 1);
        let at = block as usize * B;
        prop_assert_eq!(f.write(at as u64, &new), Err(ErrorKind::Io));
        let now = f.storage();
        let kept = (0..=blocks)
            .rev()
            .find(|&k| now[at..at + k * B] == new[..k * B])
            .unwrap_or_default();
        prop_assert!(kept < blocks, "a torn write never persists everything");
        prop_assert_eq!(&now[at + kept * B..at + blocks * B], &old[at + kept * B..at + blocks * B]);
        prop_assert_eq!(&now[..at], &old[..at]);
        prop_assert_eq!(&now[at + blocks * B..], &old[at + blocks * B..]);
        let c = f.counters();
        prop_assert_eq!(c.faults.torn_writes, 1);
        prop_assert_eq!(c.write_commands, 1);
        // `kept` is found by content, which can only overestimate when new
        // and old agree on a whole block (they are independent patterns).
        prop_assert_eq!(c.bytes_written, (kept * B) as u64);
        // The device stays usable.
        prop_assert!(f.is_powered());
    }

    /// Power loss after N bytes: exactly the first N bytes written persist
    /// (byte-granular), the write that reaches N fails with PowerLoss, every
    /// later command fails the same way until `power_cycle`, and then the
    /// device works again with what had persisted.
    #[test]
    fn power_loss_keeps_exactly_n_bytes(limit in 0u64..(6 * B as u64), seed in any::<u64>()) {
        let plan = FaultPlan { seed, power_loss_after_bytes: Some(limit), ..FaultPlan::none() };
        let mut f = flash(&Profile::DISK, plan);
        let old = f.storage().to_vec();
        let mut mem = vec![0u8; DRAM];
        let mut arena = SliceArena::new(&mut mem);
        let queued = io_slot(&mut arena, B);
        f.submit(&mut arena, &[read(1, 40, 1, queued)]).unwrap();

        // Two 3-block writes: 6 blocks in all, more than `limit`.
        let first = pattern(3 * B, 1);
        let second = pattern(3 * B, 2);
        let mut written = 0usize;
        let mut lost = false;
        for (i, data) in [&first, &second].into_iter().enumerate() {
            let at = (10 + 10 * i) * B;
            let result = f.write(at as u64, data);
            let room = (limit as usize).saturating_sub(written);
            if data.len() >= room {
                prop_assert_eq!(result, Err(ErrorKind::PowerLoss));
                prop_assert_eq!(&f.storage()[at..at + room], &data[..room]);
                prop_assert_eq!(&f.storage()[at + room..at + data.len()], &old[at + room..at + data.len()]);
                written += room;
                lost = true;
                break;
            }
            prop_assert_eq!(result, Ok(()));
            written += data.len();
        }
        prop_assert!(lost);
        prop_assert_eq!(written as u64, limit);
        prop_assert_eq!(f.counters().bytes_written, limit);
        prop_assert_eq!(f.counters().faults.power_losses, 1);
        prop_assert!(!f.is_powered());

        // Everything fails while the power is out; the queued read stays
        // outstanding so a caller waiting on it sees the failure.
        let persisted = f.storage().to_vec();
        let fresh = io_slot(&mut arena, B);
        prop_assert_eq!(f.submit(&mut arena, &[read(2, 0, 1, fresh)]), Err(ErrorKind::PowerLoss));
        let mut done = [Completion::EMPTY; 4];
        prop_assert_eq!(f.complete(&mut arena, &mut done), Err(ErrorKind::PowerLoss));
        prop_assert_eq!(f.write(0, &[1; B]), Err(ErrorKind::PowerLoss));
        prop_assert_eq!(f.sync(), Err(ErrorKind::PowerLoss));
        prop_assert_eq!(f.in_flight(), 1);
        prop_assert_eq!(
            f.read_blocking(&mut arena, &[]),
            Err(ReadError::Device(ErrorKind::PowerLoss))
        );
        prop_assert_eq!(f.storage(), &persisted[..]);

        // Power comes back: the lost read is gone, the medium is as it was,
        // and the plan's power loss does not fire again.
        f.power_cycle();
        prop_assert!(f.is_powered());
        prop_assert_eq!(f.in_flight(), 0);
        prop_assert_eq!(f.storage(), &persisted[..]);
        f.write(0, &[1; 4 * B]).unwrap();
        f.sync().unwrap();
        f.read_blocking(&mut arena, &[read(3, 0, 1, fresh)]).unwrap();
        prop_assert!(arena.bytes(fresh).unwrap().iter().all(|&b| b == 1));
        prop_assert_eq!(f.counters().faults.power_losses, 1);
    }
}

// ---------------------------------------------------------------------------
// Reproducibility from the seed
// ---------------------------------------------------------------------------

/// One step of a scripted run.
#[derive(Debug, Clone)]
enum Op {
    Submit(Vec<(u64, u32)>),
    Complete(usize),
    Write(u64, u32, u8),
    Sync,
    PowerCycle,
}

/// One completion, with the delivered bytes reduced to a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivered {
    tag: u32,
    status: Result<(), ErrorKind>,
    hash: u64,
}

/// What a step returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Submitted(Result<(), ErrorKind>),
    Completed(Result<Vec<Delivered>, ErrorKind>),
    Wrote(Result<(), ErrorKind>),
    Synced(Result<(), ErrorKind>),
    Cycled,
}

/// Everything observable about a run.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    events: Vec<Event>,
    counters: Counters,
    now_ns: u64,
    medium_hash: u64,
}

fn run(plan: FaultPlan, ops: &[Op]) -> Run {
    let mut f = flash(&Profile::UFS40, plan);
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let mut pending: Vec<(u32, Slot)> = Vec::new();
    let mut tag = 0u32;
    let mut events = Vec::new();
    for op in ops {
        let event = match op {
            Op::Submit(batch) => {
                let mut reqs = Vec::new();
                for &(block, blocks) in batch {
                    match arena.alloc(blocks as usize * B, B, SlotKind::IoBuffer) {
                        Ok(slot) => reqs.push(read(tag, block, blocks, slot)),
                        Err(_) => break,
                    }
                    tag += 1;
                }
                let r = f.submit(&mut arena, &reqs);
                for q in &reqs {
                    if r.is_ok() {
                        pending.push((q.tag, q.dest));
                    } else {
                        arena.free(q.dest).unwrap();
                    }
                }
                Event::Submitted(r)
            }
            Op::Complete(k) => {
                let mut done = vec![Completion::EMPTY; *k];
                Event::Completed(f.complete(&mut arena, &mut done).map(|n| {
                    done[..n]
                        .iter()
                        .map(|c| {
                            let i = pending.iter().position(|p| p.0 == c.tag).unwrap();
                            let (_, slot) = pending.swap_remove(i);
                            let hash = fnv(arena.bytes(slot).unwrap());
                            arena.free(slot).unwrap();
                            Delivered {
                                tag: c.tag,
                                status: c.status,
                                hash,
                            }
                        })
                        .collect()
                }))
            }
            Op::Write(block, blocks, fill) => {
                let data = vec![*fill; *blocks as usize * B];
                Event::Wrote(f.write(block * B as u64, &data))
            }
            Op::Sync => Event::Synced(f.sync()),
            Op::PowerCycle => {
                f.power_cycle();
                // Reads lost with the power never complete: reclaim their slots.
                for (_, slot) in pending.drain(..) {
                    arena.free(slot).unwrap();
                }
                Event::Cycled
            }
        };
        events.push(event);
    }
    Run {
        events,
        counters: f.counters(),
        now_ns: f.now_ns(),
        medium_hash: fnv(f.storage()),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec((0..BLOCKS, 1u32..=4), 0..6).prop_map(Op::Submit),
        3 => (0usize..10).prop_map(Op::Complete),
        2 => (0..BLOCKS, 1u32..=4, any::<u8>()).prop_map(|(b, n, x)| Op::Write(b, n, x)),
        1 => Just(Op::Sync),
        1 => Just(Op::PowerCycle),
    ]
}

fn noisy(seed: u64, power_loss_after_bytes: Option<u64>) -> FaultPlan {
    FaultPlan {
        seed,
        read_error_ppm: 100_000,
        bit_flip_ppm: 200_000,
        torn_write_ppm: 300_000,
        power_loss_after_bytes,
        spike_ppm: 100_000,
        spike_ns: 1_000_000,
        reorder: true,
        volatile_writes: true,
    }
}

proptest! {
    /// Two devices with the same plan, driven by the same calls, agree on
    /// every result, every delivered byte, every counter, the clock and the
    /// medium.
    #[test]
    fn faults_replay_from_the_seed(
        seed in any::<u64>(),
        power in proptest::option::of(0u64..200_000),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let plan = noisy(seed, power);
        let a = run(plan, &ops);
        let b = run(plan, &ops);
        prop_assert_eq!(a, b);
    }
}

/// A fixed script under different seeds gives different runs: the faults
/// really come from the seed.
#[test]
fn different_seeds_give_different_runs() {
    let mut ops = Vec::new();
    for i in 0..40u64 {
        ops.push(Op::Submit(vec![
            (i % 60, 1),
            ((i * 7) % 60, 2),
            ((i * 13) % 60, 3),
        ]));
        ops.push(Op::Complete(2));
        ops.push(Op::Write((i * 5) % 56, 4, i as u8));
        ops.push(Op::Complete(8));
    }
    let runs: Vec<Run> = (1..=6u64).map(|s| run(noisy(s, None), &ops)).collect();
    for (i, a) in runs.iter().enumerate() {
        assert!(a.counters.faults.total() > 0);
        for b in &runs[i + 1..] {
            assert_ne!(a.events, b.events);
            assert_ne!(a.counters, b.counters);
        }
    }
    // And the fault-free plan is unaffected by its seed.
    let quiet = |seed| {
        run(
            FaultPlan {
                seed,
                ..FaultPlan::none()
            },
            &ops,
        )
    };
    assert_eq!(quiet(1), quiet(2));
}

/// A geometry with a zero block size or queue depth refuses requests
/// instead of panicking.
#[test]
fn degenerate_geometry_refuses_without_panicking() {
    let cost = CostModel {
        command_ns: 0,
        bytes_per_sec: 0,
        queue_depth: 0,
    };
    let zero_block = Geometry {
        block_size: 0,
        capacity: 0,
        max_transfer: 0,
        queue_depth: 4,
    };
    let mut f = FakeFlash::with_model(vec![0u8; 4 * B], zero_block, cost, FaultPlan::none());
    let mut mem = vec![0u8; DRAM];
    let mut arena = SliceArena::new(&mut mem);
    let s = io_slot(&mut arena, B);
    assert_eq!(
        f.submit(&mut arena, &[read(0, 0, 1, s)]),
        Err(ErrorKind::Misaligned)
    );
    assert_eq!(f.write(0, &[0; B]), Err(ErrorKind::Misaligned));

    let zero_queue = Geometry {
        block_size: 4096,
        capacity: 0,
        max_transfer: 4096,
        queue_depth: 0,
    };
    let mut f = FakeFlash::with_model(vec![0u8; 4 * B], zero_queue, cost, FaultPlan::none());
    assert_eq!(
        f.submit(&mut arena, &[read(0, 0, 1, s)]),
        Err(ErrorKind::QueueFull)
    );
    assert!(format!("{f:?}").contains("FakeFlash"));
}

/// A device without a medium charges and counts exactly like one with a
/// medium, and leaves destinations alone.
#[test]
fn timing_only_matches_a_real_medium_in_time_and_counts() {
    let profile = &Profile::UFS40;
    let mut real = FakeFlash::new(vec![7u8; 1 << 20], profile, FaultPlan::none());
    let geometry = Geometry {
        capacity: 1 << 40,
        ..profile.geometry
    };
    let mut hollow = FakeFlash::timing_only(geometry, profile.cost, FaultPlan::none());
    assert_eq!(hollow.geometry().capacity, 1 << 40);
    let mut mem = vec![0u8; 64 << 10];
    let mut arena = SliceArena::new(&mut mem);
    let slot = arena.alloc(32 << 10, 4096, SlotKind::IoBuffer).unwrap();
    let reads: Vec<ReadRequest> = (0..8)
        .map(|i| ReadRequest {
            tag: i,
            offset: u64::from(i) * 8192,
            len: 4096,
            dest: slot,
            dest_offset: i as usize * 4096,
        })
        .collect();
    real.read_blocking(&mut arena, &reads).unwrap();
    arena.bytes_mut(slot).unwrap().fill(0);
    hollow.read_blocking(&mut arena, &reads).unwrap();
    assert_eq!(real.counters(), hollow.counters());
    assert!(arena.bytes(slot).unwrap().iter().all(|&b| b == 0));
    // Far offsets are fine without a medium; past the capacity is not.
    let far = ReadRequest {
        offset: (1 << 40) - 4096,
        ..reads[0]
    };
    hollow.read_blocking(&mut arena, &[far]).unwrap();
    let past = ReadRequest {
        offset: 1 << 40,
        ..reads[0]
    };
    assert!(hollow.read_blocking(&mut arena, &[past]).is_err());
    hollow.write(0, &[1u8; 4096]).unwrap();
    assert_eq!(hollow.counters().bytes_written, 4096);
}
