//! The neuron-bundle cache: a hard budget of bundle slots in the arena, and a
//! replacement policy behind one small trait.
//!
//! Keys are global neuron ids (`layer * neurons_per_layer + neuron`). All
//! state lives in two arena slots allocated once by [`NeuronCache::new`]:
//!
//! - *meta*: `u32` words — the slot→key table, the key→slot direct map, a
//!   stack of free slots and the policy's own words ([`Policy::state_words`]),
//! - *data*: `slots * bundle_bytes` bytes of cached bundles.
//!
//! So the cache's whole footprint counts against the DRAM budget, and the
//! decode path (lookup, insert, evict) never allocates. The cache holds slot
//! handles, not borrows, and takes the arena on each call, which leaves the
//! arena free for I/O buffers between calls.
//!
//! Adding a policy is one file: implement [`Policy`] over its words.

mod hot_window;
mod lru;
mod policies;
mod s3fifo;

pub use hot_window::{HotWindow, HEAT_LEVELS};
pub use policies::{HotPinned, LinkAdmission, Lru, Window};
pub use s3fifo::S3Fifo;

use core::fmt;

/// Marks an empty entry in the slot→key and key→slot tables.
pub const EMPTY: u32 = u32::MAX;

/// What the cache knows about a miss when it asks the policy to admit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Token being decoded.
    pub token: u32,
    /// Length, in bundles, of the run of consecutive placement positions this
    /// miss was read in (1 = an isolated neuron). Ripple admits isolated
    /// neurons and is reluctant about long runs, which are cheap to re-read.
    pub run_len: u32,
}

/// A replacement (and admission) policy. It owns `state_words(slots, keys)`
/// words of arena memory, handed to every call as `st`.
pub trait Policy {
    /// Words of state for a cache of `slots` slots over `keys` keys.
    fn state_words(&self, slots: u32, keys: u32) -> usize;
    /// Initialise the words (called once; `st` is zeroed).
    fn init(&mut self, st: &mut [u32], slots: u32, keys: u32);
    /// `slot` holding `key` was hit.
    fn on_hit(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32);
    /// Whether to admit a missing `key`. Default: always.
    fn admit(&mut self, st: &mut [u32], key: u32, why: &Admission) -> bool {
        let _ = (st, key, why);
        true
    }
    /// The occupied slot to evict to make room, or `None` to refuse the
    /// insertion (everything is pinned).
    fn victim(&mut self, st: &mut [u32]) -> Option<u32>;
    /// `key` was placed in `slot`.
    fn on_insert(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32);
    /// `key` left `slot`.
    fn on_evict(&mut self, st: &mut [u32], slot: u32, key: u32);
    /// A slot whose entry has expired by `token` (windowing), or `None`.
    /// Called repeatedly by [`NeuronCache::end_token`] until it returns `None`.
    fn expired(&mut self, st: &mut [u32], token: u32) -> Option<u32> {
        let _ = (st, token);
        None
    }
}

/// Counters of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups that found the bundle.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Misses the policy admitted.
    pub admitted: u64,
    /// Misses the policy declined (or could not place: all pinned).
    pub declined: u64,
    /// Entries evicted to make room.
    pub evicted: u64,
    /// Entries dropped because their window expired.
    pub expired: u64,
}

impl CacheStats {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// Why the cache could not be built or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheError {
    /// The arena has no room for the cache's metadata or data.
    Arena(crate::arena::ErrorKind),
    /// A key at or beyond the configured key count.
    KeyOutOfRange,
    /// A slot index at or beyond the slot count.
    SlotOutOfRange,
    /// Zero slots, zero bundle size, or sizes that overflow.
    BadConfig,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Arena(k) => write!(f, "neuron cache: {k}"),
            CacheError::KeyOutOfRange => f.write_str("neuron id outside the model"),
            CacheError::SlotOutOfRange => f.write_str("cache slot index out of range"),
            CacheError::BadConfig => {
                f.write_str("neuron cache needs slots, keys and a bundle size")
            }
        }
    }
}

impl core::error::Error for CacheError {}

fn arena_err<E: crate::arena::Error>(e: E) -> CacheError {
    CacheError::Arena(e.kind())
}

/// Sizes of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bundle slots (the hard budget; may be 0 only for "no cache", which
    /// [`NeuronCache::new`] refuses: use no cache instead).
    pub slots: u32,
    /// Distinct keys (layers × neurons per layer).
    pub keys: u32,
    /// Bytes per cached bundle.
    pub bundle_bytes: u32,
}

impl CacheConfig {
    /// Metadata words a cache with `policy` needs.
    pub fn meta_words<P: Policy>(&self, policy: &P) -> Option<usize> {
        (self.slots as usize)
            .checked_mul(3)?
            .checked_add(self.keys as usize)?
            .checked_add(policy.state_words(self.slots, self.keys))
    }

    /// Total arena bytes (metadata plus data) the cache takes.
    pub fn arena_bytes<P: Policy>(&self, policy: &P) -> Option<usize> {
        self.meta_words(policy)?
            .checked_mul(4)?
            .checked_add((self.slots as usize).checked_mul(self.bundle_bytes as usize)?)
    }
}

mod neuron_cache;

pub use neuron_cache::NeuronCache;

#[cfg(test)]
mod tests;
