//! The flash device contract as a suite any device can run from its tests.
//!
//! Every lode device must behave the same at the seam the kernel sees:
//! return the medium's bytes, refuse the same bad requests with the same
//! [`ErrorKind`](lode_kernel::flash::ErrorKind) and queue nothing when it
//! does, hold exactly its queue depth, deliver every tag once in whatever
//! order, never write through a freed slot, and (where it takes writes)
//! read back what was written. These checks used to be private to lode's
//! `tests/` crate; here they are public, so a device written outside lode
//! (a UFS driver, an SPI NOR part, a network block device) runs the same
//! suite from its own `#[test]`:
//!
//! ```
//! use lode_hal::conformance::{self, Config};
//! use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
//!
//! // The factory gets the bytes the device must hold from offset 0 and
//! // returns a fresh device over them; each check starts from a new one.
//! let cfg = Config::default();
//! conformance::check_writable(&cfg, |medium| {
//!     FakeFlash::new(medium.to_vec(), &Profile::UFS40, FaultPlan::none())
//! })
//! .unwrap();
//! ```
//!
//! A read-only device runs [`check`]; one that implements
//! [`FlashWrite`] runs [`check_writable`], which adds the write checks. Each
//! check is also a public function taking a device and the medium, for a
//! device that cannot be rebuilt cheaply. A check returns a [`Failure`]
//! naming itself and what it saw, rather than panicking, so the caller's
//! test decides how to report it.
//!
//! The suite needs `alloc` for its scratch arenas and reports.

mod reads;
mod refusals;
mod support;
mod writes;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use lode_kernel::flash::{FlashDevice, FlashWrite};
use lode_kernel::rng::SplitMix64;

pub use reads::{empty_calls, full_queue, out_of_order_completion, reads_return_the_medium};
pub use refusals::{freed_slot, refusals};
pub use writes::{write_refusals, writes_round_trip};

/// How the suite exercises a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Bytes of the medium handed to the factory. The checks use the
    /// device's first `min(capacity, medium_len)` bytes, rounded down to a
    /// block; give room for at least eight blocks. Default 256 KiB.
    pub medium_len: usize,
    /// Seed of the medium's bytes and of the extents the checks read.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            medium_len: 256 << 10,
            seed: 0x10DE,
        }
    }
}

impl Config {
    /// The bytes a factory is given: `medium_len` seeded bytes.
    pub fn medium(&self) -> Vec<u8> {
        let mut rng = SplitMix64::new(self.seed);
        let mut out = Vec::with_capacity(self.medium_len + 8);
        while out.len() < self.medium_len {
            out.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        out.truncate(self.medium_len);
        out
    }
}

/// A broken rule: which check and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check that failed (the name of its function).
    pub check: &'static str,
    /// What was expected and what happened.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flash conformance: {}: {}", self.check, self.detail)
    }
}

impl core::error::Error for Failure {}

/// Every read check, each on a fresh device from `make`, which is given
/// [`Config::medium`] and must return a device holding those bytes from
/// offset 0 (a larger device is fine: only that many bytes are compared).
pub fn check<D, F>(cfg: &Config, mut make: F) -> Result<(), Failure>
where
    D: FlashDevice,
    F: FnMut(&[u8]) -> D,
{
    let medium = cfg.medium();
    reads_return_the_medium(&mut make(&medium), &medium, cfg.seed)?;
    empty_calls(&mut make(&medium), &medium)?;
    full_queue(&mut make(&medium), &medium)?;
    out_of_order_completion(&mut make(&medium), &medium)?;
    freed_slot(&mut make(&medium), &medium)?;
    refusals(&mut make(&medium), &medium)?;
    Ok(())
}

/// [`check`], then the write checks, each on a fresh writable device.
pub fn check_writable<D, F>(cfg: &Config, mut make: F) -> Result<(), Failure>
where
    D: FlashWrite,
    F: FnMut(&[u8]) -> D,
{
    check(cfg, &mut make)?;
    let medium = cfg.medium();
    writes_round_trip(&mut make(&medium), &medium)?;
    write_refusals(&mut make(&medium), &medium)?;
    Ok(())
}
