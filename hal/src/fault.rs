//! Faults over any device: the kernel's [`FaultInjector`], re-exported next
//! to the fake flash, and a sleeper so latency spikes stall a real device.
//!
//! [`FakeFlash`](crate::fake::FakeFlash) keeps its own
//! [`FaultPlan`](crate::fake::FaultPlan) (torn writes and power loss need
//! the medium, and its replays are fixed); the injector is for everything
//! else, `BlockFlash` on real storage included.
//!
//! ```
//! use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
//! use lode_hal::fault::{FaultInjector, Faults};
//! use lode_hal::slice_arena::SliceArena;
//! use lode_kernel::arena::{DramArena, SlotKind};
//! use lode_kernel::flash::{Error as _, ErrorKind, FlashDevice, ReadRequest, Window};
//!
//! let flash = FakeFlash::new(vec![7u8; 64 * 4096], &Profile::UFS40, FaultPlan::none());
//! // The second half of the device, with one bad block in it.
//! let half: Window<_> = Window::new(flash, 32 * 4096, 32 * 4096).unwrap();
//! let mut faulty: FaultInjector<_> = FaultInjector::new(half, Faults::none());
//! assert!(faulty.fail_reads(4096, 4096));
//!
//! let mut mem = vec![0u8; 4 * 4096];
//! let mut arena = SliceArena::new(&mut mem);
//! let dest = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
//! let read = |offset| ReadRequest { tag: 0, offset, len: 4096, dest, dest_offset: 0 };
//! faulty.read_blocking(&mut arena, &[read(0)]).unwrap();
//! let err = faulty.read_blocking(&mut arena, &[read(4096)]).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Io);
//! assert_eq!(faulty.counts().read_errors, 1);
//! ```

pub use lode_kernel::flash::fault::{
    FaultCounts, FaultInjector, Faults, FAULT_BATCH, MAX_BAD_EXTENTS,
};

/// Sleep for `ns` nanoseconds: give it to
/// [`FaultInjector::with_sleep`] so a latency spike really stalls the caller
/// on a host, not only in the injector's virtual clock.
#[cfg(feature = "std")]
pub fn sleep(ns: u64) {
    std::thread::sleep(std::time::Duration::from_nanos(ns));
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::fake::{FakeFlash, FaultPlan, Profile};
    use crate::slice_arena::SliceArena;
    use lode_kernel::arena::{DramArena, SlotKind};
    use lode_kernel::flash::{FlashDevice, ReadRequest};

    #[test]
    fn spikes_really_stall_with_the_sleeper() {
        let flash = FakeFlash::new(vec![1u8; 16 * 4096], &Profile::UFS40, FaultPlan::none());
        let faults = Faults {
            spike_ppm: 1_000_000,
            spike_ns: 20_000_000,
            ..Faults::none()
        };
        let mut f: FaultInjector<_> = FaultInjector::new(flash, faults).with_sleep(sleep);
        let mut mem = vec![0u8; 4 * 4096];
        let mut arena = SliceArena::new(&mut mem);
        let dest = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        let r = ReadRequest {
            tag: 0,
            offset: 0,
            len: 4096,
            dest,
            dest_offset: 0,
        };
        let started = std::time::Instant::now();
        f.read_blocking(&mut arena, &[r]).unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_millis(20));
        assert_eq!(f.counts().added_ns, 20_000_000);
        // The fake's own virtual clock knows nothing of the injected spike.
        assert_eq!(f.inner().counters().faults.latency_spikes, 0);
    }
}
