//! What a fake flash has done: commands, bytes, virtual time and faults.
//!
//! Tests and benchmarks read these instead of wall-clock time, so a policy's
//! I/O cost is exact and identical on every machine.

/// Faults injected so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FaultCounts {
    /// Reads completed with an injected `Io` error.
    pub read_errors: u64,
    /// Reads delivered with one bit flipped.
    pub bit_flips: u64,
    /// Writes torn after a prefix of blocks.
    pub torn_writes: u64,
    /// Times the device lost power.
    pub power_losses: u64,
    /// Read commands that stalled for an extra `spike_ns`.
    pub latency_spikes: u64,
}

impl FaultCounts {
    /// Every injected fault, of any kind.
    pub fn total(&self) -> u64 {
        self.read_errors
            .saturating_add(self.bit_flips)
            .saturating_add(self.torn_writes)
            .saturating_add(self.power_losses)
            .saturating_add(self.latency_spikes)
    }
}

/// Running totals of a [`FakeFlash`](super::FakeFlash) since it was created or
/// last [reset](super::FakeFlash::reset_counters). All counts saturate rather
/// than wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Non-empty read batches accepted by `submit`.
    pub batches: u64,
    /// Read commands accepted by `submit`.
    pub read_commands: u64,
    /// Bytes requested by accepted read commands.
    pub bytes_read: u64,
    /// Completions handed back by `complete`, successful or not.
    pub completions: u64,
    /// Completions whose status was an error (injected or a destination that
    /// went stale after submission).
    pub failed_reads: u64,
    /// Write commands that passed validation (including torn ones and the one
    /// cut short by a power loss).
    pub write_commands: u64,
    /// Bytes that actually reached the medium.
    pub bytes_written: u64,
    /// Successful `sync` calls.
    pub syncs: u64,
    /// Virtual time charged for read batches, in nanoseconds.
    pub virtual_ns: u64,
    /// Injected faults, by kind.
    pub faults: FaultCounts,
}

impl Counters {
    /// [`virtual_ns`](Counters::virtual_ns) in whole microseconds.
    pub fn virtual_us(&self) -> u64 {
        self.virtual_ns / 1_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_units() {
        let c = Counters {
            virtual_ns: 12_345_678,
            faults: FaultCounts {
                read_errors: 1,
                bit_flips: 2,
                torn_writes: 3,
                power_losses: 4,
                latency_spikes: 5,
            },
            ..Counters::default()
        };
        assert_eq!(c.virtual_us(), 12_345);
        assert_eq!(c.faults.total(), 15);
        let huge = FaultCounts {
            read_errors: u64::MAX,
            bit_flips: 1,
            ..FaultCounts::default()
        };
        assert_eq!(huge.total(), u64::MAX);
    }
}
