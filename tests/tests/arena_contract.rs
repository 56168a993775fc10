//! The `DramArena` contract, checked on every implementation: a trait is an
//! abstraction only when two implementations agree on it.

use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::LockedArena;
use lode_kernel::arena::{DramArena, Error, ErrorKind, SlotKind};

fn contract<A: DramArena>(a: &mut A) {
    let cap = a.capacity();
    assert_eq!(a.used(), 0);
    // Alignment is of the absolute address.
    let x = a.alloc(100, 64, SlotKind::Resident).unwrap();
    assert_eq!(a.bytes(x).unwrap().as_ptr() as usize % 64, 0);
    a.bytes_mut(x).unwrap().fill(0xAB);
    let y = a.alloc(200, 4096, SlotKind::IoBuffer).unwrap();
    assert_eq!(a.bytes(y).unwrap().as_ptr() as usize % 4096, 0);
    assert_eq!(a.used_by(SlotKind::Resident), 100);
    assert_eq!(a.used_by(SlotKind::IoBuffer), 200);
    // Disjoint access to two slots at once; overlap refused.
    {
        let [bx, by] = a.bytes_disjoint_mut([x, y]).unwrap();
        by.copy_from_slice(&[bx[0]; 200]);
    }
    assert!(a.bytes(y).unwrap().iter().all(|&b| b == 0xAB));
    assert_eq!(
        a.bytes_disjoint_mut([x, x]).err().map(|e| e.kind()),
        Some(ErrorKind::Overlap)
    );
    // More than remains is an error, never a panic, and changes nothing.
    let used = a.used();
    assert_eq!(
        a.alloc(cap, 1, SlotKind::Scratch).err().map(|e| e.kind()),
        Some(ErrorKind::OutOfMemory)
    );
    assert_eq!(
        a.alloc(usize::MAX, 1, SlotKind::Scratch)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::OutOfMemory)
    );
    assert_eq!(a.used(), used);
    // Stale handles.
    a.free(x).unwrap();
    assert_eq!(
        a.bytes(x).err().map(|e| e.kind()),
        Some(ErrorKind::StaleSlot)
    );
    assert_eq!(
        a.free(x).err().map(|e| e.kind()),
        Some(ErrorKind::StaleSlot)
    );
    // Fill to the brim in pieces, then reset.
    let mut n = 0;
    while a.alloc(cap / 16, 1, SlotKind::KvChunk).is_ok() {
        n += 1;
    }
    assert!(n >= 14, "only {n} sixteenths fit");
    assert!(a.used() <= cap);
    assert!(a.peak() >= a.used());
    a.reset();
    assert_eq!(a.used(), 0);
    // Locking reports the truth, whatever the platform allows.
    let report = a.lock().unwrap();
    assert!(report.locked <= report.requested);
    assert_eq!(
        report.limited_by.is_none(),
        report.locked == report.requested
    );
}

#[test]
fn slice_arena_keeps_the_contract() {
    let mut mem = vec![0u8; 1 << 20];
    let mut a = SliceArena::new(&mut mem);
    contract(&mut a);
}

#[test]
fn locked_arena_keeps_the_contract() {
    let mut a = LockedArena::new(1 << 20).unwrap();
    contract(&mut a);
}
