use core::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::SlotKind;
use crate::flash::testing::RamFlash;
use crate::flash::Error as _;

const B: u64 = 512;
const BLOCKS: u64 = 64;

fn device() -> RamFlash {
    let data: Vec<u8> = (0..(BLOCKS * B) as usize)
        .map(|i| (i * 13 + i / 512) as u8)
        .collect();
    let geo = Geometry {
        block_size: B as u32,
        capacity: BLOCKS * B,
        max_transfer: 8 * B as u32,
        queue_depth: 64,
    };
    RamFlash::new(data, geo)
}

/// One read of `blocks` blocks at block `block`, into a fresh slot filled
/// with 0xEE.
fn read(tag: u32, block: u64, blocks: u64, arena: &mut VecArena) -> ReadRequest {
    let len = (blocks * B) as usize;
    let dest = arena.alloc(len, B as usize, SlotKind::IoBuffer).unwrap();
    arena.bytes_mut(dest).unwrap().fill(0xEE);
    ReadRequest {
        tag,
        offset: block * B,
        len: len as u32,
        dest,
        dest_offset: 0,
    }
}

/// Submit `reads` and collect every completion, one at a time.
fn run<D: FlashDevice>(
    dev: &mut D,
    arena: &mut VecArena,
    reads: &[ReadRequest],
) -> Vec<Completion> {
    dev.submit(arena, reads).unwrap();
    let mut out = Vec::new();
    let mut one = [Completion::EMPTY; 1];
    while dev.in_flight() > 0 {
        let n = dev.complete(arena, &mut one).unwrap();
        assert_eq!(n, 1);
        out.push(one[0]);
    }
    out
}

fn expect(dev: &RamFlash, r: &ReadRequest) -> Vec<u8> {
    dev.data[r.offset as usize..][..r.len as usize].to_vec()
}

#[test]
fn without_faults_it_is_transparent_and_keeps_repeated_tags() {
    let mut f: FaultInjector<_> = FaultInjector::new(device(), Faults::none());
    let mut arena = VecArena::new(1 << 16);
    // The caller's tags repeat; the injector's own tags do not.
    let reads: Vec<ReadRequest> = (0..6).map(|i| read(7, i * 3, 2, &mut arena)).collect();
    let done = run(&mut f, &mut arena, &reads);
    assert_eq!(done.len(), 6);
    assert!(done.iter().all(|c| *c
        == Completion {
            tag: 7,
            status: Ok(())
        }));
    for r in &reads {
        assert_eq!(arena.bytes(r.dest).unwrap(), &expect(f.inner(), r)[..]);
    }
    assert_eq!(f.counts(), FaultCounts::default());
    assert_eq!(f.geometry().queue_depth, FAULT_BATCH as u16);
}

#[test]
fn bad_extents_fail_overlapping_reads_and_leave_their_destinations() {
    let mut f: FaultInjector<_> = FaultInjector::new(device(), Faults::none());
    assert!(f.fail_reads(10 * B + 100, 1));
    let mut arena = VecArena::new(1 << 16);
    let reads = [
        read(1, 8, 2, &mut arena),  // blocks 8..10: clear of byte 10*B+100
        read(2, 9, 2, &mut arena),  // blocks 9..11: overlaps
        read(3, 10, 1, &mut arena), // block 10: overlaps
    ];
    let mut done = run(&mut f, &mut arena, &reads);
    done.sort_by_key(|c| c.tag);
    let statuses: Vec<_> = done.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [Ok(()), Err(ErrorKind::Io), Err(ErrorKind::Io)]);
    for r in &reads[1..] {
        assert!(arena.bytes(r.dest).unwrap().iter().all(|&b| b == 0xEE));
    }
    assert_eq!(f.counts().read_errors, 2);
    assert_eq!(f.inner().commands, 1, "failed reads are not forwarded");
    f.heal();
    assert_eq!(run(&mut f, &mut arena, &reads[1..2])[0].status, Ok(()));
    let full = (0..MAX_BAD_EXTENTS).all(|i| f.fail_reads(i as u64 * B, B));
    assert!(full && !f.fail_reads(0, B));
}

#[test]
fn a_certain_read_error_completes_without_the_device() {
    let faults = Faults {
        read_error_ppm: 1_000_000,
        ..Faults::none()
    };
    let mut f: FaultInjector<_> = FaultInjector::new(device(), faults);
    let mut arena = VecArena::new(1 << 16);
    let reads = [read(4, 0, 1, &mut arena), read(5, 1, 1, &mut arena)];
    f.submit(&mut arena, &reads).unwrap();
    assert_eq!(f.in_flight(), 2);
    assert_eq!(f.inner().in_flight(), 0);
    let err = f.read_blocking(&mut arena, &reads[..1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(f.in_flight(), 0);
    assert_eq!(f.counts().read_errors, 3);
}

#[test]
fn bit_flips_change_exactly_one_bit_of_the_copy() {
    for seed in 0..20 {
        let faults = Faults {
            seed,
            bit_flip_ppm: 1_000_000,
            ..Faults::none()
        };
        let mut f: FaultInjector<_> = FaultInjector::new(device(), faults);
        let mut arena = VecArena::new(1 << 16);
        let reads = [read(0, seed, 1, &mut arena), read(1, 40, 3, &mut arena)];
        let done = run(&mut f, &mut arena, &reads);
        assert!(done.iter().all(|c| c.status.is_ok()));
        for r in &reads {
            let want = expect(f.inner(), r);
            let got = arena.bytes(r.dest).unwrap();
            let bits: u32 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(bits, 1, "seed {seed}");
        }
        assert_eq!(f.counts().bit_flips, 2);
        // The medium itself is intact.
        assert_eq!(f.inner().data, device().data);
    }
}

static SLEPT: AtomicU64 = AtomicU64::new(0);

fn record(ns: u64) {
    SLEPT.fetch_add(ns, Ordering::SeqCst);
}

#[test]
fn spikes_add_virtual_time_and_call_the_sleeper_once_per_collection() {
    let faults = Faults {
        spike_ppm: 1_000_000,
        spike_ns: 5_000,
        ..Faults::none()
    };
    let mut f: FaultInjector<_> = FaultInjector::new(device(), faults).with_sleep(record);
    let mut arena = VecArena::new(1 << 16);
    let reads: Vec<ReadRequest> = (0..4u32)
        .map(|i| read(i, u64::from(i), 1, &mut arena))
        .collect();
    f.submit(&mut arena, &reads).unwrap();
    let mut done = [Completion::EMPTY; 4];
    assert_eq!(f.complete(&mut arena, &mut done).unwrap(), 4);
    let c = f.counts();
    assert_eq!((c.latency_spikes, c.added_ns), (4, 20_000));
    // Four reads in flight together stall once, by the longest spike.
    assert_eq!(SLEPT.load(Ordering::SeqCst), 5_000);
}

/// The faults depend on the seed and the submissions, not on the order in
/// which the device completes the reads.
#[test]
fn faults_replay_from_the_seed_whatever_the_completion_order() {
    let faults = Faults {
        seed: 99,
        read_error_ppm: 300_000,
        bit_flip_ppm: 500_000,
        ..Faults::none()
    };
    let outcome = |lifo: bool| {
        let mut dev = device();
        dev.lifo = lifo;
        let mut f: FaultInjector<_> = FaultInjector::new(dev, faults);
        let mut arena = VecArena::new(1 << 16);
        let reads: Vec<ReadRequest> = (0..16u32)
            .map(|i| read(i, u64::from(i) * 2, 2, &mut arena))
            .collect();
        let mut done = run(&mut f, &mut arena, &reads);
        done.sort_by_key(|c| c.tag);
        let bytes: Vec<Vec<u8>> = reads
            .iter()
            .map(|r| arena.bytes(r.dest).unwrap().to_vec())
            .collect();
        (done, bytes, f.counts())
    };
    let (a, b) = (outcome(true), outcome(false));
    assert_eq!(a, b);
    assert!(a.2.read_errors > 0 && a.2.bit_flips > 0, "{:?}", a.2);
}

#[test]
fn admission_comes_before_any_fault() {
    let faults = Faults {
        read_error_ppm: 1_000_000,
        write_error_ppm: 1_000_000,
        ..Faults::none()
    };
    let mut f: FaultInjector<_, 4> = FaultInjector::new(device(), faults);
    assert_eq!(f.geometry().queue_depth, 4);
    let mut arena = VecArena::new(1 << 16);
    let ok = read(0, 0, 1, &mut arena);
    let bad = ReadRequest { offset: 1, ..ok };
    assert_eq!(
        f.submit(&mut arena, &[ok, bad]).unwrap_err(),
        AdapterError::Adapter(ErrorKind::Misaligned)
    );
    assert_eq!(
        f.submit(&mut arena, &[ok; 5]).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert_eq!(f.counts(), FaultCounts::default());
    // Held failures count against the queue.
    f.submit(&mut arena, &[ok; 4]).unwrap();
    assert_eq!(
        f.submit(&mut arena, &[ok]).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert_eq!(
        f.write(1, &[0; B as usize]).unwrap_err().kind(),
        ErrorKind::Misaligned
    );
    let before = f.inner().data.clone();
    assert_eq!(
        f.write(0, &[1; B as usize]).unwrap_err(),
        AdapterError::Adapter(ErrorKind::Io)
    );
    assert_eq!(f.inner().data, before);
    assert_eq!(f.counts().write_errors, 1);
    f.set_faults(Faults::none());
    f.write(0, &[1; B as usize]).unwrap();
    f.sync().unwrap();
    assert_eq!(f.inner().data[..B as usize], [1; B as usize]);
    assert_eq!(f.into_inner().syncs, 1);
}

#[test]
fn it_stacks_with_a_window_over_a_lent_device() {
    let mut dev = device();
    let mut arena = VecArena::new(1 << 16);
    let r = read(3, 1, 1, &mut arena);
    {
        let window: crate::flash::Window<_> =
            crate::flash::Window::new(&mut dev, 8 * B, 8 * B).unwrap();
        let mut f: FaultInjector<_> = FaultInjector::new(window, Faults::none());
        assert!(f.fail_reads(B, B));
        let err = f.read_blocking(&mut arena, &[r]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        f.heal();
        f.read_blocking(&mut arena, &[r]).unwrap();
    }
    assert_eq!(
        arena.bytes(r.dest).unwrap(),
        &dev.data[9 * B as usize..10 * B as usize]
    );
}
