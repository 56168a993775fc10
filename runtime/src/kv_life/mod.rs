//! LLMS's KV chunk lifecycle: how a context's chunks leave DRAM when
//! other contexts need it and come back when it is called again.
//!
//! A context is either **resident** (every chunk f32 in the arena, as the
//! decode loop needs it) or **parked**. A parked context's chunks are
//! each in one of three places:
//!
//! - **DRAM, compressed**: a slot holding the chunk's payload at the level
//!   LLMS's tolerance-aware policy chose by density (8, 4 or 2 bits; the
//!   partial last chunk stays f32), see
//!   [`tolerance`](lode_kernel::model::kv::tolerance) and
//!   [`codec`](lode_kernel::model::kv::codec);
//! - **flash**: committed to the swap area, nothing in DRAM;
//! - **dropped**: nowhere; recomputed from the context's tokens.
//!
//! The transitions, each in a file of its own:
//!
//! - `swap_out.rs`: when a call returns, the context's new chunks are
//!   encoded and committed to the swap area *ahead of time*, so a later
//!   reclaim frees DRAM without writing anything;
//! - `park.rs`: resident -> parked (each chunk compressed into DRAM, or
//!   left on flash when DRAM is short), and the eviction of one
//!   compressed chunk (to flash if committed, else dropped);
//! - `lctru.rs`: which context or chunk gives up memory next (LCTRU);
//! - `restore.rs`: parked -> resident, chunk by chunk in order, reading
//!   some from flash while recomputing others (the split from fitted
//!   linear cost models, `cost.rs`).
//!
//! Attention always runs over f32 chunks: a called context is restored
//! whole (dequantized once, at the switch), so a call's decode speed does
//! not depend on how many other contexts are alive or how compressed they
//! are; compression is a storage state of idle contexts.

mod cost;
mod lctru;
mod park;
mod restore;
mod swap_out;

use lode_kernel::arena::Slot;
use lode_kernel::model::kv::codec::ChunkLevel;

pub(crate) use cost::CostModels;
pub(crate) use lctru::{next_victim, Victim};
pub(crate) use park::{evict_chunk, free_parked, park};
pub(crate) use restore::restore;
pub use restore::RestoreReport;
pub(crate) use swap_out::swap_out;
pub use swap_out::SwapOutReport;

/// How idle contexts give up memory. The default is LLMS's; the other
/// settings exist so `lode bench contexts` can run the baselines (kill
/// and recompute, vLLM-style swapping of raw chunks) through the same
/// code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvPolicy {
    /// Mean data bits per value of a parked context's full chunks (2 to
    /// 8; LLMS uses half of the 8-bit base, 4). `None`: chunks are parked
    /// and swapped at f32, exactly.
    pub mean_bits: Option<f32>,
    /// Keep compressed copies in DRAM when parking (else a parked chunk
    /// is only on flash, or dropped).
    pub keep_in_dram: bool,
    /// Commit a call's chunks when it returns (else only when its context
    /// is parked, on the path of the call that needs the room).
    pub ahead_of_time: bool,
    /// Recompute some chunks on flash while reading the others, by the
    /// cost models (else every chunk on flash is read).
    pub pipeline: bool,
}

impl KvPolicy {
    /// LLMS: a mean of 4 bits, copies in DRAM, ahead-of-time swap-out,
    /// pipelined restore.
    pub const LLMS: KvPolicy = KvPolicy {
        mean_bits: Some(4.0),
        keep_in_dram: true,
        ahead_of_time: true,
        pipeline: true,
    };

    /// LLMS's lifecycle with chunks kept exact (f32).
    pub const EXACT: KvPolicy = KvPolicy {
        mean_bits: None,
        ..KvPolicy::LLMS
    };
}

impl Default for KvPolicy {
    fn default() -> KvPolicy {
        KvPolicy::LLMS
    }
}

/// Where a parked chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Its payload in a DRAM slot.
    Dram(Slot),
    /// Committed to the swap area.
    Flash,
    /// Nowhere: recompute it.
    Dropped,
}

/// One chunk of a parked context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParkedChunk {
    pub level: ChunkLevel,
    pub held: Held,
    /// Positions it holds (16 but for the last).
    pub tokens: usize,
    /// Bytes of its payload (a DRAM copy's exactly; a flash copy's as the
    /// context's layout predicts them, for the restore plan's costs).
    pub payload: usize,
}

/// What a context has committed to the swap area: per chunk index, the
/// level and positions of its committed copy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Committed {
    pub chunks: Vec<Option<(ChunkLevel, usize)>>,
}

impl Committed {
    /// The committed copy of chunk `i` if it holds `tokens` positions.
    pub fn level_of(&self, i: usize, tokens: usize) -> Option<ChunkLevel> {
        match self.chunks.get(i).copied().flatten() {
            Some((level, t)) if t == tokens => Some(level),
            _ => None,
        }
    }
}

/// The lifecycle state a context carries.
#[derive(Debug, Default)]
pub(crate) struct KvState {
    /// `Some` while parked: where each chunk is.
    pub parked: Option<Vec<ParkedChunk>>,
    /// What the swap area holds of it.
    pub committed: Committed,
}

/// Makes `ctx` (new and empty) the context `saved` describes: its tokens,
/// parked with every chunk the swap area holds whole on flash and the
/// rest to be recomputed.
pub(crate) fn recover(ctx: &mut crate::Context, saved: &crate::swap_store::Saved) {
    ctx.tokens = saved.tokens.clone();
    ctx.pending = None;
    let len = ctx.tokens.len();
    let layout = *ctx.inner.kv_layout();
    let n = len.div_ceil(lode_kernel::model::CHUNK_TOKENS);
    let mut committed = Committed {
        chunks: vec![None; n],
    };
    let parked = (0..n)
        .map(|i| {
            let tokens = chunk_tokens(len, i);
            let on_flash = saved
                .chunks
                .iter()
                .find(|c| c.index as usize == i && usize::from(c.valid_tokens) == tokens)
                .and_then(|c| ChunkLevel::from_code(c.level));
            if let (Some(level), Some(slot)) = (on_flash, committed.chunks.get_mut(i)) {
                *slot = Some((level, tokens));
            }
            let level = on_flash.unwrap_or(ChunkLevel::F32);
            ParkedChunk {
                level,
                payload: layout.payload_bytes(i, len, level).unwrap_or(0),
                held: if on_flash.is_some() {
                    Held::Flash
                } else {
                    Held::Dropped
                },
                tokens,
            }
        })
        .collect();
    ctx.kv = KvState {
        parked: Some(parked),
        committed,
    };
}

/// The `n` payload bytes a parked chunk's DRAM copy holds (its slot may
/// be longer than the payload).
pub(crate) fn dram_payload(
    session: &crate::Session,
    slot: Slot,
    n: usize,
) -> Result<&[u8], lode_kernel::model::EvalError> {
    use lode_kernel::arena::DramArena;
    use lode_kernel::model::EvalError;
    session
        .arena()
        .bytes(slot)
        .map_err(EvalError::arena)?
        .get(..n)
        .ok_or(EvalError::Internal(
            "KV chunk slot shorter than its payload",
        ))
}

/// Positions of chunk `i` in a context of `len` positions.
pub(crate) fn chunk_tokens(len: usize, i: usize) -> usize {
    const C: usize = lode_kernel::model::CHUNK_TOKENS;
    len.saturating_sub(i * C).min(C)
}

/// The level each chunk of resident `ctx` is stored at: a committed
/// copy's level where one exists (so evicting the DRAM copy leaves the
/// same bytes on flash), else the policy's by density for full chunks;
/// the partial last chunk at f32.
pub(crate) fn levels_for(
    session: &crate::Session,
    ctx: &crate::Context,
    policy: KvPolicy,
    state: &KvState,
) -> Result<Vec<ChunkLevel>, lode_kernel::model::EvalError> {
    use lode_kernel::compute::KvBits;
    use lode_kernel::model::kv::tolerance::assign_levels;
    let len = ctx.inner.len();
    let n = len.div_ceil(lode_kernel::model::CHUNK_TOKENS);
    let full = len / lode_kernel::model::CHUNK_TOKENS;
    let mut bits = vec![KvBits::B8; full];
    if let Some(mean) = policy.mean_bits {
        let mut densities = Vec::with_capacity(full);
        for i in 0..full {
            densities.push(ctx.inner.density(session.arena(), i)?);
        }
        assign_levels(&densities, mean, &mut bits)
            .map_err(|_| lode_kernel::model::EvalError::Internal("KV levels"))?;
    }
    Ok((0..n)
        .map(|i| {
            let tokens = chunk_tokens(len, i);
            if let Some(l) = state.committed.level_of(i, tokens) {
                l
            } else if i < full && policy.mean_bits.is_some() {
                ChunkLevel::Quantized(bits[i])
            } else {
                ChunkLevel::F32
            }
        })
        .collect())
}
