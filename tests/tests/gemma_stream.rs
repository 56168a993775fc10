//! Gemma 3 270M streamed from a lode image (format 1.3) on the fake
//! flash: under every budget the generated tokens and the last logits,
//! bit for bit, equal the GGUF model run whole in memory. The image holds
//! the GGUF's tensors byte for byte except Q and K, whose rows the packer
//! moved into the order lode's RoPE rotates (which a GGUF load does in
//! DRAM), so the two compute the same products on the same bytes.
//!
//! Needs `models/gemma-3-270m-Q4_K_M.gguf` (`scripts/fetch-model
//! gemma3-270m`, or a path in `LODE_GEMMA_MODEL`); without it the tests
//! print why and pass without checking.

use std::sync::OnceLock;

use lode_formats::image::Image;
use lode_formats::DType;
use lode_hal::compute::CpuCompute;
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::DramArena;
use lode_kernel::flash::FlashDevice;
use lode_kernel::formats::gguf::Gguf;
use lode_kernel::limits::REFINED_LOGITS;
use lode_kernel::model::stream::{
    arch_of, config_of, StreamLayout, StreamOptions, StreamPlan, StreamSource,
};
use lode_kernel::model::{Arch, EvalError, Limits, LlamaConfig, MemoryPlan, Model, WeightSource};
use lode_pack::gemma::build_gemma_image;
use lode_pack::head::requantize_head;
use lode_tokenizer::{EncodeOptions, Tokenizer};

const PROMPT: &str = "The capital of France is";
const TOKENS: usize = 6;

/// [`PROMPT`]'s ids in Gemma's vocabulary, `<bos>` first.
fn prompt() -> Vec<u32> {
    let file = Gguf::parse(model_bytes().unwrap()).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let mut ids = Vec::new();
    let opts = EncodeOptions {
        add_bos: tok.specials().add_bos,
        parse_special: false,
    };
    tok.encode_into(PROMPT, opts, &mut ids);
    ids
}

fn model_bytes() -> Option<&'static [u8]> {
    lode_tests::gemma_model()
}

/// The image `lode pack` writes for the model (`head`: with `--head`).
fn pack(head: Option<DType>) -> Option<Vec<u8>> {
    let file = Gguf::parse(model_bytes()?).expect("the model parses");
    let (cfg, arch) = Arch::from_gemma3(&file.check_gemma3().expect("gemma3")).unwrap();
    let Arch::Gemma3(g) = arch else {
        unreachable!("from_gemma3 gives Gemma 3")
    };
    let head = head.map(|d| (d, requantize_head(&file, d).expect("head")));
    let (b, _) = build_gemma_image(&file, (&cfg, &g), 7, (4096, head), || {}).expect("pack");
    Some(b.to_bytes().expect("image bytes"))
}

fn image_bytes() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| pack(None)).as_deref()
}

fn limits() -> Limits {
    Limits::new(16 + TOKENS, 8)
}

fn cpu(cfg: &LlamaConfig) -> CpuCompute<'static> {
    lode_tests::cpu_for(cfg, limits().max_batch)
}

/// Greedy tokens and the last step's logits.
fn greedy<W: WeightSource>(
    model: &mut Model<W>,
    arena: &mut LockedArena,
    cpu: &mut CpuCompute<'static>,
) -> Result<(Vec<u32>, Vec<f32>), EvalError> {
    lode_tests::greedy(model, arena, cpu, &prompt(), TOKENS)
}

/// The GGUF run whole in memory: the reference.
fn gguf_in_memory() -> (Vec<u32>, Vec<f32>) {
    let file = Gguf::parse(model_bytes().unwrap()).unwrap();
    let (cfg, arch) = Arch::from_gemma3(&file.check_gemma3().unwrap()).unwrap();
    let plan = MemoryPlan::dense_for(&file, &cfg, &arch, &limits()).unwrap();
    let mut arena = LockedArena::new(plan.total()).unwrap();
    let mut model = Model::load_for(&file, cfg, arch, limits(), &mut arena).unwrap();
    greedy(&mut model, &mut arena, &mut cpu(&cfg)).unwrap()
}

/// Streams the image under `budget` (`usize::MAX`: everything resident,
/// `None`: the minimum): tokens, last logits, bytes read a pass.
fn streamed(budget: Option<usize>) -> (Vec<u32>, Vec<f32>, StreamPlan, u64) {
    streamed_from(image_bytes().unwrap(), budget)
}

/// [`streamed`] for the image `bytes`, its head refined as `lode run`
/// does when the image flags it approximate.
fn streamed_from(bytes: &[u8], budget: Option<usize>) -> (Vec<u32>, Vec<f32>, StreamPlan, u64) {
    let img = Image::parse(bytes).unwrap();
    let (cfg, arch) = (config_of(&img).unwrap(), arch_of(&img).unwrap());
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    let dev = FakeFlash::new(bytes.to_vec(), &Profile::UFS40, FaultPlan::default());
    let opts = |budget| StreamOptions {
        budget,
        ring: 4,
        block: dev.geometry().block_size as usize,
        stream_all: false,
        sparse: false,
        checked: 0,
    };
    let ample = StreamPlan::new(&layout, &cfg, &limits(), opts(usize::MAX)).unwrap();
    let budget = match budget {
        Some(usize::MAX) => ample.resident_budget(),
        Some(b) => b,
        None => ample.minimum,
    };
    let plan = StreamPlan::new(&layout, &cfg, &limits(), opts(budget)).unwrap();
    let mut arena = LockedArena::new(plan.budget).unwrap();
    let source = StreamSource::load(dev, &mut arena, layout, &cfg, &limits(), plan, || 0).unwrap();
    let mut model = Model::new_for(cfg, arch, limits(), source, &mut arena).unwrap();
    if img.arch_params().unwrap().approx_head {
        model.refine_head(REFINED_LOGITS).unwrap();
    }
    plan.arena_use.check(&arena).unwrap();
    let (tokens, logits) = greedy(&mut model, &mut arena, &mut cpu(&cfg)).unwrap();
    model.weights_mut().quiesce(&mut arena).unwrap();
    assert!(arena.peak() <= plan.budget);
    (tokens, logits, plan, model.weights().io_stats().bytes)
}

#[test]
fn a_gemma_image_streams_exactly_the_gguf_model_under_every_budget() {
    let Some(image) = image_bytes() else {
        return;
    };
    let img = Image::parse(image).unwrap();
    assert_eq!(
        (img.header().minor, img.geometry().arch.as_str()),
        (3, "gemma3")
    );
    let (tokens, logits) = gguf_in_memory();
    assert_eq!(prompt().len(), 6);
    let whole = model_bytes().unwrap().len();
    let mut read = Vec::new();
    for budget in [Some(usize::MAX), Some(whole / 2), Some(whole / 3), None] {
        let (t, l, plan, bytes) = streamed(budget);
        assert_eq!(t, tokens, "budget {budget:?}");
        assert!(
            l.iter()
                .zip(&logits)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "budget {budget:?}: logits differ"
        );
        if budget == Some(whole / 3) {
            // A third of the model cannot hold the tied head (70% of it):
            // it is streamed every token.
            assert!(!plan.head_resident);
        }
        read.push(bytes);
    }
    assert_eq!(read[0], 0, "{read:?}");
    assert!(read.windows(2).all(|w| w[0] <= w[1]), "{read:?}");
}

#[test]
fn a_gemma_image_refuses_a_sparse_plan_and_other_layouts() {
    let Some(image) = image_bytes() else {
        return;
    };
    let img = Image::parse(image).unwrap();
    let cfg = config_of(&img).unwrap();
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    assert_eq!(layout.extra_norms.len(), cfg.layers);
    let opts = StreamOptions {
        budget: image.len() / 3,
        ring: 2,
        block: 4096,
        stream_all: false,
        sparse: true,
        checked: 0,
    };
    let e = StreamPlan::new(&layout, &cfg, &limits(), opts).unwrap_err();
    assert!(e.to_string().contains("--layout split"), "{e}");
}

/// A Q4_0 copy of the tied head, its largest logits refined from the
/// Q8_0 table: the same greedy tokens as the GGUF, and the chosen token's
/// logit as the tied head computes it, at a third of the model with about
/// half the head's bytes streamed.
#[test]
fn a_q4_0_head_refined_from_the_table_picks_the_gguf_tokens() {
    let Some(image) = pack(Some(DType::Q4_0)) else {
        return;
    };
    let img = Image::parse(&image).unwrap();
    assert!(img.arch_params().unwrap().approx_head);
    let (tokens, logits) = gguf_in_memory();
    let whole = model_bytes().unwrap().len();
    let (t, l, _, bytes) = streamed_from(&image, Some(whole / 3));
    assert_eq!(t, tokens);
    let top = *tokens.last().unwrap() as usize;
    assert!(
        (l[top] - logits[top]).abs() < 1e-3,
        "{} {}",
        l[top],
        logits[top]
    );
    let (_, _, _, tied_bytes) = streamed(Some(whole / 3));
    assert!(bytes * 10 < tied_bytes * 6, "{bytes} {tied_bytes}");
}
