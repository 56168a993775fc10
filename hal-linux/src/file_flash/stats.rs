//! What a [`FileFlash`](super::FileFlash) has done, for benchmarks and for
//! checking the cost model against measured time.

use std::time::Duration;

/// Running totals since the device was created or
/// [`reset_stats`](super::FileFlash::reset_stats) was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileFlashStats {
    /// Read commands issued to the operating system (failed ones included).
    pub commands: u64,
    /// Bytes delivered by successful reads.
    pub bytes_read: u64,
    /// Wall-clock nanoseconds spent inside read calls.
    pub read_ns: u64,
    /// Reads that completed with an error status.
    pub failed_reads: u64,
    /// Write calls that reached the file.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Successful syncs.
    pub syncs: u64,
}

impl FileFlashStats {
    /// Account one read that took `elapsed` and delivered `bytes` (0 when it
    /// failed).
    pub(crate) fn record_read(&mut self, ok: bool, bytes: u64, elapsed: Duration) {
        self.commands = self.commands.saturating_add(1);
        if ok {
            self.bytes_read = self.bytes_read.saturating_add(bytes);
        } else {
            self.failed_reads = self.failed_reads.saturating_add(1);
        }
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.read_ns = self.read_ns.saturating_add(ns);
    }

    /// Account one successful write of `bytes`.
    pub(crate) fn record_write(&mut self, bytes: u64) {
        self.writes = self.writes.saturating_add(1);
        self.bytes_written = self.bytes_written.saturating_add(bytes);
    }

    /// Mean bandwidth of successful reads in bytes per second, `None` before
    /// any time was measured. Compare with the cost model's `bytes_per_sec`.
    pub fn read_bytes_per_sec(&self) -> Option<u64> {
        if self.read_ns == 0 {
            return None;
        }
        let bps = u128::from(self.bytes_read) * 1_000_000_000 / u128::from(self.read_ns);
        Some(u64::try_from(bps).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_counted_and_saturate() {
        let mut s = FileFlashStats::default();
        assert_eq!(s.read_bytes_per_sec(), None);
        s.record_read(true, 4096, Duration::from_micros(4));
        s.record_read(false, 0, Duration::from_micros(1));
        assert_eq!(s.commands, 2);
        assert_eq!(s.failed_reads, 1);
        assert_eq!(s.bytes_read, 4096);
        assert_eq!(s.read_ns, 5_000);
        assert_eq!(s.read_bytes_per_sec(), Some(4096 * 200_000));
        s.record_read(true, u64::MAX, Duration::MAX);
        assert_eq!(s.bytes_read, u64::MAX);
        assert_eq!(s.read_ns, u64::MAX);
    }
}
