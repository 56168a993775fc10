//! `SliceArena`: a [`DramArena`] over a caller-provided buffer.
//!
//! The simplest way to give lode a DRAM budget: hand it a `&mut [u8]` (a
//! static array in firmware, a `Vec` in a test) and it carves slots out of
//! exactly those bytes, never more. The slot bookkeeping is the kernel's
//! [`SlotTable`], so alignment, stale-handle and budget rules are the same as
//! on every other arena; this type only supplies the memory.

use core::fmt;

use lode_kernel::arena::{DramArena, ErrorKind, SlotTable, Slots};

/// A [`DramArena`] over borrowed memory, with room for `N` live slots
/// (256 by default).
///
/// Slot alignment is relative to absolute addresses, not to the start of the
/// buffer, so a slot asked for with 4096-byte alignment is fit for direct I/O
/// even when the buffer itself is not page-aligned (the arena skips the
/// bytes before the first aligned address). The buffer cannot be locked in
/// RAM by this type: [`DramArena::lock`] reports that as unsupported.
///
/// ```
/// use lode_hal::slice_arena::SliceArena;
/// use lode_kernel::arena::{DramArena, ErrorKind, SlotKind};
///
/// let mut budget = [0u8; 1024];
/// let mut arena = SliceArena::new(&mut budget);
/// let weights = arena.alloc(768, 8, SlotKind::Resident)?;
/// arena.bytes_mut(weights)?.fill(1);
///
/// // The budget is the buffer: what does not fit is refused, not allocated.
/// assert_eq!(arena.alloc(512, 8, SlotKind::Scratch), Err(ErrorKind::OutOfMemory));
/// assert_eq!(arena.capacity(), 1024);
/// # Ok::<(), ErrorKind>(())
/// ```
pub struct SliceArena<'a, const N: usize = 256> {
    table: SlotTable<N>,
    mem: &'a mut [u8],
}

impl<'a> SliceArena<'a> {
    /// An arena over `mem` with the default table of 256 slots.
    pub fn new(mem: &'a mut [u8]) -> Self {
        SliceArena::with_slots(mem)
    }
}

impl<'a, const N: usize> SliceArena<'a, N> {
    /// An arena over `mem` with a table of `N` slots (choose with a type
    /// annotation or turbofish: `SliceArena::<16>::with_slots(buf)`).
    pub fn with_slots(mem: &'a mut [u8]) -> Self {
        SliceArena {
            table: SlotTable::new(),
            mem,
        }
    }

    /// Give the buffer back. Its contents are whatever the slots left there.
    pub fn into_inner(self) -> &'a mut [u8] {
        self.mem
    }
}

impl<const N: usize> DramArena for SliceArena<'_, N> {
    type Error = ErrorKind;

    fn parts(&self) -> (&dyn Slots, &[u8]) {
        (&self.table, self.mem)
    }

    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
        (&mut self.table, self.mem)
    }
}

impl<const N: usize> fmt::Debug for SliceArena<'_, N> {
    /// The budget and its use, not the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SliceArena")
            .field("capacity", &self.mem.len())
            .field("used", &self.table.used())
            .field("live_slots", &self.table.live())
            .field("max_slots", &N)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use lode_kernel::arena::{LockLimit, SlotKind};
    use proptest::prelude::*;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn refuses_to_exceed_capacity() {
        let mut buf = [0u8; 4096];
        let mut a = SliceArena::new(&mut buf);
        let big = a.alloc(4000, 1, SlotKind::Resident).unwrap();
        assert_eq!(
            a.alloc(97, 1, SlotKind::Scratch),
            Err(ErrorKind::OutOfMemory)
        );
        assert_eq!(
            a.alloc(usize::MAX, 1, SlotKind::Scratch),
            Err(ErrorKind::OutOfMemory)
        );
        let rest = a.alloc(96, 1, SlotKind::Scratch).unwrap();
        assert_eq!(a.remaining(), 0);
        assert_eq!(
            a.alloc(1, 1, SlotKind::Scratch),
            Err(ErrorKind::OutOfMemory)
        );
        a.free(big).unwrap();
        a.free(rest).unwrap();
        assert_eq!(a.used(), 0);
        assert_eq!(a.peak(), 4096);
        // A buffer larger than the whole arena never fits, even when empty.
        assert_eq!(
            a.alloc(4097, 1, SlotKind::Resident),
            Err(ErrorKind::OutOfMemory)
        );
    }

    #[test]
    fn empty_buffer_holds_nothing() {
        let mut buf = [0u8; 0];
        let mut a = SliceArena::new(&mut buf);
        assert_eq!(a.capacity(), 0);
        assert_eq!(
            a.alloc(1, 1, SlotKind::Scratch),
            Err(ErrorKind::OutOfMemory)
        );
    }

    #[test]
    fn slot_table_bound_is_enforced() {
        let mut buf = [0u8; 64];
        let mut a = SliceArena::<2>::with_slots(&mut buf);
        a.alloc(1, 1, SlotKind::Scratch).unwrap();
        a.alloc(1, 1, SlotKind::Scratch).unwrap();
        assert_eq!(
            a.alloc(1, 1, SlotKind::Scratch),
            Err(ErrorKind::TooManySlots)
        );
    }

    /// Alignment is of the absolute address: carve the arena from an odd
    /// offset of a buffer and check the slot's real address.
    #[test]
    fn alignment_is_of_the_absolute_address() {
        let mut buf = [0u8; 3 * 4096];
        let base = buf.as_ptr() as usize;
        // Start one byte past a 4096 boundary inside the buffer.
        let skip = 4096 - base % 4096 + 1;
        // 8191 bytes: room for exactly one aligned 4096-byte slot after the
        // 4095 bytes that precede the first aligned address.
        let mut a = SliceArena::<4>::with_slots(&mut buf[skip..skip + 8191]);
        let s = a.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        let addr = a.bytes(s).unwrap().as_ptr() as usize;
        assert_eq!(addr % 4096, 0);
        assert_eq!(s.offset(), 4095, "first aligned address is 4095 bytes in");
        // A second aligned slot would start at 8191: past the end.
        assert_eq!(
            a.alloc(4096, 4096, SlotKind::IoBuffer),
            Err(ErrorKind::OutOfMemory)
        );
        let t = a.alloc(1, 1, SlotKind::Scratch).unwrap();
        assert_eq!(t.offset(), 0, "the skipped prefix is still usable");
    }

    #[test]
    fn locking_is_reported_unsupported_and_buffer_comes_back() {
        let mut buf = [0u8; 32];
        let mut a = SliceArena::new(&mut buf);
        let report = a.lock().unwrap();
        assert_eq!(report.requested, 32);
        assert_eq!(report.locked, 0);
        assert_eq!(report.limited_by, Some(LockLimit::Unsupported));
        let s = a.alloc(4, 1, SlotKind::Scratch).unwrap();
        a.bytes_mut(s).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        let offset = s.offset();
        let debug = format!("{a:?}");
        assert!(debug.contains("capacity: 32"), "{debug}");
        assert!(debug.contains("used: 4"), "{debug}");
        let back = a.into_inner();
        assert_eq!(&back[offset..offset + 4], &[1, 2, 3, 4]);
    }

    proptest! {
        /// However slots are requested, the arena never hands out more than
        /// the buffer: `used` stays within capacity, every slot lies inside
        /// the buffer, and a refusal is only ever OutOfMemory or TooManySlots.
        #[test]
        fn never_exceeds_the_buffer(
            cap in 0usize..8192,
            reqs in proptest::collection::vec((1usize..3000, 0u32..13, any::<bool>()), 1..100),
        ) {
            let mut buf = vec![0u8; cap];
            let mut a = SliceArena::<32>::with_slots(&mut buf);
            let mut live = Vec::new();
            for (len, align_log, free_one) in reqs {
                if free_one && !live.is_empty() {
                    let s = live.swap_remove(len % live.len());
                    a.free(s).unwrap();
                    continue;
                }
                match a.alloc(len, 1 << align_log, SlotKind::Scratch) {
                    Ok(s) => {
                        prop_assert!(s.range().end <= cap);
                        let addr = a.bytes(s).unwrap().as_ptr() as usize;
                        prop_assert_eq!(addr % (1 << align_log), 0);
                        live.push(s);
                    }
                    Err(e) => prop_assert!(matches!(e, ErrorKind::OutOfMemory | ErrorKind::TooManySlots)),
                }
                prop_assert!(a.used() <= a.capacity());
                prop_assert_eq!(a.used(), live.iter().map(|s| s.len()).sum::<usize>());
            }
        }
    }
}
