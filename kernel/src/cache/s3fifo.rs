//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP 2023): a small FIFO that filters one-hit wonders, a main FIFO with
//! lazy promotion (reinsert while the entry's 2-bit frequency is non-zero),
//! and a ghost FIFO of recently filtered keys that go straight to main when
//! they come back. Ripple builds its cache on it.
//!
//! Words: small ring, main ring (each `slots`), ghost ring (`slots - small`),
//! per-slot frequency and queue tags (`slots`), and a ghost-membership bitset
//! over keys. Membership is approximate in one corner: a key that leaves the
//! ghost ring clears its bit even if it was ghosted again meanwhile, which can
//! only send a returning key to the small queue instead of main.

use super::Policy;

const Q_NONE: u32 = 0;
const Q_SMALL: u32 = 1;
const Q_MAIN: u32 = 2;

/// A FIFO of `u32` in a window of policy words.
#[derive(Debug, Clone, Copy, Default)]
struct Ring {
    start: usize,
    cap: u32,
    head: u32,
    len: u32,
}

impl Ring {
    fn push(&mut self, st: &mut [u32], v: u32) -> bool {
        if self.len == self.cap {
            return false;
        }
        let i = (self.head + self.len) % self.cap;
        st[self.start + i as usize] = v;
        self.len += 1;
        true
    }

    fn pop(&mut self, st: &[u32]) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let v = st[self.start + self.head as usize];
        self.head = (self.head + 1) % self.cap;
        self.len -= 1;
        Some(v)
    }
}

/// The S3-FIFO policy. The small queue takes `small_percent` of the slots
/// (10 in the paper).
#[derive(Debug, Clone)]
pub struct S3Fifo {
    small_percent: u32,
    small_target: u32,
    small: Ring,
    main: Ring,
    ghost: Ring,
    tags: usize,
    bits: usize,
    slots: u32,
}

impl Default for S3Fifo {
    fn default() -> Self {
        Self::new(10)
    }
}

impl S3Fifo {
    /// S3-FIFO with a small queue of `small_percent` of the slots (1..=50).
    pub fn new(small_percent: u32) -> Self {
        S3Fifo {
            small_percent: small_percent.clamp(1, 50),
            small_target: 1,
            small: Ring::default(),
            main: Ring::default(),
            ghost: Ring::default(),
            tags: 0,
            bits: 0,
            slots: 0,
        }
    }

    fn small_target(&self, slots: u32) -> u32 {
        (slots * self.small_percent / 100).clamp(1, slots.max(1))
    }

    fn ghost_cap(&self, slots: u32) -> u32 {
        (slots - self.small_target(slots).min(slots)).max(1)
    }

    fn tag(&self, st: &[u32], slot: u32) -> (u32, u32) {
        let t = st[self.tags + slot as usize];
        (t >> 2, t & 3)
    }

    fn set_tag(&self, st: &mut [u32], slot: u32, queue: u32, freq: u32) {
        st[self.tags + slot as usize] = queue << 2 | freq.min(3);
    }

    fn ghost_has(&self, st: &[u32], key: u32) -> bool {
        st[self.bits + key as usize / 32] & (1 << (key % 32)) != 0
    }

    fn ghost_set(&self, st: &mut [u32], key: u32, on: bool) {
        let w = &mut st[self.bits + key as usize / 32];
        if on {
            *w |= 1 << (key % 32);
        } else {
            *w &= !(1 << (key % 32));
        }
    }
}

impl Policy for S3Fifo {
    fn state_words(&self, slots: u32, keys: u32) -> usize {
        3 * slots as usize + self.ghost_cap(slots) as usize + keys.div_ceil(32) as usize
    }

    fn init(&mut self, _st: &mut [u32], slots: u32, _keys: u32) {
        self.slots = slots;
        self.small_target = self.small_target(slots);
        let s = slots as usize;
        self.small = Ring {
            start: 0,
            cap: slots,
            head: 0,
            len: 0,
        };
        self.main = Ring {
            start: s,
            cap: slots,
            head: 0,
            len: 0,
        };
        self.ghost = Ring {
            start: 2 * s,
            cap: self.ghost_cap(slots),
            head: 0,
            len: 0,
        };
        self.tags = 2 * s + self.ghost.cap as usize;
        self.bits = self.tags + s;
    }

    fn on_hit(&mut self, st: &mut [u32], slot: u32, _key: u32, _token: u32) {
        let (q, f) = self.tag(st, slot);
        self.set_tag(st, slot, q, f + 1);
    }

    fn victim(&mut self, st: &mut [u32]) -> Option<u32> {
        // Every pass either returns or moves an entry / lowers a frequency;
        // frequencies are at most 3, so 5 passes per slot is a hard bound.
        for _ in 0..5 * self.slots as usize + 5 {
            if self.small.len > 0 && (self.small.len >= self.small_target || self.main.len == 0) {
                let t = self.small.pop(st)?;
                if self.tag(st, t).1 > 0 {
                    self.set_tag(st, t, Q_MAIN, 0);
                    self.main.push(st, t);
                    continue;
                }
                return Some(t); // still tagged small: on_evict ghosts its key
            }
            let t = self.main.pop(st)?;
            let (_, f) = self.tag(st, t);
            if f > 0 {
                self.set_tag(st, t, Q_MAIN, f - 1);
                self.main.push(st, t);
                continue;
            }
            return Some(t);
        }
        None
    }

    fn on_insert(&mut self, st: &mut [u32], slot: u32, key: u32, _token: u32) {
        if self.ghost_has(st, key) {
            self.ghost_set(st, key, false);
            self.set_tag(st, slot, Q_MAIN, 0);
            self.main.push(st, slot);
        } else {
            self.set_tag(st, slot, Q_SMALL, 0);
            self.small.push(st, slot);
        }
    }

    fn on_evict(&mut self, st: &mut [u32], slot: u32, key: u32) {
        if self.tag(st, slot).0 == Q_SMALL {
            if self.ghost.len == self.ghost.cap {
                if let Some(old) = self.ghost.pop(st) {
                    self.ghost_set(st, old, false);
                }
            }
            self.ghost.push(st, key);
            self.ghost_set(st, key, true);
        }
        self.set_tag(st, slot, Q_NONE, 0);
    }
}
