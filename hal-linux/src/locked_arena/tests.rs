use super::*;
use lode_kernel::arena::{Error as _, SlotKind};
use proptest::prelude::*;

#[test]
fn capacity_is_the_budget_and_mapping_is_whole_pages() {
    let page = crate::sys::page_size();
    let budget = 3 * page + 100;
    let a = LockedArena::new(budget).unwrap();
    assert_eq!(a.capacity(), budget);
    assert_eq!(a.mapped_len(), 4 * page);
    assert_eq!(a.page_size(), page);
    assert_eq!(a.huge_pages(), HugePageStatus::NotRequested);
    assert_eq!(a.remaining(), budget);
    assert_eq!(a.parts().0.max_slots(), MAX_SLOTS);
}

#[test]
fn alloc_free_and_refusal_past_the_budget() {
    let mut a = LockedArena::new(10_000).unwrap();
    let s = a.alloc(9_000, 1, SlotKind::Resident).unwrap();
    let err = a.alloc(1_001, 1, SlotKind::Scratch).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfMemory);
    // The page-rounding slack past the budget is never handed out.
    let t = a.alloc(1_000, 1, SlotKind::Scratch).unwrap();
    assert_eq!(a.remaining(), 0);
    assert_eq!(
        a.alloc(1, 1, SlotKind::Scratch).unwrap_err(),
        ErrorKind::OutOfMemory
    );
    a.free(s).unwrap();
    assert_eq!(a.bytes(s).unwrap_err(), ErrorKind::StaleSlot);
    assert_eq!(a.used(), 1_000);
    a.free(t).unwrap();
    assert_eq!(a.used(), 0);
    assert_eq!(a.peak(), 10_000);
}

#[test]
fn memory_starts_zeroed_and_keeps_what_is_written() {
    let mut a = LockedArena::new(64 << 10).unwrap();
    let x = a.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
    let y = a.alloc(100, 8, SlotKind::KvChunk).unwrap();
    assert!(a.bytes(x).unwrap().iter().all(|&b| b == 0));
    let [bx, by] = a.bytes_disjoint_mut([x, y]).unwrap();
    bx.fill(0xAB);
    by.fill(0x11);
    assert!(a.bytes(x).unwrap().iter().all(|&b| b == 0xAB));
    assert!(a.bytes(y).unwrap().iter().all(|&b| b == 0x11));
    assert_eq!(a.used_by(SlotKind::KvChunk), 100);
}

#[test]
fn addresses_are_page_aligned_when_asked() {
    let page = crate::sys::page_size();
    let mut a = LockedArena::new(16 * page).unwrap();
    // Offset the first-fit cursor so alignment has work to do.
    a.alloc(100, 1, SlotKind::Scratch).unwrap();
    for _ in 0..4 {
        let s = a.alloc(page + 1, page, SlotKind::IoBuffer).unwrap();
        let addr = a.bytes(s).unwrap().as_ptr() as usize;
        assert_eq!(addr % page, 0);
        assert_eq!(s.offset() % page, 0, "the mapping itself starts on a page");
    }
}

#[test]
fn bad_budgets_are_errors_not_panics() {
    assert_eq!(LockedArena::new(0).unwrap_err(), ErrorKind::InvalidArgument);
    // Cannot be rounded to a page, or cannot be mapped.
    for budget in [usize::MAX, usize::MAX / 2, usize::MAX / 4] {
        let err = LockedArena::new(budget).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{budget}: {err}");
        assert!(err.io_error().is_some());
    }
}

#[test]
fn lock_report_is_consistent() {
    let mut a = LockedArena::new(3 << 20).unwrap();
    let r = a.lock().unwrap();
    assert_eq!(r.requested, a.capacity());
    assert!(r.locked <= r.requested);
    assert_eq!(r.limited_by.is_none(), r.locked == r.requested);
    assert_eq!(a.locked_bytes(), r.locked);
    if r.limited_by.is_none() {
        // Fully locked: the kernel accounts at least our pages in VmLck.
        let vmlck = vm_locked_kib().unwrap_or(0);
        assert!(vmlck * 1024 >= a.mapped_len() as u64, "VmLck {vmlck} kB");
    }
    // Locking again is allowed and reports the same.
    let again = a.lock().unwrap();
    assert_eq!(again.requested, r.requested);
    assert_eq!(again.limited_by.is_none(), again.locked == again.requested);
    // The arena stays usable after locking.
    let s = a.alloc(1 << 20, 4096, SlotKind::Resident).unwrap();
    a.bytes_mut(s).unwrap().fill(3);
}

#[test]
fn lock_beyond_the_rlimit_is_partial_or_privileged() {
    // Only meaningful when the limit is finite and small enough to exceed.
    let Some(limit) = crate::sys::memlock_limit().unwrap() else {
        return;
    };
    if limit > 256 << 20 {
        return;
    }
    let budget = limit as usize + (4 << 20);
    let mut a = LockedArena::new(budget).unwrap();
    let r = a.lock().unwrap();
    assert_eq!(r.requested, budget);
    match r.limited_by {
        // Privileged (CAP_IPC_LOCK): the limit does not apply.
        None => assert_eq!(r.locked, budget),
        // Unprivileged: a prefix no larger than the limit, in whole pages.
        Some(LockLimit::ResourceLimit) => {
            assert!(r.locked as u64 <= limit, "{r:?} over {limit}");
            assert_eq!(r.locked % crate::sys::page_size(), 0);
        }
        Some(LockLimit::Permission) => assert_eq!(r.locked, 0),
        Some(other) => panic!("unexpected {other:?}"),
    }
}

/// This process's locked memory (`VmLck:` of `/proc/self/status`) in KiB.
fn vm_locked_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmLck:"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[test]
fn huge_page_requests_fall_back_quietly() {
    let budget = 5 << 20;
    for huge_pages in [HugePages::Explicit, HugePages::Transparent] {
        let mut a = LockedArena::with_options(budget, LockedArenaOptions { huge_pages }).unwrap();
        assert_eq!(a.capacity(), budget);
        match (huge_pages, a.huge_pages()) {
            (HugePages::Explicit, HugePageStatus::Explicit { page_size }) => {
                assert_eq!(a.page_size(), page_size);
                assert_eq!(a.mapped_len() % page_size, 0);
            }
            (HugePages::Transparent, HugePageStatus::Advised) => {}
            (
                requested,
                HugePageStatus::Unavailable {
                    requested: r,
                    errno,
                },
            ) => {
                assert_eq!(requested, r);
                assert_ne!(errno, 0);
                assert_eq!(a.page_size(), crate::sys::page_size());
            }
            (requested, status) => panic!("{requested:?} gave {status:?}"),
        }
        let s = a.alloc(budget, 1, SlotKind::Resident).unwrap();
        a.bytes_mut(s).unwrap().fill(9);
        assert!(a.bytes(s).unwrap().iter().all(|&b| b == 9));
    }
}

#[test]
fn arena_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LockedArena>();
    let mut a = LockedArena::new(8192).unwrap();
    let s = a.alloc(16, 1, SlotKind::Scratch).unwrap();
    a.bytes_mut(s).unwrap().fill(5);
    let a = std::thread::spawn(move || {
        assert_eq!(a.bytes(s).unwrap(), &[5; 16]);
        a
    })
    .join()
    .unwrap();
    assert_eq!(a.used(), 16);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random alloc/free over a real mapping: slots stay inside the budget,
    /// never overlap, keep their alignment, and keep their contents while
    /// other slots come and go.
    #[test]
    fn slots_keep_their_bytes(ops in proptest::collection::vec((0u8..3, 1usize..20_000, 0u32..13), 1..120)) {
        let budget = 100_000;
        let mut a = LockedArena::new(budget).unwrap();
        let mut live: Vec<(lode_kernel::arena::Slot, u8)> = Vec::new();
        for (i, (op, len, align_log)) in ops.into_iter().enumerate() {
            if op == 0 && !live.is_empty() {
                let (s, _) = live.swap_remove(len % live.len());
                a.free(s).unwrap();
                continue;
            }
            match a.alloc(len, 1 << align_log, SlotKind::Scratch) {
                Ok(s) => {
                    let fill = i as u8;
                    let bytes = a.bytes_mut(s).unwrap();
                    prop_assert_eq!(bytes.as_ptr() as usize % (1 << align_log), 0);
                    bytes.fill(fill);
                    prop_assert!(s.range().end <= budget);
                    live.push((s, fill));
                }
                Err(e) => prop_assert!(matches!(e.kind(), ErrorKind::OutOfMemory | ErrorKind::TooManySlots)),
            }
            for &(s, fill) in &live {
                prop_assert!(a.bytes(s).unwrap().iter().all(|&b| b == fill));
            }
            let total: usize = live.iter().map(|(s, _)| s.len()).sum();
            prop_assert_eq!(a.used(), total);
        }
    }
}
