//! SmolLM2-135M-Instruct (Q4_1) run by lode against what llama.cpp computed
//! on the same file (`tests/golden/smollm2-q4_1.json`, see its README).
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (`scripts/fetch-model`, or
//! a path in `LODE_MODEL`) and the golden file; the perplexity test also
//! needs `/usr/share/common-licenses/GPL-3`. When one is missing the test
//! prints why and passes without checking.
//!
//! How lode compares with llama.cpp, and why agreement is not exact:
//! - Both multiply quantized weights by activations quantized to 8 bits in
//!   blocks of 32 (llama.cpp's Q8_0/Q8_1 `vec_dot_type`; lode's
//!   `CpuCompute` does the same), so they share that rounding; an exact f32
//!   reference forward pass agrees with llama.cpp on only about 95.7% of
//!   top-1 tokens precisely because it lacks it.
//! - They still differ in the order of float additions (SIMD lanes, block
//!   sums, threads), in RoPE and softmax arithmetic, and in the KV cache:
//!   llama.cpp stores K and V as F16 while lode keeps f32. So logits differ
//!   by small amounts and near-ties can swap their top-1 token; the bar is
//!   95% top-1 agreement over every position of every golden prompt, plus
//!   perplexity within 2% of llama.cpp's on the same windows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::DramArena;
use lode_kernel::formats::gguf::{ErrorKind as GgufKind, Gguf};
use lode_kernel::model::{
    Context, Limits, LlamaConfig, LlamaConfigExt, LoadError, MemoryPlan, Model, WantLogits,
};
use lode_kernel::rng::SplitMix64;
use lode_tests::{argmax, ids_of};
use lode_tokenizer::{EncodeOptions, Tokenizer};
use serde_json::Value as Json;

/// Counts heap allocations made by threads that ask to be counted, so one
/// test can check the decode path while other tests run beside it.
struct Counting;

thread_local! {
    static COUNT_ME: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn note_allocation() {
    if COUNT_ME.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: defers to the system allocator unchanged; it only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    std::env::var_os("LODE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// The model file's bytes, read once; `None` (with a note) when absent.
fn model_bytes() -> Option<&'static [u8]> {
    static BYTES: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    BYTES
        .get_or_init(|| match std::fs::read(model_path()) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "note: {}: {e}; run scripts/fetch-model. Skipping.",
                    model_path().display()
                );
                None
            }
        })
        .as_deref()
}

/// The golden file; `None` (with a note) when absent.
fn golden() -> Option<&'static Json> {
    static GOLDEN: OnceLock<Option<Json>> = OnceLock::new();
    GOLDEN
        .get_or_init(|| {
            let path = repo_root().join("tests/golden/smollm2-q4_1.json");
            match std::fs::read(&path) {
                Ok(b) => Some(serde_json::from_slice(&b).expect("golden file is JSON")),
                Err(e) => {
                    eprintln!("note: {}: {e}; skipping.", path.display());
                    None
                }
            }
        })
        .as_ref()
}

/// A loaded model with everything needed to run it.
struct Runner {
    model: Model,
    ctx: Context,
    arena: LockedArena,
    cpu: CpuCompute<'static>,
    tok: Tokenizer,
}

/// Loads the real model for `limits` with `threads` compute threads (the
/// test harness also runs tests side by side on the machine's cores).
fn runner(limits: Limits, threads: usize) -> Option<Runner> {
    let bytes = model_bytes()?;
    let file = Gguf::parse(bytes).expect("the model parses");
    let cfg = LlamaConfig::from_gguf(&file.check_llama().expect("llama")).expect("config");
    let plan = MemoryPlan::dense(&file, &cfg, &limits).expect("plan");
    let mut arena = LockedArena::new(plan.total()).expect("arena");
    let model = Model::load(&file, cfg, limits, &mut arena).expect("load");
    assert!(arena.peak() <= plan.total());
    let widest = cfg.hidden.max(cfg.ffn);
    let mut cpu =
        CpuCompute::new(CpuConfig::new(widest).with_threads(threads).with_env()).expect("cpu");
    cpu.reserve_batch(widest, limits.max_batch)
        .expect("scratch");
    let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
    Some(Runner {
        ctx: model.new_context(),
        model,
        arena,
        cpu,
        tok,
    })
}

impl Runner {
    /// The ids llama.cpp's `tokenize(text, add_bos=True, special)` gives.
    fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        let opts = EncodeOptions {
            add_bos: self.tok.specials().add_bos,
            parse_special,
        };
        self.tok.encode_into(text, opts, &mut ids);
        ids
    }

    /// From an empty context: `f(position, logits)` for positions >= `from`.
    fn eval(&mut self, ids: &[u32], from: usize, f: impl FnMut(usize, &[f32])) {
        self.ctx.clear(&mut self.arena).expect("reset");
        self.model
            .eval(
                &mut self.ctx,
                &mut self.arena,
                &mut self.cpu,
                ids,
                WantLogits::From(from),
                f,
            )
            .expect("eval");
    }
}

fn prompts(g: &Json) -> &Vec<Json> {
    g["prompts"].as_array().expect("prompts")
}

#[test]
fn tokenization_matches_llama_cpp() {
    let (Some(g), Some(r)) = (golden(), runner(Limits::new(16, 1), 1)) else {
        return;
    };
    for p in prompts(g) {
        let text = p["text"].as_str().expect("text");
        let special = p["parse_special"].as_bool().expect("parse_special");
        assert_eq!(r.encode(text, special), ids_of(&p["ids"]), "{}", p["name"]);
    }
}

#[test]
fn top1_agrees_with_llama_cpp_at_95_percent_of_positions() {
    let Some(g) = golden() else { return };
    let Some(mut r) = runner(Limits::new(64, 64), 1) else {
        return;
    };
    let (mut agree, mut total) = (0usize, 0usize);
    let mut worst_gap = 0.0f32;
    for p in prompts(g) {
        let ids = ids_of(&p["ids"]);
        let top = p["top"].as_array().expect("top");
        assert_eq!(top.len(), ids.len());
        let mut mine = Vec::new();
        r.eval(&ids, 0, |pos, logits| {
            let want = &top[pos];
            let ref_top = want[0][0].as_u64().unwrap() as u32;
            let ref_logit = want[0][1].as_f64().unwrap() as f32;
            // llama.cpp's best token scores about the same in lode.
            worst_gap = worst_gap.max((logits[ref_top as usize] - ref_logit).abs());
            mine.push((argmax(logits), ref_top));
        });
        assert_eq!(mine.len(), ids.len());
        for (a, b) in &mine {
            agree += usize::from(a == b);
            total += 1;
        }
        assert_eq!(
            mine.last().map(|m| m.0),
            p["greedy_next"].as_u64().map(|v| v as u32),
            "{}: greedy next token",
            p["name"]
        );
    }
    let pct = 100.0 * agree as f64 / total as f64;
    println!(
        "top-1 agreement with llama.cpp: {agree}/{total} = {pct:.1}%; \
         largest |logit difference| of llama.cpp's top token: {worst_gap:.3}"
    );
    assert_eq!(total, 196);
    assert!(pct >= 95.0, "top-1 agreement {pct:.1}% < 95%");
    assert!(worst_gap < 1.0, "a logit differs by {worst_gap}");
}

#[test]
fn the_capital_of_france_is_paris() {
    let Some(g) = golden() else { return };
    let Some(mut r) = runner(Limits::new(32, 8), 1) else {
        return;
    };
    let p = prompts(g)
        .iter()
        .find(|p| p["name"] == "capital")
        .expect("the capital prompt");
    let mut ids = r.encode("The capital of France is", false);
    r.ctx.clear(&mut r.arena).unwrap();
    let mut generated = Vec::new();
    let mut next = 0;
    let mut feed = ids.clone();
    for _ in 0..8 {
        r.model
            .eval(
                &mut r.ctx,
                &mut r.arena,
                &mut r.cpu,
                &feed,
                WantLogits::Last,
                |_, l| next = argmax(l),
            )
            .unwrap();
        generated.push(next);
        feed = vec![next];
    }
    ids.extend(&generated);
    let text = String::from_utf8(r.tok.decode(&generated).unwrap()).unwrap();
    println!("lode: {text:?}");
    assert!(text.starts_with(" Paris"), "{text:?}");
    assert_eq!(generated, ids_of(&p["greedy_continuation"]), "{text:?}");
}

#[test]
fn perplexity_on_gpl3_is_within_2_percent_of_llama_cpp() {
    /// Windows compared: a prefix of the golden file's 14, small enough to
    /// keep this test near 30 s at the test profile's opt-level 1 on two
    /// cores (the other tests of this file finish within seconds, so it
    /// uses two compute threads).
    const WINDOWS: usize = 3;
    let Some(g) = golden() else { return };
    let ppl = &g["perplexity"];
    let path = ppl["file"].as_str().expect("file");
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("note: {path} is absent; skipping.");
        return;
    };
    let n_ctx = ppl["n_ctx"].as_u64().unwrap() as usize;
    let first = ppl["first_predicted_position"].as_u64().unwrap() as usize;
    let scored = ppl["scored_per_window"].as_u64().unwrap() as usize;
    assert_eq!(first + scored, n_ctx);
    let Some(mut r) = runner(Limits::new(n_ctx, 64).with_logit_rows(8), 2) else {
        return;
    };
    let ids = r.encode(&text, false);
    if ids != ids_of(&g["gpl3"]["ids"]) {
        eprintln!("note: {path} differs from the text llama.cpp scored; skipping.");
        return;
    }
    let ref_nll: Vec<f64> = ppl["window_nll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut mine = Vec::new();
    for w in 0..WINDOWS {
        let win = &ids[w * n_ctx..(w + 1) * n_ctx];
        let mut nll = 0.0f64;
        // Logits at position p predict token p + 1.
        r.eval(win, first - 1, |pos, logits| {
            if pos + 1 < n_ctx {
                let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let z: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
                nll += m + z.ln() - logits[win[pos + 1] as usize] as f64;
            }
        });
        mine.push(nll);
    }
    let per = (WINDOWS * scored) as f64;
    let lode = (mine.iter().sum::<f64>() / per).exp();
    let llama = (ref_nll[..WINDOWS].iter().sum::<f64>() / per).exp();
    println!(
        "perplexity over {WINDOWS} windows: lode {lode:.4}, llama.cpp {llama:.4} ({:+.2}%); \
         per window lode {mine:.1?} vs {:.1?}",
        100.0 * (lode / llama - 1.0),
        &ref_nll[..WINDOWS]
    );
    assert!((lode / llama - 1.0).abs() < 0.02);
}

#[test]
fn prompt_and_decode_steps_allocate_nothing() {
    let Some(mut r) = runner(Limits::new(64, 16), 2) else {
        return;
    };
    let ids = r.encode("The capital of France is", false);
    let mut next = 0u32;
    COUNT_ME.with(|c| c.set(true));
    // The counter sees this thread's allocations.
    drop(std::hint::black_box(vec![0u8; 8]));
    assert_eq!(ALLOCATIONS.swap(0, Ordering::Relaxed), 1);
    r.model
        .eval(
            &mut r.ctx,
            &mut r.arena,
            &mut r.cpu,
            &ids,
            WantLogits::Last,
            |_, l| next = argmax(l),
        )
        .unwrap();
    for _ in 0..20 {
        r.model
            .eval(
                &mut r.ctx,
                &mut r.arena,
                &mut r.cpu,
                &[next],
                WantLogits::Last,
                |_, l| next = argmax(l),
            )
            .unwrap();
    }
    r.ctx.clear(&mut r.arena).unwrap();
    COUNT_ME.with(|c| c.set(false));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    assert_eq!(r.ctx.len(), 0);
}

/// Offsets of the bytes of `needle` in `hay` (first match).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present")
}

/// Parses, checks and plans `bytes` the way `lode run` does.
fn load_kind(bytes: &[u8]) -> Result<(), String> {
    let file = Gguf::parse(bytes).map_err(|e| format!("{:?}", e.kind()))?;
    let p = file.check_llama().map_err(|e| format!("{:?}", e.kind()))?;
    let cfg = LlamaConfig::from_gguf(&p).map_err(|e| format!("{e}"))?;
    MemoryPlan::dense(&file, &cfg, &Limits::new(16, 4)).map_err(|e: LoadError| format!("{e}"))?;
    Ok(())
}

#[test]
fn mutated_model_headers_are_errors_not_panics() {
    let Some(bytes) = model_bytes() else { return };
    let file = Gguf::parse(bytes).unwrap();
    let data_start = file.data_offset() as usize;
    let kind = |b: &[u8]| {
        Gguf::parse(b)
            .and_then(|f| f.check_llama())
            .err()
            .map(|e| e.kind())
    };

    let mut b = bytes[..data_start].to_vec();
    b[0] = b'X';
    assert_eq!(kind(&b), Some(GgufKind::BadMagic));

    // Cut inside the tensor table (the last tensor's info).
    let last = file.tensors().last().unwrap();
    let cut = find(&bytes[..data_start], last.name.as_bytes());
    assert_eq!(kind(&bytes[..cut + 4]), Some(GgufKind::Truncated));
    // Cut inside the data: the last tensor reaches past the end.
    assert_eq!(
        kind(&bytes[..bytes.len() - 1000]),
        Some(GgufKind::TensorOutOfBounds)
    );

    // An unknown block type for token_embd.weight: name, n_dims, 2 dims, type.
    let mut b = bytes[..data_start].to_vec();
    let at = find(&b, b"token_embd.weight") + "token_embd.weight".len() + 4 + 16;
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(kind(&b), Some(GgufKind::UnknownType));

    // Another architecture (the value right after the key and its type).
    let mut b = bytes.to_vec();
    let at = find(&b, b"general.architecture") + "general.architecture".len() + 4 + 8;
    b[at..at + 5].copy_from_slice(b"gpt2x");
    assert_eq!(kind(&b), Some(GgufKind::NotLlama));

    // Random damage to the header: always a typed result, never a panic.
    let mut rng = SplitMix64::new(5);
    let header = &bytes[..data_start.min(1 << 20)];
    for _ in 0..150 {
        let mut b = header.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(b.len() as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        let cut = if rng.below(3) == 0 {
            rng.below(b.len() as u64) as usize
        } else {
            b.len()
        };
        let _ = load_kind(&b[..cut]);
    }
    assert_eq!(load_kind(bytes), Ok(()));
}
