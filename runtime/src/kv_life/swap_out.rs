//! Ahead-of-time swap-out: a context's chunks that the swap area does not
//! hold yet are encoded and committed when a call returns, so reclaiming
//! its DRAM later writes nothing.

use std::time::Instant;

use lode_kernel::model::{EvalError, CHUNK_TOKENS};

use crate::context::Context;
use crate::session::Session;
use crate::swap_store::{ChunkOut, SwapError, SwapStore};

use super::{chunk_tokens, levels_for, Held, KvPolicy};

/// Most chunks one commit carries: bounds the payloads held in memory at
/// once (16 chunks at 4 bits is about 2 MiB for SmolLM2).
const COMMIT_CHUNKS: usize = 16;

/// What one swap-out wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SwapOutReport {
    /// Chunks written.
    pub chunks: usize,
    /// Payload bytes written.
    pub bytes: usize,
    /// Seconds spent (encoding and the committed writes).
    pub seconds: f64,
}

/// Why a swap-out failed.
#[derive(Debug)]
pub(crate) enum SwapOutError {
    /// Encoding a chunk failed.
    Model(EvalError),
    /// The swap area refused the commit (full, a device error).
    Swap(SwapError),
}

impl std::fmt::Display for SwapOutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapOutError::Model(e) => write!(f, "encoding a KV chunk: {e}"),
            SwapOutError::Swap(e) => write!(f, "{e}"),
        }
    }
}

/// Commits `ctx`'s chunks the area lacks (id `id`), resident or parked.
pub(crate) fn swap_out(
    session: &mut Session,
    ctx: &mut Context,
    id: u64,
    store: &SwapStore,
    policy: KvPolicy,
) -> Result<SwapOutReport, SwapOutError> {
    let t = Instant::now();
    let outs = match ctx.kv.parked.is_some() {
        false => resident_payloads(session, ctx, policy).map_err(SwapOutError::Model)?,
        true => parked_payloads(session, ctx).map_err(SwapOutError::Model)?,
    };
    let mut report = SwapOutReport::default();
    let len = ctx.len();
    let mut pending = outs.into_iter().peekable();
    while pending.peek().is_some() {
        let batch: Vec<_> = pending.by_ref().take(COMMIT_CHUNKS).collect();
        // Keep every committed chunk this batch does not replace, and
        // drop committed copies past the context's end.
        let keep: Vec<u32> = (0..ctx.kv.committed.chunks.len())
            .filter(|&i| {
                ctx.kv.committed.chunks[i].is_some()
                    && i * CHUNK_TOKENS < len
                    && !batch.iter().any(|(c, _)| c.index as usize == i)
            })
            .map(|i| i as u32)
            .collect();
        let bytes: usize = batch.iter().map(|(c, _)| c.payload.len()).sum();
        let (chunks, levels): (Vec<ChunkOut>, Vec<_>) = batch.into_iter().unzip();
        let done: Vec<(usize, _, usize)> = chunks
            .iter()
            .zip(&levels)
            .map(|(c, &l)| (c.index as usize, l, c.valid_tokens as usize))
            .collect();
        // The text committed includes the token sampled last and not yet
        // evaluated: after a restart it is recomputed with the last chunk,
        // which is what the next call would have evaluated first.
        let mut text = ctx.tokens.clone();
        text.extend(ctx.pending);
        store
            .commit(id, text, keep, chunks)
            .map_err(SwapOutError::Swap)?;
        for (i, level, tokens) in done {
            let c = &mut ctx.kv.committed.chunks;
            if c.len() <= i {
                c.resize(i + 1, None);
            }
            c[i] = Some((level, tokens));
        }
        report.chunks += levels.len();
        report.bytes += bytes;
    }
    report.seconds = t.elapsed().as_secs_f64();
    Ok(report)
}

type Out = (ChunkOut, lode_kernel::model::kv::codec::ChunkLevel);

/// Payloads of a resident context's chunks the area lacks.
fn resident_payloads(
    session: &mut Session,
    ctx: &Context,
    policy: KvPolicy,
) -> Result<Vec<Out>, EvalError> {
    let len = ctx.inner.len();
    let levels = levels_for(session, ctx, policy, &ctx.kv)?;
    let (arena, compute) = session.arena_and_compute();
    let mut outs = Vec::new();
    for (i, &level) in levels.iter().enumerate() {
        let tokens = chunk_tokens(len, i);
        if ctx.kv.committed.level_of(i, tokens) == Some(level) {
            continue;
        }
        let n = ctx
            .inner
            .payload_bytes(i, level)
            .ok_or(EvalError::Internal("KV chunk shape"))?;
        let mut payload = vec![0u8; n];
        ctx.inner
            .encode_chunk(&*arena, compute, i, level, &mut payload)?;
        outs.push((chunk_out(i, level, tokens, payload), level));
    }
    Ok(outs)
}

/// Payloads of a parked context's DRAM copies the area lacks (a
/// context parked before it could be swapped: the copies are payloads).
fn parked_payloads(session: &Session, ctx: &Context) -> Result<Vec<Out>, EvalError> {
    let mut outs = Vec::new();
    for (i, c) in ctx.kv.parked.iter().flatten().enumerate() {
        if ctx.kv.committed.level_of(i, c.tokens) == Some(c.level) {
            continue;
        }
        if let Held::Dram(slot) = c.held {
            let payload = super::dram_payload(session, slot, c.payload)?.to_vec();
            outs.push((chunk_out(i, c.level, c.tokens, payload), c.level));
        }
    }
    Ok(outs)
}

fn chunk_out(
    i: usize,
    level: lode_kernel::model::kv::codec::ChunkLevel,
    tokens: usize,
    payload: Vec<u8>,
) -> ChunkOut {
    ChunkOut {
        index: i as u32,
        level: level.code(),
        valid_tokens: tokens as u8,
        payload,
    }
}
