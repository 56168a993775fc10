//! Free space: which blocks of the area are in use, in two bit sets over
//! borrowed memory.
//!
//! `used` holds the blocks the committed state references (rebuilt from it
//! at open); `fresh` the blocks taken by the commit in progress. A commit
//! allocates only blocks free in both, so it never writes over anything
//! the committed state references (copy-on-write). When the commit fails,
//! `fresh` is cleared and nothing else changed; when it succeeds, `fresh`
//! joins `used` and the blocks only the old state referenced are released.
//!
//! Allocation is next-fit from a roving cursor rather than lowest-first,
//! so successive commits spread their writes over the area instead of
//! rewriting its first free blocks every time (flash wears per erase).

/// The two bit sets and the cursor.
pub(super) struct Space<'m> {
    used: &'m mut [u8],
    fresh: &'m mut [u8],
    blocks: u64,
    block: u64,
    rover: u64,
}

/// Bytes of one bit set over `blocks` blocks.
pub(super) const fn bitmap_bytes(blocks: u64) -> usize {
    blocks.div_ceil(8) as usize
}

impl<'m> Space<'m> {
    /// Bit sets over `used` and `fresh` (each at least
    /// [`bitmap_bytes`]`(blocks)` long), everything free.
    pub(super) fn new(used: &'m mut [u8], fresh: &'m mut [u8], blocks: u64, block: u64) -> Self {
        let mut s = Space {
            used,
            fresh,
            blocks,
            block,
            rover: 0,
        };
        s.clear();
        s
    }

    /// Everything free, the cursor at the start.
    pub(super) fn clear(&mut self) {
        self.used.fill(0);
        self.fresh.fill(0);
        self.rover = 0;
    }

    fn bit(set: &[u8], b: u64) -> bool {
        set.get((b / 8) as usize)
            .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
    }

    fn set(set: &mut [u8], b: u64, on: bool) {
        if let Some(byte) = set.get_mut((b / 8) as usize) {
            if on {
                *byte |= 1 << (b % 8);
            } else {
                *byte &= !(1 << (b % 8));
            }
        }
    }

    fn taken(&self, b: u64) -> bool {
        b >= self.blocks || Self::bit(self.used, b) || Self::bit(self.fresh, b)
    }

    /// The block range of `len` bytes at `offset`.
    fn range(&self, offset: u64, len: u64) -> (u64, u64) {
        let first = offset / self.block;
        (first, first.saturating_add(len.div_ceil(self.block)))
    }

    /// Mark `len` bytes at `offset` as referenced by the committed state;
    /// `false` (and nothing marked) if a block of it already is, or it
    /// leaves the area: two structures of one state overlap.
    pub(super) fn claim(&mut self, offset: u64, len: u64) -> bool {
        let (first, end) = self.range(offset, len);
        if (first..end).any(|b| self.taken(b)) {
            return false;
        }
        (first..end).for_each(|b| Self::set(self.used, b, true));
        true
    }

    /// Release `len` bytes at `offset` from the committed state.
    pub(super) fn release(&mut self, offset: u64, len: u64) {
        let (first, end) = self.range(offset, len);
        (first..end.min(self.blocks)).for_each(|b| Self::set(self.used, b, false));
    }

    /// Take `len` bytes (rounded up to blocks) for the commit in progress:
    /// the first free run at or after the cursor, wrapping once. Returns
    /// the byte offset, or `None` when no run is long enough.
    pub(super) fn take(&mut self, len: u64) -> Option<u64> {
        let need = len.div_ceil(self.block).max(1);
        let start = self
            .find(self.rover, self.blocks, need)
            .or_else(|| self.find(0, self.rover.saturating_add(need).min(self.blocks), need))?;
        (start..start + need).for_each(|b| Self::set(self.fresh, b, true));
        self.rover = if start + need >= self.blocks {
            0
        } else {
            start + need
        };
        Some(start * self.block)
    }

    /// First run of `need` free blocks starting in `from..to` (and ending
    /// before `to`).
    fn find(&self, from: u64, to: u64, need: u64) -> Option<u64> {
        let mut run = 0;
        for b in from..to {
            if self.taken(b) {
                run = 0;
            } else {
                run += 1;
                if run == need {
                    return Some(b + 1 - need);
                }
            }
        }
        None
    }

    /// The commit in progress failed: forget what it took.
    pub(super) fn abandon(&mut self) {
        self.fresh.fill(0);
    }

    /// The commit in progress is durable: what it took is now referenced.
    pub(super) fn settle(&mut self) {
        for (u, f) in self.used.iter_mut().zip(self.fresh.iter_mut()) {
            *u |= *f;
            *f = 0;
        }
    }

    /// Blocks free in both sets, in bytes.
    pub(super) fn free_bytes(&self) -> u64 {
        let taken: u64 = (0..self.blocks).filter(|&b| self.taken(b)).count() as u64;
        (self.blocks - taken) * self.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_claim_release_and_abandon() {
        let (mut u, mut f) = ([0u8; 2], [0u8; 2]);
        let mut s = Space::new(&mut u, &mut f, 12, 512);
        assert!(s.claim(0, 1024));
        assert!(!s.claim(512, 10), "block 1 is already referenced");
        assert_eq!(s.take(600), Some(1024));
        assert_eq!(s.free_bytes(), 8 * 512);
        s.abandon();
        assert_eq!(s.free_bytes(), 10 * 512);
        assert_eq!(s.take(512 * 10), Some(1024));
        assert_eq!(s.take(1), None);
        s.settle();
        s.release(1024, 512 * 10);
        assert_eq!(s.free_bytes(), 10 * 512);
        // Next fit wrapped to the start after filling the area.
        assert_eq!(s.take(512), Some(1024));
    }
}
