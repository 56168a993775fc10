//! The cache itself: slots of bundle bytes in the arena, the key map and
//! free stack in arena words, and a [`Policy`] that chooses what stays.

use crate::arena::{DramArena, Slot, SlotKind};

use super::{arena_err, Admission, CacheConfig, CacheError, CacheStats, Policy, EMPTY};

/// A neuron-bundle cache with policy `P`.
#[derive(Debug)]
pub struct NeuronCache<P: Policy> {
    cfg: CacheConfig,
    meta: Slot,
    data: Slot,
    occupied: u32,
    /// Entries on the free-slot stack.
    free: u32,
    policy: P,
    stats: CacheStats,
    /// The current hold (see [`NeuronCache::begin_hold`]); 0: none.
    hold: u32,
}

/// The meta words, split by role.
struct Meta<'a> {
    slot_key: &'a mut [u32],
    key_slot: &'a mut [u32],
    free: &'a mut [u32],
    /// The hold each slot was last hit in.
    held: &'a mut [u32],
    st: &'a mut [u32],
}

fn split<'a>(meta: &'a mut [u32], cfg: &CacheConfig) -> Meta<'a> {
    let (slot_key, rest) = meta.split_at_mut(cfg.slots as usize);
    let (key_slot, rest) = rest.split_at_mut(cfg.keys as usize);
    let (free, rest) = rest.split_at_mut(cfg.slots as usize);
    let (held, st) = rest.split_at_mut(cfg.slots as usize);
    Meta {
        slot_key,
        key_slot,
        free,
        held,
        st,
    }
}

/// The meta words of a cache, borrowed from the arena for one call.
fn words<A: DramArena>(arena: &mut A, meta: Slot) -> Result<&mut [u32], CacheError> {
    let bytes = arena.bytes_mut(meta).map_err(arena_err)?;
    // The slot was allocated 4-aligned with a length of whole words.
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| CacheError::BadConfig)
}

impl<P: Policy> NeuronCache<P> {
    /// Carve the cache out of `arena` and initialise it empty.
    pub fn new<A: DramArena>(
        arena: &mut A,
        cfg: CacheConfig,
        mut policy: P,
    ) -> Result<Self, CacheError> {
        if cfg.slots == 0 || cfg.keys == 0 || cfg.bundle_bytes == 0 || cfg.keys == EMPTY {
            return Err(CacheError::BadConfig);
        }
        let words_len = cfg.meta_words(&policy).ok_or(CacheError::BadConfig)?;
        let meta_len = words_len.checked_mul(4).ok_or(CacheError::BadConfig)?;
        let data_len = (cfg.slots as usize)
            .checked_mul(cfg.bundle_bytes as usize)
            .ok_or(CacheError::BadConfig)?;
        let meta = arena
            .alloc(meta_len, 4, SlotKind::NeuronCache)
            .map_err(arena_err)?;
        let data = match arena.alloc(data_len, 64, SlotKind::NeuronCache) {
            Ok(d) => d,
            Err(e) => {
                // Give the metadata back so a failed build leaves no trace.
                let _ = arena.free(meta);
                return Err(arena_err(e));
            }
        };
        let m = split(words(arena, meta)?, &cfg);
        m.slot_key.fill(EMPTY);
        m.key_slot.fill(EMPTY);
        // Free stack, top at the end: slot 0 is handed out first.
        for (i, f) in m.free.iter_mut().enumerate() {
            *f = cfg.slots - 1 - i as u32;
        }
        m.held.fill(0);
        m.st.fill(0);
        policy.init(m.st, cfg.slots, cfg.keys);
        Ok(NeuronCache {
            cfg,
            meta,
            data,
            occupied: 0,
            free: cfg.slots,
            policy,
            stats: CacheStats::default(),
            hold: 0,
        })
    }

    /// Starts a hold: until the next `begin_hold`, every entry
    /// [`lookup`](Self::lookup) hits stays in its slot, so a caller that
    /// looks up all its bundles first and inserts the misses after (as
    /// [`fetch_layer`](crate::fetch::fetch_layer) does) can still read the
    /// hits afterwards. An insertion whose victim is held cycles that entry
    /// through the policy (as if evicted and re-inserted in place, its
    /// bytes untouched) and asks for another; when every entry is held the
    /// insertion is declined.
    pub fn begin_hold<A: DramArena>(&mut self, arena: &mut A) -> Result<(), CacheError> {
        self.hold = self.hold.wrapping_add(1);
        if self.hold == 0 {
            // Wrapped: forget every old hold so none is taken for current.
            split(words(arena, self.meta)?, &self.cfg).held.fill(0);
            self.hold = 1;
        }
        Ok(())
    }

    /// Give the cache's memory back to the arena.
    pub fn release<A: DramArena>(self, arena: &mut A) -> Result<(), CacheError> {
        arena.free(self.data).map_err(arena_err)?;
        arena.free(self.meta).map_err(arena_err)
    }

    /// The sizes the cache was built with.
    pub fn config(&self) -> CacheConfig {
        self.cfg
    }

    /// Slots holding a bundle.
    pub fn occupied(&self) -> u32 {
        self.occupied
    }

    /// Counters since creation.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The policy (for its own counters or configuration).
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Look `key` up; on a hit returns its slot and tells the policy.
    pub fn lookup<A: DramArena>(
        &mut self,
        arena: &mut A,
        key: u32,
        token: u32,
    ) -> Result<Option<u32>, CacheError> {
        if key >= self.cfg.keys {
            return Err(CacheError::KeyOutOfRange);
        }
        let m = split(words(arena, self.meta)?, &self.cfg);
        match m.key_slot[key as usize] {
            EMPTY => {
                self.stats.misses += 1;
                Ok(None)
            }
            slot => {
                self.stats.hits += 1;
                self.policy.on_hit(m.st, slot, key, token);
                if let Some(h) = m.held.get_mut(slot as usize) {
                    *h = self.hold;
                }
                Ok(Some(slot))
            }
        }
    }

    /// `true` when `key` is cached (no statistics, no policy update).
    pub fn contains<A: DramArena>(&self, arena: &A, key: u32) -> Result<bool, CacheError> {
        if key >= self.cfg.keys {
            return Err(CacheError::KeyOutOfRange);
        }
        let bytes = arena.bytes(self.meta).map_err(arena_err)?;
        let meta: &[u32] = bytemuck::try_cast_slice(bytes).map_err(|_| CacheError::BadConfig)?;
        Ok(meta
            .get(self.cfg.slots as usize + key as usize)
            .is_some_and(|&s| s != EMPTY))
    }

    /// Offer a missing `key` to the cache. Returns the slot the caller must
    /// fill with the bundle's bytes (see [`bundle_mut`](Self::bundle_mut)), or
    /// `None` when the policy declined it.
    pub fn insert<A: DramArena>(
        &mut self,
        arena: &mut A,
        key: u32,
        why: &Admission,
    ) -> Result<Option<u32>, CacheError> {
        if key >= self.cfg.keys {
            return Err(CacheError::KeyOutOfRange);
        }
        let mut m = split(words(arena, self.meta)?, &self.cfg);
        if m.key_slot[key as usize] != EMPTY {
            return Ok(Some(m.key_slot[key as usize]));
        }
        if !self.policy.admit(m.st, key, why) {
            self.stats.declined += 1;
            return Ok(None);
        }
        let slot = if self.free > 0 {
            self.free -= 1;
            m.free[self.free as usize]
        } else {
            let Some(victim) = self.unheld_victim(&mut m, why.token)? else {
                self.stats.declined += 1;
                return Ok(None);
            };
            self.vacate(&mut m, victim)?;
            self.stats.evicted += 1;
            victim
        };
        m.slot_key[slot as usize] = key;
        m.key_slot[key as usize] = slot;
        self.occupied += 1;
        self.stats.admitted += 1;
        self.policy.on_insert(m.st, slot, key, why.token);
        Ok(Some(slot))
    }

    /// The policy's victim, passing over entries held by the current hold:
    /// each is cycled through the policy (evicted and re-inserted in place,
    /// mapping and bytes kept) and another is asked for, at most once per
    /// slot. `None` when the policy refuses or every entry is held.
    fn unheld_victim(&mut self, m: &mut Meta<'_>, token: u32) -> Result<Option<u32>, CacheError> {
        for _ in 0..self.cfg.slots {
            let Some(victim) = self.policy.victim(m.st) else {
                return Ok(None);
            };
            let held = m.held.get(victim as usize).copied();
            if self.hold == 0 || held != Some(self.hold) {
                return Ok(Some(victim));
            }
            let key = *m
                .slot_key
                .get(victim as usize)
                .ok_or(CacheError::SlotOutOfRange)?;
            self.policy.on_evict(m.st, victim, key);
            self.policy.on_insert(m.st, victim, key, token);
        }
        Ok(None)
    }

    /// Empty occupied `slot`: unmap its key and tell the policy. The caller
    /// reuses the slot or returns it to the free stack.
    fn vacate(&mut self, m: &mut Meta<'_>, slot: u32) -> Result<(), CacheError> {
        let key = *m
            .slot_key
            .get(slot as usize)
            .ok_or(CacheError::SlotOutOfRange)?;
        if key == EMPTY {
            return Err(CacheError::SlotOutOfRange);
        }
        m.key_slot[key as usize] = EMPTY;
        m.slot_key[slot as usize] = EMPTY;
        self.policy.on_evict(m.st, slot, key);
        self.occupied -= 1;
        Ok(())
    }

    /// Drop entries whose window has passed at the end of `token`.
    pub fn end_token<A: DramArena>(
        &mut self,
        arena: &mut A,
        token: u32,
    ) -> Result<u32, CacheError> {
        let mut m = split(words(arena, self.meta)?, &self.cfg);
        let mut dropped = 0;
        while let Some(slot) = self.policy.expired(m.st, token) {
            self.vacate(&mut m, slot)?;
            m.free[self.free as usize] = slot;
            self.free += 1;
            dropped += 1;
        }
        self.stats.expired += u64::from(dropped);
        Ok(dropped)
    }

    /// The arena slot holding every cached bundle, and the byte range of
    /// cache slot `slot` in it: for a caller that reads cached bundles
    /// while it writes other slots of the arena.
    pub fn bundle_at(&self, slot: u32) -> Result<(Slot, core::ops::Range<usize>), CacheError> {
        Ok((self.data, self.slot_range(slot)?))
    }

    /// The bytes of cache slot `slot`.
    pub fn bundle<'a, A: DramArena>(
        &self,
        arena: &'a A,
        slot: u32,
    ) -> Result<&'a [u8], CacheError> {
        let range = self.slot_range(slot)?;
        arena
            .bytes(self.data)
            .map_err(arena_err)?
            .get(range)
            .ok_or(CacheError::SlotOutOfRange)
    }

    /// The bytes of cache slot `slot`, to fill after an insertion.
    pub fn bundle_mut<'a, A: DramArena>(
        &self,
        arena: &'a mut A,
        slot: u32,
    ) -> Result<&'a mut [u8], CacheError> {
        let range = self.slot_range(slot)?;
        arena
            .bytes_mut(self.data)
            .map_err(arena_err)?
            .get_mut(range)
            .ok_or(CacheError::SlotOutOfRange)
    }

    /// Copy a bundle into cache slot `slot` from `src` (another arena slot,
    /// typically the I/O buffer the bundle was just read into) at
    /// `src_offset`.
    pub fn store<A: DramArena>(
        &self,
        arena: &mut A,
        slot: u32,
        src: Slot,
        src_offset: usize,
    ) -> Result<(), CacheError> {
        let range = self.slot_range(slot)?;
        let [from, to] = arena
            .bytes_disjoint_mut([src, self.data])
            .map_err(arena_err)?;
        let len = range.len();
        let from = src_offset
            .checked_add(len)
            .and_then(|end| from.get(src_offset..end))
            .ok_or(CacheError::SlotOutOfRange)?;
        to.get_mut(range)
            .ok_or(CacheError::SlotOutOfRange)?
            .copy_from_slice(from);
        Ok(())
    }

    fn slot_range(&self, slot: u32) -> Result<core::ops::Range<usize>, CacheError> {
        if slot >= self.cfg.slots {
            return Err(CacheError::SlotOutOfRange);
        }
        let b = self.cfg.bundle_bytes as usize;
        Ok(slot as usize * b..(slot as usize + 1) * b)
    }
}
