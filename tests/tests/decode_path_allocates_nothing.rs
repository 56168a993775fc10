//! The decode-path I/O (cache lookups and inserts, read planning, device
//! reads, `fetch_layer`) must not touch the heap. A counting global allocator
//! makes that checkable: set up first, then count allocations across many
//! fetches and expect zero. This file holds a single test so no other test
//! thread allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cache::{CacheConfig, LinkAdmission, NeuronCache, S3Fifo};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchScratch};
use lode_kernel::flash::FlashDevice;
use lode_kernel::plan::{self, Extent, Mode, Region};
use lode_kernel::rng::SplitMix64;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator unchanged; it only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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

    let before = ALLOCATIONS.load(Ordering::SeqCst);
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
                io,
                &mut scratch,
            )
            .unwrap();
            reads += f.plan.commands;
        }
        cache.end_token(&mut arena, token).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(
        reads > 0 && cache.stats().hits > 0,
        "the loop must do real work"
    );
    assert_eq!(after - before, 0, "the decode-path I/O allocated");
}
