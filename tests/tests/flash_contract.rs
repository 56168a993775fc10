//! The `FlashDevice` contract across crates: the shared suite
//! (`lode_hal::conformance`) on the fake flash and the file binding, then the
//! two compared over the same bytes (same data for the same reads), and the
//! fake's power loss.

use lode_hal::conformance::{check_writable, Config};
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::{FileFlash, FileFlashOptions};
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::flash::{ErrorKind, FlashDevice, FlashWrite, ReadRequest};
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

/// The shared contract (`lode_hal::conformance`) on the fake flash and on
/// the file binding, as any out-of-tree device would run it.
#[test]
fn fake_and_file_keep_the_contract() {
    let cfg = Config::default();
    check_writable(&cfg, |m| {
        FakeFlash::new(m.to_vec(), &Profile::UFS40, FaultPlan::none())
    })
    .unwrap();
    let opts = FileFlashOptions {
        writable: true,
        ..FileFlashOptions::default()
    };
    check_writable(&cfg, |m| {
        let f = TempFile::with_bytes(m);
        FileFlash::open(f.path(), opts).unwrap()
    })
    .unwrap();
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
