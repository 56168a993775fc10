//! Recency-based policies (LRU, LLM-in-a-flash windowing, PowerInfer-2 hot
//! pinning) and Ripple's linking-aligned admission filter.

use super::lru::RecencyList;
use super::{Admission, Policy};
use crate::rng::SplitMix64;

/// Least recently used.
#[derive(Debug, Clone, Default)]
pub struct Lru {
    slots: u32,
}

impl Lru {
    /// A new LRU policy.
    pub fn new() -> Self {
        Lru { slots: 0 }
    }
}

impl Policy for Lru {
    fn state_words(&self, slots: u32, _keys: u32) -> usize {
        RecencyList::words(slots)
    }
    fn init(&mut self, st: &mut [u32], slots: u32, _keys: u32) {
        self.slots = slots;
        RecencyList::view(st, slots).0.clear();
    }
    fn on_hit(&mut self, st: &mut [u32], slot: u32, _key: u32, _token: u32) {
        RecencyList::view(st, self.slots).0.touch(slot);
    }
    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        RecencyList::view(st, self.slots).0.back()
    }
    fn on_insert(&mut self, st: &mut [u32], slot: u32, _key: u32, _token: u32) {
        RecencyList::view(st, self.slots).0.push_front(slot);
    }
    fn on_evict(&mut self, st: &mut [u32], slot: u32, _key: u32) {
        RecencyList::view(st, self.slots).0.remove(slot);
    }
}

/// LLM in a flash's sliding window: keep the neurons used by the last `k`
/// tokens. Entries whose last use is `k` or more tokens old are dropped at the
/// end of each token (so the cache holds exactly the window when it fits);
/// when the window does not fit the slot budget, the least recently used
/// entry makes room, as in LRU.
#[derive(Debug, Clone)]
pub struct Window {
    k: u32,
    slots: u32,
}

impl Window {
    /// A window over the last `k` tokens (at least 1).
    pub fn new(k: u32) -> Self {
        Window {
            k: k.max(1),
            slots: 0,
        }
    }
}

impl Policy for Window {
    fn state_words(&self, slots: u32, _keys: u32) -> usize {
        RecencyList::words(slots) + slots as usize
    }
    fn init(&mut self, st: &mut [u32], slots: u32, _keys: u32) {
        self.slots = slots;
        RecencyList::view(st, slots).0.clear();
    }
    fn on_hit(&mut self, st: &mut [u32], slot: u32, _key: u32, token: u32) {
        let (mut list, last) = RecencyList::view(st, self.slots);
        list.touch(slot);
        last[slot as usize] = token;
    }
    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        RecencyList::view(st, self.slots).0.back()
    }
    fn on_insert(&mut self, st: &mut [u32], slot: u32, _key: u32, token: u32) {
        let (mut list, last) = RecencyList::view(st, self.slots);
        list.push_front(slot);
        last[slot as usize] = token;
    }
    fn on_evict(&mut self, st: &mut [u32], slot: u32, _key: u32) {
        RecencyList::view(st, self.slots).0.remove(slot);
    }
    fn expired(&mut self, st: &mut [u32], token: u32) -> Option<u32> {
        let (list, last) = RecencyList::view(st, self.slots);
        // After token t, the window is tokens t+1-k ..= t.
        let oldest = list.back()?;
        (last[oldest as usize].saturating_add(self.k) <= token).then_some(oldest)
    }
}

/// PowerInfer-2's hot/cold split: `hot` (sorted neuron keys, chosen offline
/// from profiled activation frequencies) are pinned once cached and never
/// evicted; the remaining slots hold cold neurons under LRU.
#[derive(Debug, Clone)]
pub struct HotPinned<'h> {
    hot: &'h [u32],
    slots: u32,
}

impl<'h> HotPinned<'h> {
    /// Pin the keys in `hot`, which must be sorted ascending (checked with a
    /// debug assertion only; an unsorted list just pins fewer keys).
    pub fn new(hot: &'h [u32]) -> Self {
        HotPinned { hot, slots: 0 }
    }

    /// `true` when `key` is one of the pinned keys.
    pub fn is_hot(&self, key: u32) -> bool {
        self.hot.binary_search(&key).is_ok()
    }
}

impl Policy for HotPinned<'_> {
    fn state_words(&self, slots: u32, _keys: u32) -> usize {
        RecencyList::words(slots)
    }
    fn init(&mut self, st: &mut [u32], slots: u32, _keys: u32) {
        self.slots = slots;
        RecencyList::view(st, slots).0.clear();
    }
    fn on_hit(&mut self, st: &mut [u32], slot: u32, key: u32, _token: u32) {
        if !self.is_hot(key) {
            RecencyList::view(st, self.slots).0.touch(slot);
        }
    }
    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        // Only cold entries are in the list: pinned ones are never offered.
        RecencyList::view(st, self.slots).0.back()
    }
    fn on_insert(&mut self, st: &mut [u32], slot: u32, key: u32, _token: u32) {
        if !self.is_hot(key) {
            RecencyList::view(st, self.slots).0.push_front(slot);
        }
    }
    fn on_evict(&mut self, st: &mut [u32], slot: u32, _key: u32) {
        RecencyList::view(st, self.slots).0.remove(slot);
    }
}

/// Ripple's linking-aligned admission on top of any policy: a neuron read
/// alone (run length 1) is admitted, because re-reading it costs a whole
/// command; a neuron read inside a run of `r` consecutive bundles is admitted
/// with probability `1 / r`, because the run is cheap to read again in one
/// command. Seeded, so a replay admits the same neurons.
#[derive(Debug, Clone)]
pub struct LinkAdmission<P> {
    inner: P,
    rng: SplitMix64,
}

impl<P: Policy> LinkAdmission<P> {
    /// Filter `inner`'s admissions, drawing from a generator seeded by `seed`.
    pub fn new(inner: P, seed: u64) -> Self {
        LinkAdmission {
            inner,
            rng: SplitMix64::new(seed),
        }
    }
}

impl<P: Policy> Policy for LinkAdmission<P> {
    fn state_words(&self, slots: u32, keys: u32) -> usize {
        self.inner.state_words(slots, keys)
    }
    fn init(&mut self, st: &mut [u32], slots: u32, keys: u32) {
        self.inner.init(st, slots, keys);
    }
    fn on_hit(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32) {
        self.inner.on_hit(st, slot, key, token);
    }
    fn admit(&mut self, st: &mut [u32], key: u32, why: &Admission) -> bool {
        let run = u64::from(why.run_len.max(1));
        (run == 1 || self.rng.below(run) == 0) && self.inner.admit(st, key, why)
    }
    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        self.inner.victim(st)
    }
    fn on_insert(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32) {
        self.inner.on_insert(st, slot, key, token);
    }
    fn on_evict(&mut self, st: &mut [u32], slot: u32, key: u32) {
        self.inner.on_evict(st, slot, key);
    }
    fn expired(&mut self, st: &mut [u32], token: u32) -> Option<u32> {
        self.inner.expired(st, token)
    }
}
