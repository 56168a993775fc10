//! Small queries of the operating system: page sizes and the memory-lock limit.
//!
//! Kept apart from the mapping code so the arena's sizing decisions can be read
//! (and tested) without reading any `unsafe`.
#![allow(unsafe_code)]

use std::io;

/// Page size assumed when the system will not say. 4 KiB is the base page of
/// every Linux and Android target lode builds for except 16 KiB-page arm64
/// kernels, which always answer `sysconf`.
const FALLBACK_PAGE_SIZE: usize = 4096;

/// The base page size of this system: the granularity of `mmap` and `mlock`.
pub fn page_size() -> usize {
    // SAFETY: `sysconf` takes an integer selector and returns an integer; it
    // reads no caller memory and has no preconditions.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    match usize::try_from(raw) {
        Ok(size) if size.is_power_of_two() => size,
        _ => FALLBACK_PAGE_SIZE,
    }
}

/// The default huge page size (`Hugepagesize:` in `/proc/meminfo`), or `None`
/// when the kernel has no hugetlbfs. Explicit huge-page mappings must be sized
/// and unmapped in multiples of it.
pub fn huge_page_size() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_huge_page_size(&meminfo)
}

/// Pull `Hugepagesize:   2048 kB` out of `/proc/meminfo` text.
fn parse_huge_page_size(meminfo: &str) -> Option<usize> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))?;
    let mut words = line.split_whitespace();
    let value: usize = words.next()?.parse().ok()?;
    let bytes = match words.next() {
        Some("kB") => value.checked_mul(1024)?,
        Some("B") | None => value,
        _ => return None,
    };
    bytes.is_power_of_two().then_some(bytes)
}

/// The soft `RLIMIT_MEMLOCK` of this process in bytes: how much memory an
/// unprivileged process may lock. `None` means unlimited. A process with
/// `CAP_IPC_LOCK` (root) may lock more than this, so
/// [`LockedArena`](crate::LockedArena)'s `lock` tries first and consults the
/// limit only when refused.
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, initialised `rlimit` that lives across the
    // call; `getrlimit` writes only into it and keeps no pointer to it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(None);
    }
    // `rlim_t` is u64 on 64-bit targets and u32 on 32-bit Android; widening
    // never loses anything.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    Ok(Some(u64::from(limit.rlim_cur)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_a_power_of_two() {
        let p = page_size();
        assert!(p.is_power_of_two());
        assert!(p >= 4096);
    }

    #[test]
    fn huge_page_size_parses_meminfo() {
        let text = "MemTotal: 1 kB\nHugepagesize:       2048 kB\nHugetlb: 0 kB\n";
        assert_eq!(parse_huge_page_size(text), Some(2 << 20));
        assert_eq!(
            parse_huge_page_size("Hugepagesize: 1048576 kB"),
            Some(1 << 30)
        );
        assert_eq!(parse_huge_page_size("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_huge_page_size("Hugepagesize: lots kB"), None);
        assert_eq!(parse_huge_page_size("Hugepagesize: 3 kB"), None);
        assert_eq!(parse_huge_page_size("Hugepagesize: 2048 MB"), None);
    }

    #[test]
    fn memlock_limit_matches_ulimit_semantics() {
        // Whatever the limit is, reading it must succeed on Linux.
        let limit = memlock_limit().unwrap();
        if let Some(bytes) = limit {
            assert_ne!(bytes, u64::MAX);
        }
    }
}
