//! The `FlashDevice` contract, checked on the fake flash and on the file
//! binding over the same bytes: same data for the same reads, the same
//! refusals, and a batch that is refused whole.

use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::{FileFlash, FileFlashOptions};
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::flash::{Completion, Error, ErrorKind, FlashDevice, FlashWrite, ReadRequest};
use lode_tests::TempFile;
use proptest::prelude::*;

const LEN: usize = 1 << 20;

fn medium() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// Read `extents` through `dev` and return the bytes, in extent order.
fn read_all<F: FlashDevice>(dev: &mut F, extents: &[(u64, u32)]) -> Vec<u8> {
    let total: usize = extents.iter().map(|e| e.1 as usize).sum();
    let mut mem = vec![0u8; total + 8192];
    let mut arena = SliceArena::new(&mut mem);
    let slot = arena.alloc(total.max(1), 4096, SlotKind::IoBuffer).unwrap();
    let mut at = 0;
    let reads: Vec<ReadRequest> = extents
        .iter()
        .enumerate()
        .map(|(i, &(offset, len))| {
            let r = ReadRequest {
                tag: i as u32,
                offset,
                len,
                dest: slot,
                dest_offset: at,
            };
            at += len as usize;
            r
        })
        .collect();
    for chunk in reads.chunks(dev.geometry().queue_depth as usize) {
        dev.read_blocking(&mut arena, chunk).unwrap();
    }
    arena.bytes(slot).unwrap()[..total].to_vec()
}

/// Refusals every device must agree on; nothing is queued after any of them.
fn refusals<F: FlashDevice>(dev: &mut F) {
    let mut mem = vec![0u8; 64 << 10];
    let mut arena = SliceArena::new(&mut mem);
    let slot = arena.alloc(32 << 10, 4096, SlotKind::IoBuffer).unwrap();
    let ok = ReadRequest {
        tag: 0,
        offset: 0,
        len: 4096,
        dest: slot,
        dest_offset: 0,
    };
    let cap = dev.geometry().capacity;
    let cases = [
        (ReadRequest { offset: 100, ..ok }, ErrorKind::Misaligned),
        (ReadRequest { len: 100, ..ok }, ErrorKind::Misaligned),
        (
            ReadRequest {
                dest_offset: 100,
                ..ok
            },
            ErrorKind::Misaligned,
        ),
        (ReadRequest { offset: cap, ..ok }, ErrorKind::OutOfRange),
        (
            ReadRequest {
                len: 64 << 10,
                ..ok
            },
            ErrorKind::BadDestination,
        ),
    ];
    for (bad, kind) in cases {
        let err = dev.submit(&mut arena, &[ok, bad]).unwrap_err();
        assert_eq!(err.kind(), kind, "{bad:?}");
        assert_eq!(dev.in_flight(), 0);
    }
    arena.free(slot).unwrap();
    assert_eq!(
        dev.submit(&mut arena, &[ok]).unwrap_err().kind(),
        ErrorKind::BadDestination
    );
    // A valid batch completes, every tag once.
    let slot = arena.alloc(8192, 4096, SlotKind::IoBuffer).unwrap();
    let reads = [
        ReadRequest { dest: slot, ..ok },
        ReadRequest {
            tag: 1,
            offset: 8192,
            dest: slot,
            dest_offset: 4096,
            ..ok
        },
    ];
    dev.submit(&mut arena, &reads).unwrap();
    let mut done = [Completion::EMPTY; 4];
    let mut tags = Vec::new();
    while dev.in_flight() > 0 {
        let n = dev.complete(&mut arena, &mut done).unwrap();
        tags.extend(done[..n].iter().map(|c| (c.tag, c.status)));
    }
    tags.sort_by_key(|t| t.0);
    assert_eq!(tags, vec![(0, Ok(())), (1, Ok(()))]);
}

#[test]
fn fake_flash_keeps_the_contract() {
    refusals(&mut FakeFlash::new(
        medium(),
        &Profile::UFS40,
        FaultPlan::none(),
    ));
}

#[test]
fn file_flash_keeps_the_contract() {
    let f = TempFile::with_bytes(&medium());
    refusals(&mut FileFlash::open(f.path(), FileFlashOptions::default()).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random aligned extents read through the fake (in and out of order)
    /// and the file give the medium's bytes.
    #[test]
    fn fake_and_file_read_the_same_bytes(extents in prop::collection::vec((0u64..(LEN as u64 / 4096), 1u32..16), 1..40), seed in any::<u64>()) {
        let bytes = medium();
        let extents: Vec<(u64, u32)> = extents
            .into_iter()
            .map(|(block, blocks)| (block * 4096, blocks.min((LEN as u64 / 4096 - block) as u32) * 4096))
            .collect();
        let want: Vec<u8> = extents.iter().flat_map(|&(o, l)| bytes[o as usize..o as usize + l as usize].to_vec()).collect();
        let reorder = FaultPlan { seed, reorder: true, ..FaultPlan::none() };
        let fake = read_all(&mut FakeFlash::new(bytes.clone(), &Profile::UFS40, reorder), &extents);
        let f = TempFile::with_bytes(&bytes);
        let file = read_all(&mut FileFlash::open(f.path(), FileFlashOptions::default()).unwrap(), &extents);
        prop_assert_eq!(&fake, &want);
        prop_assert_eq!(&file, &want);
    }
}

/// Writes then reads agree on both devices; the fake's power loss keeps
/// exactly the bytes before the limit.
#[test]
fn writes_round_trip_and_power_loss_is_exact() {
    let f = TempFile::with_bytes(&medium());
    let opts = FileFlashOptions {
        writable: true,
        ..FileFlashOptions::default()
    };
    let mut file = FileFlash::open(f.path(), opts).unwrap();
    let mut fake = FakeFlash::new(medium(), &Profile::DISK, FaultPlan::none());
    let data = vec![0x5Au8; 8192];
    for dev in [&mut file as &mut dyn WriteRead, &mut fake] {
        dev.write_sync(4096, &data);
        assert_eq!(dev.read(4096, 8192), data);
    }
    let plan = FaultPlan {
        power_loss_after_bytes: Some(5000),
        ..FaultPlan::none()
    };
    let mut fake = FakeFlash::new(medium(), &Profile::DISK, plan);
    assert_eq!(fake.write(0, &data).unwrap_err(), ErrorKind::PowerLoss);
    assert!(fake.write(0, &data).is_err());
    fake.power_cycle();
    let after = read_all(&mut fake, &[(0, 8192)]);
    assert!(after[..5000].iter().all(|&b| b == 0x5A));
    assert_eq!(&after[5000..], &medium()[5000..8192]);
}

/// Object-safe slice of the two devices for the loop above.
trait WriteRead {
    fn write_sync(&mut self, offset: u64, data: &[u8]);
    fn read(&mut self, offset: u64, len: u32) -> Vec<u8>;
}

impl<F: FlashWrite> WriteRead for F {
    fn write_sync(&mut self, offset: u64, data: &[u8]) {
        self.write(offset, data).unwrap();
        self.sync().unwrap();
    }
    fn read(&mut self, offset: u64, len: u32) -> Vec<u8> {
        read_all(self, &[(offset, len)])
    }
}
