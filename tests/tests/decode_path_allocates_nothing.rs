//! The decode-path I/O (cache lookups and inserts, read planning, device
//! reads, `fetch_layer`) must not touch the heap. A counting global allocator
//! makes that checkable: set up first, then count allocations across many
//! fetches and expect zero. Everything here runs on the test's own thread,
//! so it counts that thread's allocations alone: the harness's threads
//! allocate when they like (a fresh-clone CI run once saw 4 of theirs in
//! the count of every thread).

use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cache::{CacheConfig, LinkAdmission, NeuronCache, S3Fifo};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchIo, FetchScratch};
use lode_kernel::flash::FlashDevice;
use lode_kernel::plan::{self, Extent, Mode, Region};
use lode_kernel::rng::SplitMix64;

#[global_allocator]
static GLOBAL: lode_tests::CountingAlloc = lode_tests::CountingAlloc;

#[test]
fn fetch_planning_and_caching_allocate_nothing() {
    const NEURONS: u32 = 2048;
    const LAYERS: u32 = 4;
    let region = |l: u32| Region {
        offset: u64::from(l) * (3 << 20),
        stride: 1080,
        bundle_bytes: 1080,
        count: NEURONS,
    };
    let mut dev = FakeFlash::new(
        vec![0u8; (LAYERS as usize) * (3 << 20)],
        &Profile::UFS40,
        FaultPlan {
            seed: 5,
            reorder: true,
            ..FaultPlan::none()
        },
    );
    let geo = dev.geometry();
    let mut mem = vec![0u8; 16 << 20];
    let mut arena = SliceArena::new(&mut mem);
    let mode = Mode::Adaptive { merge: true };
    let io = arena
        .alloc(
            plan::io_bytes_bound(&region(0), &geo, mode) as usize,
            4096,
            SlotKind::IoBuffer,
        )
        .unwrap();
    let cfg = CacheConfig {
        slots: 500,
        keys: LAYERS * NEURONS,
        bundle_bytes: 1080,
    };
    let mut cache =
        NeuronCache::new(&mut arena, cfg, LinkAdmission::new(S3Fifo::default(), 1)).unwrap();
    let mut missing = vec![0u32; NEURONS as usize];
    let mut extents = vec![Extent::default(); plan::extents_bound(&region(0), &geo, mode) as usize];
    let mut locs = vec![BundleLoc::Nowhere; NEURONS as usize];
    let mut positions = Vec::with_capacity(NEURONS as usize);
    let mut rng = SplitMix64::new(11);

    let before = lode_tests::CountingAlloc::thread().count;
    let mut reads = 0;
    for token in 0..20 {
        for l in 0..LAYERS {
            positions.clear();
            positions.extend((0..NEURONS).filter(|_| rng.below(10) == 0));
            let mut scratch = FetchScratch {
                missing: &mut missing,
                extents: &mut extents,
                locs: &mut locs,
            };
            let f = fetch_layer(
                &mut dev,
                &mut arena,
                Some(&mut cache),
                &region(l),
                l * NEURONS,
                &positions,
                token,
                mode,
                FetchIo::unchecked(io),
                &mut scratch,
            )
            .unwrap();
            reads += f.plan.commands;
        }
        cache.end_token(&mut arena, token).unwrap();
    }
    let after = lode_tests::CountingAlloc::thread().count;
    assert!(
        reads > 0 && cache.stats().hits > 0,
        "the loop must do real work"
    );
    assert_eq!(after - before, 0, "the decode-path I/O allocated");
}
