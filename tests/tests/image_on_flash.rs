//! An image served from flash: opened with two device reads, bundles fetched
//! through the kernel and verified against their checksums; faults injected
//! by the fake flash are caught, never silently accepted.

use lode_formats::image::{Image, ImageHeader};
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cache::{CacheConfig, Lru, NeuronCache};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchError, FetchIo, FetchScratch};
use lode_kernel::flash::{ErrorKind, FlashDevice, ReadRequest};
use lode_kernel::plan::{self, Extent, Mode, Region};
use lode_tests::{bundle_byte, small_image};

const LAYERS: u32 = 3;
const NEURONS: u32 = 150;

/// Read the metadata prefix through the device and parse it.
fn open<F: FlashDevice, A: DramArena>(dev: &mut F, arena: &mut A) -> Vec<u8> {
    let block = dev.geometry().block_size;
    let slot = arena
        .alloc(block as usize, block as usize, SlotKind::Scratch)
        .unwrap();
    dev.read_blocking(
        arena,
        &[ReadRequest {
            tag: 0,
            offset: 0,
            len: block,
            dest: slot,
            dest_offset: 0,
        }],
    )
    .unwrap();
    let header = ImageHeader::parse(arena.bytes(slot).unwrap()).unwrap();
    arena.free(slot).unwrap();
    let len = header.meta_len as u32;
    let slot = arena
        .alloc(len as usize, block as usize, SlotKind::Scratch)
        .unwrap();
    dev.read_blocking(
        arena,
        &[ReadRequest {
            tag: 0,
            offset: 0,
            len,
            dest: slot,
            dest_offset: 0,
        }],
    )
    .unwrap();
    let prefix = arena.bytes(slot).unwrap().to_vec();
    arena.free(slot).unwrap();
    prefix
}

fn region(img: &Image<'_>, layer: usize) -> Region {
    let r = img.bundle_region(layer).unwrap();
    Region {
        offset: r.offset,
        stride: r.stride,
        bundle_bytes: r.bundle_size,
        count: r.count,
    }
}

/// Fetch `neurons` of every layer and check each bundle against its CRC and
/// its expected bytes. Returns the number of bundles whose CRC failed.
fn fetch_and_verify<F: FlashDevice>(
    dev: &mut F,
    img: &Image<'_>,
    neurons: &[u32],
    mode: Mode,
) -> Result<u32, FetchError<F::Error>> {
    let mut mem = vec![0u8; 4 << 20];
    let mut arena = SliceArena::new(&mut mem);
    let mut cache = NeuronCache::new(
        &mut arena,
        CacheConfig {
            slots: 64,
            keys: LAYERS * NEURONS,
            bundle_bytes: region(img, 0).bundle_bytes,
        },
        Lru::new(),
    )
    .unwrap();
    let geo = dev.geometry();
    let io = arena
        .alloc(
            plan::io_bytes_bound(&region(img, 0), &geo, mode) as usize,
            geo.block_size as usize,
            SlotKind::IoBuffer,
        )
        .unwrap();
    let mut missing = vec![0u32; NEURONS as usize];
    let mut extents =
        vec![Extent::default(); plan::extents_bound(&region(img, 0), &geo, mode) as usize];
    let mut locs = vec![BundleLoc::Nowhere; NEURONS as usize];
    let mut bad = 0;
    for token in 0..2 {
        for l in 0..LAYERS as usize {
            let placement = img.placement(l).unwrap();
            let mut positions: Vec<u32> = neurons
                .iter()
                .map(|&n| placement.position_of(n).unwrap())
                .collect();
            positions.sort_unstable();
            let r = region(img, l);
            let mut scratch = FetchScratch {
                missing: &mut missing,
                extents: &mut extents,
                locs: &mut locs,
            };
            fetch_layer(
                dev,
                &mut arena,
                Some(&mut cache),
                &r,
                l as u32 * NEURONS,
                &positions,
                token,
                mode,
                FetchIo::unchecked(io),
                &mut scratch,
            )?;
            for (i, &p) in positions.iter().enumerate() {
                let bytes = match locs[i] {
                    BundleLoc::Io(at) => {
                        arena.bytes(io).unwrap()[at..at + r.bundle_bytes as usize].to_vec()
                    }
                    BundleLoc::Cache(s) => cache.bundle(&arena, s).unwrap().to_vec(),
                    BundleLoc::Nowhere => panic!("bundle {p} not fetched"),
                };
                match img.verify_bundle(l, p, &bytes) {
                    Ok(()) => {
                        let n = placement.neuron_at(p).unwrap();
                        assert!(bytes
                            .iter()
                            .enumerate()
                            .all(|(i, &b)| b == bundle_byte(l as u32, n, i)));
                    }
                    Err(_) => bad += 1,
                }
            }
            cache.end_token(&mut arena, token).unwrap();
        }
    }
    Ok(bad)
}

#[test]
fn bundles_fetched_through_the_kernel_match_their_checksums() {
    let file = small_image(LAYERS, NEURONS, 4096);
    let mut dev = FakeFlash::new(
        file,
        &Profile::UFS40,
        FaultPlan {
            seed: 3,
            reorder: true,
            ..FaultPlan::none()
        },
    );
    let mut mem = vec![0u8; 1 << 20];
    let mut arena = SliceArena::new(&mut mem);
    let prefix = open(&mut dev, &mut arena);
    let img = Image::parse(&prefix).unwrap();
    assert_eq!(img.layer_count(), LAYERS as usize);
    let wanted = [0, 1, 2, 50, 51, 99, 149];
    for mode in [
        Mode::PerBundle,
        Mode::Coalesced,
        Mode::Dense,
        Mode::Adaptive { merge: true },
    ] {
        assert_eq!(
            fetch_and_verify(&mut dev, &img, &wanted, mode),
            Ok(0),
            "{mode:?}"
        );
    }
}

#[test]
fn injected_bit_flips_are_caught_by_bundle_checksums() {
    let file = small_image(LAYERS, NEURONS, 4096);
    let prefix = file[..ImageHeader::parse(&file).unwrap().meta_len as usize].to_vec();
    let img = Image::parse(&prefix).unwrap();
    // Every read flips one bit somewhere in what it delivers.
    let plan = FaultPlan {
        seed: 9,
        bit_flip_ppm: 1_000_000,
        ..FaultPlan::none()
    };
    let mut dev = FakeFlash::new(file.clone(), &Profile::UFS40, plan);
    let all: Vec<u32> = (0..NEURONS).collect();
    // Dense reads cover every bundle; flips that land in a bundle are caught
    // (a flip in padding between regions is outside any bundle).
    let bad = fetch_and_verify(&mut dev, &img, &all, Mode::Dense).unwrap();
    let flips = dev.counters().faults.bit_flips;
    assert!(flips > 0);
    assert!(
        bad > 0 && u64::from(bad) <= flips,
        "{bad} bad bundles for {flips} flips"
    );
}

#[test]
fn injected_read_errors_stop_the_fetch_with_a_typed_error() {
    let file = small_image(LAYERS, NEURONS, 4096);
    let prefix = file[..ImageHeader::parse(&file).unwrap().meta_len as usize].to_vec();
    let img = Image::parse(&prefix).unwrap();
    let plan = FaultPlan {
        seed: 1,
        read_error_ppm: 1_000_000,
        ..FaultPlan::none()
    };
    let mut dev = FakeFlash::new(file, &Profile::UFS40, plan);
    let err = fetch_and_verify(&mut dev, &img, &[5, 6], Mode::Coalesced).unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Read {
                kind: ErrorKind::Io,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(dev.in_flight(), 0);
}
