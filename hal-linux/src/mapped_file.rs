//! `MappedFile`: a file mapped read-only, so a model that is copied into an
//! arena is read once and never resident twice.
//!
//! A GGUF run copies every tensor into its arena. Read into a buffer first,
//! the file would be resident beside its copy until the load ends (twice the
//! model). Mapped, its pages come from the page cache as the copy touches
//! them, and [`MappedFile::release`] gives back the pages of what has been
//! copied, so at most a tensor's pages are resident beside the arena.
//!
//! All of this module's `unsafe` rests on these points:
//!
//! 1. `ptr` is the start of a live `PROT_READ`, `MAP_PRIVATE` mapping of
//!    `len >= 1` bytes, made in [`MappedFile::map`] and unmapped only in
//!    `Drop`; `len <= isize::MAX` is checked before mapping.
//! 2. Nothing in this process writes to it: it is mapped read-only and only
//!    `&[u8]` views are handed out, so there is no `&mut` to alias.
//! 3. `MADV_DONTNEED` on a private file mapping whose pages were never
//!    written drops them from this process only; the next access reads them
//!    again from the file, so the bytes a live `&[u8]` sees do not change.
//! 4. The file is not changed by another process while mapped. This is the
//!    one condition the mapping cannot enforce: as for every reader of a file
//!    that another process rewrites at the same time, the bytes would change
//!    (and an access past a truncated end raises `SIGBUS`). Like writes to
//!    `/proc/self/mem`, that is an action outside the program, which Rust's
//!    guarantees do not cover; lode maps only the model file it is loading,
//!    for the length of the load.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};

use crate::sys;

/// The first `len` bytes of a file, mapped read-only.
#[derive(Debug)]
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and read-only (points 1
// and 2): moving it to another thread moves sole ownership of memory that
// is not tied to the creating thread.
unsafe impl Send for MappedFile {}
// SAFETY: through `&MappedFile` only `&[u8]` views and `release` are
// reachable; neither changes the bytes (points 2 and 3), so sharing is as
// sound as sharing a `&[u8]`.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the first `len` bytes of `file`, which must be open for
    /// reading and at least that long (a regular file or a block device,
    /// whose length the caller took from `fstat`). An empty or too large
    /// `len` is `InvalidInput`.
    pub fn map(file: &File, len: u64) -> io::Result<MappedFile> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0 && isize::try_from(l).is_ok())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a null hint without MAP_FIXED lets the kernel choose an
        // unused range, so no existing memory is replaced or aliased; the
        // descriptor is open for reading, as PROT_READ needs, and offset 0 is
        // page-aligned. The result is checked against MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(ptr) = NonNull::new(raw.cast::<u8>()) else {
            // mmap never returns null without MAP_FIXED; nothing to unmap.
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        };
        Ok(MappedFile { ptr, len })
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: points 1 and 2: `ptr..ptr + len` is a live, readable
        // mapping of at most isize::MAX bytes for as long as `self` is
        // borrowed (Drop cannot run meanwhile), every byte is initialised
        // (file contents, or zeros past the file's last partial page), and
        // nothing writes to it; point 4 keeps the file's bytes as they are.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never: an empty mapping is refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives back the pages lying wholly inside `range` (byte offsets of
    /// the mapping; clamped to it). The bytes stay readable: a later access
    /// reads them from the file again. A hint: a failure changes nothing
    /// and is ignored.
    pub fn release(&self, range: Range<usize>) {
        let page = sys::page_size();
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(self.len) / page * page;
        if start >= end {
            return;
        }
        // SAFETY: `start < end <= len`, so the range lies inside the live
        // mapping (point 1) and starts on a page boundary, as madvise needs;
        // MADV_DONTNEED on a never-written private file mapping changes no
        // byte a reader can see (point 3).
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// Gives back the pages lying wholly inside `part`, a slice of this
    /// mapping (nothing when it is not one).
    pub fn release_slice(&self, part: &[u8]) {
        let base = self.ptr.as_ptr() as usize;
        let Some(start) = (part.as_ptr() as usize).checked_sub(base) else {
            return;
        };
        if start.saturating_add(part.len()) <= self.len {
            self.release(start..start + part.len());
        }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what `map` passed to and got
        // from mmap; this is the only place the mapping is unmapped and drop
        // runs once; no slice borrowed from `self` outlives this call.
        // munmap of a valid mapping cannot fail, and a destructor could do
        // nothing useful if it did.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("RssFile:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    fn a_mapping_reads_the_file_and_released_pages_read_the_same() {
        let path = std::env::temp_dir().join(format!("lode-mapped-{}", std::process::id()));
        let bytes: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let map = MappedFile::map(&file, bytes.len() as u64).unwrap();
        assert_eq!(map.as_slice(), &bytes[..]);
        let before = resident_kib();
        map.release_slice(map.as_slice());
        let after = resident_kib();
        if let (Some(b), Some(a)) = (before, after) {
            assert!(
                a + 3 * 1024 < b,
                "released pages stay resident: {b} KiB, then {a} KiB"
            );
        }
        // Read again from the file, unchanged.
        assert_eq!(map.as_slice(), &bytes[..]);
        // Ranges outside the mapping, or not of it, are ignored.
        map.release(0..usize::MAX);
        map.release_slice(&bytes);
        assert_eq!(map.as_slice()[12345], bytes[12345]);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn empty_mappings_are_refused() {
        let file = File::open("/proc/self/exe").unwrap();
        assert_eq!(
            MappedFile::map(&file, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
