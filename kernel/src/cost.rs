//! The price of a read, as the scheduler sees it.
//!
//! A flash read costs a fixed per-command time (command setup, FTL lookup,
//! interrupt) plus its bytes at the device's sequential bandwidth. Up to
//! `queue_depth` commands overlap their fixed costs; bandwidth is shared. For a
//! batch of `n` commands moving `b` bytes this gives
//!
//! ```text
//! batch_ns(n, b) = 0                                                  if n = 0
//!                = command_ns + max((n - 1) * command_ns / queue_depth,
//!                                   b * 1e9 / bytes_per_sec)          otherwise
//! ```
//!
//! One command costs its full latency; many small commands cost
//! `command_ns / queue_depth` each (the device's random-read IOPS limit); many
//! large ones cost their bytes (the bandwidth limit). On this machine's disk
//! (DESIGN.md: about 50 us per read plus 0.8 us per KiB, 80k IOPS at QD32)
//! that is `command_ns = 50_000`, `bytes_per_sec = 1.28e9`, `queue_depth = 4`:
//! the *effective* overlap, which is often far below the protocol's queue depth
//! reported in [`Geometry`](crate::flash::Geometry).

/// Linear read-cost model of a flash device. All arithmetic is integer and
/// saturating, so a model read from an untrusted image cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CostModel {
    /// Fixed cost of one read command at queue depth 1, in nanoseconds.
    pub command_ns: u32,
    /// Sustained sequential read bandwidth in bytes per second (at least 1).
    pub bytes_per_sec: u64,
    /// How many commands overlap their fixed cost (at least 1).
    pub queue_depth: u16,
}

impl CostModel {
    /// Time to move `bytes` at the sequential bandwidth, in nanoseconds.
    pub fn transfer_ns(&self, bytes: u64) -> u64 {
        let bps = self.bytes_per_sec.max(1) as u128;
        let ns = (bytes as u128 * 1_000_000_000).div_ceil(bps);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Latency of a single read of `bytes` at queue depth 1.
    pub fn read_ns(&self, bytes: u64) -> u64 {
        self.batch_ns(1, bytes)
    }

    /// Time for a batch of `commands` reads moving `bytes` in total (see the
    /// module docs for the formula).
    pub fn batch_ns(&self, commands: u64, bytes: u64) -> u64 {
        if commands == 0 {
            return 0;
        }
        let qd = u64::from(self.queue_depth.max(1));
        let overlapped = (commands - 1).saturating_mul(u64::from(self.command_ns)) / qd;
        u64::from(self.command_ns).saturating_add(overlapped.max(self.transfer_ns(bytes)))
    }

    /// Marginal cost of one more command inside a long batch: what merging two
    /// reads saves at best.
    pub fn marginal_command_ns(&self) -> u64 {
        u64::from(self.command_ns) / u64::from(self.queue_depth.max(1))
    }

    /// `true` when the model is usable: non-zero bandwidth and queue depth.
    pub fn is_valid(&self) -> bool {
        self.bytes_per_sec > 0 && self.queue_depth > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK: CostModel = CostModel {
        command_ns: 50_000,
        bytes_per_sec: 1_280_000_000,
        queue_depth: 4,
    };

    #[test]
    fn single_read_is_fixed_plus_transfer() {
        assert_eq!(DISK.read_ns(0), 50_000);
        // 1 MiB at 1.28 GB/s is 819.2 us: about 1.2k IOPS at QD1, as measured.
        assert_eq!(DISK.read_ns(1 << 20), 50_000 + 819_200);
    }

    #[test]
    fn small_reads_are_bound_by_commands_large_by_bytes() {
        // 1000 x 4 KiB: command-bound, 12.5 us each -> ~80k IOPS.
        let t = DISK.batch_ns(1000, 1000 * 4096);
        assert_eq!(t, 50_000 + 999 * 50_000 / 4);
        // 100 x 1 MiB: bandwidth-bound.
        let t = DISK.batch_ns(100, 100 << 20);
        assert_eq!(t, 50_000 + DISK.transfer_ns(100 << 20));
    }

    #[test]
    fn degenerate_models_do_not_panic() {
        let m = CostModel {
            command_ns: u32::MAX,
            bytes_per_sec: 0,
            queue_depth: 0,
        };
        assert!(!m.is_valid());
        assert!(m.batch_ns(u64::MAX, u64::MAX) > 0);
        assert_eq!(m.batch_ns(0, 5), 0);
    }

    proptest::proptest! {
        #[test]
        fn batch_cost_is_monotone(n in 1u64..10_000, b in 0u64..1 << 40, dn in 0u64..100, db in 0u64..1 << 30) {
            proptest::prop_assert!(DISK.batch_ns(n + dn, b + db) >= DISK.batch_ns(n, b));
        }
    }
}
