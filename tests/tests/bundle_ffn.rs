//! The FFN over neuron bundles (gate row | up row | re-quantized down
//! column) against the dense FFN, on SmolLM2-135M (Q4_1).
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (or `LODE_MODEL`), the
//! golden file and `/usr/share/common-licenses/GPL-3`; when one is missing
//! the test prints why and passes without checking.

use std::path::PathBuf;

use lode_hal::compute::CpuCompute;
use lode_hal_linux::LockedArena;
use lode_kernel::compute::DType;
use lode_kernel::formats::gguf::Gguf;
use lode_kernel::model::{
    BundleFfn, BundleTypes, Context, FfnSource, Limits, LlamaConfig, LlamaConfigExt, MemoryPlan,
    Model, Resident, WantLogits,
};
use lode_pack::bundle::fill_layer;
use lode_tokenizer::{EncodeOptions, Tokenizer};
use serde_json::Value as Json;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_or_note(path: PathBuf) -> Option<Vec<u8>> {
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("note: {}: {e}; skipping.", path.display());
            None
        }
    }
}

fn model_path() -> PathBuf {
    std::env::var_os("LODE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// A model, its arena and a CPU.
struct Runner<F: FfnSource> {
    model: Model<Resident<F>>,
    ctx: Context,
    arena: LockedArena,
    cpu: CpuCompute<'static>,
}

fn cpu(cfg: &LlamaConfig, limits: &Limits) -> CpuCompute<'static> {
    lode_tests::cpu_for(cfg, limits.max_batch)
}

fn dense(file: &Gguf<'_>, limits: Limits) -> Runner<lode_kernel::model::DenseFfn> {
    let cfg = LlamaConfig::from_gguf(&file.check_llama().unwrap()).unwrap();
    let plan = MemoryPlan::dense(file, &cfg, &limits).unwrap();
    let mut arena = LockedArena::new(plan.total()).unwrap();
    let model = Model::load(file, cfg, limits, &mut arena).unwrap();
    Runner {
        ctx: model.new_context(),
        model,
        arena,
        cpu: cpu(&cfg, &limits),
    }
}

fn bundled(file: &Gguf<'_>, limits: Limits, down: DType) -> Runner<BundleFfn> {
    let cfg = LlamaConfig::from_gguf(&file.check_llama().unwrap()).unwrap();
    let types = BundleTypes {
        rows: DType::Q4_1,
        down,
    };
    let (ffn_bytes, ffn_slots) = BundleFfn::arena_bytes(&cfg, types).unwrap();
    let dense = MemoryPlan::dense(file, &cfg, &limits).unwrap();
    let plan = MemoryPlan {
        ffn: ffn_bytes,
        slots: dense.slots + ffn_slots,
        ..dense
    };
    let mut arena = LockedArena::new(plan.total()).unwrap();
    let ffn = BundleFfn::load(&cfg, &limits, types, &mut arena, |layer, out| {
        fill_layer(file, &cfg, types, layer, None, out)
    })
    .unwrap();
    let model = Model::with_ffn(file, cfg, limits, &mut arena, ffn).unwrap();
    Runner {
        ctx: model.new_context(),
        model,
        arena,
        cpu: cpu(&cfg, &limits),
    }
}

impl<F: FfnSource> Runner<F> {
    /// Mean negative log-likelihood per scored token over `windows`.
    fn nll(&mut self, windows: &[&[u32]], first: usize) -> f64 {
        let (mut sum, mut count) = (0.0f64, 0usize);
        for win in windows {
            self.ctx.clear(&mut self.arena).unwrap();
            let n = win.len();
            self.model
                .eval(
                    &mut self.ctx,
                    &mut self.arena,
                    &mut self.cpu,
                    win,
                    WantLogits::From(first - 1),
                    |pos, logits| {
                        if pos + 1 < n {
                            let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                            let z: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
                            sum += m + z.ln() - logits[win[pos + 1] as usize] as f64;
                            count += 1;
                        }
                    },
                )
                .unwrap();
        }
        sum / count as f64
    }

    /// Greedy continuation of `ids`, `n` tokens.
    fn greedy(&mut self, ids: &[u32], n: usize) -> Vec<u32> {
        self.ctx.clear(&mut self.arena).unwrap();
        let mut out = Vec::new();
        let mut feed = ids.to_vec();
        for _ in 0..n {
            let mut next = 0u32;
            self.model
                .eval(
                    &mut self.ctx,
                    &mut self.arena,
                    &mut self.cpu,
                    &feed,
                    WantLogits::Last,
                    |_, l| {
                        next = (0..l.len())
                            .max_by(|&a, &b| l[a].total_cmp(&l[b]))
                            .unwrap_or(0) as u32
                    },
                )
                .unwrap();
            out.push(next);
            feed = vec![next];
        }
        out
    }
}

/// What a perplexity comparison needs.
struct Setup {
    /// The GGUF file's bytes.
    bytes: Vec<u8>,
    /// The first golden windows of token ids.
    wins: Vec<Vec<u32>>,
    /// Tokens per window.
    n_ctx: usize,
    /// First scored position in a window.
    first: usize,
}

/// The model file and first `windows` golden perplexity windows, or `None`
/// with a note.
fn setup(windows: usize) -> Option<Setup> {
    let bytes = read_or_note(model_path())?;
    let golden = read_or_note(repo_root().join("tests/golden/smollm2-q4_1.json"))?;
    let g: Json = serde_json::from_slice(&golden).unwrap();
    let ppl = &g["perplexity"];
    let path = ppl["file"].as_str().unwrap();
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("note: {path} is absent; skipping.");
        return None;
    };
    let n_ctx = ppl["n_ctx"].as_u64().unwrap() as usize;
    let first = ppl["first_predicted_position"].as_u64().unwrap() as usize;
    let file = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let mut ids = Vec::new();
    tok.encode_into(&text, opts(&tok), &mut ids);
    let wins: Vec<Vec<u32>> = ids
        .chunks_exact(n_ctx)
        .take(windows)
        .map(<[u32]>::to_vec)
        .collect();
    assert_eq!(wins.len(), windows);
    Some(Setup {
        bytes,
        wins,
        n_ctx,
        first,
    })
}

fn opts(tok: &Tokenizer) -> EncodeOptions {
    EncodeOptions {
        add_bos: tok.specials().add_bos,
        parse_special: false,
    }
}

/// Perplexity over the first golden GPL-3 windows is within 1% of the
/// dense FFN's with a Q8_0 down column, and greedy decoding still names
/// Paris.
#[test]
fn bundles_with_q8_0_down_match_dense_within_1_percent() {
    /// Windows compared: a prefix of the golden 14, to keep the test short.
    const WINDOWS: usize = 2;
    let Some(Setup {
        bytes,
        wins,
        n_ctx,
        first,
    }) = setup(WINDOWS)
    else {
        return;
    };
    let windows: Vec<&[u32]> = wins.iter().map(Vec::as_slice).collect();
    let file = Gguf::parse(&bytes).unwrap();
    let limits = Limits::new(n_ctx, 64).with_logit_rows(8);
    let dense_ppl = dense(&file, limits).nll(&windows, first).exp();
    let mut b = bundled(&file, limits, DType::Q8_0);
    let bundle_ppl = b.nll(&windows, first).exp();
    let change = 100.0 * (bundle_ppl / dense_ppl - 1.0);
    println!(
        "perplexity over {WINDOWS} windows: dense FFN {dense_ppl:.4}, \
         bundles (Q4_1 gate/up, Q8_0 down) {bundle_ppl:.4} ({change:+.2}%)"
    );
    assert!(change.abs() < 1.0, "{change:+.2}%");

    let tok = Tokenizer::from_gguf(&file).unwrap();
    let mut prompt = Vec::new();
    tok.encode_into("The capital of France is", opts(&tok), &mut prompt);
    let gen = b.greedy(&prompt, 3);
    let text = String::from_utf8(tok.decode(&gen).unwrap()).unwrap();
    println!("bundles: {text:?}");
    assert!(text.starts_with(" Paris"), "{text:?}");
}

/// The perplexity change of each down-column type (slow: run with
/// `--ignored` to measure; DESIGN.md's numbers were on all 14 windows).
#[test]
#[ignore]
fn down_column_types_perplexity() {
    let windows_n: usize = std::env::var("LODE_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let Some(Setup {
        bytes,
        wins,
        n_ctx,
        first,
    }) = setup(windows_n)
    else {
        return;
    };
    let windows: Vec<&[u32]> = wins.iter().map(Vec::as_slice).collect();
    let file = Gguf::parse(&bytes).unwrap();
    let limits = Limits::new(n_ctx, 64).with_logit_rows(8);
    let base = dense(&file, limits).nll(&windows, first).exp();
    println!("dense FFN over {windows_n} windows: {base:.4}");
    for down in [DType::Q8_0, DType::Q5_1, DType::Q4_1] {
        let p = bundled(&file, limits, down).nll(&windows, first).exp();
        println!(
            "{} down: {p:.4} ({:+.2}%)",
            down.name(),
            100.0 * (p / base - 1.0)
        );
    }
}

/// The down-column types compared layer by layer: a dense FFN and bundled
/// copies with each type, in one arena. Each layer runs every copy on the
/// same input (so all see the dense model's activations), records how far
/// each copy's output is from the dense one, and passes on the output of
/// `keep[layer]` (`None`: the dense one).
struct Mixed {
    dense: lode_kernel::model::DenseFfn,
    copies: Vec<BundleFfn>,
    keep: Vec<Option<usize>>,
    /// Run every copy and record the errors (else run only the kept one).
    record: bool,
    hidden: usize,
    /// Per layer: the dense outputs' L2 norm, then each copy's L2 error,
    /// summed over positions.
    err: Vec<Vec<f64>>,
}

const COMPARED: [DType; 3] = [DType::Q4_1, DType::Q5_1, DType::Q8_0];

fn mixed(file: &Gguf<'_>, limits: Limits) -> Runner<Mixed> {
    let cfg = LlamaConfig::from_gguf(&file.check_llama().unwrap()).unwrap();
    let types = |down| BundleTypes {
        rows: DType::Q4_1,
        down,
    };
    let copies: usize = COMPARED
        .iter()
        .map(|&d| BundleFfn::arena_bytes(&cfg, types(d)).unwrap().0)
        .sum();
    let plan = MemoryPlan::dense(file, &cfg, &limits).unwrap();
    let mut arena = LockedArena::new(plan.total() + copies + (1 << 20)).unwrap();
    let dense = lode_kernel::model::DenseFfn::load(file, &cfg, &limits, &mut arena).unwrap();
    let copies = COMPARED
        .iter()
        .map(|&d| {
            BundleFfn::load(&cfg, &limits, types(d), &mut arena, |layer, out| {
                fill_layer(file, &cfg, types(d), layer, None, out)
            })
            .unwrap()
        })
        .collect();
    let ffn = Mixed {
        dense,
        copies,
        keep: vec![None; cfg.layers],
        record: true,
        hidden: cfg.hidden,
        err: vec![vec![0.0; COMPARED.len() + 1]; cfg.layers],
    };
    let model = Model::with_ffn(file, cfg, limits, &mut arena, ffn).unwrap();
    Runner {
        ctx: model.new_context(),
        model,
        arena,
        cpu: cpu(&cfg, &limits),
    }
}

impl FfnSource for Mixed {
    fn run<A: lode_kernel::arena::DramArena, C: lode_kernel::compute::Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: lode_kernel::model::FfnIo,
    ) -> Result<(), lode_kernel::model::EvalError> {
        let out = |arena: &A| -> Vec<f32> {
            let b = arena.bytes(io.output).unwrap();
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        if !self.record {
            // Only the kept output is wanted.
            return match self.keep[layer] {
                Some(k) => self.copies[k].run(layer, arena, compute, io),
                None => self.dense.run(layer, arena, compute, io),
            };
        }
        let mut outs = Vec::new();
        for c in &mut self.copies {
            c.run(layer, arena, compute, io)?;
            outs.push(out(arena));
        }
        self.dense.run(layer, arena, compute, io)?;
        let want = out(arena);
        let n = io.rows * self.hidden;
        let l2 = |v: &[f32]| {
            v.iter()
                .zip(&want)
                .take(n)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let e = &mut self.err[layer];
        e[0] += want[..n]
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        for (i, o) in outs.iter().enumerate() {
            e[i + 1] += l2(o);
        }
        if let Some(k) = self.keep[layer] {
            let bytes: Vec<u8> = outs[k].iter().flat_map(|v| v.to_le_bytes()).collect();
            arena.bytes_mut(io.output).unwrap()[..bytes.len()].copy_from_slice(&bytes);
        }
        Ok(())
    }
}

/// On the model's own activations, every layer's FFN output is closer to
/// the dense one the wider the re-quantized down column: Q8_0, then Q5_1
/// (about half Q4_1's error: one more bit), then Q4_1. This is why
/// the perplexity of `--down q5-1` above `q4-1` is not a kernel or format
/// fault (see `down_column_sensitivity_per_layer`).
#[test]
fn down_column_error_ranks_by_width_on_every_layer() {
    let Some(Setup {
        bytes, wins, n_ctx, ..
    }) = setup(1)
    else {
        return;
    };
    let file = Gguf::parse(&bytes).unwrap();
    let limits = Limits::new(n_ctx, 64).with_logit_rows(8);
    let mut r = mixed(&file, limits);
    let win = &wins[0][..wins[0].len().min(48)];
    r.ctx.clear(&mut r.arena).unwrap();
    r.model
        .eval(
            &mut r.ctx,
            &mut r.arena,
            &mut r.cpu,
            win,
            WantLogits::Last,
            |_, _| {},
        )
        .unwrap();
    let (mut q4, mut q5) = (0.0, 0.0);
    for (layer, e) in r.model.weights().ffn().err.iter().enumerate() {
        let [norm, e4, e5, e8] = [e[0], e[1], e[2], e[3]];
        assert!(
            e8 < e5 && e5 < e4,
            "layer {layer}: q8_0 {e8} q5_1 {e5} q4_1 {e4}"
        );
        q4 += e4 / norm;
        q5 += e5 / norm;
    }
    assert!(q5 < 0.7 * q4, "q5_1 {q5} vs q4_1 {q4}");
}

/// How much the perplexity moves when one layer's FFN takes re-quantized
/// down columns and every other layer stays dense (run with `--ignored
/// --nocapture`). On SmolLM2 a few layers swing it by several percent in
/// either direction whatever the column's width, so a whole-model
/// perplexity ranks Q5_1 below Q4_1 although its columns are twice as
/// close (the test above).
#[test]
#[ignore]
fn down_column_sensitivity_per_layer() {
    let Some(Setup {
        bytes,
        wins,
        n_ctx,
        first,
    }) = setup(2)
    else {
        return;
    };
    let windows: Vec<&[u32]> = wins.iter().map(Vec::as_slice).collect();
    let file = Gguf::parse(&bytes).unwrap();
    let limits = Limits::new(n_ctx, 64).with_logit_rows(8);
    let mut r = mixed(&file, limits);
    r.model.weights_mut().ffn_mut().record = false;
    let layers = r.model.weights().ffn().keep.len();
    let base = r.nll(&windows, first).exp();
    let ppl = |r: &mut Runner<Mixed>, keep: Vec<Option<usize>>| {
        r.model.weights_mut().ffn_mut().keep = keep;
        let p = r.nll(&windows, first).exp();
        100.0 * (p / base - 1.0)
    };
    let all: Vec<f64> = (0..COMPARED.len())
        .map(|k| ppl(&mut r, vec![Some(k); layers]))
        .collect();
    println!("dense perplexity over 2 windows {base:.4}; every layer re-quantized:");
    for (d, p) in COMPARED.iter().zip(&all) {
        println!("  {} {p:+.2}%", d.name());
    }
    println!("one layer re-quantized (q4_1 q5_1 q8_0):");
    for layer in 0..layers {
        let one: Vec<String> = (0..COMPARED.len())
            .map(|k| {
                let mut keep = vec![None; layers];
                keep[layer] = Some(k);
                format!("{:+6.2}%", ppl(&mut r, keep))
            })
            .collect();
        println!("  layer {layer:2}: {}", one.join(" "));
    }
}
