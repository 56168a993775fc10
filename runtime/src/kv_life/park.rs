//! Resident -> parked, and evicting one parked chunk from DRAM.

use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::model::EvalError;

use crate::context::Context;
use crate::session::Session;

use super::{chunk_tokens, levels_for, Held, KvPolicy, ParkedChunk};

/// Parks resident `ctx`: each chunk is compressed into a DRAM slot of its
/// own at its level; where the arena has no room for that copy, a chunk
/// committed to the swap area is left there and any other is dropped
/// (recomputed at restore). Then the f32 chunks are freed. Returns the
/// bytes of arena freed (less the compressed copies).
pub(crate) fn park(
    session: &mut Session,
    ctx: &mut Context,
    policy: KvPolicy,
) -> Result<usize, EvalError> {
    if ctx.kv.parked.is_some() {
        return Ok(0);
    }
    let before = session.arena().used();
    let len = ctx.inner.len();
    let levels = levels_for(session, ctx, policy, &ctx.kv)?;
    let mut parked = Vec::with_capacity(levels.len());
    let (arena, compute) = session.arena_and_compute();
    for (i, &level) in levels.iter().enumerate() {
        let tokens = chunk_tokens(len, i);
        let bytes = ctx
            .inner
            .payload_bytes(i, level)
            .ok_or(EvalError::Internal("KV chunk shape"))?;
        let committed = ctx.kv.committed.level_of(i, tokens) == Some(level);
        // A chunk the swap area holds at this level is not encoded again
        // (parking sits on the path of the call that needs the room, and
        // encoding costs more than the read that brings it back).
        let copy = if policy.keep_in_dram && !committed {
            arena.alloc(bytes, 64, SlotKind::KvChunk).ok()
        } else {
            None
        };
        let held = match copy {
            Some(dst) => {
                ctx.inner.encode_chunk_to(arena, compute, i, level, dst)?;
                Held::Dram(dst)
            }
            None if committed => Held::Flash,
            None => Held::Dropped,
        };
        parked.push(ParkedChunk {
            level,
            held,
            tokens,
            payload: bytes,
        });
    }
    ctx.inner.clear(arena)?;
    ctx.kv.parked = Some(parked);
    Ok(before.saturating_sub(session.arena().used()))
}

/// Frees parked chunk `i`'s DRAM copy: it stays on flash if committed
/// there, else it is dropped. Returns the bytes freed.
pub(crate) fn evict_chunk(
    session: &mut Session,
    ctx: &mut Context,
    i: usize,
) -> Result<usize, EvalError> {
    let committed = &ctx.kv.committed;
    let Some(c) = ctx.kv.parked.as_mut().and_then(|p| p.get_mut(i)) else {
        return Ok(0);
    };
    let Held::Dram(slot) = c.held else {
        return Ok(0);
    };
    let (arena, _) = session.arena_and_compute();
    let bytes = arena.bytes(slot).map(<[u8]>::len).unwrap_or(0);
    arena.free(slot).map_err(EvalError::arena)?;
    c.held = if committed.level_of(i, c.tokens) == Some(c.level) {
        Held::Flash
    } else {
        Held::Dropped
    };
    Ok(bytes)
}

/// Frees every DRAM copy of a parked context (it is being deleted).
pub(crate) fn free_parked(session: &mut Session, ctx: &mut Context) -> Result<(), EvalError> {
    if let Some(chunks) = ctx.kv.parked.take() {
        let (arena, _) = session.arena_and_compute();
        for c in chunks {
            if let Held::Dram(slot) = c.held {
                arena.free(slot).map_err(EvalError::arena)?;
            }
        }
    }
    Ok(())
}
