//! What compressing a context's KV chunks costs in quality.
//!
//! The service compresses an idle context's chunks (LLMS's
//! tolerance-aware compression) and the context later continues from
//! them. This module measures exactly that: a text's first `prefix`
//! tokens are evaluated, every full chunk is quantized and decoded back at
//! the bits a [`KvScheme`] gives it, and the next `continuation` tokens
//! are scored against the same run with full-precision KV: perplexity and
//! how often the most likely next token is unchanged (top-1 agreement).
//!
//! Two layouts are compared: per token (keys and values in groups of 32
//! channels of one position, the `Compute` codec as it is) and KIVI's
//! (keys per channel, a group being one channel over the chunk's 16
//! positions, values per token), because keys carry outlier channels that a
//! per-token group must stretch its range over.

use lode_kernel::arena::DramArena;
use lode_kernel::compute::{Compute, KvBits, KvGroups};
use lode_kernel::model::kv::tolerance::{assign_levels, mean_bits, LevelsError};
use lode_kernel::model::{EvalError, WantLogits, CHUNK_TOKENS};
use serde::Serialize;

use crate::error::GenerateError;
use crate::session::Session;

/// Why a KV quality measurement failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum KvQualityError {
    /// The text is shorter than the prefix plus two tokens, or the prefix
    /// is not a positive number of whole chunks.
    Text {
        /// Tokens of the text.
        tokens: usize,
        /// The prefix asked for.
        prefix: usize,
    },
    /// A uniform scheme asked for bits other than 8, 4 or 2.
    Bits(u32),
    /// The levels could not be assigned (a target that is not a number).
    Levels(LevelsError),
    /// Evaluating or compressing failed.
    Generate(GenerateError),
}

impl std::fmt::Display for KvQualityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvQualityError::Text { tokens, prefix } => write!(
                f,
                "the text has {tokens} tokens: it needs a prefix of a positive multiple of \
                 {CHUNK_TOKENS} tokens (asked: {prefix}) and at least 2 more"
            ),
            KvQualityError::Bits(b) => write!(f, "{b} bits: KV chunks take 8, 4 or 2"),
            KvQualityError::Levels(e) => write!(f, "{e}"),
            KvQualityError::Generate(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KvQualityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KvQualityError::Generate(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: Into<GenerateError>> From<E> for KvQualityError {
    fn from(e: E) -> KvQualityError {
        KvQualityError::Generate(e.into())
    }
}

/// How a chunk's keys are grouped (values are always per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvLayout {
    /// Groups of 32 channels of one position.
    PerToken,
    /// Keys: one channel over the chunk's 16 positions (KIVI).
    KeysPerChannel,
}

/// Bits for every chunk, or by density to an average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KvScheme {
    /// Every chunk at the same bits.
    Uniform {
        /// Data bits per element: 8, 4 or 2.
        bits: u32,
        /// Key grouping.
        layout: KvLayout,
    },
    /// LLMS: 8, 4 or 2 bits by density, to a mean of `target` data bits.
    Tolerance {
        /// Mean data bits per element.
        target: f32,
        /// Key grouping.
        layout: KvLayout,
    },
    /// A control for [`KvScheme::Tolerance`]: the same levels given in the
    /// reverse order of density (the sparsest chunks get the most bits).
    /// If density did not matter this would cost the same.
    Reversed {
        /// Mean data bits per element.
        target: f32,
        /// Key grouping.
        layout: KvLayout,
    },
}

impl KvScheme {
    /// A short name for tables.
    pub fn label(&self) -> String {
        let l = |l: &KvLayout| match l {
            KvLayout::PerToken => "per-token",
            KvLayout::KeysPerChannel => "KIVI keys-per-channel",
        };
        match self {
            KvScheme::Uniform { bits, layout } => format!("uniform {bits}-bit, {}", l(layout)),
            KvScheme::Tolerance { target, layout } => {
                format!("by density, mean {target} bits, {}", l(layout))
            }
            KvScheme::Reversed { target, layout } => {
                format!("reversed density, mean {target} bits, {}", l(layout))
            }
        }
    }
}

/// One scheme's cost on one text.
#[derive(Debug, Clone, Serialize)]
pub struct KvQuality {
    /// The scheme.
    pub scheme: KvScheme,
    /// Chunks compressed (the prefix's full chunks).
    pub chunks: usize,
    /// Chunks at 8, 4 and 2 bits.
    pub levels: [usize; 3],
    /// Mean data bits per element.
    pub mean_bits: f32,
    /// Mean stored bits per element, scales and minimums included.
    pub stored_bits: f32,
    /// Perplexity of the continuation with full-precision KV.
    pub perplexity_full: f64,
    /// The same with the prefix's chunks compressed.
    pub perplexity: f64,
    /// `perplexity / perplexity_full - 1`, in percent.
    pub perplexity_change_pct: f64,
    /// Positions whose most likely next token is unchanged, in percent.
    pub top1_agreement_pct: f64,
}

/// Per-position results of scoring the continuation.
struct Scored {
    nll: Vec<f64>,
    top1: Vec<u32>,
}

/// Measures every scheme on `tokens`: the first `prefix` (a multiple of
/// 16) are the context compressed, the rest the continuation scored.
pub fn measure(
    session: &mut Session,
    tokens: &[u32],
    prefix: usize,
    schemes: &[KvScheme],
) -> Result<Vec<KvQuality>, KvQualityError> {
    if prefix == 0 || !prefix.is_multiple_of(CHUNK_TOKENS) || tokens.len() < prefix + 2 {
        return Err(KvQualityError::Text {
            tokens: tokens.len(),
            prefix,
        });
    }
    let full = score(session, tokens, prefix, None)?;
    let ppl_full = perplexity(&full.nll);
    let mut out = Vec::with_capacity(schemes.len());
    for s in schemes {
        let mut levels = Vec::new();
        let got = score(session, tokens, prefix, Some((s, &mut levels)))?;
        let ppl = perplexity(&got.nll);
        let same = got
            .top1
            .iter()
            .zip(&full.top1)
            .filter(|(a, b)| a == b)
            .count();
        let count = |b: KvBits| levels.iter().filter(|&&l| l == b).count();
        out.push(KvQuality {
            scheme: *s,
            chunks: levels.len(),
            levels: [count(KvBits::B8), count(KvBits::B4), count(KvBits::B2)],
            mean_bits: mean_bits(&levels),
            stored_bits: stored_bits(&levels, layout_of(s), session.config().kv_dim()),
            perplexity_full: ppl_full,
            perplexity: ppl,
            perplexity_change_pct: (ppl / ppl_full - 1.0) * 100.0,
            top1_agreement_pct: same as f64 * 100.0 / full.top1.len().max(1) as f64,
        });
    }
    Ok(out)
}

fn layout_of(s: &KvScheme) -> KvLayout {
    match s {
        KvScheme::Uniform { layout, .. }
        | KvScheme::Tolerance { layout, .. }
        | KvScheme::Reversed { layout, .. } => *layout,
    }
}

/// Evaluates the prefix, compresses it as `scheme` says (recording each
/// chunk's level), then scores the continuation.
fn score(
    session: &mut Session,
    tokens: &[u32],
    prefix: usize,
    scheme: Option<(&KvScheme, &mut Vec<KvBits>)>,
) -> Result<Scored, KvQualityError> {
    let mut ctx = session.new_context();
    let mut scored = Scored {
        nll: Vec::new(),
        top1: Vec::new(),
    };
    let mut take = |pos: usize, logits: &[f32]| {
        if let Some(&next) = tokens.get(pos + 1) {
            scored.nll.push(nll(logits, next));
            scored.top1.push(argmax(logits));
        }
    };
    let r = (|| -> Result<(), KvQualityError> {
        session.eval(&mut ctx, &tokens[..prefix], WantLogits::Last, &mut take)?;
        if let Some((s, levels)) = scheme {
            compress_prefix(session, &ctx, s, levels)?;
        }
        let rest = &tokens[prefix..tokens.len() - 1];
        Ok(session.eval(&mut ctx, rest, WantLogits::From(prefix), &mut take)?)
    })();
    session.delete_context(ctx)?;
    r.map(|()| scored)
}

/// Quantizes and decodes back every chunk of `ctx` at its level.
fn compress_prefix(
    session: &mut Session,
    ctx: &crate::Context,
    scheme: &KvScheme,
    levels: &mut Vec<KvBits>,
) -> Result<(), KvQualityError> {
    let kv = ctx.inner.kv();
    let chunks = kv.len() / CHUNK_TOKENS;
    let mut densities = Vec::with_capacity(chunks);
    for i in 0..chunks {
        densities.push(kv.density(session.arena(), i)?);
    }
    levels.clear();
    levels.resize(chunks, KvBits::B8);
    match scheme {
        KvScheme::Uniform { bits: b, .. } => levels.fill(level_of(*b)?),
        KvScheme::Tolerance { target, .. } => {
            assign_levels(&densities, *target, levels).map_err(KvQualityError::Levels)?
        }
        KvScheme::Reversed { target, .. } => {
            let reversed: Vec<f32> = densities.iter().map(|d| 1.0 / d.max(1e-12)).collect();
            assign_levels(&reversed, *target, levels).map_err(KvQualityError::Levels)?
        }
    }
    let (layers, kv_dim) = kv.shape();
    let layout = layout_of(scheme);
    let (arena, compute) = session.arena_and_compute();
    let mut enc = Vec::new();
    for (i, &level) in levels.iter().enumerate() {
        for l in 0..layers {
            for values in [false, true] {
                let Some((slot, r)) = kv.block(i, l, values) else {
                    // An expired window part: no query sees it again.
                    continue;
                };
                let bytes = arena.bytes_mut(slot).map_err(EvalError::arena)?;
                let bytes = bytes
                    .get_mut(r)
                    .ok_or(EvalError::Internal("KV block outside the chunk"))?;
                let block: &mut [f32] = bytemuck::cast_slice_mut(bytes);
                let groups = groups_of(layout, values, kv_dim);
                let len = groups
                    .packed_len(block.len(), level)
                    .ok_or(EvalError::Internal("KV block not whole groups"))?;
                enc.resize(len, 0);
                compute
                    .kv_quantize(block, groups, level, &mut enc)
                    .map_err(EvalError::Compute)?;
                compute
                    .kv_dequantize(&enc, groups, level, block)
                    .map_err(EvalError::Compute)?;
            }
        }
    }
    Ok(())
}

/// How `layout` groups keys (`values == false`) or values.
fn groups_of(layout: KvLayout, values: bool, kv_dim: usize) -> KvGroups {
    match (layout, values) {
        (KvLayout::KeysPerChannel, false) => KvGroups::PerChannel { channels: kv_dim },
        _ => KvGroups::PerToken,
    }
}

fn level_of(b: u32) -> Result<KvBits, KvQualityError> {
    match b {
        8 => Ok(KvBits::B8),
        4 => Ok(KvBits::B4),
        2 => Ok(KvBits::B2),
        _ => Err(KvQualityError::Bits(b)),
    }
}

/// Stored bits per element of `levels` in `layout`: each group carries a
/// 2-byte step and a 2-byte minimum.
fn stored_bits(levels: &[KvBits], layout: KvLayout, kv_dim: usize) -> f32 {
    let elems = CHUNK_TOKENS * kv_dim;
    let bytes = |values: bool, l: KvBits| {
        groups_of(layout, values, kv_dim)
            .packed_len(elems, l)
            .unwrap_or(0)
    };
    let sum: usize = levels
        .iter()
        .map(|&l| bytes(false, l) + bytes(true, l))
        .sum();
    (sum * 8) as f32 / (2 * elems * levels.len()).max(1) as f32
}

fn nll(logits: &[f32], next: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let x = logits
        .get(next as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY) as f64;
    max + sum.ln() - x
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn perplexity(nll: &[f64]) -> f64 {
    (nll.iter().sum::<f64>() / nll.len().max(1) as f64).exp()
}
