//! `LockedArena`: the DRAM budget as one anonymous mapping, locked into RAM.
//!
//! lode's whole point is to stay inside a memory budget while the model
//! streams from flash. If the budget's own pages could be swapped or
//! reclaimed, the cache and the resident weights would silently turn into
//! more flash reads; so the budget is one mapping, made once, never grown,
//! and `mlock`ed as far as the process is allowed. What could not be locked is
//! reported, not hidden, so a run can say "locked 8 MiB of 512 MiB
//! (RLIMIT_MEMLOCK)".
//!
//! The bytes are zero-filled by the kernel when first touched; the
//! bookkeeping is the kernel's shared [`SlotTable`].

mod error;
mod lock;
pub(crate) mod mapping;

use lode_kernel::arena::{DramArena, ErrorKind, LockLimit, LockReport, SlotTable, Slots};

pub use error::LockedArenaError;
use lock::{lock_longest_prefix, Locker};
use mapping::Mapping;

/// Whether to back the arena with huge pages, which cut TLB misses when
/// compute sweeps hundreds of megabytes of weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Base pages only.
    #[default]
    Off,
    /// `madvise(MADV_HUGEPAGE)`: transparent huge pages where the kernel can
    /// find them. Harmless if it cannot.
    Transparent,
    /// `MAP_HUGETLB`: pages from the reserved hugetlbfs pool, rounding the
    /// mapping up to a whole huge page. Falls back to base pages when the
    /// pool is empty (the usual case unless `vm.nr_hugepages` was raised).
    Explicit,
}

/// What became of the huge-page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePageStatus {
    /// Huge pages were not asked for.
    NotRequested,
    /// The mapping is on explicit huge pages of this size.
    Explicit {
        /// Huge page size in bytes.
        page_size: usize,
    },
    /// Transparent huge pages were advised for the mapping.
    Advised,
    /// The request failed; the arena quietly uses base pages instead.
    Unavailable {
        /// What was asked for.
        requested: HugePages,
        /// The errno of the refusal (ENOSYS when the kernel has no
        /// hugetlbfs at all).
        errno: i32,
    },
}

/// How to build a [`LockedArena`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockedArenaOptions {
    /// Huge-page backing; default [`HugePages::Off`].
    pub huge_pages: HugePages,
}

/// Most slots a [`LockedArena`] can hold at once.
pub const MAX_SLOTS: usize = 1024;

/// A [`DramArena`] over one anonymous private mapping.
///
/// Capacity is exactly the requested budget even though the mapping is
/// rounded up to whole pages: the budget is what the kernel plans against.
/// The mapping starts page-aligned, so a slot allocated with
/// `align = page_size()` has a page-aligned address, as direct I/O needs.
#[derive(Debug)]
pub struct LockedArena {
    mapping: Mapping,
    /// Boxed: 1024 entries are about 34 KiB, too much to move around inline.
    table: Box<SlotTable<MAX_SLOTS>>,
    huge: HugePageStatus,
    /// Bytes of the mapping currently locked, from its start.
    locked: usize,
}

impl LockedArena {
    /// An arena of `budget` bytes on base pages.
    pub fn new(budget: usize) -> Result<Self, LockedArenaError> {
        Self::with_options(budget, LockedArenaOptions::default())
    }

    /// An arena of `budget` bytes. A zero budget is `InvalidArgument`; a
    /// budget the system cannot map is `OutOfMemory`.
    pub fn with_options(budget: usize, opts: LockedArenaOptions) -> Result<Self, LockedArenaError> {
        if budget == 0 {
            return Err(ErrorKind::InvalidArgument.into());
        }
        let (mapping, huge) = Mapping::anonymous(budget, opts.huge_pages)
            .map_err(|e| LockedArenaError::os(ErrorKind::OutOfMemory, "mmap of the budget", e))?;
        Ok(LockedArena {
            mapping,
            table: Box::new(SlotTable::new()),
            huge,
            locked: 0,
        })
    }

    /// Bytes actually mapped: the budget rounded up to [`page_size`](Self::page_size).
    pub fn mapped_len(&self) -> usize {
        self.mapping.mapped_len()
    }

    /// Page size of the mapping: the base page, or the huge page size when
    /// explicit huge pages were granted.
    pub fn page_size(&self) -> usize {
        self.mapping.page_size()
    }

    /// What became of the huge-page request.
    pub fn huge_pages(&self) -> HugePageStatus {
        self.huge
    }

    /// Bytes of the budget currently locked (after [`DramArena::lock`]).
    pub fn locked_bytes(&self) -> usize {
        self.locked.min(self.capacity())
    }
}

/// Adapts the mapping to the lock search.
struct MappingLocker<'a>(&'a Mapping);

impl Locker for MappingLocker<'_> {
    fn lock_prefix(&mut self, len: usize) -> Result<(), i32> {
        self.0.lock_prefix(len)
    }
    fn unlock_from(&mut self, from: usize) -> Result<(), i32> {
        self.0.unlock_from(from)
    }
}

impl DramArena for LockedArena {
    type Error = LockedArenaError;

    fn parts(&self) -> (&dyn Slots, &[u8]) {
        (&*self.table, self.mapping.as_slice())
    }

    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
        (&mut *self.table, self.mapping.as_mut_slice())
    }

    /// `mlock` the whole mapping, or, when `RLIMIT_MEMLOCK` (or memory
    /// pressure) forbids that, the longest prefix that fits; EPERM is
    /// reported as [`LockLimit::Permission`]. Calling it again retries (after
    /// the limit was raised, say) and reports afresh. Errors only when the
    /// limit cannot be read or `mlock` fails for a reason that is neither.
    fn lock(&mut self) -> Result<LockReport, LockedArenaError> {
        let requested = self.capacity();
        let limit = crate::sys::memlock_limit().map_err(|e| {
            LockedArenaError::os(ErrorKind::LockFailed, "getrlimit(RLIMIT_MEMLOCK)", e)
        })?;
        // The mapping's tail beyond the budget is locked too: mlock works in
        // whole base pages, and the mapping is a whole number of them.
        let target = self.mapping.mapped_len();
        let page = crate::sys::page_size();
        let outcome = lock_longest_prefix(&mut MappingLocker(&self.mapping), target, page, limit)
            .map_err(|errno| {
            LockedArenaError::os(
                ErrorKind::LockFailed,
                "mlock of the budget",
                std::io::Error::from_raw_os_error(errno),
            )
        })?;
        self.locked = outcome.len;
        let locked = outcome.len.min(requested);
        Ok(LockReport {
            requested,
            locked,
            // A prefix of whole pages shorter than the mapping is shorter
            // than the budget too, so `None` exactly when all is locked.
            limited_by: if locked == requested {
                None
            } else {
                Some(outcome.limited_by.unwrap_or(LockLimit::ResourceLimit))
            },
        })
    }
}

#[cfg(test)]
mod tests;
