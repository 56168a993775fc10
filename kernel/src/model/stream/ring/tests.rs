//! The ring's checks: what it hands out is what was verified, or an error.

use std::vec::Vec;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::{DramArena, SlotKind};
use crate::flash::testing::RamFlash;
use crate::flash::{ErrorKind as FlashKind, FaultInjector, Faults, Geometry};
use crate::model::tests::naive::Naive;

const B: usize = 512;
const LEN: usize = 64 * 1024;

fn clean() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn device(data: Vec<u8>) -> RamFlash {
    RamFlash::new(
        data,
        Geometry {
            block_size: B as u32,
            capacity: LEN as u64,
            max_transfer: 2048,
            queue_depth: 8,
        },
    )
}

fn crc(b: &[u8]) -> u32 {
    lode_formats::image::crc32c(b)
}

/// Checks of the clean bytes, recorded through a scratch slot.
fn checks(arena: &mut VecArena) -> BlockChecks {
    let c = BlockChecks::new(arena, 0, LEN as u64, B, crc).unwrap();
    let s = arena.alloc(LEN, B, SlotKind::IoBuffer).unwrap();
    arena.bytes_mut(s).unwrap().copy_from_slice(&clean());
    c.record(arena, 0, s, LEN).unwrap();
    arena.free(s).unwrap();
    c
}

fn units() -> [Unit; 4] {
    let u = |start: u64, len: usize| Unit {
        start,
        len,
        skip: 0,
        head: false,
        decoded: 0,
    };
    [u(0, 4096), u(8192, 8192), u(20480, 2048), u(32768, 16384)]
}

fn no_clock() -> u64 {
    0
}

fn ring<D: FlashDevice>(dev: D, arena: &mut VecArena, checks: BlockChecks) -> Ring<D> {
    let slots: Vec<Slot> = (0..2)
        .map(|_| arena.alloc(16384, B, SlotKind::IoBuffer).unwrap())
        .collect();
    let row = arena.alloc(1024, B, SlotKind::IoBuffer).unwrap();
    Ring::new(dev, &slots, &units(), Some(row), no_clock, Some(checks)).unwrap()
}

/// Flipped bits and failed reads at high rates: every unit and row handed
/// out holds exactly the clean bytes, and a unit that cannot be read
/// cleanly in three tries is an error, never data.
#[test]
fn faulty_reads_are_retried_and_nothing_unverified_is_handed_out() {
    let want = clean();
    let (mut ok, mut errors, mut retries) = (0, 0, 0);
    for seed in 0..20u64 {
        let mut arena = VecArena::new(1 << 20);
        let c = checks(&mut arena);
        let faults = Faults {
            seed,
            bit_flip_ppm: 300_000,
            read_error_ppm: 100_000,
            ..Faults::none()
        };
        let dev: FaultInjector<RamFlash> = FaultInjector::new(device(clean()), faults);
        let mut r = ring(dev, &mut arena, c);
        for _pass in 0..4 {
            r.begin_pass(&mut arena, true).unwrap();
            for (i, u) in units().iter().enumerate() {
                match r.acquire(&mut arena, i, &mut Naive) {
                    Ok((slot, _)) => {
                        let got = &arena.bytes(slot).unwrap()[..u.len];
                        assert_eq!(got, &want[u.start as usize..u.start as usize + u.len]);
                        ok += 1;
                    }
                    Err(e) => {
                        assert!(
                            matches!(
                                e,
                                EvalError::Corrupt { attempts: 3, .. }
                                    | EvalError::Read { attempts: 3, .. }
                            ),
                            "{e:?}"
                        );
                        errors += 1;
                        r.quiesce(&mut arena).unwrap();
                        break;
                    }
                }
            }
            match r.read_row(&mut arena, 4096, 1024, &mut Naive) {
                Ok(slot) => assert_eq!(&arena.bytes(slot).unwrap()[..1024], &want[4096..5120]),
                Err(e) => assert!(matches!(
                    e,
                    EvalError::Corrupt { attempts: 3, .. } | EvalError::Read { attempts: 3, .. }
                )),
            }
        }
        retries += r.stats().retries;
        r.quiesce(&mut arena).unwrap();
    }
    assert!(
        ok > 100 && retries > 50,
        "ok {ok}, errors {errors}, retries {retries}"
    );
}

/// Bytes that stay wrong on the medium: the unit fails its check three
/// times and the error names the first bad block; the units before it and
/// the next pass's clean units are still served.
#[test]
fn a_block_changed_on_the_medium_stops_with_its_offset() {
    let mut arena = VecArena::new(1 << 20);
    let c = checks(&mut arena);
    let mut data = clean();
    data[8192 + 3000] ^= 0x04;
    let mut r = ring(device(data), &mut arena, c);
    r.begin_pass(&mut arena, true).unwrap();
    r.acquire(&mut arena, 0, &mut Naive).unwrap();
    assert_eq!(
        r.acquire(&mut arena, 1, &mut Naive).unwrap_err(),
        EvalError::Corrupt {
            offset: 8192 + 2560,
            attempts: 3
        }
    );
    assert_eq!(r.stats().retries, 2);
    r.quiesce(&mut arena).unwrap();
    r.begin_pass(&mut arena, true).unwrap();
    r.acquire(&mut arena, 0, &mut Naive).unwrap();
}

/// A read that fails every time is an error after three tries; one that
/// fails once is served from the second.
#[test]
fn read_errors_are_retried_up_to_the_limit() {
    let mut arena = VecArena::new(1 << 20);
    let c = checks(&mut arena);
    let mut dev = device(clean());
    dev.fail_at = Some(20480);
    let mut r = ring(dev, &mut arena, c);
    r.begin_pass(&mut arena, true).unwrap();
    r.acquire(&mut arena, 0, &mut Naive).unwrap();
    r.acquire(&mut arena, 1, &mut Naive).unwrap();
    assert_eq!(
        r.acquire(&mut arena, 2, &mut Naive).unwrap_err(),
        EvalError::Read {
            offset: 20480,
            kind: FlashKind::Io,
            attempts: 3
        }
    );
}

/// Reads that land one command at a time: while the caller waits for a
/// unit, its commands that landed are checked, so most of its bytes are
/// checked before its last command lands; a byte changed in one command is
/// still found, with its block.
#[test]
fn commands_are_checked_as_they_land() {
    for (lifo, flip) in [(false, None), (true, None), (false, Some(32768 + 5000))] {
        let mut arena = VecArena::new(1 << 20);
        let c = checks(&mut arena);
        let mut data = clean();
        if let Some(at) = flip {
            data[at] ^= 0x10;
        }
        let mut dev = device(data);
        dev.per_call = 1;
        dev.lifo = lifo;
        let mut r = ring(dev, &mut arena, c);
        r.begin_pass(&mut arena, true).unwrap();
        let mut got = Vec::new();
        for i in 0..units().len() {
            got.push(r.acquire(&mut arena, i, &mut Naive));
        }
        let s = r.stats();
        match flip {
            None => {
                assert!(got.iter().all(Result::is_ok));
                let total: usize = units().iter().map(|u| u.len).sum();
                assert_eq!(s.verified, total as u64);
                if lifo {
                    // Last command first: a unit's first command lands
                    // last, so nothing is checked before the unit is whole.
                    assert_eq!(s.verified_early, 0, "{s:?}");
                } else {
                    // In order: at least half of the bytes of every
                    // command but each unit's last were checked early.
                    assert!(s.verified_early >= (total - 4 * 2048) as u64 / 2, "{s:?}");
                }
            }
            Some(_) => assert_eq!(
                got[3].as_ref().unwrap_err(),
                &EvalError::Corrupt {
                    offset: 32768 + 4608,
                    attempts: 3
                }
            ),
        }
        r.quiesce(&mut arena).unwrap();
    }
}

/// A unit read in several commands is read before a later unit: with a
/// queue of one command, when unit 3 (8 commands, in slot 1) is handed
/// out, the next pass's unit 0 (prefetched into slot 0 when unit 2 left
/// it) has had at most the one command that followed unit 3's last.
#[test]
fn units_are_read_in_schedule_order_whatever_slot_holds_them() {
    let mut arena = VecArena::new(1 << 20);
    let c = checks(&mut arena);
    let mut dev = RamFlash::new(
        clean(),
        Geometry {
            block_size: B as u32,
            capacity: LEN as u64,
            max_transfer: 2048,
            queue_depth: 1,
        },
    );
    dev.lifo = false;
    let mut r = ring(dev, &mut arena, c);
    r.begin_pass(&mut arena, true).unwrap();
    for unit in 0..4 {
        r.acquire(&mut arena, unit, &mut Naive).unwrap();
    }
    // Units 0 to 3 in 2, 4, 1 and 8 commands, then unit 0's first.
    assert!(r.device().commands <= 16, "{}", r.device().commands);
    r.quiesce(&mut arena).unwrap();
}

/// Several rows read together land one after another at their stride,
/// each checked: under flipped bits and failed reads every batch handed
/// out holds the clean bytes, or is an error after three tries.
#[test]
fn rows_read_together_are_each_checked_and_retried() {
    let want = clean();
    let rows = [(4096u64, 1024usize), (0, 512), (30720, 1536)];
    let (mut ok, mut retries) = (0, 0);
    for seed in 0..20u64 {
        let mut arena = VecArena::new(1 << 20);
        let c = checks(&mut arena);
        let faults = Faults {
            seed,
            bit_flip_ppm: 200_000,
            read_error_ppm: 50_000,
            ..Faults::none()
        };
        let dev: FaultInjector<RamFlash> = FaultInjector::new(device(clean()), faults);
        let slots: Vec<Slot> = (0..2)
            .map(|_| arena.alloc(16384, B, SlotKind::IoBuffer).unwrap())
            .collect();
        let row = arena.alloc(3 * 2048, B, SlotKind::IoBuffer).unwrap();
        let mut r = Ring::new(dev, &slots, &units(), Some(row), no_clock, Some(c)).unwrap();
        match r.read_rows(&mut arena, &rows, 2048, &mut Naive) {
            Ok(slot) => {
                let got = arena.bytes(slot).unwrap();
                for (j, &(start, len)) in rows.iter().enumerate() {
                    let s = start as usize;
                    assert_eq!(&got[j * 2048..j * 2048 + len], &want[s..s + len], "row {j}");
                }
                ok += 1;
            }
            Err(e) => assert!(
                matches!(
                    e,
                    EvalError::Corrupt { attempts: 3, .. } | EvalError::Read { attempts: 3, .. }
                ),
                "{e:?}"
            ),
        }
        retries += r.stats().retries;
        // More rows than the slot holds is an error, not a read.
        let four = [(0u64, 512usize); 4];
        assert!(r.read_rows(&mut arena, &four, 2048, &mut Naive).is_err());
        r.quiesce(&mut arena).unwrap();
    }
    assert!(ok > 10 && retries > 5, "ok {ok}, retries {retries}");
}
