//! Paced reads: each batch is done its cost after the one before it (or
//! after its submission when the device was idle), and a completion is
//! seen no sooner, on a test clock that sleeping advances.

use core::cell::Cell;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::{DramArena, SlotKind};
use crate::flash::testing::RamFlash;
use crate::flash::Geometry;

std::thread_local! {
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn clock() -> u64 {
    NOW.with(Cell::get)
}

fn sleep(ns: u64) {
    NOW.with(|n| n.set(n.get() + ns));
}

fn read(tag: u32, offset: u64, dest: crate::arena::Slot) -> ReadRequest {
    ReadRequest {
        tag,
        offset,
        len: 4096,
        dest,
        dest_offset: 0,
    }
}

#[test]
fn batches_complete_one_after_another_at_their_cost() {
    NOW.with(|n| n.set(1_000));
    let data: std::vec::Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let geo = Geometry {
        block_size: 4096,
        capacity: 64 * 1024,
        max_transfer: 64 * 1024,
        queue_depth: 8,
    };
    let mut dev = Paced::new(RamFlash::new(data.clone(), geo), clock, sleep);
    let mut arena = VecArena::new(1 << 16);
    let s = [0, 1, 2].map(|_| arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap());
    let cost = dev.cost_model().batch_ns(1, 4096);
    dev.submit(&mut arena, &[read(1, 0, s[0])]).unwrap();
    dev.submit(&mut arena, &[read(2, 8192, s[1])]).unwrap();
    assert_eq!(dev.in_flight(), 2);
    let mut done = [Completion::EMPTY; 4];
    // The first batch, no sooner than its cost after submission.
    assert_eq!(dev.complete(&mut arena, &mut done).unwrap(), 1);
    assert_eq!((done[0].tag, clock()), (1, 1_000 + cost));
    // The second queued behind it.
    assert_eq!(dev.complete(&mut arena, &mut done).unwrap(), 1);
    assert_eq!((done[0].tag, clock()), (2, 1_000 + 2 * cost));
    assert_eq!(arena.bytes(s[1]).unwrap(), &data[8192..12288]);
    // Idle a while: the next batch starts when submitted.
    sleep(1_000_000);
    let t = clock();
    dev.submit(&mut arena, &[read(3, 4096, s[2])]).unwrap();
    assert_eq!(dev.complete(&mut arena, &mut done).unwrap(), 1);
    assert_eq!((done[0].tag, clock()), (3, t + cost));
    assert_eq!(dev.complete(&mut arena, &mut done).unwrap(), 0);
    assert_eq!(dev.in_flight(), 0);
}
