//! Sparse streaming of SmolLM2-135M from a split image on the fake flash:
//! gate and up rows stored as tensors in placement order, down columns as
//! bundles. Under a small budget, with the neuron cache and completions
//! reordered, a sparse run computes exactly what the same sparse run does
//! with everything resident (same neurons, same columns, bit for bit);
//! dense streaming of a split image matches its resident run too; a device
//! failing mid-token is a typed error.
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (or `LODE_MODEL`); when
//! it is missing the tests print why and pass without checking.

use std::sync::OnceLock;

use lode_formats::image::Image;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::DramArena;
use lode_kernel::cache::S3Fifo;
use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    config_of, SparseScratch, SparseSetup, SparseStats, StreamLayout, StreamOptions, StreamPlan,
    StreamSource,
};
use lode_kernel::model::{ErrorKind, Limits, LoadError, Model, WantLogits};
use lode_pack::image::FfnLayout;
use lode_tests::LoadOrEval;

const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314]; // "The capital of France is"
const TOKENS: usize = 6;

/// The split image, every layer's neurons in a scrambled order (so a row
/// that did not follow its neuron's column would change the output).
fn split_image() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        // Multiplying by an odd number permutes 0..n when n is even.
        Some(lode_tests::pack_layout(
            lode_tests::real_model()?,
            FfnLayout::Split,
            |n, l| (0..n).map(|i| (i * 7 + l as u32 * 13) % n).collect(),
        ))
    })
    .as_deref()
}

fn limits() -> Limits {
    Limits::new(PROMPT.len() + TOKENS, 8)
}

fn fake(plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    let profile = Profile::by_name("ufs40").unwrap();
    FakeFlash::new(split_image().unwrap().to_vec(), profile, plan)
}

fn reordering() -> FaultPlan {
    FaultPlan {
        reorder: true,
        seed: 5,
        ..FaultPlan::default()
    }
}

#[derive(Debug)]
struct Run {
    tokens: Vec<u32>,
    logits: Vec<f32>,
    plan: StreamPlan,
    sparse: Option<SparseStats>,
    cache_slots: u32,
}

/// How a sparse run reads its down columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// The kept ones, per token, without a cache.
    Uncached,
    /// The kept ones, per token, through the neuron cache.
    Cached,
    /// Every column, through the ring (a dense plan with the sparse rule).
    Whole,
}

/// Streams the split image from `dev` under `budget` (`None`: the
/// minimum, `usize::MAX`: everything resident) at `sparsity`; with
/// `stream_all`, every FFN layer streams and the rest of the budget is
/// neuron cache.
fn run(
    dev: FakeFlash<Vec<u8>>,
    budget: Option<usize>,
    sparsity: f32,
    columns: Columns,
    stream_all: bool,
) -> Result<Run, LoadOrEval> {
    let cache = columns == Columns::Cached;
    let img = Image::parse(split_image().unwrap()).unwrap();
    let cfg = config_of(&img)?;
    let layout = StreamLayout::new(&img, &cfg)?;
    let block = dev.geometry().block_size as usize;
    let sparse = sparsity > 0.0 && columns != Columns::Whole;
    let opts = |budget| StreamOptions {
        budget,
        ring: 2,
        block,
        stream_all,
        sparse,
        checked: 0,
    };
    let ample = StreamPlan::new(
        &layout,
        &cfg,
        &limits(),
        StreamOptions {
            stream_all: false,
            ..opts(usize::MAX)
        },
    )?;
    let budget = match budget {
        Some(usize::MAX) => ample.resident_budget(),
        Some(b) => b,
        None => ample.minimum,
    };
    let plan = StreamPlan::new(&layout, &cfg, &limits(), opts(budget))?;
    let mut arena = LockedArena::new(plan.budget).unwrap();
    let (n, n_ext) = SparseScratch::lens(&layout, block, dev.geometry().max_transfer as usize);
    let mut positions = vec![0u32; n];
    let mut missing = vec![0u32; n];
    let mut locs = vec![Default::default(); n];
    let mut extents = vec![Default::default(); n_ext];
    let source = if sparse {
        let setup = SparseSetup {
            sparsity,
            policy: cache.then(|| S3Fifo::new(10)),
            scratch: SparseScratch {
                positions: &mut positions,
                missing: &mut missing,
                locs: &mut locs,
                extents: &mut extents,
            },
        };
        StreamSource::load_sparse(dev, &mut arena, layout, &cfg, &limits(), plan, || 0, setup)?
    } else {
        let mut s = StreamSource::load(dev, &mut arena, layout, &cfg, &limits(), plan, || 0)?;
        if sparsity > 0.0 {
            s.keep_strongest(sparsity)?;
        }
        s
    };
    let mut model = Model::new(cfg, limits(), source, &mut arena)?;
    // The loader allocated exactly what the plan counted, at every budget.
    plan.arena_use.check(&arena).map_err(LoadError::from)?;
    let widest = cfg.hidden.max(cfg.ffn);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(2).with_env()).unwrap();
    cpu.reserve_batch(widest, limits().max_batch).unwrap();
    let mut tokens = Vec::new();
    let mut logits = Vec::new();
    let mut feed = PROMPT.to_vec();
    let mut result = Ok(());
    let mut ctx = model.new_context();
    for _ in 0..TOKENS {
        let mut next = 0u32;
        result = model.eval(
            &mut ctx,
            &mut arena,
            &mut cpu,
            &feed,
            WantLogits::Last,
            |_, l| {
                next = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32;
                logits = l.to_vec();
            },
        );
        if result.is_err() {
            break;
        }
        tokens.push(next);
        feed = vec![next];
    }
    model.weights_mut().quiesce(&mut arena)?;
    result?;
    assert!(arena.peak() <= plan.budget);
    Ok(Run {
        tokens,
        logits,
        plan,
        sparse: model.weights().sparse_stats(),
        cache_slots: model.weights().cache_stats().map_or(0, |(_, s)| s),
    })
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn dense_streaming_of_a_split_image_matches_its_resident_run() {
    if split_image().is_none() {
        return;
    }
    let resident = run(
        fake(FaultPlan::default()),
        Some(usize::MAX),
        0.0,
        Columns::Uncached,
        false,
    )
    .unwrap();
    assert_eq!(resident.tokens[0], 7042, "\" Paris\"");
    assert_eq!(resident.plan.resident_ffn_layers(), 30);
    let streamed = run(fake(reordering()), None, 0.0, Columns::Uncached, false).unwrap();
    assert_eq!(streamed.plan.resident_ffn_layers(), 0);
    assert_eq!(streamed.tokens, resident.tokens);
    assert!(same_bits(&streamed.logits, &resident.logits));
}

#[test]
fn sparse_streaming_reads_only_the_chosen_columns_and_matches_its_resident_run() {
    if split_image().is_none() {
        return;
    }
    let resident = run(
        fake(FaultPlan::default()),
        Some(usize::MAX),
        0.5,
        Columns::Cached,
        false,
    )
    .unwrap();
    assert_eq!(resident.tokens[0], 7042, "\" Paris\" at 50% sparsity");
    let model = lode_tests::real_model().unwrap().len();
    // The minimum without a cache; a third and two thirds of the model, which
    // the sparse rule gives to what a token reads whole (attention, the
    // head's rows, the FFN's gate and up rows) before any down column; every FFN layer streamed with room to
    // cache them all, so later tokens are served from the cache.
    let big_cache = resident.plan.minimum + 60 * 1024 * 1024;
    for (budget, cache, all) in [
        (None, false, false),
        (Some(model / 3), true, false),
        (Some(model * 2 / 3), true, false),
        (Some(big_cache), true, true),
    ] {
        let columns = if cache {
            Columns::Cached
        } else {
            Columns::Uncached
        };
        let s = run(fake(reordering()), budget, 0.5, columns, all).unwrap();
        assert_eq!(s.tokens, resident.tokens, "budget {budget:?}");
        assert!(
            same_bits(&s.logits, &resident.logits),
            "budget {budget:?}: logits differ"
        );
        let st = s.sparse.unwrap();
        let streamed_layers = (30 - s.plan.resident_ffn_layers()) as u64;
        // One fetch per streamed layer per pass (a prompt batch, then one
        // pass per token after the first).
        assert_eq!(st.fetches, streamed_layers * TOKENS as u64);
        // Each token keeps 768 of 1536 neurons per layer; the prompt's
        // batch needs the union of its positions' choices.
        assert!(st.needed >= st.fetches * 768, "{st:?}");
        assert!(st.needed < st.fetches * 1536, "{st:?}");
        assert_eq!(st.hits + st.misses, st.needed);
        if all {
            assert_eq!(s.plan.resident_ffn_layers(), 0);
            assert!(st.hits * 2 > st.needed, "{st:?} slots {}", s.cache_slots);
        }
        if all {
            assert!(
                s.cache_slots > 0,
                "budget {budget:?} leaves room for a cache"
            );
        } else if cache {
            let p = &s.plan;
            assert!(
                p.head_resident || p.head_resident_rows > 0,
                "budget {budget:?}: the head's rows come before down columns"
            );
            assert_eq!(p.resident_ffn_layers(), 0, "budget {budget:?}");
            if budget == Some(model * 2 / 3) {
                // The whole head fits, and some layers' gate and up rows.
                assert!(p.head_resident && p.rows_resident != 0, "{p:?}");
            }
        } else {
            assert_eq!(st.hits, 0);
        }
    }
}

#[test]
fn reading_columns_whole_computes_what_reading_the_kept_ones_does() {
    if split_image().is_none() {
        return;
    }
    // Same rule, same neurons, same order of accumulation: the columns'
    // source (per-token reads or the ring) changes nothing, bit for bit.
    let sparse = run(fake(reordering()), None, 0.4, Columns::Uncached, false).unwrap();
    let whole = run(fake(reordering()), None, 0.4, Columns::Whole, false).unwrap();
    assert!(whole.sparse.is_none() && sparse.sparse.is_some());
    assert!(!whole.plan.sparse);
    assert_eq!(whole.tokens, sparse.tokens);
    assert!(same_bits(&whole.logits, &sparse.logits));
    // And it is the sparse rule: dense streaming of the image differs.
    let dense = run(fake(reordering()), None, 0.0, Columns::Uncached, false).unwrap();
    assert!(!same_bits(&whole.logits, &dense.logits));
}

#[test]
fn a_device_failing_during_a_sparse_fetch_is_a_read_error() {
    if split_image().is_none() {
        return;
    }
    // A read fails now and then: tried again, the run gives the clean
    // run's tokens.
    let clean = run(fake(reordering()), None, 0.5, Columns::Cached, false).unwrap();
    let plan = FaultPlan {
        read_error_ppm: 20_000,
        seed: 17,
        ..reordering()
    };
    let retried = run(fake(plan), None, 0.5, Columns::Cached, false).unwrap();
    assert_eq!(retried.tokens, clean.tokens);
    // Most reads fail: some read fails all three of its tries.
    let plan = FaultPlan {
        read_error_ppm: 600_000,
        ..plan
    };
    let Err(e) = run(fake(plan), None, 0.5, Columns::Cached, false) else {
        panic!("a read must fail");
    };
    assert_eq!(e.kind(), ErrorKind::Flash, "{e}");
}

#[test]
fn a_sparse_run_of_a_bundled_image_is_refused_with_the_fix() {
    let Some(bytes) = lode_tests::real_model() else {
        return;
    };
    let image = lode_tests::pack_identity(bytes);
    let img = Image::parse(&image).unwrap();
    let cfg = config_of(&img).unwrap();
    let layout = StreamLayout::new(&img, &cfg).unwrap();
    let opts = StreamOptions {
        budget: usize::MAX,
        ring: 2,
        block: 4096,
        stream_all: false,
        sparse: true,
        checked: 0,
    };
    let e = StreamPlan::new(&layout, &cfg, &limits(), opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadLayout);
    assert!(e.to_string().contains("--layout split"), "{e}");
    // Nor can a dense run of it keep only the strongest neurons.
    let dense = StreamOptions {
        sparse: false,
        ..opts
    };
    let ample = StreamPlan::new(&layout, &cfg, &limits(), dense).unwrap();
    let plan = StreamPlan::new(
        &layout,
        &cfg,
        &limits(),
        StreamOptions {
            budget: ample.resident_budget(),
            ..dense
        },
    )
    .unwrap();
    let profile = Profile::by_name("ufs40").unwrap();
    let dev = FakeFlash::new(image.clone(), profile, FaultPlan::default());
    let mut arena = LockedArena::new(plan.budget).unwrap();
    let mut source =
        StreamSource::load(dev, &mut arena, layout, &cfg, &limits(), plan, || 0).unwrap();
    let e = source.keep_strongest(0.5).unwrap_err();
    assert!(e.to_string().contains("--layout split"), "{e}");
}
