//! The DRAM budget: one fixed region carved into slots.
//!
//! Everything lode keeps in memory (resident tensors, neuron-cache entries,
//! KV chunks, I/O buffers, scratch) lives in slots of one [`DramArena`]. The
//! arena never grows: asking for more than remains is
//! [`ErrorKind::OutOfMemory`], never a panic and never a hidden allocation.
//!
//! Memory and bookkeeping are separate on purpose. A HAL supplies the bytes
//! (a caller's buffer, an `mlock`ed mapping, a static array) and embeds a
//! [`SlotTable`], the one first-fit slot allocator every arena shares, so the
//! rules (alignment, stale handles, budgets) are written and tested once.
//!
//! Slots are handles, not borrows: a [`Slot`] is a small `Copy` value that is
//! checked against the table (index, generation, range) every time it is used,
//! so a stale or forged handle is an error ([`ErrorKind::StaleSlot`]) rather
//! than an alias.

use core::fmt;
use core::ops::Range;

/// What went wrong with an arena request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is larger than the contiguous space that remains.
    OutOfMemory,
    /// Every slot of the table is in use.
    TooManySlots,
    /// The handle does not name a live slot of this arena.
    StaleSlot,
    /// Alignment is zero or not a power of two, or a length is zero.
    InvalidArgument,
    /// Two handles passed together name overlapping memory.
    Overlap,
    /// The operating system refused to lock the memory.
    LockFailed,
    /// Anything else the implementation reports.
    Other,
}

impl core::error::Error for ErrorKind {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::OutOfMemory => "the DRAM budget has no room for this slot",
            ErrorKind::TooManySlots => "every slot of the arena's table is in use",
            ErrorKind::StaleSlot => "the slot handle is stale or belongs to another arena",
            ErrorKind::InvalidArgument => "zero length or an alignment that is not a power of two",
            ErrorKind::Overlap => "the slots overlap",
            ErrorKind::LockFailed => "the memory could not be locked",
            ErrorKind::Other => "arena error",
        })
    }
}

/// An arena error: anything that can say which [`ErrorKind`] it is.
pub trait Error: fmt::Debug {
    /// The generic kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// What a slot holds; the arena keeps a byte count per kind so a memory plan
/// can be checked and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlotKind {
    /// Weights kept in DRAM for the whole run.
    Resident,
    /// Entries of the neuron-bundle cache.
    NeuronCache,
    /// Chunks of the KV cache.
    KvChunk,
    /// Destination buffers of flash reads.
    IoBuffer,
    /// Short-lived working memory.
    Scratch,
}

impl SlotKind {
    /// Number of kinds.
    pub const COUNT: usize = 5;
    /// Every kind, in index order.
    pub const ALL: [SlotKind; SlotKind::COUNT] = [
        SlotKind::Resident,
        SlotKind::NeuronCache,
        SlotKind::KvChunk,
        SlotKind::IoBuffer,
        SlotKind::Scratch,
    ];

    const fn index(self) -> usize {
        self as usize
    }
}

/// A handle to a live slot. Cheap to copy; validated on every use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot {
    index: u16,
    generation: u16,
    offset: usize,
    len: usize,
}

impl Slot {
    /// Offset of the slot from the start of the arena's region.
    pub const fn offset(&self) -> usize {
        self.offset
    }
    /// Length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }
    /// Slots are never empty; present for API symmetry.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Byte range of the slot inside the region.
    pub const fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// How much of an arena is locked in RAM, and why not the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LockReport {
    /// Bytes the arena asked to lock.
    pub requested: usize,
    /// Bytes actually locked.
    pub locked: usize,
    /// Why `locked < requested`, when it is.
    pub limited_by: Option<LockLimit>,
}

/// The reason an arena is not fully locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LockLimit {
    /// This arena's memory cannot be locked (a caller's buffer, no OS).
    Unsupported,
    /// A resource limit (RLIMIT_MEMLOCK) allows only part of it.
    ResourceLimit,
    /// The process lacks the privilege.
    Permission,
}

/// The slot bookkeeping an arena's memory is carved by. Implemented by
/// [`SlotTable`]; object-safe so an arena can hand it out as `dyn Slots`
/// whatever its table size.
pub trait Slots {
    /// Carve `len` bytes aligned to `align` (a power of two) in absolute
    /// address terms, given the region's base address and capacity.
    fn alloc(
        &mut self,
        base_addr: usize,
        capacity: usize,
        len: usize,
        align: usize,
        kind: SlotKind,
    ) -> Result<Slot, ErrorKind>;
    /// Release a slot. Its handle and every copy become stale.
    fn free(&mut self, slot: Slot) -> Result<(), ErrorKind>;
    /// The slot's byte range, if the handle is live.
    fn check(&self, slot: Slot) -> Result<Range<usize>, ErrorKind>;
    /// Bytes held by live slots.
    fn used(&self) -> usize;
    /// Bytes held by live slots of `kind`.
    fn used_by(&self, kind: SlotKind) -> usize;
    /// Largest `used()` seen since creation or the last [`Slots::clear`].
    fn peak(&self) -> usize;
    /// Number of live slots.
    fn live(&self) -> usize;
    /// Most slots the table can hold.
    fn max_slots(&self) -> usize;
    /// Free every slot and reset the peak.
    fn clear(&mut self);
}

mod slot_table;

pub use slot_table::SlotTable;

/// One fixed-capacity region of DRAM that is the whole memory budget.
///
/// An implementation supplies the bytes and a slot table through
/// [`parts`](DramArena::parts) / [`parts_mut`](DramArena::parts_mut), and may
/// lock the region; every other method is provided and behaves the same on
/// every arena.
///
/// ```
/// use lode_kernel::arena::{DramArena, ErrorKind, SlotKind, SlotTable, Slots};
///
/// /// A 256-byte arena in a plain array, with room for four slots.
/// struct Tiny {
///     table: SlotTable<4>,
///     mem: [u8; 256],
/// }
///
/// impl DramArena for Tiny {
///     type Error = ErrorKind;
///     fn parts(&self) -> (&dyn Slots, &[u8]) {
///         (&self.table, &self.mem)
///     }
///     fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
///         (&mut self.table, &mut self.mem)
///     }
/// }
///
/// let mut arena = Tiny { table: SlotTable::new(), mem: [0; 256] };
/// let weights = arena.alloc(200, 8, SlotKind::Resident)?;
/// arena.bytes_mut(weights)?.fill(7);
/// // Only 56 bytes remain: a larger request is an error, not a panic.
/// assert_eq!(arena.alloc(100, 8, SlotKind::Scratch), Err(ErrorKind::OutOfMemory));
/// arena.free(weights)?;
/// assert_eq!(arena.bytes(weights), Err(ErrorKind::StaleSlot));
/// # Ok::<(), ErrorKind>(())
/// ```
pub trait DramArena {
    /// The error type; every arena error can be built from a kernel kind.
    type Error: Error + From<ErrorKind>;

    /// The slot table and the region it carves.
    fn parts(&self) -> (&dyn Slots, &[u8]);

    /// The slot table and the region, mutably.
    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]);

    /// Lock the region into RAM as far as the platform allows. The default
    /// reports that locking is not supported (nothing to do, not an error).
    fn lock(&mut self) -> Result<LockReport, Self::Error> {
        Ok(LockReport {
            requested: self.capacity(),
            locked: 0,
            limited_by: Some(LockLimit::Unsupported),
        })
    }

    /// Size of the region in bytes: the budget.
    fn capacity(&self) -> usize {
        self.parts().1.len()
    }

    /// Bytes held by live slots.
    fn used(&self) -> usize {
        self.parts().0.used()
    }

    /// Bytes not held by any slot (not necessarily contiguous).
    fn remaining(&self) -> usize {
        self.capacity() - self.used()
    }

    /// Largest number of bytes ever held at once.
    fn peak(&self) -> usize {
        self.parts().0.peak()
    }

    /// Bytes held by live slots of `kind`.
    fn used_by(&self, kind: SlotKind) -> usize {
        self.parts().0.used_by(kind)
    }

    /// Carve a slot of `len` bytes whose address is aligned to `align`.
    fn alloc(&mut self, len: usize, align: usize, kind: SlotKind) -> Result<Slot, Self::Error> {
        let (table, mem) = self.parts_mut();
        let base = mem.as_ptr() as usize;
        let capacity = mem.len();
        Ok(table.alloc(base, capacity, len, align, kind)?)
    }

    /// Release a slot.
    fn free(&mut self, slot: Slot) -> Result<(), Self::Error> {
        Ok(self.parts_mut().0.free(slot)?)
    }

    /// Free every slot at once.
    fn reset(&mut self) {
        self.parts_mut().0.clear();
    }

    /// The bytes of a live slot.
    fn bytes(&self, slot: Slot) -> Result<&[u8], Self::Error> {
        let (table, mem) = self.parts();
        let range = table.check(slot)?;
        Ok(mem.get(range).ok_or(ErrorKind::StaleSlot)?)
    }

    /// The bytes of a live slot, mutably.
    fn bytes_mut(&mut self, slot: Slot) -> Result<&mut [u8], Self::Error> {
        let (table, mem) = self.parts_mut();
        let range = table.check(slot)?;
        Ok(mem.get_mut(range).ok_or(ErrorKind::StaleSlot)?)
    }

    /// Several live, pairwise disjoint slots at once (for example weights,
    /// input and output of one product).
    fn bytes_disjoint_mut<const K: usize>(
        &mut self,
        slots: [Slot; K],
    ) -> Result<[&mut [u8]; K], Self::Error> {
        let (table, mem) = self.parts_mut();
        let mut ranges: [Range<usize>; K] = core::array::from_fn(|_| 0..0);
        for (r, s) in ranges.iter_mut().zip(slots) {
            *r = table.check(s)?;
        }
        mem.get_disjoint_mut(ranges).map_err(|e| {
            Self::Error::from(match e {
                core::slice::GetDisjointMutError::OverlappingIndices => ErrorKind::Overlap,
                _ => ErrorKind::StaleSlot,
            })
        })
    }
}

/// Arenas for the kernel's own tests.
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
