//! The deterministic fake flash.
//!
//! [`FakeFlash`] is a [`FlashDevice`](lode_kernel::flash::FlashDevice) and
//! [`FlashWrite`](lode_kernel::flash::FlashWrite) whose medium is a byte
//! buffer in memory and whose clock is virtual: every read batch costs
//! exactly what the device's [`CostModel`](lode_kernel::cost::CostModel)
//! says it costs, and reads submitted while others are still queued extend
//! that batch instead of starting a new one (the device never idled). That
//! makes I/O policies testable and comparable without hardware and without
//! timing noise, the way TigerBeetle and smoltcp test against simulated
//! devices.
//!
//! - [`Profile`]: geometry and cost model of real parts (this machine's disk,
//!   UFS 3.1, UFS 4.0, eMMC 5.1, NVMe), each figure with its source.
//! - [`FaultPlan`]: seeded faults (read errors, bit flips, torn writes, power
//!   loss after N bytes, latency spikes) and out-of-order completion.
//! - [`Counters`]: commands, bytes, virtual time and faults, to assert on.
//!
//! Everything works without an allocator: the read queue is inline and the
//! medium can be a borrowed `&mut [u8]`.

mod counters;
mod device;
mod plan;
mod profile;
#[cfg(test)]
mod tests;

pub use counters::{Counters, FaultCounts};
pub use device::{FakeFlash, MAX_IN_FLIGHT};
pub use plan::FaultPlan;
pub use profile::Profile;
