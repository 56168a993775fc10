//! What a [`BlockFlash`](super::BlockFlash) has done: for benchmarks, for
//! checking the cost model, and for measuring what the bounce copy costs.

/// Running totals since the device was created or
/// [`reset_stats`](super::BlockFlash::reset_stats) was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockFlashStats {
    /// Reads completed (successful or not) and collected.
    pub reads: u64,
    /// Read operations handed to the engine: one per read, plus one per
    /// resubmission of a short or interrupted read.
    pub commands: u64,
    /// Resubmissions (short reads, EINTR, EAGAIN).
    pub resubmits: u64,
    /// Reads that could not start in the `submit` that accepted them, for
    /// want of bounce memory, and waited inside the device.
    pub backlogged: u64,
    /// Bytes delivered into arena slots by successful reads.
    pub bytes_read: u64,
    /// Reads collected with an error status.
    pub failed_reads: u64,
    /// Nanoseconds spent copying from bounce memory into arena slots.
    pub copy_ns: u64,
    /// Write calls that reached the file.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Successful syncs.
    pub syncs: u64,
}

impl BlockFlashStats {
    /// Bounce-copy throughput in bytes per second, `None` before any copy
    /// was timed.
    pub fn copy_bytes_per_sec(&self) -> Option<u64> {
        if self.copy_ns == 0 {
            return None;
        }
        let bps = u128::from(self.bytes_read) * 1_000_000_000 / u128::from(self.copy_ns);
        Some(u64::try_from(bps).unwrap_or(u64::MAX))
    }
}

/// Add to a counter without overflowing.
pub(crate) fn bump(counter: &mut u64, by: u64) {
    *counter = counter.saturating_add(by);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rate_and_saturation() {
        let mut s = BlockFlashStats::default();
        assert_eq!(s.copy_bytes_per_sec(), None);
        s.bytes_read = 1 << 30;
        s.copy_ns = 100_000_000;
        assert_eq!(s.copy_bytes_per_sec(), Some(10 * (1 << 30)));
        bump(&mut s.reads, u64::MAX);
        bump(&mut s.reads, 5);
        assert_eq!(s.reads, u64::MAX);
    }
}
