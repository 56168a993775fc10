use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::SlotKind;
use crate::cache::{CacheConfig, Lru, S3Fifo};

use crate::flash::testing::RamFlash;
use crate::flash::{ErrorKind, Geometry};

pub(super) const BUNDLE: u32 = 1080;
const COUNT: u32 = 200;

/// A device holding one region whose bundle `p` is filled with a pattern
/// unique to `(p, byte index)`.
pub(super) fn device(block: u32, max_transfer: u32) -> (RamFlash, Region) {
    let region = Region {
        offset: 4 * u64::from(block),
        stride: BUNDLE,
        bundle_bytes: BUNDLE,
        count: COUNT,
    };
    let len = (region.end().unwrap() as usize).div_ceil(block as usize) * block as usize;
    let mut data = vec![0u8; len];
    for p in 0..COUNT {
        let s = (region.offset + u64::from(p) * u64::from(BUNDLE)) as usize;
        for (i, b) in data[s..s + BUNDLE as usize].iter_mut().enumerate() {
            *b = pattern(p, i);
        }
    }
    let geo = Geometry {
        block_size: block,
        capacity: len as u64,
        max_transfer,
        queue_depth: 32,
    };
    (RamFlash::new(data, geo), region)
}

pub(super) fn pattern(p: u32, i: usize) -> u8 {
    (p as usize * 31 + i * 7) as u8 ^ (i >> 8) as u8
}

pub(super) struct Buffers {
    missing: Vec<u32>,
    extents: Vec<Extent>,
    pub(super) locs: Vec<BundleLoc>,
}

impl Buffers {
    pub(super) fn new() -> Self {
        Buffers {
            missing: vec![0; COUNT as usize],
            extents: vec![Extent::default(); 2 * COUNT as usize],
            locs: vec![BundleLoc::Nowhere; COUNT as usize],
        }
    }
    pub(super) fn scratch(&mut self) -> FetchScratch<'_> {
        FetchScratch {
            missing: &mut self.missing,
            extents: &mut self.extents,
            locs: &mut self.locs,
        }
    }
}

/// Every needed bundle's bytes are where `locs` says, in the I/O buffer or
/// the cache.
fn check_locs<P: Policy>(
    arena: &VecArena,
    cache: Option<&NeuronCache<P>>,
    io: Slot,
    positions: &[u32],
    locs: &[BundleLoc],
) -> Result<(), TestCaseError> {
    for (&p, loc) in positions.iter().zip(locs) {
        let bytes = match *loc {
            BundleLoc::Io(at) => &arena.bytes(io).unwrap()[at..at + BUNDLE as usize],
            BundleLoc::Cache(slot) => cache.unwrap().bundle(arena, slot).unwrap(),
            BundleLoc::Nowhere => return Err(TestCaseError::fail("bundle not fetched")),
        };
        for (i, &b) in bytes.iter().enumerate() {
            prop_assert_eq!(b, pattern(p, i), "bundle {} byte {}", p, i);
        }
    }
    Ok(())
}

fn modes() -> [Mode; 5] {
    [
        Mode::PerBundle,
        Mode::Coalesced,
        Mode::Merged,
        Mode::Dense,
        Mode::Adaptive { merge: true },
    ]
}

proptest! {
    /// In every mode, with and without a cache, over several tokens, each
    /// needed bundle ends up where its location says, byte for byte.
    #[test]
    fn fetched_bytes_are_the_bundles(tokens in prop::collection::vec(prop::collection::btree_set(0u32..COUNT, 0..60), 1..5), block_log in 9u32..13, mt in 1u32..64) {
        let block = 1 << block_log;
        let (mut dev, region) = device(block, mt * block);
        for mode in modes() {
            let mut arena = VecArena::new(8 << 20);
            let io_len = plan::io_bytes_bound(&region, &dev.geo, mode) as usize;
            let io = arena.alloc(io_len, block as usize, SlotKind::IoBuffer).unwrap();
            let mut cache = NeuronCache::new(&mut arena, CacheConfig { slots: 40, keys: COUNT, bundle_bytes: BUNDLE }, S3Fifo::default()).unwrap();
            let mut buf = Buffers::new();
            buf.extents = vec![Extent::default(); plan::extents_bound(&region, &dev.geo, mode) as usize];
            for (t, set) in tokens.iter().enumerate() {
                let positions: Vec<u32> = set.iter().copied().collect();
                let f = fetch_layer(&mut dev, &mut arena, Some(&mut cache), &region, 0, &positions, t as u32, mode, FetchIo::unchecked(io), &mut buf.scratch()).unwrap();
                prop_assert_eq!((f.hits + f.misses) as usize, positions.len());
                prop_assert_eq!(f.needed_bytes, u64::from(f.misses) * u64::from(BUNDLE));
                prop_assert!(f.plan.bytes >= f.needed_bytes || mode == Mode::PerBundle);
                check_locs(&arena, Some(&cache), io, &positions, &buf.locs[..positions.len()])?;
                let f = fetch_layer(&mut dev, &mut arena, None::<&mut NeuronCache<Lru>>, &region, 0, &positions, t as u32, mode, FetchIo::unchecked(io), &mut buf.scratch()).unwrap();
                prop_assert_eq!(f.hits, 0);
                check_locs::<Lru>(&arena, None, io, &positions, &buf.locs[..positions.len()])?;
            }
        }
    }
}

/// Fetch `positions` per bundle without a cache into a fresh 512 KiB I/O
/// slot; returns the result, the arena and the slot for checking.
fn fetch_uncached(
    dev: &mut RamFlash,
    region: &Region,
    positions: &[u32],
    buf: &mut Buffers,
) -> (Result<Fetched, FetchError<ErrorKind>>, VecArena, Slot) {
    let mut arena = VecArena::new(1 << 20);
    let io = arena.alloc(512 << 10, 512, SlotKind::IoBuffer).unwrap();
    let r = fetch_layer(
        dev,
        &mut arena,
        None::<&mut NeuronCache<Lru>>,
        region,
        0,
        positions,
        0,
        Mode::PerBundle,
        FetchIo::unchecked(io),
        &mut buf.scratch(),
    );
    (r, arena, io)
}

#[test]
fn a_failed_read_is_reported_and_leaves_the_device_idle() {
    let (mut dev, region) = device(512, 64 << 10);
    let mut buf = Buffers::new();
    dev.fail_at = Some(region.offset);
    let err = fetch_uncached(&mut dev, &region, &[0, 1, 100], &mut buf)
        .0
        .unwrap_err();
    assert_eq!(
        err,
        FetchError::Read {
            offset: region.offset,
            kind: ErrorKind::Io,
            attempts: 3,
        }
    );
    assert_eq!(dev.in_flight(), 0);
}

/// Reads more extents than the queue holds: the queue is refilled as reads
/// complete, so the device goes from idle to busy once per layer, never holds
/// more than its depth (RamFlash refuses that), and every bundle arrives.
#[test]
fn the_queue_is_kept_fed_across_more_extents_than_it_holds() {
    let (mut dev, region) = device(512, 64 << 10);
    dev.geo.queue_depth = 4;
    let mut buf = Buffers::new();
    // Every third bundle: 67 separate reads at depth 4.
    let positions: Vec<u32> = (0..COUNT).step_by(3).collect();
    let (f, arena, io) = fetch_uncached(&mut dev, &region, &positions, &mut buf);
    let f = f.unwrap();
    assert_eq!(f.plan.commands as usize, positions.len());
    assert_eq!(dev.commands as usize, positions.len());
    assert_eq!(
        dev.idle_submits, 1,
        "the queue drained before the layer was read"
    );
    assert_eq!(dev.in_flight(), 0);
    check_locs::<Lru>(&arena, None, io, &positions, &buf.locs[..positions.len()]).unwrap();
}

/// A device that never completes what it holds is an error, not a hang and
/// not unread bytes handed out as bundles.
#[test]
fn a_stalled_device_is_an_error() {
    let (mut dev, region) = device(512, 64 << 10);
    dev.stall = true;
    let mut buf = Buffers::new();
    let err = fetch_uncached(&mut dev, &region, &[0, 50, 100], &mut buf)
        .0
        .unwrap_err();
    assert_eq!(err, FetchError::Stalled { in_flight: 3 });
    assert!(std::format!("{err}").contains("3 reads in flight"));
}

#[test]
fn small_buffers_are_errors_not_panics() {
    let (mut dev, region) = device(512, 64 << 10);
    let mut arena = VecArena::new(1 << 20);
    let io = arena.alloc(1024, 512, SlotKind::IoBuffer).unwrap();
    let mut buf = Buffers::new();
    let err = fetch_layer(
        &mut dev,
        &mut arena,
        None::<&mut NeuronCache<Lru>>,
        &region,
        0,
        &[0, 50, 100],
        0,
        Mode::Coalesced,
        FetchIo::unchecked(io),
        &mut buf.scratch(),
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::IoBufferTooSmall { .. }));
    let mut short = [0u32; 1];
    let mut ext = [Extent::default(); 8];
    let mut locs = [BundleLoc::Nowhere; 8];
    let mut s = FetchScratch {
        missing: &mut short,
        extents: &mut ext,
        locs: &mut locs,
    };
    let err = fetch_layer(
        &mut dev,
        &mut arena,
        None::<&mut NeuronCache<Lru>>,
        &region,
        0,
        &[0, 1],
        0,
        Mode::Coalesced,
        FetchIo::unchecked(io),
        &mut s,
    )
    .unwrap_err();
    assert_eq!(err, FetchError::ScratchTooSmall);
    let err = fetch_layer(
        &mut dev,
        &mut arena,
        None::<&mut NeuronCache<Lru>>,
        &region,
        0,
        &[5, 3],
        0,
        Mode::Coalesced,
        FetchIo::unchecked(io),
        &mut buf.scratch(),
    )
    .unwrap_err();
    assert_eq!(err, FetchError::Plan(PlanError::NotSorted));
}

/// With a cache, a second token needing the same bundles reads nothing.
#[test]
fn cache_hits_skip_the_device() {
    let (mut dev, region) = device(4096, 1 << 20);
    let mut arena = VecArena::new(4 << 20);
    let io = arena.alloc(1 << 20, 4096, SlotKind::IoBuffer).unwrap();
    let mut cache = NeuronCache::new(
        &mut arena,
        CacheConfig {
            slots: 50,
            keys: COUNT,
            bundle_bytes: BUNDLE,
        },
        Lru::new(),
    )
    .unwrap();
    let mut buf = Buffers::new();
    let positions = [3, 4, 90, 91, 150];
    let first = fetch_layer(
        &mut dev,
        &mut arena,
        Some(&mut cache),
        &region,
        0,
        &positions,
        0,
        Mode::Coalesced,
        FetchIo::unchecked(io),
        &mut buf.scratch(),
    )
    .unwrap();
    assert_eq!((first.hits, first.misses, first.admitted), (0, 5, 5));
    let commands = dev.commands;
    let second = fetch_layer(
        &mut dev,
        &mut arena,
        Some(&mut cache),
        &region,
        0,
        &positions,
        1,
        Mode::Coalesced,
        FetchIo::unchecked(io),
        &mut buf.scratch(),
    )
    .unwrap();
    assert_eq!(
        (second.hits, second.misses, second.plan.commands),
        (5, 0, 0)
    );
    assert_eq!(dev.commands, commands);
}

/// A hit stays readable while the same fetch admits its misses: with a
/// cache smaller than one token's bundles, admitting them must not evict
/// (and overwrite) the entry a hit points at. Found by the firmware
/// example, which checks every fetched bundle against its CRC.
#[test]
fn admitting_misses_never_overwrites_this_fetchs_hits() {
    fn run<P: Policy>(policy: P) {
        let (mut dev, region) = device(512, 64 << 10);
        let mut arena = VecArena::new(4 << 20);
        let io = arena.alloc(1 << 20, 512, SlotKind::IoBuffer).unwrap();
        let cfg = CacheConfig {
            slots: 4,
            keys: COUNT,
            bundle_bytes: BUNDLE,
        };
        let mut cache = NeuronCache::new(&mut arena, cfg, policy).unwrap();
        let mut buf = Buffers::new();
        let tokens: [&[u32]; 4] = [&[0], &[0], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &[0, 3, 9, 11]];
        for (t, positions) in tokens.iter().enumerate() {
            let f = fetch_layer(
                &mut dev,
                &mut arena,
                Some(&mut cache),
                &region,
                0,
                positions,
                t as u32,
                Mode::PerBundle,
                FetchIo::unchecked(io),
                &mut buf.scratch(),
            )
            .unwrap();
            assert_eq!((f.hits + f.misses) as usize, positions.len());
            check_locs(
                &arena,
                Some(&cache),
                io,
                positions,
                &buf.locs[..positions.len()],
            )
            .unwrap_or_else(|e| panic!("token {t}: {e}"));
        }
        assert!(cache.stats().hits >= 2, "{:?}", cache.stats());
    }
    run(Lru::default());
    run(S3Fifo::default());
    run(crate::cache::HotWindow::new(&[0; COUNT as usize]));
}

proptest! {
    /// The same with random tokens and caches of 1 to 8 slots.
    #[test]
    fn tiny_caches_keep_their_hits(tokens in prop::collection::vec(prop::collection::btree_set(0u32..40, 1..20), 1..8), slots in 1u32..8) {
        let (mut dev, region) = device(512, 64 << 10);
        let mut arena = VecArena::new(4 << 20);
        let io = arena.alloc(1 << 20, 512, SlotKind::IoBuffer).unwrap();
        let cfg = CacheConfig { slots, keys: COUNT, bundle_bytes: BUNDLE };
        let mut cache = NeuronCache::new(&mut arena, cfg, S3Fifo::default()).unwrap();
        let mut buf = Buffers::new();
        for (t, set) in tokens.iter().enumerate() {
            let positions: Vec<u32> = set.iter().copied().collect();
            fetch_layer(&mut dev, &mut arena, Some(&mut cache), &region, 0, &positions, t as u32, Mode::PerBundle, FetchIo::unchecked(io), &mut buf.scratch()).unwrap();
            check_locs(&arena, Some(&cache), io, &positions, &buf.locs[..positions.len()])?;
        }
    }
}
