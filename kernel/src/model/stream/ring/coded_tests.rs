//! Coded units through the ring, one unit or a chain of several (each
//! piece through `Compute::decode_pieces`), the read padded to whole
//! device blocks: handed out decoded, from the decode slot; and, when
//! nothing checks the reads, a unit whose bytes were flipped fails its own
//! CRC and is read again, so what is handed out is the decoded blocks or
//! an error, never other bytes.

use std::vec::Vec;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::{DramArena, SlotKind};
use crate::codec::{unit_crc, CRC_AT, MAGIC, VERSION};
use crate::flash::testing::RamFlash;
use crate::flash::{FaultInjector, Faults, Geometry};
use crate::model::tests::naive::Naive;

const B: usize = 512;
const BLOCKS: usize = 100;

/// `BLOCKS` Q4_1 blocks and a chain of `units` units storing them with
/// raw sections (the encoder is `lode-pack`'s; the ring only needs valid
/// units).
fn blocks_and_unit(units: usize) -> (Vec<u8>, Vec<u8>) {
    let blocks: Vec<u8> = (0..BLOCKS * 20).map(|i| (i * 13 % 253) as u8).collect();
    let mut chain = Vec::new();
    let mut start = 0;
    for i in 1..=units {
        let end = BLOCKS * i / units;
        chain.extend(unit_of(&blocks[start * 20..end * 20]));
        start = end;
    }
    (blocks, chain)
}

/// One unit of the Q4_1 blocks `blocks`, every section raw.
fn unit_of(blocks: &[u8]) -> Vec<u8> {
    let n = blocks.len() / 20;
    let mut u = MAGIC.to_vec();
    u.extend_from_slice(&[VERSION, 3, 3, 0]);
    u.extend_from_slice(&(n as u32).to_le_bytes());
    u.extend_from_slice(&[0; 8]);
    for (offset, width) in [(0, 2), (2, 2), (4, 16)] {
        u.extend_from_slice(&[0, width as u8, 0, 0]);
        u.extend_from_slice(&((n * width) as u32).to_le_bytes());
        for b in blocks.chunks_exact(20) {
            u.extend_from_slice(&b[offset..offset + width]);
        }
    }
    let len = u.len() as u32;
    u[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = unit_crc(&u);
    u[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    u
}

fn device(unit: &[u8]) -> RamFlash {
    let mut data = std::vec![0u8; 16 * 1024];
    data[B..B + unit.len()].copy_from_slice(unit);
    RamFlash::new(
        data,
        Geometry {
            block_size: B as u32,
            capacity: 16 * 1024,
            max_transfer: 1024,
            queue_depth: 8,
        },
    )
}

fn no_clock() -> u64 {
    0
}

/// A ring of one coded unit at block 1, no checks, its decode slot.
fn ring<D: FlashDevice>(dev: D, arena: &mut VecArena, unit_len: usize) -> Ring<D> {
    let slots: Vec<Slot> = (0..2)
        .map(|_| arena.alloc(4096, B, SlotKind::IoBuffer).unwrap())
        .collect();
    let u = Unit {
        decoded: BLOCKS * 20,
        ..Unit::whole(B as u64, unit_len, B)
    };
    let decode = arena.alloc(4096, B, SlotKind::IoBuffer).unwrap();
    Ring::new(dev, &slots, &[u], None, no_clock, None)
        .unwrap()
        .decode_into(decode)
}

#[test]
fn a_coded_unit_is_handed_out_decoded() {
    for units in [1, 2, 3] {
        let (blocks, unit) = blocks_and_unit(units);
        // Not a whole number of device blocks: the read brings padding.
        assert!(!unit.len().is_multiple_of(B), "{units}");
        let mut arena = VecArena::new(1 << 16);
        let mut r = ring(device(&unit), &mut arena, unit.len());
        for _ in 0..3 {
            r.begin_pass(&mut arena, true).unwrap();
            let (slot, skip) = r.acquire(&mut arena, 0, &mut Naive).unwrap();
            assert_eq!(skip, 0);
            assert_eq!(&arena.bytes(slot).unwrap()[..blocks.len()], &blocks[..]);
        }
    }
}

#[test]
fn flipped_coded_bytes_are_read_again_never_handed_out() {
    let (mut ok, mut errors) = (0, 0);
    for seed in 0..16u64 {
        let (blocks, unit) = blocks_and_unit(1 + seed as usize % 2);
        let mut arena = VecArena::new(1 << 16);
        let faults = Faults {
            seed,
            bit_flip_ppm: 400_000,
            ..Faults::none()
        };
        let dev: FaultInjector<_> = FaultInjector::new(device(&unit), faults);
        let mut r = ring(dev, &mut arena, unit.len());
        for _ in 0..4 {
            r.begin_pass(&mut arena, true).unwrap();
            match r.acquire(&mut arena, 0, &mut Naive) {
                Ok((slot, _)) => {
                    assert_eq!(&arena.bytes(slot).unwrap()[..blocks.len()], &blocks[..]);
                    ok += 1;
                }
                Err(EvalError::Corrupt { attempts, .. }) => {
                    assert_eq!(attempts, crate::limits::MAX_READ_ATTEMPTS);
                    errors += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    assert!(ok > 0 && errors > 0, "{ok} {errors}");
}

/// A decoded unit gives its read slot back at once: with two read slots
/// and three coded units, the third unit's read starts when the first is
/// decoded, not when the second is taken; taking the last unit again is
/// served from the decode slot without reading it again.
#[test]
fn a_decoded_unit_frees_its_read_slot() {
    let (blocks, unit) = blocks_and_unit(2);
    let at = [B, 8 * B, 15 * B];
    let mut data = std::vec![0u8; 16 * 1024];
    for &a in &at {
        data[a..a + unit.len()].copy_from_slice(&unit);
    }
    let geometry = Geometry {
        block_size: B as u32,
        capacity: 16 * 1024,
        max_transfer: 4096,
        queue_depth: 8,
    };
    let mut arena = VecArena::new(1 << 16);
    let slots: Vec<Slot> = (0..2)
        .map(|_| arena.alloc(4096, B, SlotKind::IoBuffer).unwrap())
        .collect();
    let units: Vec<Unit> = at
        .iter()
        .map(|&a| Unit {
            decoded: BLOCKS * 20,
            ..Unit::whole(a as u64, unit.len(), B)
        })
        .collect();
    let decode = arena.alloc(4096, B, SlotKind::IoBuffer).unwrap();
    let mut r = Ring::new(
        RamFlash::new(data, geometry),
        &slots,
        &units,
        None,
        no_clock,
        None,
    )
    .unwrap()
    .decode_into(decode);
    r.begin_pass(&mut arena, true).unwrap();
    assert_eq!(r.stats().units, 2, "two slots, two reads");
    let (slot, _) = r.acquire(&mut arena, 0, &mut Naive).unwrap();
    assert_eq!(slot, decode);
    assert_eq!(
        r.stats().units,
        3,
        "the third read started at the first decode"
    );
    for u in 1..3 {
        let (slot, _) = r.acquire(&mut arena, u, &mut Naive).unwrap();
        assert_eq!(&arena.bytes(slot).unwrap()[..blocks.len()], &blocks[..]);
    }
    let before = r.stats();
    let (slot, _) = r.acquire(&mut arena, 2, &mut Naive).unwrap();
    assert_eq!(&arena.bytes(slot).unwrap()[..blocks.len()], &blocks[..]);
    assert_eq!(
        (r.stats().units, r.stats().bytes),
        (before.units, before.bytes)
    );
}
