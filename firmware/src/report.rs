//! What the firmware prints: a checksum of every fetched byte (to compare
//! runs), percentages and times without floating-point formatting, and the
//! device's counters.

use core::fmt;

use cortex_m_semihosting::hprintln;

use crate::rom::Counters;

/// FNV-1a, 64 bits: a checksum of every fetched byte, to compare runs.
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Integer percentage with one decimal, `part` of `whole`.
pub(crate) struct Percent(pub(crate) u64, pub(crate) u64);

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0.saturating_mul(1000).checked_div(self.1).unwrap_or(0);
        write!(f, "{}.{}%", tenths / 10, tenths % 10)
    }
}

/// Nanoseconds as microseconds with one decimal.
pub(crate) struct Micros(pub(crate) u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} us", self.0 / 1000, self.0 % 1000 / 100)
    }
}

pub(crate) fn report_io(what: &str, c: &Counters) {
    hprintln!(
        "{}: {} bytes in {} read commands ({} batches), {} on the modelled flash",
        what,
        c.bytes,
        c.commands,
        c.batches,
        Micros(c.model_ns)
    );
}
