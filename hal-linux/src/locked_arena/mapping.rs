//! The one owner of the arena's pages: an anonymous private `mmap`, viewed
//! as a byte slice, locked with `mlock`, unmapped on drop.
//!
//! All of the arena's `unsafe` lives here, so its soundness argument is in
//! one place:
//!
//! 1. `ptr` is the start of a live mapping of `mapped` bytes with
//!    `PROT_READ | PROT_WRITE`, created in [`Mapping::anonymous`] and unmapped
//!    only in `Drop`.
//! 2. Anonymous mappings are zero-filled by the kernel, so every byte is
//!    initialised, and `u8` has no invalid values or alignment needs.
//! 3. `usable <= mapped` and `mapped <= isize::MAX`, both checked before the
//!    mapping is made.
//! 4. The pointer is handed out as a slice borrowed from `&self` (shared) or
//!    `&mut self` (unique), so the borrow checker's rules on `Mapping` are
//!    the aliasing rules of the memory. The one exception is
//!    [`Mapping::as_ptr`], used only by `BlockFlash`'s bounce pool, which
//!    lets the kernel write into the pages asynchronously; that pool never
//!    calls `as_slice` or `as_mut_slice` and argues its own aliasing in
//!    `block_flash/bounce.rs`.
//! 5. Nothing else writes to the pages: `mlock`, `munlock` and
//!    `madvise(MADV_HUGEPAGE)` change residency, never contents (the bounce
//!    pool's reads are the exception point 4 names).
#![allow(unsafe_code)]

use std::io;
use std::ptr::{self, NonNull};

use super::{HugePageStatus, HugePages};
use crate::sys;

/// An owned anonymous mapping of at least `usable` bytes.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    /// Bytes actually mapped: `usable` rounded up to the mapping's page size.
    mapped: usize,
    /// Bytes the slices expose: the budget.
    usable: usize,
    /// Page size of the mapping (a huge page size for hugetlb mappings).
    page: usize,
}

// SAFETY: a `Mapping` owns its pages exclusively, like a `Box<[u8]>`: the
// pointer is never shared (point 4 of the module docs), so moving the value
// to another thread moves sole ownership, and the memory is not tied to the
// creating thread.
unsafe impl Send for Mapping {}
// SAFETY: through `&Mapping` only `&[u8]` views and residency calls (`mlock`)
// are reachable; neither mutates the bytes, so sharing across threads is as
// sound as sharing a `&[u8]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `usable` bytes (rounded up to the page size), on huge pages if
    /// asked and possible. Falling back from huge pages is not an error; the
    /// returned status says what happened.
    pub(crate) fn anonymous(
        usable: usize,
        huge: HugePages,
    ) -> io::Result<(Mapping, HugePageStatus)> {
        if usable == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let base_page = sys::page_size();
        let mut status = HugePageStatus::NotRequested;
        if huge == HugePages::Explicit {
            match sys::huge_page_size() {
                Some(huge_page) => match Self::map(usable, huge_page, libc::MAP_HUGETLB) {
                    Ok(m) => {
                        return Ok((
                            m,
                            HugePageStatus::Explicit {
                                page_size: huge_page,
                            },
                        ))
                    }
                    Err(e) => {
                        status = HugePageStatus::Unavailable {
                            requested: huge,
                            errno: e.raw_os_error().unwrap_or(0),
                        }
                    }
                },
                None => {
                    status = HugePageStatus::Unavailable {
                        requested: huge,
                        errno: libc::ENOSYS,
                    }
                }
            }
        }
        let mapping = Self::map(usable, base_page, 0)?;
        if huge == HugePages::Transparent {
            status = match mapping.advise_huge() {
                Ok(()) => HugePageStatus::Advised,
                Err(e) => HugePageStatus::Unavailable {
                    requested: huge,
                    errno: e.raw_os_error().unwrap_or(0),
                },
            };
        }
        Ok((mapping, status))
    }

    /// One `mmap` call of `usable` bytes rounded up to `page`.
    fn map(usable: usize, page: usize, extra_flags: libc::c_int) -> io::Result<Mapping> {
        let mapped = usable
            .checked_next_multiple_of(page)
            .filter(|&m| isize::try_from(m).is_ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a null hint without MAP_FIXED lets the kernel choose an
        // unused range, so no existing memory is replaced or aliased; fd -1
        // and offset 0 are what MAP_ANONYMOUS requires. The result is checked
        // against MAP_FAILED before it is used.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(ptr) = NonNull::new(raw.cast::<u8>()) else {
            // mmap never returns null without MAP_FIXED; treat it as failure
            // rather than build a slice on it. Nothing to unmap.
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        Ok(Mapping {
            ptr,
            mapped,
            usable,
            page,
        })
    }

    /// Ask for transparent huge pages over the whole mapping.
    fn advise_huge(&self) -> io::Result<()> {
        // SAFETY: the range is exactly our live mapping (point 1); MADV_HUGEPAGE
        // only changes how the kernel backs it, never its contents (point 5).
        let rc =
            unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.mapped, libc::MADV_HUGEPAGE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Bytes mapped (the budget rounded up to the page size).
    pub(crate) fn mapped_len(&self) -> usize {
        self.mapped
    }

    /// Page size the mapping was rounded to.
    pub(crate) fn page_size(&self) -> usize {
        self.page
    }

    /// Start of the mapping, for code that hands the kernel an address to
    /// write into asynchronously (the bounce buffers of `BlockFlash`). Taking
    /// the pointer is safe; every use of it is an `unsafe` block of its own
    /// that must respect point 4.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The budget's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: points 1-3 of the module docs make `ptr..ptr + usable` a
        // live, initialised, readable allocation of at most isize::MAX bytes
        // for as long as `self` is borrowed (Drop cannot run meanwhile); point
        // 4 means no `&mut` to it exists while this `&self` borrow lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.usable) }
    }

    /// The budget's bytes, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and the mapping is writable (point 1);
        // `&mut self` guarantees this is the only view for its lifetime
        // (point 4).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.usable) }
    }

    /// `mlock` the first `len` bytes (clamped to the mapping). Returns the
    /// errno on failure so the caller can tell a limit from a refusal.
    pub(crate) fn lock_prefix(&self, len: usize) -> Result<(), i32> {
        let len = len.min(self.mapped);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside our live mapping (point 1, `len` is
        // clamped); mlock faults pages in and pins them, which never changes
        // their contents (point 5) or creates a reference.
        let rc = unsafe { libc::mlock(self.ptr.as_ptr().cast(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    /// `munlock` everything from byte `from` (page-aligned by the caller) to
    /// the end, so only the reported prefix stays locked.
    pub(crate) fn unlock_from(&self, from: usize) -> Result<(), i32> {
        let Some(len) = self.mapped.checked_sub(from).filter(|&l| l > 0) else {
            return Ok(());
        };
        // SAFETY: `from < mapped`, so `ptr + from .. ptr + mapped` lies inside
        // our live mapping (point 1); munlock changes residency only (point 5).
        let rc = unsafe { libc::munlock(self.ptr.as_ptr().add(from).cast(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `mapped` are exactly what `map` passed to and got
        // from mmap; this is the only place the mapping is unmapped and drop
        // runs once; no slice borrowed from `self` can outlive this call.
        // munmap of a valid mapping cannot fail, and a destructor could do
        // nothing useful if it did.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.mapped);
        }
    }
}
