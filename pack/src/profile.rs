//! Profiling a real model (the library half of `lode profile`): record which
//! FFN neurons it activates on a text, under per-layer thresholds calibrated
//! to a target sparsity, and measure what cutting the others costs in
//! perplexity.
//!
//! The text is tokenized (BOS first when the model asks for one, as
//! `lode run` does), cut to `max_tokens` and split into windows of
//! `window` tokens; the context is reset between windows so every window
//! is scored on its own, as perplexity tools do. Two passes go over the
//! same windows:
//!
//! 1. dense: every neuron active; the dense perplexity, and a sample of
//!    every layer's neuron scores (see the `sample` module). Each layer's
//!    threshold is then the `sparsity` quantile of its sampled scores;
//! 2. sparse: neurons scoring under their layer's threshold are zeroed
//!    before the down product; the sparse perplexity, and every token's
//!    active set per layer written to an activation trace
//!    (`formats/TRACE.md`) stamped with the model's fingerprint;
//! 3. top-k: each token keeps its strongest `1 - sparsity` of every layer's
//!    neurons, by activation magnitude, as a sparse `lode run` does (it has
//!    no thresholds: it ranks each token's neurons); the perplexity of
//!    that rule, so the quality a run trades is measured, not assumed.
//!
//! A neuron's score ([`ScoreMode`]) is `|silu(gate·x)·(up·x)|` (`exact`) or
//! `|silu(gate·x)|` (`gate`, PowerInfer-2's gate-first selection). The trace
//! is written all or nothing: an error leaves no file.

mod ffn;
mod options;
pub mod ppl;
mod sample;

use std::cell::RefCell;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lode_formats::gguf::Gguf;
use lode_formats::input::{read_file, Limit};
use lode_formats::trace::{TraceHeader, TraceWriter};
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::{HugePages, LockedArena, LockedArenaOptions};
use lode_kernel::model::stream::neurons_kept;
use lode_kernel::model::{
    DenseFfn, Limits, LlamaConfig, LlamaConfigExt, MemoryPlan, Model, Resident, WantLogits,
    MAX_CONTEXT,
};
use lode_tokenizer::{EncodeOptions, Tokenizer};
use serde::Serialize;

use crate::model_id::fingerprint;
use crate::output::Output;
use crate::progress::Progress;

pub use ffn::ScoreMode;
use ffn::{Profiler, ProfilingFfn};
pub use options::{OptionError, ProfileOptions};
use ppl::Nll;

/// Positions evaluated per pass over the weights (each window is
/// evaluated in batches of this many).
const BATCH: usize = 64;
/// Positions whose logits are computed per pass over the output head.
const LOGIT_ROWS: usize = 16;

/// What a profile measured (what `lode profile --json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// The model file.
    pub model: String,
    /// The text file.
    pub text: String,
    /// The trace written.
    pub output: String,
    /// How neurons were scored.
    pub mode: ScoreMode,
    /// Tokens evaluated in each pass (and records in the trace).
    pub tokens: usize,
    /// Windows the tokens were cut into.
    pub windows: usize,
    /// Tokens per window.
    pub window: usize,
    /// Next-token predictions scored per pass (a window of `n` tokens
    /// scores `n - 1`).
    pub predictions: u64,
    /// Tokens whose scores calibrated the thresholds (per layer).
    pub sampled_tokens: usize,
    /// The sparsity asked for.
    pub target_sparsity: f64,
    /// Fraction of (token, layer, neuron) cut in the sparse pass.
    pub achieved_sparsity: f64,
    /// The least sparse layer's fraction cut.
    pub min_layer_sparsity: f64,
    /// The most sparse layer's fraction cut.
    pub max_layer_sparsity: f64,
    /// Perplexity with every neuron.
    pub dense_ppl: f64,
    /// Perplexity with the cut neurons zeroed.
    pub sparse_ppl: f64,
    /// `(sparse / dense - 1) * 100`.
    pub ppl_change_percent: f64,
    /// Neurons per layer each token keeps in the top-k pass.
    pub top_k_keep: usize,
    /// Neurons kept or dropped together in the top-k pass (1: each alone).
    pub top_k_group: usize,
    /// Perplexity when each token keeps only its `top_k_keep` strongest
    /// neurons per layer (a sparse `lode run`'s rule).
    pub top_k_ppl: f64,
    /// `(top_k / dense - 1) * 100`.
    pub top_k_ppl_change_percent: f64,
    /// Wall time of the whole command.
    pub seconds: f64,
    /// Seconds of the dense pass.
    pub dense_seconds: f64,
    /// Seconds of the sparse pass (with writing the trace).
    pub sparse_seconds: f64,
    /// Seconds of the top-k pass.
    pub top_k_seconds: f64,
    /// Bytes of the trace.
    pub trace_bytes: u64,
    /// The model fingerprint stamped into the trace.
    pub fingerprint: String,
    /// Per layer: the score at or above which a neuron is active.
    pub thresholds: Vec<f32>,
    /// Per layer: the fraction cut.
    pub layer_sparsity: Vec<f64>,
}

/// The most bytes a text to profile or measure perplexity on may have
/// (64 MiB): it is read whole and tokenized before `max_tokens` cuts it,
/// and 64 MiB is some 15 million tokens, thousands of times what a
/// profile or a perplexity check evaluates (4,096 by default).
pub const TEXT_LIMIT: Limit = Limit::new("text", 64 << 20);

/// The UTF-8 text file `path`, bounded by [`TEXT_LIMIT`].
pub fn read_text(path: &Path) -> Result<String, String> {
    let raw = read_file(path, TEXT_LIMIT).map_err(|e| e.to_string())?;
    String::from_utf8(raw).map_err(|e| format!("{}: not UTF-8 text ({e})", path.display()))
}

/// The token ids of the text file `path`, cut to `max`.
pub fn tokenize(tok: &Tokenizer, path: &Path, max: usize) -> Result<Vec<u32>, String> {
    tokenize_text(tok, path, &read_text(path)?, max)
}

/// The token ids of `text` (read from `path`), cut to `max`.
pub fn tokenize_text(
    tok: &Tokenizer,
    path: &Path,
    text: &str,
    max: usize,
) -> Result<Vec<u32>, String> {
    let add_bos = tok.specials().add_bos;
    let mut ids = Vec::new();
    tok.encode_into(
        text,
        EncodeOptions {
            add_bos,
            parse_special: false,
        },
        &mut ids,
    );
    if ids.len() <= usize::from(add_bos) {
        return Err(format!("{}: the text has no tokens", path.display()));
    }
    if ids.len() < 2 {
        return Err(format!(
            "{}: the text has 1 token; scoring needs at least 2",
            path.display()
        ));
    }
    ids.truncate(max);
    Ok(ids)
}

/// The model, its arena, backend and profiler state for one profile.
struct Run<'p> {
    model: Model<Resident<ProfilingFfn<'p>>>,
    arena: LockedArena,
    cpu: CpuCompute<'static>,
    profiler: &'p RefCell<Profiler>,
    path: PathBuf,
}

impl Run<'_> {
    /// One pass over `ids` in windows of `window`, reported to `progress`
    /// as a job called `label`: the perplexity, the seconds taken, and
    /// `after(profiler, tokens)` called after each window is evaluated.
    fn pass(
        &mut self,
        ids: &[u32],
        window: usize,
        label: &str,
        progress: &mut dyn Progress,
        mut after: impl FnMut(&Profiler, usize) -> Result<(), Box<dyn Error>>,
    ) -> Result<(Nll, f64), Box<dyn Error>> {
        let named = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let mut nll = Nll::default();
        progress.start(label, ids.len() as u64);
        let t0 = Instant::now();
        let mut ctx = self.model.new_context();
        for w in ids.chunks(window) {
            ctx.clear(&mut self.arena).map_err(|e| named(&e))?;
            self.profiler
                .try_borrow_mut()?
                .begin_window(w.len())
                .map_err(|e| named(&e))?;
            self.model
                .eval(
                    &mut ctx,
                    &mut self.arena,
                    &mut self.cpu,
                    w,
                    WantLogits::From(0),
                    |pos, logits| {
                        if let Some(&next) = w.get(pos + 1) {
                            nll.add(logits, next);
                        }
                    },
                )
                .map_err(|e| named(&e))?;
            after(&*self.profiler.try_borrow()?, w.len())?;
            progress.tick(w.len() as u64);
        }
        ctx.clear(&mut self.arena).map_err(|e| named(&e))?;
        progress.finish();
        Ok((nll, t0.elapsed().as_secs_f64()))
    }
}

/// Runs the passes and writes the trace; returns what was measured. Each
/// pass is a job reported to `progress`. Options out of range are an
/// [`OptionError`].
pub fn profile(
    a: &ProfileOptions,
    progress: &mut dyn Progress,
) -> Result<ProfileReport, Box<dyn Error>> {
    let t0 = Instant::now();
    a.check()?;
    // A bad output path is refused before the model is read.
    let output = Output::check(&a.output, &[&a.model, &a.text])?;
    // The text is small and bounded: read it before the model, so a bad
    // one fails first too.
    let text = read_text(&a.text)?;
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", a.model.display());
    let bytes = read_file(&a.model, Limit::whole("GGUF model"))?;
    let file = Gguf::parse(&bytes).map_err(|e| named(&e))?;
    let params = file.check_llama().map_err(|e| named(&e))?;
    let cfg = LlamaConfig::from_gguf(&params).map_err(|e| named(&e))?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| named(&format!("tokenizer: {e}")))?;
    let ids = tokenize_text(&tokenizer, &a.text, &text, a.max_tokens)?;
    drop(text);
    let tokens = u32::try_from(ids.len()).map_err(|_| "too many tokens for a trace")?;
    let room = cfg.context.min(MAX_CONTEXT);
    if a.window > room {
        return Err(OptionError::WindowPastContext {
            window: a.window,
            room,
            model: a.model.clone(),
        }
        .into());
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Size everything for the longest window actually evaluated.
    let context = a.window.min(ids.len());
    let batch = context.min(BATCH);
    let limits = Limits::new(context, batch).with_logit_rows(batch.min(LOGIT_ROWS));
    let plan = MemoryPlan::dense(&file, &cfg, &limits).map_err(|e| named(&e))?;
    let mut arena = LockedArena::with_options(
        plan.total(),
        LockedArenaOptions {
            huge_pages: HugePages::Transparent,
        },
    )
    .map_err(|e| format!("DRAM arena: {e}"))?;
    let dense = DenseFfn::load(&file, &cfg, &limits, &mut arena).map_err(|e| named(&e))?;
    let profiler =
        RefCell::new(Profiler::new(dense.layers(), &cfg, batch, a.mode).map_err(|e| named(&e))?);
    let model = Model::with_ffn(&file, cfg, limits, &mut arena, ProfilingFfn(&profiler))
        .map_err(|e| named(&e))?;
    let fp = fingerprint(&file);
    // The weights are in the arena now.
    drop(bytes);
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(threads).with_env())
        .map_err(|e| format!("CPU compute: {e}"))?;
    cpu.reserve_batch(widest, batch)
        .map_err(|e| format!("CPU compute: {e}"))?;
    let mut run = Run {
        model,
        arena,
        cpu,
        profiler: &profiler,
        path: a.model.clone(),
    };

    let (dense_nll, dense_seconds) =
        run.pass(&ids, a.window, "profile: dense pass", progress, |_, _| {
            Ok(())
        })?;
    let sampled_tokens = profiler.borrow().sampled_tokens();
    let thresholds = profiler.borrow_mut().start_masking(a.sparsity)?;

    let header = TraceHeader {
        layers: u32::try_from(cfg.layers)?,
        neurons: u32::try_from(cfg.ffn)?,
        tokens,
        fingerprint: fp,
        flags: 0,
    };
    let out_named = |e: &dyn std::fmt::Display| format!("{}: {e}", a.output.display());
    let (sparse_nll, sparse_seconds) = output.write(|w| {
        let mut trace = TraceWriter::new(w, header).map_err(|e| out_named(&e))?;
        let r = run.pass(&ids, a.window, "profile: sparse pass", progress, |p, n| {
            for t in 0..n {
                let sets = p
                    .token_bitsets(t)
                    .ok_or("profiler: a window's bitsets are missing")?;
                trace.push(&sets).map_err(|e| out_named(&e))?;
            }
            Ok(())
        })?;
        trace.finish().map_err(|e| out_named(&e))?;
        Ok(r)
    })?;

    let (active, masked) = match profiler.borrow().active() {
        Some((a, t)) => (a.to_vec(), t),
        None => return Err("profiler: the sparse pass recorded nothing".into()),
    };
    let keep = neurons_kept(a.sparsity as f32, cfg.ffn);
    profiler.borrow_mut().start_top_k(keep, a.group);
    let (top_k_nll, top_k_seconds) =
        run.pass(&ids, a.window, "profile: top-k pass", progress, |_, _| {
            Ok(())
        })?;
    let per_layer = (masked as f64 * cfg.ffn as f64).max(1.0);
    let layer_sparsity: Vec<f64> = active.iter().map(|&n| 1.0 - n as f64 / per_layer).collect();
    let achieved = layer_sparsity.iter().sum::<f64>() / layer_sparsity.len().max(1) as f64;
    let dense_ppl = dense_nll.perplexity();
    let sparse_ppl = sparse_nll.perplexity();
    let top_k_ppl = top_k_nll.perplexity();
    Ok(ProfileReport {
        model: a.model.display().to_string(),
        text: a.text.display().to_string(),
        output: a.output.display().to_string(),
        mode: a.mode,
        tokens: ids.len(),
        windows: ids.len().div_ceil(a.window),
        window: a.window,
        predictions: dense_nll.count(),
        sampled_tokens,
        target_sparsity: a.sparsity,
        achieved_sparsity: achieved,
        min_layer_sparsity: layer_sparsity.iter().copied().fold(f64::INFINITY, f64::min),
        max_layer_sparsity: layer_sparsity
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max),
        dense_ppl,
        sparse_ppl,
        ppl_change_percent: (sparse_ppl / dense_ppl - 1.0) * 100.0,
        top_k_keep: keep,
        top_k_group: a.group,
        top_k_ppl,
        top_k_ppl_change_percent: (top_k_ppl / dense_ppl - 1.0) * 100.0,
        seconds: t0.elapsed().as_secs_f64(),
        dense_seconds,
        sparse_seconds,
        top_k_seconds,
        trace_bytes: header.file_len().map_or(0, |n| n as u64),
        fingerprint: format!("{fp:#018x}"),
        thresholds,
        layer_sparsity,
    })
}
