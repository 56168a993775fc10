//! Parked -> resident: LLMS's I/O-recompute pipelined restore.
//!
//! Chunks are rebuilt in order (a recomputed chunk attends to every chunk
//! before it, so those must be in place). Every chunk to be read is asked
//! of the swap thread first, so the reads run while the evaluator
//! decodes DRAM copies and recomputes chunks; which of the chunks on flash
//! are recomputed instead of read is the split that minimizes
//! `max(T_recompute, T_io)` under the fitted cost models (`cost.rs`).
//! Recomputation is exact: the chunk's own tokens at their global
//! positions under the causal mask, as they were first evaluated. A chunk
//! whose read fails (a CRC mismatch, a device error) is recomputed too:
//! nothing unchecked is ever used.

use std::collections::VecDeque;
use std::time::Instant;

use lode_kernel::arena::DramArena;
use lode_kernel::model::kv::codec::ChunkLevel;
use lode_kernel::model::{EvalError, CHUNK_TOKENS};

use crate::context::Context;
use crate::error::GenerateError;
use crate::session::Session;
use crate::swap_store::{PendingRead, SwapStore};

use super::cost::{split, CostModels};
use super::{Held, ParkedChunk};

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RestoreReport {
    /// Chunks decoded from their compressed DRAM copies.
    pub from_dram: usize,
    /// Chunks read from the swap area.
    pub from_flash: usize,
    /// Chunks recomputed from their tokens.
    pub recomputed: usize,
    /// Of those, chunks on flash the split chose to recompute.
    pub recomputed_by_choice: usize,
    /// Reads that failed their checks or the device, then recomputed.
    pub failed_reads: usize,
    /// Seconds the restore took.
    pub seconds: f64,
    /// Seconds the cost models predicted for the reads the split chose
    /// (they run on the swap thread, beside the recomputes).
    pub predicted_read_seconds: f64,
    /// Seconds the cost models predicted for the recomputes the split
    /// chose (with the dropped chunks that must be recomputed anyway).
    pub predicted_recompute_seconds: f64,
}

impl RestoreReport {
    /// The restore in a line: where its chunks came from and the split the
    /// cost models chose (`read N (predicted a ms) | recompute M
    /// (predicted b ms)`).
    pub fn describe(&self) -> String {
        format!(
            "{:.1} ms: {} chunks decoded from DRAM, {} read from swap (predicted {:.1} ms), \
             {} recomputed ({} of them instead of a read, by the split; predicted {:.1} ms){}",
            self.seconds * 1e3,
            self.from_dram,
            self.from_flash,
            self.predicted_read_seconds * 1e3,
            self.recomputed,
            self.recomputed_by_choice,
            self.predicted_recompute_seconds * 1e3,
            if self.failed_reads > 0 {
                format!(", {} failed reads recomputed", self.failed_reads)
            } else {
                String::new()
            }
        )
    }
}

/// How chunk `i` comes back.
#[derive(Debug, Clone, Copy)]
enum Source {
    Dram(lode_kernel::arena::Slot),
    Read,
    Recompute,
}

/// Restores parked `ctx` (id `id`); the caller made room for its f32
/// chunks. On failure the context is parked again with what it still
/// has, so a later call can retry.
pub(crate) fn restore(
    session: &mut Session,
    ctx: &mut Context,
    id: u64,
    store: Option<&SwapStore>,
    pipeline: bool,
    models: &mut CostModels,
) -> Result<RestoreReport, GenerateError> {
    let t = Instant::now();
    let Some(parked) = ctx.kv.parked.take() else {
        return Ok(RestoreReport::default());
    };
    let windowed = ctx.inner.kv_layout().window_shape().is_some();
    let sources = plan(&parked, store.is_some(), pipeline, windowed, models);
    let (predicted_read_seconds, predicted_recompute_seconds) = predict(&parked, &sources, models);
    let mut report = RestoreReport {
        predicted_read_seconds,
        predicted_recompute_seconds,
        recomputed_by_choice: sources
            .iter()
            .zip(&parked)
            .filter(|(s, c)| matches!(s, Source::Recompute) && c.held == Held::Flash)
            .count(),
        ..RestoreReport::default()
    };
    // Every read asked for now: the swap thread works through them while
    // the loop below decodes and recomputes.
    let mut reads: VecDeque<(usize, PendingRead)> = VecDeque::new();
    if let Some(store) = store {
        for (i, s) in sources.iter().enumerate() {
            if matches!(s, Source::Read) {
                reads.push_back((i, store.read(id, i as u32)));
            }
        }
    }
    let mut buf = Vec::new();
    for (i, (c, s)) in parked.iter().zip(&sources).enumerate() {
        let r = rebuild(
            session,
            ctx,
            i,
            c,
            *s,
            &mut reads,
            &mut buf,
            models,
            &mut report,
        );
        if let Err(e) = r {
            repark(session, ctx, &parked, i);
            return Err(e);
        }
    }
    report.seconds = t.elapsed().as_secs_f64();
    Ok(report)
}

/// Which chunks are read, decoded or recomputed.
fn plan(
    parked: &[ParkedChunk],
    can_read: bool,
    pipeline: bool,
    windowed: bool,
    models: &CostModels,
) -> Vec<Source> {
    let flash: Vec<(usize, usize)> = parked
        .iter()
        .filter(|c| c.held == Held::Flash && can_read)
        .map(|c| (c.payload, c.tokens))
        .collect();
    let dropped: usize = parked
        .iter()
        .filter(|c| c.held == Held::Dropped || (c.held == Held::Flash && !can_read))
        .map(|c| c.tokens)
        .sum();
    let mut recompute_first = if pipeline {
        split(models, &flash, dropped)
    } else {
        0
    };
    let mut sources: Vec<Source> = parked
        .iter()
        .map(|c| match c.held {
            Held::Dram(slot) => Source::Dram(slot),
            Held::Flash if can_read && recompute_first > 0 => {
                recompute_first -= 1;
                Source::Recompute
            }
            Held::Flash if can_read => Source::Read,
            _ => Source::Recompute,
        })
        .collect();
    // A sliding-window model's chunk is recomputed exactly only after its
    // predecessors' window parts, which a payload of an expired chunk does
    // not hold: so what is recomputed is a prefix of the context.
    if windowed {
        if let Some(last) = sources.iter().rposition(|s| matches!(s, Source::Recompute)) {
            sources[..last].fill(Source::Recompute);
        }
    }
    sources
}

/// Seconds the cost models predict for `sources`' reads and recomputes.
fn predict(parked: &[ParkedChunk], sources: &[Source], models: &CostModels) -> (f64, f64) {
    let (mut read, mut tokens) = (0.0, 0);
    for (c, s) in parked.iter().zip(sources) {
        match s {
            Source::Read => read += models.read_seconds(c.payload),
            Source::Recompute => tokens += c.tokens,
            Source::Dram(_) => {}
        }
    }
    let recompute = if tokens == 0 {
        0.0
    } else {
        models.recompute_seconds(tokens)
    };
    (read, recompute)
}

/// Rebuilds chunk `i` from `source`.
#[allow(clippy::too_many_arguments)]
fn rebuild(
    session: &mut Session,
    ctx: &mut Context,
    i: usize,
    c: &ParkedChunk,
    source: Source,
    reads: &mut VecDeque<(usize, PendingRead)>,
    buf: &mut Vec<u8>,
    models: &mut CostModels,
    report: &mut RestoreReport,
) -> Result<(), GenerateError> {
    match source {
        Source::Dram(slot) => {
            buf.clear();
            buf.extend_from_slice(super::dram_payload(session, slot, c.payload)?);
            let (arena, compute) = session.arena_and_compute();
            ctx.inner
                .push_chunk(arena, compute, c.level, buf, c.tokens)?;
            // Freed only once decoded: a failure above leaves the copy
            // where the re-parked context expects it.
            arena.free(slot).map_err(EvalError::arena)?;
            report.from_dram += 1;
        }
        Source::Read => {
            let got = match reads.front() {
                Some((j, _)) if *j == i => reads.pop_front().map(|(_, p)| p.wait()),
                _ => None,
            };
            let level = |code| ChunkLevel::from_code(code);
            match got {
                Some(Ok(r))
                    if level(r.info.level).is_some()
                        && usize::from(r.info.valid_tokens) == c.tokens =>
                {
                    models.observe_read(r.payload.len(), r.seconds);
                    let l = level(r.info.level).unwrap_or(ChunkLevel::F32);
                    let (arena, compute) = session.arena_and_compute();
                    ctx.inner
                        .push_chunk(arena, compute, l, &r.payload, c.tokens)?;
                    report.from_flash += 1;
                }
                _ => {
                    report.failed_reads += 1;
                    if ctx.inner.kv_layout().window_shape().is_some() {
                        // See `plan`: recomputed from the start.
                        let (arena, _) = session.arena_and_compute();
                        ctx.inner.clear(arena)?;
                        recompute(session, ctx, 0, i * CHUNK_TOKENS + c.tokens, models)?;
                    } else {
                        recompute(session, ctx, i * CHUNK_TOKENS, c.tokens, models)?;
                    }
                    report.recomputed += 1;
                }
            }
        }
        Source::Recompute => {
            recompute(session, ctx, i * CHUNK_TOKENS, c.tokens, models)?;
            if let Held::Dram(slot) = c.held {
                // A windowed context's prefix recomputed over a DRAM copy.
                let (arena, _) = session.arena_and_compute();
                arena.free(slot).map_err(EvalError::arena)?;
            }
            report.recomputed += 1;
        }
    }
    Ok(())
}

/// Evaluates positions `from..from + tokens` again from the context's
/// tokens.
fn recompute(
    session: &mut Session,
    ctx: &mut Context,
    from: usize,
    tokens: usize,
    models: &mut CostModels,
) -> Result<(), GenerateError> {
    let t = Instant::now();
    session.recompute(ctx, from, tokens)?;
    models.observe_recompute(tokens, t.elapsed().as_secs_f64());
    Ok(())
}

/// After a failure at chunk `failed`: drops what was rebuilt and parks the
/// context again, chunks before `failed` on flash if committed there or
/// dropped, the rest as they were.
fn repark(session: &mut Session, ctx: &mut Context, parked: &[ParkedChunk], failed: usize) {
    let (arena, _) = session.arena_and_compute();
    let _ = ctx.inner.clear(arena);
    let chunks = parked
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i >= failed {
                return *c;
            }
            let held = if ctx.kv.committed.level_of(i, c.tokens) == Some(c.level) {
                Held::Flash
            } else {
                Held::Dropped
            };
            ParkedChunk { held, ..*c }
        })
        .collect();
    ctx.kv.parked = Some(chunks);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(held: Held) -> ParkedChunk {
        ParkedChunk {
            level: ChunkLevel::F32,
            held,
            tokens: 16,
            payload: 1 << 16,
        }
    }

    fn kinds(s: &[Source]) -> String {
        s.iter()
            .map(|s| match s {
                Source::Dram(_) => 'D',
                Source::Read => 'R',
                Source::Recompute => 'C',
            })
            .collect()
    }

    /// A sliding-window model recomputes a prefix: a dropped chunk after
    /// DRAM copies and reads makes them recomputed too, and what follows
    /// the last dropped chunk comes back as planned.
    #[test]
    fn a_windowed_context_recomputes_a_prefix() {
        let slot = {
            use lode_hal::slice_arena::SliceArena;
            use lode_kernel::arena::{DramArena, SlotKind};
            let mut mem = [0u8; 64];
            SliceArena::new(&mut mem)
                .alloc(8, 8, SlotKind::Scratch)
                .expect("a slot")
        };
        let parked = [
            chunk(Held::Dram(slot)),
            chunk(Held::Flash),
            chunk(Held::Dropped),
            chunk(Held::Flash),
            chunk(Held::Dram(slot)),
        ];
        let m = CostModels::default();
        assert_eq!(kinds(&plan(&parked, true, false, false, &m)), "DRCRD");
        assert_eq!(kinds(&plan(&parked, true, false, true, &m)), "CCCRD");
        let none = [chunk(Held::Flash), chunk(Held::Dram(slot))];
        assert_eq!(kinds(&plan(&none, true, false, true, &m)), "RD");
        assert_eq!(kinds(&plan(&none, false, false, true, &m)), "CD");
    }
}
