//! Checked fetches: a bundle that fails its block check is read again,
//! and one that stays wrong is an error that never reaches the cache.

use std::vec::Vec;

use super::tests::{device, pattern, Buffers, BUNDLE};
use super::*;
use crate::arena::testing::VecArena;
use crate::arena::SlotKind;
use crate::cache::{CacheConfig, Lru};
use crate::flash::testing::RamFlash;
use crate::flash::{FaultInjector, Faults};
use crate::plan::Region;

const BLOCK: usize = 4096;

fn crc(b: &[u8]) -> u32 {
    lode_formats::image::crc32c(b)
}

/// Checks of every block of `data`, recorded through a scratch slot.
fn checks_of(arena: &mut VecArena, data: &[u8]) -> BlockChecks {
    let c = BlockChecks::new(arena, 0, data.len() as u64, BLOCK, crc).unwrap();
    let s = arena.alloc(data.len(), BLOCK, SlotKind::IoBuffer).unwrap();
    arena.bytes_mut(s).unwrap().copy_from_slice(data);
    c.record(arena, 0, s, data.len()).unwrap();
    arena.free(s).unwrap();
    c
}

/// [`device`] laid out in check blocks (as an image's regions are) on a
/// device of 512-byte blocks.
fn padded() -> (RamFlash, Region) {
    let (mut dev, region) = device(BLOCK as u32, 64 << 10);
    dev.geo.block_size = 512;
    (dev, region)
}

fn cache(arena: &mut VecArena) -> NeuronCache<Lru> {
    let cfg = CacheConfig {
        slots: 64,
        keys: 200,
        bundle_bytes: BUNDLE,
    };
    NeuronCache::new(arena, cfg, Lru::new()).unwrap()
}

/// The bytes of each needed bundle, wherever `locs` says they are.
fn bundle<'a>(arena: &'a VecArena, cache: &NeuronCache<Lru>, io: Slot, loc: BundleLoc) -> &'a [u8] {
    match loc {
        BundleLoc::Io(at) => &arena.bytes(io).unwrap()[at..at + BUNDLE as usize],
        BundleLoc::Cache(s) => {
            let (slot, r) = cache.bundle_at(s).unwrap();
            &arena.bytes(slot).unwrap()[r]
        }
        BundleLoc::Nowhere => panic!("a needed bundle was not fetched"),
    }
}

#[test]
fn flipped_bits_are_read_again_and_never_cached() {
    let positions: Vec<u32> = (0..200).step_by(3).collect();
    let mut retries = 0;
    for seed in 0..10 {
        let (dev, region) = padded();
        let mut arena = VecArena::new(8 << 20);
        let c = checks_of(&mut arena, &dev.data);
        let mut cache = cache(&mut arena);
        let io = arena.alloc(1 << 20, BLOCK, SlotKind::IoBuffer).unwrap();
        let faults = Faults {
            seed,
            bit_flip_ppm: 200_000,
            ..Faults::none()
        };
        let mut dev: FaultInjector<RamFlash> = FaultInjector::new(dev, faults);
        let mut buf = Buffers::new();
        for token in 0..6 {
            let io_at = FetchIo {
                slot: io,
                checks: Some(&c),
            };
            let mode = Mode::Adaptive { merge: true };
            let r = fetch_layer(
                &mut dev,
                &mut arena,
                Some(&mut cache),
                &region,
                0,
                &positions,
                token,
                mode,
                io_at,
                &mut buf.scratch(),
            );
            match r {
                Ok(f) => {
                    retries += f.retries;
                    for (i, &p) in positions.iter().enumerate() {
                        let got = bundle(&arena, &cache, io, buf.locs[i]);
                        let want: Vec<u8> = (0..BUNDLE as usize).map(|j| pattern(p, j)).collect();
                        assert_eq!(got, &want[..], "bundle {p} at token {token}");
                    }
                }
                Err(e) => assert!(
                    matches!(e, FetchError::Corrupt { attempts: 3, .. }),
                    "{e:?}"
                ),
            }
        }
    }
    assert!(retries > 5, "{retries}");
}

#[test]
fn a_bundle_wrong_on_the_medium_is_an_error_and_is_not_cached() {
    let (mut dev, region) = padded();
    let mut arena = VecArena::new(8 << 20);
    let c = checks_of(&mut arena, &dev.data);
    let bad = region.offset as usize + 7 * BUNDLE as usize + 5;
    dev.data[bad] ^= 0x80;
    let mut cache = cache(&mut arena);
    let io = arena.alloc(1 << 20, BLOCK, SlotKind::IoBuffer).unwrap();
    let mut buf = Buffers::new();
    let at = FetchIo {
        slot: io,
        checks: Some(&c),
    };
    let e = fetch_layer(
        &mut dev,
        &mut arena,
        Some(&mut cache),
        &region,
        0,
        &[7],
        0,
        Mode::Coalesced,
        at,
        &mut buf.scratch(),
    )
    .unwrap_err();
    let block = (bad / BLOCK * BLOCK) as u64;
    assert_eq!(
        e,
        FetchError::Corrupt {
            offset: block,
            attempts: 3
        }
    );
    assert_eq!(cache.stats().admitted, 0);
    // Three tries of one read: whole check blocks even on a 512-byte device.
    assert_eq!(dev.commands, 3);
}
