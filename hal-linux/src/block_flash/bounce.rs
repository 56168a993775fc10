//! Bounce buffers: the device-owned memory the kernel reads into.
//!
//! # Why reads do not land in the arena directly
//!
//! io_uring (and a pread worker thread) writes a read's bytes while the
//! program goes on running. The kernel's `FlashDevice` hands destinations as
//! arena [`Slot`] handles, checked by the arena on each access, and the arena
//! is the caller's: between `submit` and `complete` the caller may free the
//! slot and reuse its bytes, or drop the arena and unmap them. Letting the
//! kernel write there would let it write into memory safe code can touch or
//! free. So the kernel writes only here, into memory this device owns and
//! never shows to anyone while a read into it is in flight; `complete` copies
//! a finished read into its slot, through the arena's own checked access.
//! The copy costs a `memcpy` (measured by `BlockFlashStats::copy_ns`; about
//! 0.1 ns per byte, a few percent of a 4 KiB read's 20-50 us).
//!
//! # Soundness
//!
//! 1. The pool is one anonymous mapping (`Mapping`) owned by the pool and
//!    never exposed as a slice of the whole: no `&[u8]` or `&mut [u8]` to it
//!    exists except those this module makes, and each of those covers one
//!    slot only.
//! 2. A slot is carved by the kernel's `SlotTable`, so live slots never
//!    overlap. The device hands a slot's address to the engine (the only way
//!    the kernel learns it) only while the slot is live, and frees the slot
//!    only after the engine has returned the read's completion; until then no
//!    other read can be given that memory.
//! 3. [`BouncePool::bytes`] is `unsafe` with the precondition that no read
//!    into the slot is in flight; the device calls it only for a read whose
//!    completion it has just taken from the engine, before freeing the slot.
//! 4. The mapping outlives every read: `BlockFlash`'s `Drop` waits until the
//!    engine has returned every outstanding completion before the pool is
//!    dropped, and if it cannot (the ring failed), it calls
//!    [`BouncePool::leak_on_drop`] so the pages are never unmapped while the
//!    kernel might still write them.
#![allow(unsafe_code)]

use std::io;
use std::mem::ManuallyDrop;

use lode_kernel::arena::{Slot, SlotKind, SlotTable, Slots};

use crate::file_flash::MAX_QUEUE_DEPTH;
use crate::locked_arena::{mapping::Mapping, HugePages};

/// The device-owned read buffers of one `BlockFlash`.
#[derive(Debug)]
pub(crate) struct BouncePool {
    mapping: ManuallyDrop<Mapping>,
    /// Boxed: the table is about 9 KiB.
    table: Box<SlotTable<MAX_QUEUE_DEPTH>>,
    len: usize,
    leak: bool,
}

impl BouncePool {
    /// Map `len` bytes (rounded up to whole pages, page-aligned).
    pub(crate) fn new(len: usize) -> io::Result<Self> {
        let (mapping, _) = Mapping::anonymous(len, HugePages::Off)?;
        Ok(BouncePool {
            mapping: ManuallyDrop::new(mapping),
            table: Box::new(SlotTable::new()),
            len,
            leak: false,
        })
    }

    /// Usable bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Address of the pool's first byte, for registering it with a ring.
    pub(crate) fn base(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }

    /// Carve `len` bytes at an address aligned to `align`, or `None` when no
    /// gap is large enough right now.
    pub(crate) fn alloc(&mut self, len: usize, align: usize) -> Option<Slot> {
        let base = self.mapping.as_ptr() as usize;
        self.table
            .alloc(base, self.len, len, align, SlotKind::IoBuffer)
            .ok()
    }

    /// Release a slot whose read has completed.
    pub(crate) fn free(&mut self, slot: Slot) {
        // A stale slot here would be a bookkeeping bug of the device; there is
        // nothing to release then.
        let _ = self.table.free(slot);
    }

    /// `true` when no slot is live.
    pub(crate) fn is_idle(&self) -> bool {
        self.table.live() == 0
    }

    /// The address `skip` bytes into a live slot, for the engine to read
    /// into; `None` for a stale slot or a `skip` past its end. Computing the
    /// address is harmless; writing through it is what the engine's own
    /// `unsafe` contract covers.
    pub(crate) fn ptr(&self, slot: Slot, skip: usize) -> Option<*mut u8> {
        let range = self.table.check(slot).ok()?;
        if skip > range.len() {
            return None;
        }
        Some(self.mapping.as_ptr().wrapping_add(range.start + skip))
    }

    /// The bytes of a live slot, `None` if it is stale.
    ///
    /// # Safety
    ///
    /// No read into `slot` may be in flight: the engine must have returned
    /// the completion of the last operation that was given this slot's
    /// memory, and none may be given it again while the returned borrow
    /// lives.
    pub(crate) unsafe fn bytes(&self, slot: Slot) -> Option<&[u8]> {
        let range = self.table.check(slot).ok()?;
        // SAFETY: `range` is a live slot of the table, so it lies inside the
        // mapping's `len` usable bytes (point 1 of the module docs; the
        // mapping is live, readable and zero-initialised); the caller
        // guarantees no kernel write into it is pending (point 3), and slots
        // do not overlap (point 2), so nothing writes these bytes while the
        // shared borrow, tied to `&self`, lives.
        Some(unsafe {
            std::slice::from_raw_parts(self.mapping.as_ptr().add(range.start), range.len())
        })
    }

    /// Never unmap the pages: some read may still be writing into them.
    pub(crate) fn leak_on_drop(&mut self) {
        self.leak = true;
    }
}

impl Drop for BouncePool {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: the mapping is dropped exactly once, here, and not used
            // afterwards (this is the pool's destructor); point 4 of the
            // module docs makes sure no read is in flight when `leak` is
            // false.
            unsafe { ManuallyDrop::drop(&mut self.mapping) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_disjoint_and_bounded() {
        let mut pool = BouncePool::new(64 << 10).unwrap();
        assert_eq!(pool.len(), 64 << 10);
        assert!(pool.is_idle());
        let a = pool.alloc(4096, 4096).unwrap();
        let b = pool.alloc(512, 512).unwrap();
        let c = pool.alloc(8192, 4096).unwrap();
        for s in [a, b, c] {
            let p = pool.ptr(s, 0).unwrap() as usize;
            assert_eq!(p % if s.len() == 512 { 512 } else { 4096 }, 0);
        }
        assert!(a.range().end <= b.offset() && b.range().end <= c.offset());
        // Too large for what remains: None, not a panic.
        assert!(pool.alloc(60 << 10, 4096).is_none());
        assert_eq!(
            pool.ptr(a, 4096),
            Some(pool.ptr(a, 0).unwrap().wrapping_add(4096))
        );
        assert_eq!(pool.ptr(a, 4097), None);
        // Fresh memory is zero; a freed slot is stale.
        // SAFETY: nothing was ever submitted into this pool.
        assert!(unsafe { pool.bytes(a) }.unwrap().iter().all(|&x| x == 0));
        pool.free(a);
        assert_eq!(pool.ptr(a, 0), None);
        // SAFETY: as above.
        assert!(unsafe { pool.bytes(a) }.is_none());
        pool.free(b);
        pool.free(c);
        assert!(pool.is_idle());
        assert!(pool.alloc(64 << 10, 4096).is_some());
    }

    #[test]
    fn a_leaked_pool_is_not_unmapped() {
        let mut pool = BouncePool::new(4096).unwrap();
        let base = pool.base() as usize;
        pool.leak_on_drop();
        drop(pool);
        // The page is still mapped: mincore succeeds on it (ENOMEM if not).
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reads the page table for the range and writes
        // one byte into `vec`.
        let rc = unsafe { libc::mincore(base as *mut libc::c_void, 4096, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
    }
}
