//! What a [`FaultInjector`](super::FaultInjector) injects, and what it has
//! injected so far.

/// Which faults to inject and how often. Rates are in parts per million of
/// the operations they apply to; `0` turns a fault off and draws nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Faults {
    /// Seed of the generator behind every fault.
    pub seed: u64,
    /// Chance per read that it fails with `Io`.
    pub read_error_ppm: u32,
    /// Chance per successful read that one bit of its copy is flipped.
    pub bit_flip_ppm: u32,
    /// Chance per read that its completion is `spike_ns` late.
    pub spike_ppm: u32,
    /// Extra latency of one spike, in nanoseconds.
    pub spike_ns: u64,
    /// Chance per write that it fails with `Io`, writing nothing.
    pub write_error_ppm: u32,
}

impl Faults {
    /// No faults: the injector is a transparent adapter.
    pub const fn none() -> Self {
        Faults {
            seed: 0,
            read_error_ppm: 0,
            bit_flip_ppm: 0,
            spike_ppm: 0,
            spike_ns: 0,
            write_error_ppm: 0,
        }
    }

    /// `true` when no rate is set (bad extents are separate).
    pub const fn is_none(&self) -> bool {
        self.read_error_ppm == 0
            && self.bit_flip_ppm == 0
            && (self.spike_ppm == 0 || self.spike_ns == 0)
            && self.write_error_ppm == 0
    }
}

/// Faults injected so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FaultCounts {
    /// Reads failed with `Io` (by rate or bad extent).
    pub read_errors: u64,
    /// Successful reads delivered with one bit flipped.
    pub bit_flips: u64,
    /// Reads whose completion was made late.
    pub latency_spikes: u64,
    /// Virtual latency added by the spikes, in nanoseconds.
    pub added_ns: u64,
    /// Writes failed with `Io`.
    pub write_errors: u64,
}

impl FaultCounts {
    /// Faults of every kind (spikes counted once each, not by their time).
    pub fn total(&self) -> u64 {
        self.read_errors
            .saturating_add(self.bit_flips)
            .saturating_add(self.latency_spikes)
            .saturating_add(self.write_errors)
    }
}
