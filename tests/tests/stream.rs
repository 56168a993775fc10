//! Streaming SmolLM2-135M from a lode image on the fake flash: under every
//! budget the generated tokens (and the logits, bit for bit) equal those of
//! the same bundles held in memory, and a dense-layout image streams
//! exactly the GGUF model; bad input is a typed error.
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (or `LODE_MODEL`); when
//! it is missing the tests print why and pass without checking.

use std::sync::OnceLock;

use lode_formats::image::Image;
use lode_hal::compute::CpuCompute;
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::DramArena;
use lode_kernel::compute::DType;
use lode_kernel::flash::FlashDevice;
use lode_kernel::formats::gguf::Gguf;
use lode_kernel::model::stream::{
    config_of, verify_image_data, FfnKind, StreamLayout, StreamOptions, StreamPlan, StreamSource,
};
use lode_kernel::model::{
    BundleFfn, BundleTypes, ErrorKind, EvalError, Limits, LlamaConfig, LlamaConfigExt, LoadError,
    MemoryPlan, Model, WeightSource,
};
use lode_pack::bundle::fill_layer;
use lode_pack::image::FfnLayout;
use lode_tests::LoadOrEval;

const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314]; // "The capital of France is"
const TOKENS: usize = 8;

/// The packed image (identity placement, Q8_0 down columns).
fn image_bytes() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| Some(lode_tests::pack_identity(lode_tests::real_model()?)))
        .as_deref()
}

fn cpu(cfg: &LlamaConfig, limits: &Limits) -> CpuCompute<'static> {
    lode_tests::cpu_for(cfg, limits.max_batch)
}

/// Greedy tokens and the last step's logits.
fn greedy<W: WeightSource>(
    model: &mut Model<W>,
    arena: &mut LockedArena,
    cpu: &mut CpuCompute<'static>,
) -> Result<(Vec<u32>, Vec<f32>), EvalError> {
    lode_tests::greedy(model, arena, cpu, &PROMPT, TOKENS)
}

fn limits() -> Limits {
    Limits::new(PROMPT.len() + TOKENS, 8)
}

/// The same bundles resident: the in-memory reference.
fn in_memory() -> (Vec<u32>, Vec<f32>) {
    let file = Gguf::parse(lode_tests::real_model().unwrap()).unwrap();
    let cfg = LlamaConfig::from_gguf(&file.check_llama().unwrap()).unwrap();
    let types = BundleTypes {
        rows: DType::Q4_1,
        down: DType::Q8_0,
    };
    let (ffn_bytes, ffn_slots) = BundleFfn::arena_bytes(&cfg, types).unwrap();
    let dense = MemoryPlan::dense(&file, &cfg, &limits()).unwrap();
    let plan = MemoryPlan {
        ffn: ffn_bytes,
        slots: dense.slots + ffn_slots,
        ..dense
    };
    let mut arena = LockedArena::new(plan.total()).unwrap();
    let ffn = BundleFfn::load(&cfg, &limits(), types, &mut arena, |layer, out| {
        fill_layer(&file, &cfg, types, layer, None, out)
    })
    .unwrap();
    let mut model = Model::with_ffn(&file, cfg, limits(), &mut arena, ffn).unwrap();
    greedy(&mut model, &mut arena, &mut cpu(&cfg, &limits())).unwrap()
}

/// The dense-layout image: the GGUF's FFN matrices as they are.
fn dense_image_bytes() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        Some(lode_tests::pack_layout(
            lode_tests::real_model()?,
            FfnLayout::Dense,
            |n, _| (0..n).collect(),
        ))
    })
    .as_deref()
}

/// The GGUF model itself in memory (dense products): the reference of a
/// dense-layout image.
fn gguf_in_memory() -> (Vec<u32>, Vec<f32>) {
    let file = Gguf::parse(lode_tests::real_model().unwrap()).unwrap();
    let cfg = LlamaConfig::from_gguf(&file.check_llama().unwrap()).unwrap();
    let plan = MemoryPlan::dense(&file, &cfg, &limits()).unwrap();
    let mut arena = LockedArena::new(plan.total()).unwrap();
    let mut model = Model::load(&file, cfg, limits(), &mut arena).unwrap();
    greedy(&mut model, &mut arena, &mut cpu(&cfg, &limits())).unwrap()
}

fn fake(plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    fake_of(image_bytes().unwrap(), plan)
}

fn fake_of(image: &[u8], plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    let profile = Profile::by_name("ufs40").unwrap();
    FakeFlash::new(image.to_vec(), profile, plan)
}

fn reordering() -> FaultPlan {
    FaultPlan {
        reorder: true,
        seed: 3,
        ..FaultPlan::default()
    }
}

struct Streamed {
    tokens: Vec<u32>,
    logits: Vec<f32>,
    plan: StreamPlan,
    bytes_read: u64,
}

impl Streamed {
    /// The same tokens as `tokens` and the same last logits, bit for bit.
    fn assert_generated(&self, tokens: &[u32], logits: &[f32], what: &str) {
        assert_eq!(self.tokens, tokens, "{what}");
        assert!(
            self.logits
                .iter()
                .zip(logits)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: logits differ"
        );
    }
}

/// Streams the bundled image from `dev` under `budget` (`None`: the
/// minimum, `usize::MAX`: everything resident).
fn streamed(
    dev: FakeFlash<Vec<u8>>,
    budget: Option<usize>,
    ring: usize,
) -> Result<Streamed, LoadOrEval> {
    streamed_from(image_bytes().unwrap(), dev, budget, ring)
}

/// [`streamed`] for the image `bytes` (which `dev` holds).
fn streamed_from(
    bytes: &[u8],
    dev: FakeFlash<Vec<u8>>,
    budget: Option<usize>,
    ring: usize,
) -> Result<Streamed, LoadOrEval> {
    let img = Image::parse(bytes).unwrap();
    let cfg = config_of(&img)?;
    let layout = StreamLayout::new(&img, &cfg)?;
    let opts = |budget| StreamOptions {
        budget,
        ring,
        block: dev.geometry().block_size as usize,
        stream_all: false,
        sparse: false,
        checked: 0,
    };
    let ample = StreamPlan::new(&layout, &cfg, &limits(), opts(usize::MAX))?;
    let budget = match budget {
        Some(usize::MAX) => ample.resident_budget(),
        Some(b) => b,
        None => ample.minimum,
    };
    let plan = StreamPlan::new(&layout, &cfg, &limits(), opts(budget))?;
    let mut arena = LockedArena::new(plan.budget).unwrap();
    let source = StreamSource::load(dev, &mut arena, layout, &cfg, &limits(), plan, || 0)?;
    let mut model = Model::new(cfg, limits(), source, &mut arena)?;
    // The loader allocated exactly what the plan counted, at every budget.
    plan.arena_use.check(&arena).map_err(LoadError::from)?;
    let r = greedy(&mut model, &mut arena, &mut cpu(&cfg, &limits()));
    model.weights_mut().quiesce(&mut arena)?;
    let (tokens, logits) = r?;
    assert!(arena.peak() <= plan.budget);
    Ok(Streamed {
        tokens,
        logits,
        plan,
        bytes_read: model.weights().io_stats().bytes,
    })
}

#[test]
fn streaming_under_every_budget_generates_what_memory_does() {
    if image_bytes().is_none() {
        return;
    }
    let (tokens, logits) = in_memory();
    assert_eq!(tokens[0], 7042, "\" Paris\"");
    let model = lode_tests::real_model().unwrap().len();
    for (budget, ring) in [
        (Some(usize::MAX), 2),
        (Some(model / 2), 2),
        (Some(model / 3), 3),
        (None, 2),
        (None, 1),
    ] {
        let s = streamed(fake(reordering()), budget, ring).unwrap();
        s.assert_generated(&tokens, &logits, &format!("budget {budget:?} ring {ring}"));
        if budget == Some(usize::MAX) {
            assert_eq!(s.plan.resident_ffn_layers(), 30);
            assert!(s.plan.head_resident);
        }
        if budget.is_none() {
            // Everything streams: at least the whole FFN each pass.
            assert_eq!(s.plan.resident_ffn_layers(), 0);
            assert!(s.bytes_read > 30 * 2_000_000 * TOKENS as u64);
        }
    }
}

#[test]
fn a_dense_layout_image_streams_exactly_the_gguf_model() {
    let Some(image) = dense_image_bytes() else {
        return;
    };
    let (tokens, logits) = gguf_in_memory();
    assert_eq!(tokens[0], 7042, "\" Paris\"");
    // The image holds the GGUF's FFN bytes: no bundles at all.
    let img = Image::parse(image).unwrap();
    let cfg = config_of(&img).unwrap();
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    assert!(layout
        .ffn
        .iter()
        .all(|f| matches!(f.kind, FfnKind::Dense(_))));
    assert_eq!(img.bundle_region(3).unwrap().count, 0);
    let model = lode_tests::real_model().unwrap().len();
    let mut per_token = Vec::new();
    for (budget, ring) in [
        (Some(usize::MAX), 2),
        (Some(model / 2), 2),
        (Some(model / 3), 3),
        (None, 2),
    ] {
        let s = streamed_from(image, fake_of(image, reordering()), budget, ring).unwrap();
        s.assert_generated(&tokens, &logits, &format!("budget {budget:?} ring {ring}"));
        if budget.is_none() {
            assert_eq!(s.plan.resident_ffn_layers(), 0);
            // A streamed dense layer is read a matrix at a time: the ring's
            // slots hold the largest matrix, not the layer.
            let m = layout.ffn[0].dense().unwrap();
            assert!(
                s.plan.ring_slot < m.gate.len + m.up.len,
                "{}",
                s.plan.ring_slot
            );
            assert!(s.plan.ring_slot >= m.gate.len.max(m.down.len));
        }
        if budget == Some(model / 3) {
            // What no whole FFN layer fits keeps the head's first rows: the
            // resident piece and the streamed ones give the same logits.
            assert!(!s.plan.head_resident && s.plan.head_resident_rows > 0);
        }
        per_token.push(s.bytes_read);
    }
    // Less memory, more reads; with everything resident, nothing after load.
    assert!(per_token.windows(2).all(|w| w[0] <= w[1]), "{per_token:?}");
    assert_eq!(per_token[0], 0, "{per_token:?}");
    // A dense image cannot run sparse: it has no down columns to choose.
    let opts = StreamOptions {
        budget: model / 3,
        ring: 2,
        block: 4096,
        stream_all: false,
        sparse: true,
        checked: 0,
    };
    let e = StreamPlan::new(&layout, &cfg, &limits(), opts).unwrap_err();
    assert!(e.to_string().contains("--layout split"), "{e}");
    // A device failing mid-token, more often than three tries of a read
    // get past: a typed error, not a wrong answer.
    let faults = FaultPlan {
        read_error_ppm: 600_000,
        seed: 11,
        ..reordering()
    };
    let e = streamed_from(image, fake_of(image, faults), None, 2)
        .err()
        .expect("a read must fail");
    assert_eq!(e.kind(), ErrorKind::Flash, "{e}");
}

#[test]
fn a_budget_too_small_names_the_minimum() {
    let Some(bytes) = image_bytes() else { return };
    let img = Image::parse(bytes).unwrap();
    let cfg = config_of(&img).unwrap();
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    let opts = StreamOptions {
        budget: 4 << 20,
        ring: 2,
        block: 4096,
        stream_all: false,
        sparse: false,
        checked: 0,
    };
    let e = StreamPlan::new(&layout, &cfg, &limits(), opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Budget);
    let LoadError::BudgetTooSmall { need, have } = e else {
        panic!("{e:?}")
    };
    assert_eq!(have, 4 << 20);
    assert!(
        need > have && e.to_string().contains(&need.to_string()),
        "{e}"
    );
}

#[test]
fn a_device_failing_mid_token_stops_generation_with_a_read_error() {
    if image_bytes().is_none() {
        return;
    }
    // Most reads fail: some read fails all three of its tries.
    let plan = FaultPlan {
        read_error_ppm: 600_000,
        seed: 11,
        ..reordering()
    };
    let e = streamed(fake(plan), None, 2)
        .err()
        .expect("a read must fail");
    assert_eq!(e.kind(), ErrorKind::Flash, "{e}");
    assert!(e.to_string().contains("device offset"), "{e}");
}

#[test]
fn corrupt_image_data_is_caught_before_anything_is_trusted() {
    let Some(bytes) = image_bytes() else { return };
    let img = Image::parse(bytes).unwrap();
    let mut bad = bytes.to_vec();
    let at = img.bundle_region(17).unwrap().offset as usize + 5000;
    bad[at] ^= 0x40;
    let profile = Profile::by_name("ufs40").unwrap();
    let mut dev = FakeFlash::new(bad, profile, FaultPlan::default());
    let mut arena = LockedArena::new(8 << 20).unwrap();
    let slot = arena
        .alloc(4 << 20, 4096, lode_kernel::arena::SlotKind::IoBuffer)
        .unwrap();
    let e = verify_image_data(&mut dev, &mut arena, &img, slot, |_, _| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadTensor, "{e}");
    // The intact image passes.
    let mut dev = fake(FaultPlan::default());
    verify_image_data(&mut dev, &mut arena, &img, slot, |_, _| {}).unwrap();
}

#[test]
fn an_image_of_another_model_shape_is_refused() {
    let Some(bytes) = image_bytes() else { return };
    let img = Image::parse(bytes).unwrap();
    let cfg = LlamaConfig {
        ffn: 1024,
        ..config_of(&img).unwrap()
    };
    let e = StreamLayout::new(&img, &cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadLayout, "{e}");
}
