//! A smaller output head for a model whose head is its embedding table,
//! and what it costs in quality.
//!
//! Gemma 3 270M ties its output head to a Q8_0 embedding of 262,144 rows:
//! 170 MiB of a 241 MiB model. A token needs one embedding row but every
//! head row, so under a budget that cannot hold the head (a third of the
//! model) the head is what each token streams. `lode pack --head TYPE`
//! stores a separate `output.weight`, the embedding re-quantized to a
//! narrower type (Q4_0: 90 MiB), and keeps the Q8_0 table for the
//! embedding rows, read one a token: fewer bytes a token. The image flags
//! the head approximate, and a runtime recomputes the largest logits of
//! each position from the Q8_0 rows (`Model::refine_head`), so the tokens
//! chosen among are scored as the tied head scores them.
//! [`measure_head`] prints what is left of the cost: perplexity with both
//! heads on a text, raw and refined, and how often their top-1 tokens
//! agree.

use std::error::Error;
use std::format;
use std::path::Path;
use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::{dequantize_row, Gguf};
use lode_formats::DType;
use lode_hal::compute::quant::quantize_row;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::LockedArena;
use lode_kernel::limits::REFINED_LOGITS;
use lode_kernel::model::{
    Arch, LlamaConfig, LoadError, MemoryPlan, Model, RawTensor, TensorSource, WantLogits,
};
use lode_tokenizer::Tokenizer;

use crate::profile::ppl::Nll;

/// The embedding's name in a GGUF, and the untied head's.
const EMBED: &str = "token_embd.weight";
const HEAD: &str = "output.weight";

/// Tokens per evaluated window (the context is reset between windows).
const WINDOW: usize = 256;

/// `file`'s embedding table re-quantized to `dtype`, row by row: the bytes
/// of an `output.weight` of the embedding's shape.
pub fn requantize_head(file: &Gguf<'_>, dtype: DType) -> Result<Vec<u8>, String> {
    if file.tensor(HEAD).is_some() {
        return Err(format!(
            "the model has its own {HEAD}; only a head tied to the embedding is re-quantized"
        ));
    }
    let t = file
        .tensor(EMBED)
        .ok_or(format!("the model has no {EMBED}"))?;
    let data = file.data(&t).map_err(|e| format!("{EMBED}: {e}"))?;
    let cols = usize::try_from(t.dims.row_len()).map_err(|e| format!("{EMBED}: {e}"))?;
    let src_row = usize::try_from(t.row_bytes()).map_err(|e| format!("{EMBED}: {e}"))?;
    let dst_row = dtype
        .row_bytes(cols as u64)
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b > 0 && src_row > 0)
        .ok_or(format!(
            "{EMBED}: rows of {cols} are not whole blocks of {}",
            dtype.name()
        ))?;
    let rows = data.len() / src_row;
    let mut out = vec![0u8; rows * dst_row];
    let mut row = vec![0f32; cols];
    for (src, dst) in data
        .chunks_exact(src_row)
        .zip(out.chunks_exact_mut(dst_row))
    {
        dequantize_row(t.dtype, src, &mut row).map_err(|e| format!("{EMBED}: {e}"))?;
        quantize_row(dtype, &row, dst)
            .map_err(|e| format!("{EMBED} to {}: {e:?}", dtype.name()))?;
    }
    Ok(out)
}

/// A GGUF with an untied `output.weight` of `dtype` holding `head`.
struct WithHead<'a, 'd> {
    file: &'a Gguf<'d>,
    head: &'a [u8],
    dtype: DType,
}

impl TensorSource for WithHead<'_, '_> {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
        if name != HEAD {
            return TensorSource::tensor(self.file, name);
        }
        Ok(TensorSource::tensor(self.file, EMBED)?.map(|e| RawTensor {
            dtype: self.dtype,
            dims: e.dims,
            data: self.head,
        }))
    }
}

/// Perplexity with the tied head and with the re-quantized one, raw and
/// with its largest logits refined from the embedding table (as `lode
/// run` computes it), and how often each agrees with the tied head on the
/// most likely next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadQuality {
    /// Tokens scored.
    pub scored: u64,
    /// Perplexity with the model's own (tied) head.
    pub tied: f64,
    /// Perplexity with the re-quantized head's logits as they are.
    pub requantized: f64,
    /// Share of positions where that head's top-1 token is the tied one's.
    pub top1_agreement: f64,
    /// Perplexity with the largest [`REFINED_LOGITS`] logits refined.
    pub refined: f64,
    /// Top-1 agreement with the refined logits.
    pub refined_top1_agreement: f64,
}

impl HeadQuality {
    /// The perplexity change of the raw re-quantized head, in percent.
    pub fn change_percent(&self) -> f64 {
        (self.requantized / self.tied - 1.0) * 100.0
    }

    /// The perplexity change with refined logits, in percent.
    pub fn refined_change_percent(&self) -> f64 {
        (self.refined / self.tied - 1.0) * 100.0
    }
}

/// A head's score over a text: the negative log-likelihoods, and the
/// most likely token of every scored position.
type Scored = (Nll, Vec<u32>);

/// Scores the model of `src` over windows of `ids`, once for each number
/// of refined logits in `refines`, from one load.
fn score<S: TensorSource>(
    src: &S,
    (cfg, arch, refines): (&LlamaConfig, &Arch, &[usize]),
    cpu: &mut CpuCompute<'static>,
    (ids, bos): (&[u32], Option<u32>),
) -> Result<Vec<Scored>, Box<dyn Error>> {
    let limits = lode_kernel::model::Limits::new(WINDOW.min(cfg.context), 64);
    let plan = MemoryPlan::dense_for(src, cfg, arch, &limits)?;
    let mut arena = LockedArena::new(plan.total())?;
    let mut model = Model::load_for(src, *cfg, *arch, limits, &mut arena)?;
    let mut ctx = model.new_context();
    // A model that asks for BOS sees it at the start of every window (as
    // `lode run` starts a prompt), and it is not scored.
    let text_len = WINDOW - usize::from(bos.is_some());
    let mut win = Vec::with_capacity(WINDOW);
    let mut out = Vec::with_capacity(refines.len());
    for &refine in refines {
        model.refine_head(refine)?;
        let (mut nll, mut top) = (Nll::default(), Vec::new());
        for piece in ids.chunks(text_len).filter(|w| w.len() >= 2) {
            win.clear();
            win.extend(bos);
            win.extend_from_slice(piece);
            let first = usize::from(bos.is_some());
            ctx.clear(&mut arena)?;
            let (arena, cpu, win) = (&mut arena, &mut *cpu, &win);
            model.eval(
                &mut ctx,
                arena,
                cpu,
                win,
                WantLogits::From(first),
                |pos, l| {
                    if let Some(&next) = win.get(pos + 1) {
                        nll.add(l, next);
                        let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b]));
                        top.push(best.unwrap_or(0) as u32);
                    }
                },
            )?;
        }
        out.push((nll, top));
    }
    ctx.clear(&mut arena)?;
    Ok(out)
}

/// Evaluates `file` (shape `cfg`, architecture `arch`) over the first
/// `tokens` tokens of `text` with its tied head and with `head`, the
/// embedding re-quantized to `dtype` ([`requantize_head`]): windows of
/// 256 positions from an empty cache, BOS first when the model asks for
/// it, every next token of the text scored.
pub fn measure_head(
    file: &Gguf<'_>,
    (cfg, arch): (&LlamaConfig, &Arch),
    (dtype, head): (DType, &[u8]),
    text: &Path,
    tokens: usize,
) -> Result<HeadQuality, Box<dyn Error>> {
    let tok = Tokenizer::from_gguf(file).map_err(|e| format!("tokenizer: {e}"))?;
    let ids = crate::profile::tokenize(&tok, text, tokens)?;
    let bos = tok.specials().bos.filter(|_| tok.specials().add_bos);
    let scored = (ids.as_slice(), bos);
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_env())
        .map_err(|e| format!("CPU compute: {e}"))?;
    cpu.reserve_batch(widest, 64)
        .map_err(|e| format!("CPU compute: {e}"))?;
    let mut tied = score(file, (cfg, arch, &[0]), &mut cpu, scored)?;
    let (tied, tied_top) = tied.pop().ok_or("no tied-head score")?;
    let untied = LlamaConfig {
        tied_embeddings: false,
        ..*cfg
    };
    let src = WithHead { file, head, dtype };
    // One load scores the raw head, then the same head refined.
    let mut two = score(
        &src,
        (&untied, arch, &[0, REFINED_LOGITS]),
        &mut cpu,
        scored,
    )?;
    let (refined, refined_top) = two.pop().ok_or("no refined score")?;
    let (requantized, top) = two.pop().ok_or("no raw score")?;
    let agree = |top: &[u32]| {
        let same = tied_top.iter().zip(top).filter(|(a, b)| a == b).count();
        same as f64 / tied_top.len().max(1) as f64
    };
    Ok(HeadQuality {
        scored: tied.count(),
        tied: tied.perplexity(),
        requantized: requantized.perplexity(),
        top1_agreement: agree(&top),
        refined: refined.perplexity(),
        refined_top1_agreement: agree(&refined_top),
    })
}
