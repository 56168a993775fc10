//! The load pass under faults: a flipped bit or a failed read on the way
//! from the medium is read again and the image loads, with the same block
//! checksums as a clean pass; bytes wrong on the medium never pass.

use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::flash::BlockChecks;
use lode_kernel::formats::image::Image;
use lode_kernel::model::stream::verify_and_record;
use lode_kernel::model::{ErrorKind, LoadError};

const CHECK: usize = 4096;

fn crc(b: &[u8]) -> u32 {
    lode_kernel::formats::image::crc32c(b)
}

/// Verifies `bytes` from a fake flash with `plan`'s faults through a
/// 16 KiB buffer (many chunks, several per item); returns the recorded
/// checks table.
fn load(bytes: &[u8], plan: FaultPlan) -> Result<Vec<u8>, LoadError> {
    let img = Image::parse(bytes).unwrap();
    let h = img.header();
    let mut dev = FakeFlash::new(bytes.to_vec(), Profile::by_name("ufs40").unwrap(), plan);
    let mut mem = vec![0u8; 1 << 20];
    let mut arena = SliceArena::new(&mut mem);
    let checks = BlockChecks::new(&mut arena, h.meta_len, h.file_len, CHECK, crc).unwrap();
    let slot = arena.alloc(16 << 10, CHECK, SlotKind::IoBuffer).unwrap();
    verify_and_record(&mut dev, &mut arena, &img, slot, Some(&checks), |_, _| {})?;
    Ok(arena.bytes(checks.slot()).unwrap().to_vec())
}

#[test]
fn faults_on_the_way_are_read_again_and_wrong_bytes_never_pass() {
    let bytes = lode_tests::small_image(6, 512, 4096);
    let clean = load(&bytes, FaultPlan::default()).unwrap();
    let (mut loaded, mut refused) = (0, 0);
    for seed in 0..40 {
        let plan = FaultPlan {
            seed,
            bit_flip_ppm: 20_000,
            read_error_ppm: 20_000,
            ..FaultPlan::default()
        };
        match load(&bytes, plan) {
            Ok(table) => {
                assert_eq!(table, clean, "seed {seed}: other checksums recorded");
                loaded += 1;
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Flash | ErrorKind::BadTensor),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert!(loaded >= 36, "loaded {loaded}, refused {refused}");

    // A byte wrong on the medium fails every try.
    let img = Image::parse(&bytes).unwrap();
    let mut bad = bytes.clone();
    let at = img.bundle_region(3).unwrap().offset as usize + 700;
    bad[at] ^= 0x20;
    let e = load(&bad, FaultPlan::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadTensor, "{e}");
}
