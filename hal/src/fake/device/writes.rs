//! The fake flash's write side: persisting to the medium, torn writes, a
//! planned power loss, and the optional volatile cache that loses unsynced
//! blocks at a power loss (`FaultPlan::volatile_writes`).

use lode_kernel::flash::{self, ErrorKind, FlashWrite};

use super::FakeFlash;

impl<S: AsRef<[u8]> + AsMut<[u8]>> FakeFlash<S> {
    /// With volatile writes, keep the durable contents of the blocks a
    /// write to `start..end` touches, the first time since the last sync.
    #[cfg(feature = "alloc")]
    fn remember_durable(&mut self, start: usize, end: usize) {
        if !self.plan.volatile_writes || self.hollow || start >= end {
            return;
        }
        let block = self.geometry.block_size.max(1) as usize;
        for b in start / block..end.div_ceil(block) {
            if let alloc::collections::btree_map::Entry::Vacant(slot) =
                self.unsynced.entry(b as u64)
            {
                let durable = self.storage.as_ref().get(b * block..(b + 1) * block);
                slot.insert(durable.unwrap_or_default().to_vec());
            }
        }
    }

    /// A power loss with volatile writes: each block written since the last
    /// sync keeps its new contents or goes back to its durable ones, by a
    /// seeded coin toss per block (in block order, so runs replay).
    pub(super) fn drop_unsynced(&mut self) {
        #[cfg(feature = "alloc")]
        {
            let block = self.geometry.block_size.max(1) as usize;
            let unsynced = core::mem::take(&mut self.unsynced);
            for (b, durable) in unsynced {
                if self.rng.below(2) == 0 {
                    let at = b as usize * block;
                    if let Some(dst) = self.storage.as_mut().get_mut(at..at + durable.len()) {
                        dst.copy_from_slice(&durable);
                    }
                }
            }
        }
    }

    /// Copy `data` to the medium at `start` and count it.
    pub(super) fn persist(&mut self, start: usize, data: &[u8]) {
        let end = start.saturating_add(data.len());
        #[cfg(feature = "alloc")]
        self.remember_durable(start, end);
        let stored = match self.storage.as_mut().get_mut(start..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => self.hollow,
        };
        if stored {
            let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
            self.written = self.written.saturating_add(n);
            self.counters.bytes_written = self.counters.bytes_written.saturating_add(n);
        }
    }
}

/// Writes reach the medium at once (no volatile cache unless the plan has
/// [`volatile_writes`](FaultPlan::volatile_writes)), with the plan's torn
/// writes and power loss.
impl<S: AsRef<[u8]> + AsMut<[u8]>> FlashWrite for FakeFlash<S> {
    /// Write `data` at `offset`. With the plan's faults:
    ///
    /// - a planned power loss persists only the bytes up to the limit (byte
    ///   granular: a block can be half old, half new), returns
    ///   [`ErrorKind::PowerLoss`] and leaves the device without power;
    /// - a torn write persists a random prefix of whole blocks, never all of
    ///   them, and returns [`ErrorKind::Io`].
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ErrorKind> {
        self.ensure_powered()?;
        flash::admit_write(&self.geometry, offset, data.len())?;
        let len = u64::try_from(data.len()).map_err(|_| ErrorKind::TooLarge)?;
        let start = usize::try_from(offset).map_err(|_| ErrorKind::OutOfRange)?;
        self.counters.write_commands = self.counters.write_commands.saturating_add(1);

        if let (true, Some(limit)) = (self.power_loss_armed, self.plan.power_loss_after_bytes) {
            let room = limit.saturating_sub(self.written);
            if len >= room {
                let keep = usize::try_from(room).unwrap_or(data.len()).min(data.len());
                self.persist(start, data.get(..keep).unwrap_or_default());
                self.lose_power();
                return Err(ErrorKind::PowerLoss);
            }
        }

        if self.rng.chance_ppm(self.plan.torn_write_ppm) {
            let block = u64::from(self.geometry.block_size.max(1));
            let kept_blocks = self.rng.below(len / block);
            let keep = usize::try_from(kept_blocks.saturating_mul(block)).unwrap_or(0);
            self.persist(start, data.get(..keep).unwrap_or_default());
            let f = &mut self.counters.faults;
            f.torn_writes = f.torn_writes.saturating_add(1);
            return Err(ErrorKind::Io);
        }

        self.persist(start, data);
        Ok(())
    }

    /// Count the sync; every write is on the medium (with volatile writes,
    /// from now on durable).
    fn sync(&mut self) -> Result<(), ErrorKind> {
        self.ensure_powered()?;
        #[cfg(feature = "alloc")]
        self.unsynced.clear();
        self.counters.syncs = self.counters.syncs.saturating_add(1);
        Ok(())
    }
}
