//! Streaming decode must not touch the heap: with SmolLM2-135M packed into
//! an image on the fake flash and a budget at the minimum working set (every
//! unit streams through the ring), the counting allocator sees no
//! allocation across decoded tokens once the model is loaded. Alone in its
//! file so no other test thread allocates while it counts.
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (or `LODE_MODEL`); when
//! it is missing the test says so and passes without checking.

use lode_formats::image::Image;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    config_of, StreamLayout, StreamOptions, StreamPlan, StreamSource,
};
use lode_kernel::model::{Limits, Model, WantLogits};

#[global_allocator]
static GLOBAL: lode_tests::CountingAlloc = lode_tests::CountingAlloc;

#[test]
fn streaming_decode_allocates_nothing() {
    let Some(bytes) = lode_tests::real_model_bytes() else {
        return;
    };
    let image = lode_tests::pack_identity(&bytes);
    let img = Image::parse(&image).unwrap();
    let cfg = config_of(&img).unwrap();
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    let dev = FakeFlash::new(
        image.clone(),
        &Profile::UFS40,
        FaultPlan {
            seed: 9,
            reorder: true,
            ..FaultPlan::none()
        },
    );
    let limits = Limits::new(32, 8);
    let opts = StreamOptions {
        budget: usize::MAX,
        ring: 2,
        block: dev.geometry().block_size as usize,
        stream_all: true,
        sparse: false,
        checked: 0,
    };
    let plan = StreamPlan::new(&layout, &cfg, &limits, opts).unwrap();
    let plan = StreamPlan::new(
        &layout,
        &cfg,
        &limits,
        StreamOptions {
            budget: plan.minimum,
            ..opts
        },
    )
    .unwrap();
    let mut region = vec![0u8; plan.budget];
    let mut arena = SliceArena::new(&mut region);
    let source = StreamSource::load(dev, &mut arena, layout, &cfg, &limits, plan, || 0).unwrap();
    let mut model = Model::new(cfg, limits, source, &mut arena).unwrap();
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(2)).unwrap();
    cpu.reserve_batch(widest, limits.max_batch).unwrap();

    let argmax = |l: &[f32]| {
        (0..l.len())
            .max_by(|&a, &b| l[a].total_cmp(&l[b]))
            .unwrap_or(0) as u32
    };
    let mut next = 0u32;
    let mut ctx = model.new_context();
    model
        .eval(
            &mut ctx,
            &mut arena,
            &mut cpu,
            &[504, 3575, 282, 4649, 314],
            WantLogits::Last,
            |_, l| next = argmax(l),
        )
        .unwrap();
    assert_eq!(next, 7042, "\" Paris\"");
    // The counter counts: one planted allocation shows.
    let planted = lode_tests::CountingAlloc::count();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(lode_tests::CountingAlloc::count(), planted + 1);
    let before = lode_tests::CountingAlloc::count();
    for _ in 0..6 {
        let tok = next;
        model
            .eval(
                &mut ctx,
                &mut arena,
                &mut cpu,
                &[tok],
                WantLogits::Last,
                |_, l| next = argmax(l),
            )
            .unwrap();
    }
    let after = lode_tests::CountingAlloc::count();
    let io = model.weights().io_stats();
    assert!(io.bytes > 6 * 60_000_000, "everything streams: {io:?}");
    assert_eq!(after - before, 0, "allocations during streaming decode");
}
