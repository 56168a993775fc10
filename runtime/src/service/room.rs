//! KV memory for the service: the one place that decides which contexts
//! keep DRAM, and where LLMS's lifecycle (`kv_life`) is driven from.
//!
//! - Before a call evaluates, [`make_room`] makes sure the arena can take
//!   the chunks it needs: while it cannot, the next LCTRU victim among the
//!   idle contexts gives up memory (a resident context is parked, then
//!   compressed chunks are freed, least compressed first). Only when no
//!   idle context holds anything is the call refused, before anything is
//!   evaluated.
//! - A parked context that is called is restored first ([`ensure_resident`]).
//! - When a call returns, its context's new chunks go to the swap area
//!   ahead of time ([`after_call`]), so reclaiming them later writes
//!   nothing.
//! - At shutdown, [`swap_out_all`] commits every context.

use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::model::Growth;

use crate::context::Context;
use crate::kv_life::{self, evict_chunk, next_victim, park, Victim};
use crate::session::Session;

use super::{lock, CallError, ContextId, Service};

/// Whether the arena can take the slots of `g` now: they are allocated
/// and given back (first fit can fail where free bytes suffice).
fn fits(session: &mut Session, g: Growth) -> bool {
    let layout = session.kv_layout();
    let sizes = [
        (g.mains, layout.main_bytes()),
        (g.windows, layout.window_bytes()),
    ];
    let (arena, _) = session.arena_and_compute();
    let mut got = Vec::with_capacity(g.mains + g.windows);
    let mut ok = true;
    'all: for (n, bytes) in sizes {
        for _ in 0..n {
            match arena.alloc(bytes, 64, SlotKind::KvChunk) {
                Ok(s) => got.push(s),
                Err(_) => {
                    ok = false;
                    break 'all;
                }
            }
        }
    }
    for s in got {
        let _ = arena.free(s);
    }
    ok
}

/// Makes sure `ctx` (checked out for a call) can grow to `positions` in
/// f32 chunks, reclaiming from idle contexts by LCTRU until it can. What it
/// needs is [`lode_kernel::model::KvCache::growth`]: a main part a new
/// chunk, and window parts only beyond those the context can reuse.
pub(crate) fn make_room(
    svc: &Service,
    session: &mut Session,
    ctx: &Context,
    positions: usize,
) -> Result<(), CallError> {
    let max_batch = session.limits().max_batch;
    let want = ctx.inner.kv().growth(positions, max_batch);
    let t = std::time::Instant::now();
    let r = reclaim(svc, session, want);
    lock(&svc.life).reclaim_seconds += t.elapsed().as_secs_f64();
    r
}

/// Reclaims from idle contexts until the slots of `want` fit.
fn reclaim(svc: &Service, session: &mut Session, want: Growth) -> Result<(), CallError> {
    loop {
        if fits(session, want) {
            return Ok(());
        }
        let mut t = lock(&svc.table);
        let idle = t.entries.iter().filter_map(|(&id, e)| {
            let c = e.ctx.as_ref().filter(|_| !e.busy)?;
            Some((id, e.last_used, !c.is_parked() && c.chunks() > 0, &c.kv))
        });
        let victim = next_victim(idle);
        let freed = match victim {
            None => {
                return Err(CallError::OutOfKvMemory {
                    need_bytes: session.kv_layout().growth_bytes(want),
                    free_bytes: session.arena().remaining(),
                });
            }
            Some(Victim::Park(id)) => with_ctx(&mut t.entries, id, |c| {
                if !svc.kv.ahead_of_time {
                    // Written now, on the path of the call that needs
                    // the room (vLLM swaps out on preemption).
                    if let Some(store) = svc.swap.as_ref() {
                        if let Ok(r) = kv_life::swap_out(session, c, id.0, store, svc.kv) {
                            lock(&svc.life).add_swap_out(&r);
                        }
                    }
                }
                park(session, c, svc.kv)
            }),
            Some(Victim::Evict(id, i)) => {
                with_ctx(&mut t.entries, id, |c| evict_chunk(session, c, i))
            }
        };
        if let Some(Err(e)) = freed {
            return Err(CallError::Generate(e.into()));
        }
        lock(&svc.life).reclaims += 1;
    }
}

/// Runs `f` on the context of entry `id`, updating its chunk count.
fn with_ctx<T>(
    entries: &mut std::collections::BTreeMap<ContextId, super::Entry>,
    id: ContextId,
    f: impl FnOnce(&mut Context) -> T,
) -> Option<T> {
    let e = entries.get_mut(&id)?;
    let c = e.ctx.as_mut()?;
    let r = f(c);
    e.chunks = c.chunks();
    Some(r)
}

/// Restores `ctx` if it is parked, making room for it first; returns what
/// the restore did.
pub(crate) fn ensure_resident(
    svc: &Service,
    session: &mut Session,
    ctx: &mut Context,
    id: ContextId,
) -> Result<Option<kv_life::RestoreReport>, CallError> {
    if !ctx.is_parked() {
        return Ok(None);
    }
    // With nothing idle left to reclaim, this context's own parked copies
    // may be what holds the room its restore needs (the restore allocates
    // a chunk's parts before it frees its copy): give them up newest
    // first, until the parts fit; those chunks are recomputed instead.
    while let Err(e) = make_room(svc, session, ctx, ctx.len()) {
        let own = ctx.kv.parked.as_ref().and_then(|p| {
            p.iter()
                .rposition(|c| matches!(c.held, kv_life::Held::Dram(_)))
        });
        match (e, own) {
            (CallError::OutOfKvMemory { .. }, Some(i)) => {
                evict_chunk(session, ctx, i).map_err(|e| CallError::Generate(e.into()))?;
            }
            (e, _) => return Err(e),
        }
    }
    let mut models = lock(&svc.models);
    let r = kv_life::restore(
        session,
        ctx,
        id.0,
        svc.swap.as_ref(),
        svc.kv.pipeline,
        &mut models,
    )
    .map_err(CallError::Generate)?;
    lock(&svc.life).add_restore(&r);
    Ok(Some(r))
}

/// Ahead-of-time swap-out of `ctx` when its call returns. A failure (a
/// full area, a device error) is counted, not returned: the call's text
/// is already out, and the chunks stay in DRAM.
pub(crate) fn after_call(svc: &Service, session: &mut Session, ctx: &mut Context, id: ContextId) {
    let Some(store) = svc.swap.as_ref().filter(|_| svc.kv.ahead_of_time) else {
        return;
    };
    let r = kv_life::swap_out(session, ctx, id.0, store, svc.kv);
    match r {
        Ok(r) => lock(&svc.life).add_swap_out(&r),
        Err(e) => {
            lock(&svc.life).swap_failures += 1;
            *lock(&svc.last_swap_error) = Some(e.to_string());
        }
    }
}

/// Called once at shutdown, after the running calls have finished (or the
/// wait for them ran out): every idle context's chunks are committed to
/// the swap area, so a restarted service restores them. Returns how many
/// contexts are committed.
pub(crate) fn swap_out_all(svc: &Service) -> usize {
    let Some(store) = svc.swap.as_ref() else {
        return 0;
    };
    let mut session = lock(&svc.session);
    let mut t = lock(&svc.table);
    let mut done = 0;
    for (&id, e) in t.entries.iter_mut() {
        let Some(c) = e.ctx.as_mut().filter(|_| !e.busy) else {
            continue;
        };
        if c.is_empty() {
            continue;
        }
        if kv_life::swap_out(&mut session, c, id.0, store, svc.kv).is_ok() {
            done += 1;
        }
    }
    done
}
