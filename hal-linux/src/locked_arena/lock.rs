//! How much of a region to `mlock`: all of it if allowed, otherwise the
//! longest prefix the memory-lock limit leaves room for.
//!
//! The search is written against a two-method trait so that its logic (limit
//! reached, limit already partly used by other locks, permission refused) is
//! tested with a fake, without needing an unprivileged process or a lowered
//! `RLIMIT_MEMLOCK`.

use lode_kernel::arena::LockLimit;

/// The two residency calls the search needs.
pub(crate) trait Locker {
    /// Lock the first `len` bytes; `Err(errno)` if refused.
    fn lock_prefix(&mut self, len: usize) -> Result<(), i32>;
    /// Unlock from byte `from` to the end of the region.
    fn unlock_from(&mut self, from: usize) -> Result<(), i32>;
}

/// Result of a lock attempt: bytes locked from the start of the region and,
/// when that is less than the target, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locked {
    pub(crate) len: usize,
    pub(crate) limited_by: Option<LockLimit>,
}

/// `true` for the errnos `mlock` gives when a limit, not a rule, stands in
/// the way: ENOMEM (RLIMIT_MEMLOCK reached) and EAGAIN (pages could not be
/// pinned right now).
fn is_limit(errno: i32) -> bool {
    errno == libc::ENOMEM || errno == libc::EAGAIN
}

/// Lock `target` bytes (a multiple of `page`), or the longest page-multiple
/// prefix that the system allows.
///
/// The whole region is tried first: a privileged process (CAP_IPC_LOCK) is
/// not bound by `RLIMIT_MEMLOCK`, so the limit is only a ceiling for the
/// search once the full lock has been refused. Other locked memory of the
/// process counts against the same limit, so the limit alone does not say
/// how much fits; a binary search over page counts finds the exact prefix in
/// about log2(pages) calls, each refused before any page is touched. Pages
/// past the final prefix are unlocked again, so the result is exactly what
/// is locked. `Err(errno)` for a refusal that is neither a limit nor a
/// permission problem.
pub(crate) fn lock_longest_prefix<L: Locker>(
    locker: &mut L,
    target: usize,
    page: usize,
    limit: Option<u64>,
) -> Result<Locked, i32> {
    let page = page.max(1);
    if target == 0 {
        return Ok(Locked {
            len: 0,
            limited_by: None,
        });
    }
    match locker.lock_prefix(target) {
        Ok(()) => {
            return Ok(Locked {
                len: target,
                limited_by: None,
            })
        }
        Err(e) if e == libc::EPERM => {
            return Ok(Locked {
                len: 0,
                limited_by: Some(LockLimit::Permission),
            })
        }
        Err(e) if is_limit(e) => {}
        Err(e) => return Err(e),
    }
    let target_pages = target / page;
    let limit_pages = limit
        .and_then(|l| usize::try_from(l / page as u64).ok())
        .unwrap_or(usize::MAX);
    // Invariant: `good` pages lock (0 trivially), `bad` pages are refused or
    // lie above the rlimit, which binds once the full lock was refused.
    let mut good = 0usize;
    let mut bad = target_pages;
    let mut limited_by = LockLimit::ResourceLimit;
    let ceiling = limit_pages.min(target_pages);
    if ceiling < target_pages {
        // Usually nothing else is locked and the limit itself fits: one call.
        match locker.lock_prefix(ceiling * page) {
            Ok(()) => {
                good = ceiling;
                bad = ceiling + 1;
            }
            Err(e) if is_limit(e) => bad = ceiling,
            Err(e) if e == libc::EPERM => {
                bad = ceiling;
                limited_by = LockLimit::Permission;
            }
            Err(e) => return Err(e),
        }
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        match locker.lock_prefix(mid * page) {
            Ok(()) => good = mid,
            Err(e) if is_limit(e) => bad = mid,
            Err(e) if e == libc::EPERM => {
                bad = mid;
                limited_by = LockLimit::Permission;
            }
            Err(e) => return Err(e),
        }
    }
    // A refused attempt may have pinned some pages before failing (EAGAIN
    // part-way); drop them so the report is the truth.
    locker.unlock_from(good * page)?;
    Ok(Locked {
        len: good * page,
        limited_by: Some(limited_by),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: usize = 4096;

    /// A fake `mlock` over a region: `allowed` more pages may be locked by
    /// this region (the limit minus other locks); `errno` is returned when a
    /// prefix needs more. `locked` is what is pinned right now.
    struct Fake {
        allowed: usize,
        errno: i32,
        locked: usize,
        calls: usize,
        /// Simulate EAGAIN pinning part of a refused range.
        leak_on_fail: bool,
    }

    impl Fake {
        fn new(allowed_pages: usize, errno: i32) -> Self {
            Fake {
                allowed: allowed_pages * PAGE,
                errno,
                locked: 0,
                calls: 0,
                leak_on_fail: false,
            }
        }
    }

    impl Locker for Fake {
        fn lock_prefix(&mut self, len: usize) -> Result<(), i32> {
            self.calls += 1;
            if len <= self.allowed {
                self.locked = self.locked.max(len);
                Ok(())
            } else {
                if self.leak_on_fail {
                    // Pinned half of the refused range before giving up.
                    self.locked = self.locked.max(len / 2 / PAGE * PAGE);
                }
                Err(self.errno)
            }
        }
        fn unlock_from(&mut self, from: usize) -> Result<(), i32> {
            self.locked = self.locked.min(from);
            Ok(())
        }
    }

    #[test]
    fn full_lock_when_allowed() {
        let mut f = Fake::new(100, libc::ENOMEM);
        let r = lock_longest_prefix(&mut f, 10 * PAGE, PAGE, Some(0)).unwrap();
        assert_eq!(
            r,
            Locked {
                len: 10 * PAGE,
                limited_by: None
            }
        );
        // A privileged process ignores the rlimit: one call, no search.
        assert_eq!(f.calls, 1);
    }

    #[test]
    fn limit_locks_the_largest_prefix() {
        let mut f = Fake::new(3, libc::ENOMEM);
        let r = lock_longest_prefix(&mut f, 10 * PAGE, PAGE, Some(3 * PAGE as u64 + 100)).unwrap();
        assert_eq!(
            r,
            Locked {
                len: 3 * PAGE,
                limited_by: Some(LockLimit::ResourceLimit)
            }
        );
        assert_eq!(f.locked, 3 * PAGE);
        // Full attempt, then the limit itself: two calls.
        assert_eq!(f.calls, 2);
    }

    #[test]
    fn other_locks_sharing_the_limit_are_searched_around() {
        // rlimit says 8 pages but only 5 remain.
        let mut f = Fake::new(5, libc::ENOMEM);
        let r = lock_longest_prefix(&mut f, 10 * PAGE, PAGE, Some(8 * PAGE as u64)).unwrap();
        assert_eq!(r.len, 5 * PAGE);
        assert_eq!(r.limited_by, Some(LockLimit::ResourceLimit));
    }

    #[test]
    fn zero_room_and_permission() {
        let mut f = Fake::new(0, libc::ENOMEM);
        let r = lock_longest_prefix(&mut f, 4 * PAGE, PAGE, None).unwrap();
        assert_eq!(
            r,
            Locked {
                len: 0,
                limited_by: Some(LockLimit::ResourceLimit)
            }
        );
        let mut f = Fake::new(0, libc::EPERM);
        let r = lock_longest_prefix(&mut f, 4 * PAGE, PAGE, Some(0)).unwrap();
        assert_eq!(
            r,
            Locked {
                len: 0,
                limited_by: Some(LockLimit::Permission)
            }
        );
        let mut f = Fake::new(0, libc::EINVAL);
        assert_eq!(
            lock_longest_prefix(&mut f, 4 * PAGE, PAGE, None),
            Err(libc::EINVAL)
        );
        let mut f = Fake::new(0, libc::EINVAL);
        assert_eq!(
            lock_longest_prefix(&mut f, 0, PAGE, None),
            Ok(Locked {
                len: 0,
                limited_by: None
            })
        );
        assert_eq!(f.calls, 0);
    }

    #[test]
    fn pages_pinned_by_a_failed_attempt_are_released() {
        let mut f = Fake::new(2, libc::EAGAIN);
        f.leak_on_fail = true;
        // The first, full attempt pins 50 of 100 pages before failing.
        let r = lock_longest_prefix(&mut f, 100 * PAGE, PAGE, None).unwrap();
        assert_eq!(r.len, 2 * PAGE);
        assert_eq!(f.locked, r.len);
    }

    proptest! {
        #[test]
        fn finds_exactly_what_fits(target in 0usize..5000, allowed in 0usize..6000, limit in proptest::option::of(0u64..6000), eagain: bool) {
            let errno = if eagain { libc::EAGAIN } else { libc::ENOMEM };
            let mut f = Fake::new(allowed, errno);
            f.leak_on_fail = eagain;
            let limit_bytes = limit.map(|p| p * PAGE as u64);
            let r = lock_longest_prefix(&mut f, target * PAGE, PAGE, limit_bytes).unwrap();
            let expect = if allowed >= target {
                target
            } else {
                // The search never goes above the rlimit once refused.
                allowed.min(limit.map_or(usize::MAX, |l| l as usize))
            };
            prop_assert_eq!(r.len, expect * PAGE);
            prop_assert_eq!(r.limited_by.is_none(), expect == target);
            prop_assert_eq!(f.locked, r.len);
            // Logarithmic, not linear, in the page count.
            prop_assert!(f.calls <= 2 + 14);
        }
    }
}
