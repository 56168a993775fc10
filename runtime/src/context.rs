//! A conversation held by a session: the kernel's [`Context`]
//! (KV chunks, positions) plus the tokens it has seen, which a later
//! restore or recompute needs, and the token sampled last but not yet
//! evaluated, so the next turn continues exactly where generation stopped.

use lode_kernel::model::Context as KvContext;

use crate::kv_life::KvState;

/// One conversation of a [`Session`](crate::Session).
#[derive(Debug)]
pub struct Context {
    pub(crate) session: u64,
    pub(crate) inner: KvContext,
    pub(crate) tokens: Vec<u32>,
    pub(crate) pending: Option<u32>,
    /// Where its KV chunks are when it is parked, and what the swap area
    /// holds of it.
    pub(crate) kv: KvState,
}

impl Context {
    pub(crate) fn new(session: u64, inner: KvContext) -> Context {
        Context {
            session,
            inner,
            tokens: Vec::new(),
            pending: None,
            kv: KvState::default(),
        }
    }

    /// Positions evaluated so far (held in DRAM, or parked).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// `true` before the first position.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// `true` while its KV chunks are parked (compressed, on flash or
    /// dropped): the next call restores them first.
    pub fn is_parked(&self) -> bool {
        self.kv.parked.is_some()
    }

    /// Most positions this context may hold.
    pub fn max_positions(&self) -> usize {
        self.inner.max_positions()
    }

    /// Positions still free.
    pub fn room(&self) -> usize {
        self.max_positions().saturating_sub(self.len())
    }

    /// The tokens evaluated so far, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The token generation sampled last and has not evaluated yet: the
    /// next call evaluates it before its own tokens.
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// KV chunks held in the arena.
    pub fn chunks(&self) -> usize {
        self.inner.chunks().len()
    }

    /// Arena bytes its KV cache holds (with a sliding-window model, the
    /// window parts held for local layers included).
    pub fn kv_bytes(&self) -> usize {
        self.inner.kv().bytes()
    }
}
