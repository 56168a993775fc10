//! Which faults a fake flash injects, and how often.

/// The faults a [`FakeFlash`](super::FakeFlash) injects, all drawn from one
/// seeded generator so a failing run replays exactly: the same plan and the
/// same sequence of calls give the same faults, the same data and the same
/// completion order.
///
/// Rates are in parts per million of the operations they apply to; `0` turns
/// a fault off and draws nothing, `1_000_000` (or more) makes it certain.
///
/// ```
/// use lode_hal::fake::FaultPlan;
///
/// // One read in a thousand fails; completions come back out of order.
/// let plan = FaultPlan { read_error_ppm: 1_000, reorder: true, ..FaultPlan::none() };
/// assert_eq!(plan.seed, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultPlan {
    /// Seed of the generator behind every fault and the completion order.
    pub seed: u64,
    /// Chance per completed read that it fails with
    /// [`ErrorKind::Io`](lode_kernel::flash::ErrorKind::Io), leaving its
    /// destination untouched.
    pub read_error_ppm: u32,
    /// Chance per successful read that one bit of the delivered copy is
    /// flipped (the stored data stays intact, as with a transient read
    /// disturb or a bus error).
    pub bit_flip_ppm: u32,
    /// Chance per write that it is torn: only a random prefix of whole blocks
    /// (possibly none, never all) persists and the write fails with `Io`.
    pub torn_write_ppm: u32,
    /// Lose power once this many bytes have been written since the device was
    /// created: the write that reaches the limit persists only the bytes up to
    /// it, and the device refuses everything until
    /// [`power_cycle`](super::FakeFlash::power_cycle). Fires once.
    pub power_loss_after_bytes: Option<u64>,
    /// Chance per read command that it stalls (garbage collection, thermal
    /// throttling) and adds `spike_ns` to its batch's virtual time.
    pub spike_ppm: u32,
    /// Extra virtual time of one latency spike, in nanoseconds.
    pub spike_ns: u64,
    /// Complete queued reads in a seeded random order instead of submission
    /// order, as real command queues do.
    pub reorder: bool,
    /// Writes since the last `sync` sit in a volatile cache (reads see
    /// them): at a power loss each block written since then is lost or
    /// kept by a seeded coin toss, so a store that commits before syncing
    /// what its commit references fails its tests. Needs the `alloc`
    /// feature (the cache keeps the blocks' durable contents); without it
    /// writes stay durable at once.
    pub volatile_writes: bool,
}

impl FaultPlan {
    /// No faults, in-order completion: a perfect device.
    pub const fn none() -> Self {
        FaultPlan {
            seed: 0,
            read_error_ppm: 0,
            bit_flip_ppm: 0,
            torn_write_ppm: 0,
            power_loss_after_bytes: None,
            spike_ppm: 0,
            spike_ns: 0,
            reorder: false,
            volatile_writes: false,
        }
    }

    /// `true` when the plan injects nothing and keeps submission order.
    pub const fn is_none(&self) -> bool {
        self.read_error_ppm == 0
            && self.bit_flip_ppm == 0
            && self.torn_write_ppm == 0
            && self.power_loss_after_bytes.is_none()
            && (self.spike_ppm == 0 || self.spike_ns == 0)
            && !self.reorder
            && !self.volatile_writes
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_none_and_any_fault_is_not() {
        assert!(FaultPlan::none().is_none());
        assert_eq!(FaultPlan::default(), FaultPlan::none());
        // The seed alone injects nothing.
        assert!(FaultPlan {
            seed: 9,
            ..FaultPlan::none()
        }
        .is_none());
        let faulty = [
            FaultPlan {
                read_error_ppm: 1,
                ..FaultPlan::none()
            },
            FaultPlan {
                bit_flip_ppm: 1,
                ..FaultPlan::none()
            },
            FaultPlan {
                torn_write_ppm: 1,
                ..FaultPlan::none()
            },
            FaultPlan {
                power_loss_after_bytes: Some(0),
                ..FaultPlan::none()
            },
            FaultPlan {
                spike_ppm: 1,
                spike_ns: 1,
                ..FaultPlan::none()
            },
            FaultPlan {
                reorder: true,
                ..FaultPlan::none()
            },
            FaultPlan {
                volatile_writes: true,
                ..FaultPlan::none()
            },
        ];
        for p in faulty {
            assert!(!p.is_none(), "{p:?}");
        }
    }
}
