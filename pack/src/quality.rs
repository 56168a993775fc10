//! What a packed FFN layout costs in perplexity: the model evaluated on a
//! text with its FFN as GGUF stores it and as the image's bundles, side by
//! side, so `lode pack` can print the change its down-column type causes.
//!
//! The bundles come from the caller's `fill`; `lode pack` reads them back
//! from the image it has just written
//! ([`crate::image::readback::layer_bundles`]), so the number describes
//! the bytes on disk, in either layout: a split image's gate/up tensor rows
//! and down-only bundles are put back together into the same bundles a
//! bundled image stores, and the FFN computed over them is the one the
//! runtime computes over the split pieces.

use std::error::Error;
use std::path::Path;

use lode_formats::gguf::Gguf;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::LockedArena;
use lode_kernel::model::{
    BundleFfn, BundleTypes, FfnSource, Limits, LlamaConfig, LoadError, MemoryPlan, Model, Resident,
    WantLogits,
};
use lode_tokenizer::Tokenizer;

use crate::profile::ppl::Nll;

/// Tokens per evaluated window (the context is reset between windows).
const WINDOW: usize = 256;

/// Dense and bundle perplexity over the first `tokens` tokens of `text`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Tokens scored.
    pub scored: u64,
    /// Perplexity with the GGUF's matrices.
    pub dense: f64,
    /// Perplexity with the bundles `fill` wrote (the image's FFN).
    pub bundles: f64,
}

impl Quality {
    /// The change in percent.
    pub fn change_percent(&self) -> f64 {
        (self.bundles / self.dense - 1.0) * 100.0
    }
}

fn score<F: FfnSource>(
    model: &mut Model<Resident<F>>,
    arena: &mut LockedArena,
    cpu: &mut CpuCompute<'static>,
    ids: &[u32],
) -> Result<Nll, Box<dyn Error>> {
    let mut nll = Nll::default();
    let mut ctx = model.new_context();
    for win in ids.chunks(WINDOW).filter(|w| w.len() >= 2) {
        ctx.clear(arena)?;
        model.eval(
            &mut ctx,
            arena,
            cpu,
            win,
            WantLogits::From(0),
            |pos, logits| {
                if let Some(&next) = win.get(pos + 1) {
                    nll.add(logits, next);
                }
            },
        )?;
    }
    ctx.clear(arena)?;
    Ok(nll)
}

/// Evaluates `file` both ways over the first `tokens` tokens of `text`:
/// with the GGUF's FFN, and with bundles of `types` that `fill(layer, out)`
/// writes (in any neuron order: the FFN sums over its bundles). Everything
/// but the FFN comes from `file` both times (an image copies it byte for
/// byte).
pub fn measure(
    file: &Gguf<'_>,
    cfg: &LlamaConfig,
    types: BundleTypes,
    text: &Path,
    tokens: usize,
    fill: impl FnMut(usize, &mut [u8]) -> Result<(), LoadError>,
) -> Result<Quality, Box<dyn Error>> {
    let (ids, limits, mut cpu) = setup(file, cfg, text, tokens)?;
    let plan = MemoryPlan::dense(file, cfg, &limits)?;
    let dense = score_file(file, cfg, limits, &mut cpu, &ids)?;
    let (ffn_bytes, ffn_slots) = BundleFfn::arena_bytes(cfg, types)?;
    let bplan = MemoryPlan {
        ffn: ffn_bytes,
        slots: plan.slots + ffn_slots,
        ..plan
    };
    let bundles = {
        let mut arena = LockedArena::new(bplan.total())?;
        let ffn = BundleFfn::load(cfg, &limits, types, &mut arena, fill)?;
        let mut model = Model::with_ffn(file, *cfg, limits, &mut arena, ffn)?;
        score(&mut model, &mut arena, &mut cpu, &ids)?
    };
    Ok(Quality {
        scored: dense.count(),
        dense: dense.perplexity(),
        bundles: bundles.perplexity(),
    })
}

/// [`measure`] of a model whose weights were changed in place (`changed`,
/// the same tensors as `file`, some re-quantized): its perplexity is
/// reported as `bundles`.
pub fn measure_changed(
    file: &Gguf<'_>,
    changed: &Gguf<'_>,
    cfg: &LlamaConfig,
    text: &Path,
    tokens: usize,
) -> Result<Quality, Box<dyn Error>> {
    let (ids, limits, mut cpu) = setup(file, cfg, text, tokens)?;
    let dense = score_file(file, cfg, limits, &mut cpu, &ids)?;
    let after = score_file(changed, cfg, limits, &mut cpu, &ids)?;
    Ok(Quality {
        scored: dense.count(),
        dense: dense.perplexity(),
        bundles: after.perplexity(),
    })
}

/// The tokens of `text` to score, the limits and the compute.
fn setup(
    file: &Gguf<'_>,
    cfg: &LlamaConfig,
    text: &Path,
    tokens: usize,
) -> Result<(Vec<u32>, Limits, CpuCompute<'static>), Box<dyn Error>> {
    let tok = Tokenizer::from_gguf(file).map_err(|e| format!("tokenizer: {e}"))?;
    let ids = crate::profile::tokenize(&tok, text, tokens)?;
    let limits = Limits::new(WINDOW.min(cfg.context), 64);
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_env())
        .map_err(|e| format!("CPU compute: {e}"))?;
    cpu.reserve_batch(widest, limits.max_batch)
        .map_err(|e| format!("CPU compute: {e}"))?;
    Ok((ids, limits, cpu))
}

/// The model in `file`, resident, scored on `ids`.
fn score_file(
    file: &Gguf<'_>,
    cfg: &LlamaConfig,
    limits: Limits,
    cpu: &mut CpuCompute<'static>,
    ids: &[u32],
) -> Result<Nll, Box<dyn Error>> {
    let plan = MemoryPlan::dense(file, cfg, &limits)?;
    let mut arena = LockedArena::new(plan.total())?;
    let mut model = Model::load(file, *cfg, limits, &mut arena)?;
    score(&mut model, &mut arena, cpu, ids)
}
