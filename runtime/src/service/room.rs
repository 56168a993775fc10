//! Whether the arena can take the KV chunks a call needs: the one place
//! the service decides about KV memory.
//!
//! Today the answer is only yes or no: every context's chunks stay in
//! DRAM until it is deleted, so a call that needs more chunks than the
//! arena has free fails with [`CallError::OutOfKvMemory`] before anything
//! is evaluated. LLMS's lifecycle plugs in here: instead of refusing,
//! [`make_room`] will pick idle contexts (LCTRU: least compressed first,
//! then least recently used), swap their chunks out to flash and free
//! them, and [`swap_out_all`] will write every context's modified chunks
//! before the process exits.

use lode_kernel::arena::DramArena;
use lode_kernel::model::KvCache;

use crate::context::Context;
use crate::session::Session;

use super::CallError;

/// Makes sure `ctx` can grow by `positions` positions without the arena
/// running out of KV chunks, or says how far it is from that.
pub(crate) fn make_room(
    session: &Session,
    ctx: &Context,
    positions: usize,
) -> Result<(), CallError> {
    let end = ctx.len().saturating_add(positions);
    let held = ctx.chunks();
    let want = KvCache::chunks_for(end);
    let chunk = KvCache::chunk_bytes(session.config());
    let need_bytes = want.saturating_sub(held).saturating_mul(chunk);
    let free_bytes = session.arena().remaining();
    if need_bytes > free_bytes {
        return Err(CallError::OutOfKvMemory {
            need_bytes,
            free_bytes,
        });
    }
    Ok(())
}

/// Called once at shutdown, after the running calls have finished (or the
/// wait for them ran out): where every context's KV chunks will be written
/// to flash so a restarted service restores them. Nothing is persisted
/// yet; returns how many contexts would have been swapped out.
pub(crate) fn swap_out_all(contexts: usize) -> usize {
    contexts
}
