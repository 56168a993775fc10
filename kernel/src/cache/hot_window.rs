//! Window-then-heat eviction: LLM in a flash's window of one token, with
//! PowerInfer-2's profiled heat deciding what leaves first.
//!
//! A neuron used by the current token is likely needed by the next one
//! (activations persist), and a neuron the profile saw often is likely
//! needed by any token. So an entry is *recent* while the token that last
//! used it is still the current one and *stale* after that; eviction takes
//! a stale entry before a recent one, the coldest heat level first, and the
//! least recently used within a level. Unlike pinning, no share of the
//! slots is set aside: hot neurons stay because they are hot, and recent
//! cold ones can still use every slot when a token needs them.
//!
//! Words: `prev`, `next` and the epoch of last use per slot, then one
//! `[head, tail]` pair per list: `HEAT_LEVELS` stale lists, then as many
//! recent ones. When the token changes, every recent list is spliced in
//! front of the stale list of its level (O(levels), not O(slots)): the
//! epoch counter advances, so a slot's class is `last == epoch`.

use super::lru::RecencyList;
use super::{Admission, Policy, EMPTY};

/// Heat levels a [`HotWindow`] distinguishes (0 = coldest).
pub use crate::limits::HEAT_LEVELS;

/// The window-then-heat policy over per-key heat levels.
#[derive(Debug, Clone)]
pub struct HotWindow<'h> {
    heat: &'h [u8],
    slots: u32,
    /// Token of the current epoch, `None` before the first call.
    token: Option<u32>,
    /// Advances once per token; wraps after 2^32 tokens, when a slot untouched
    /// for exactly that long would be taken for recent (harmless: it is only
    /// evicted later than it should be).
    epoch: u32,
}

impl<'h> HotWindow<'h> {
    /// A policy over `heat[key]` (levels above `HEAT_LEVELS - 1` count as
    /// the top level; keys past the slice as level 0).
    pub fn new(heat: &'h [u8]) -> Self {
        HotWindow {
            heat,
            slots: 0,
            token: None,
            epoch: 0,
        }
    }

    /// The heat level of a neuron active in `count` of `tokens` profiled
    /// tokens: its activation frequency in `HEAT_LEVELS` equal steps.
    pub fn heat_level(count: u32, tokens: u32) -> u8 {
        let levels = HEAT_LEVELS as u64;
        let level = u64::from(count) * levels / (u64::from(tokens) + 1);
        level.min(levels - 1) as u8
    }

    fn level(&self, key: u32) -> usize {
        self.heat
            .get(key as usize)
            .map_or(0, |&h| usize::from(h).min(HEAT_LEVELS - 1))
    }

    /// The list `slot` is in: stale lists first, then recent ones.
    fn list_of(&self, st: &[u32], slot: u32, key: u32) -> usize {
        let recent = st[2 * self.slots as usize + slot as usize] == self.epoch;
        usize::from(recent) * HEAT_LEVELS + self.level(key)
    }

    /// List `i` over the shared links, and the per-slot epochs.
    fn view<'a>(&self, st: &'a mut [u32], i: usize) -> (RecencyList<'a>, &'a mut [u32]) {
        let s = self.slots as usize;
        let (links, rest) = st.split_at_mut(2 * s);
        let (last, ends) = rest.split_at_mut(s);
        (RecencyList::over(links, &mut ends[2 * i..2 * i + 2]), last)
    }

    /// Start a new epoch when `token` is not the current one: every recent
    /// entry becomes stale, in front of (more recent than) the older ones.
    fn roll(&mut self, st: &mut [u32], token: u32) {
        if self.token == Some(token) {
            return;
        }
        self.token = Some(token);
        self.epoch = self.epoch.wrapping_add(1);
        let s = self.slots as usize;
        let (links, rest) = st.split_at_mut(2 * s);
        let (stale, recent) = rest[s..].split_at_mut(2 * HEAT_LEVELS);
        for level in 0..HEAT_LEVELS {
            let recent = &mut recent[2 * level..2 * level + 2];
            RecencyList::over(links, &mut stale[2 * level..2 * level + 2]).splice_front(recent);
        }
    }

    fn make_recent(&mut self, st: &mut [u32], slot: u32, key: u32) {
        let list = HEAT_LEVELS + self.level(key);
        let epoch = self.epoch;
        let (mut l, last) = self.view(st, list);
        l.push_front(slot);
        last[slot as usize] = epoch;
    }
}

impl Policy for HotWindow<'_> {
    fn state_words(&self, slots: u32, _keys: u32) -> usize {
        3 * slots as usize + 2 * 2 * HEAT_LEVELS
    }
    fn init(&mut self, st: &mut [u32], slots: u32, _keys: u32) {
        self.slots = slots;
        self.token = None;
        self.epoch = 0;
        // Unlinked slots, empty lists (both `EMPTY`) and no slot used in any
        // epoch yet (`u32::MAX`, which the first epoch, 1, is not).
        st.fill(EMPTY);
    }
    fn on_hit(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32) {
        self.roll(st, token);
        let list = self.list_of(st, slot, key);
        self.view(st, list).0.remove(slot);
        self.make_recent(st, slot, key);
    }
    fn admit(&mut self, st: &mut [u32], _key: u32, why: &Admission) -> bool {
        // Roll before `victim`, which has no token of its own.
        self.roll(st, why.token);
        true
    }
    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        (0..2 * HEAT_LEVELS).find_map(|i| self.view(st, i).0.back())
    }
    fn on_insert(&mut self, st: &mut [u32], slot: u32, key: u32, token: u32) {
        self.roll(st, token);
        self.make_recent(st, slot, key);
    }
    fn on_evict(&mut self, st: &mut [u32], slot: u32, key: u32) {
        let list = self.list_of(st, slot, key);
        self.view(st, list).0.remove(slot);
        self.view(st, 0).1[slot as usize] = EMPTY;
    }
}
