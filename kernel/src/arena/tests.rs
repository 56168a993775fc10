use super::*;

struct Arr<const C: usize, const N: usize> {
    table: SlotTable<N>,
    mem: [u8; C],
}

impl<const C: usize, const N: usize> Arr<C, N> {
    fn new() -> Self {
        Arr {
            table: SlotTable::new(),
            mem: [0; C],
        }
    }
}

impl<const C: usize, const N: usize> DramArena for Arr<C, N> {
    type Error = ErrorKind;
    fn parts(&self) -> (&dyn Slots, &[u8]) {
        (&self.table, &self.mem)
    }
    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
        (&mut self.table, &mut self.mem)
    }
}

#[test]
fn refuses_to_exceed_capacity() {
    let mut a = Arr::<1024, 8>::new();
    let s = a.alloc(1000, 1, SlotKind::Resident).unwrap();
    assert_eq!(
        a.alloc(25, 1, SlotKind::Scratch),
        Err(ErrorKind::OutOfMemory)
    );
    assert_eq!(
        a.alloc(usize::MAX, 1, SlotKind::Scratch),
        Err(ErrorKind::OutOfMemory)
    );
    let t = a.alloc(24, 1, SlotKind::Scratch).unwrap();
    assert_eq!(a.remaining(), 0);
    assert_eq!(
        a.alloc(1, 1, SlotKind::Scratch),
        Err(ErrorKind::OutOfMemory)
    );
    a.free(s).unwrap();
    a.free(t).unwrap();
    assert_eq!(a.used(), 0);
    assert_eq!(a.peak(), 1024);
}

#[test]
fn slot_table_is_bounded() {
    let mut a = Arr::<1024, 2>::new();
    a.alloc(1, 1, SlotKind::Scratch).unwrap();
    a.alloc(1, 1, SlotKind::Scratch).unwrap();
    assert_eq!(
        a.alloc(1, 1, SlotKind::Scratch),
        Err(ErrorKind::TooManySlots)
    );
}

#[test]
fn bad_arguments_and_stale_handles_are_errors() {
    let mut a = Arr::<64, 4>::new();
    assert_eq!(
        a.alloc(0, 1, SlotKind::Scratch),
        Err(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        a.alloc(8, 3, SlotKind::Scratch),
        Err(ErrorKind::InvalidArgument)
    );
    let s = a.alloc(8, 8, SlotKind::Scratch).unwrap();
    a.free(s).unwrap();
    assert_eq!(a.free(s), Err(ErrorKind::StaleSlot));
    let again = a.alloc(8, 8, SlotKind::Scratch).unwrap();
    // Same index and place, new generation: the old handle stays stale.
    assert_eq!(a.bytes(s), Err(ErrorKind::StaleSlot));
    assert!(a.bytes(again).is_ok());
}

#[test]
fn disjoint_access_and_overlap() {
    let mut a = Arr::<64, 4>::new();
    let x = a.alloc(16, 1, SlotKind::Scratch).unwrap();
    let y = a.alloc(16, 1, SlotKind::Scratch).unwrap();
    let [bx, by] = a.bytes_disjoint_mut([x, y]).unwrap();
    bx.fill(1);
    by.fill(2);
    assert_eq!(a.bytes(x).unwrap(), &[1; 16]);
    assert_eq!(a.bytes_disjoint_mut([x, x]).err(), Some(ErrorKind::Overlap));
}

#[test]
fn per_kind_accounting() {
    let mut a = Arr::<256, 8>::new();
    let r = a.alloc(100, 1, SlotKind::Resident).unwrap();
    a.alloc(50, 1, SlotKind::KvChunk).unwrap();
    assert_eq!(a.used_by(SlotKind::Resident), 100);
    assert_eq!(a.used_by(SlotKind::KvChunk), 50);
    a.free(r).unwrap();
    assert_eq!(a.used_by(SlotKind::Resident), 0);
    a.reset();
    assert_eq!(a.used(), 0);
    assert_eq!(a.parts().0.live(), 0);
}

proptest::proptest! {
    /// Random alloc/free sequences: live slots never overlap, stay inside
    /// the region, respect alignment, and `used` equals their total.
    #[test]
    fn slots_never_overlap(ops in proptest::collection::vec((0usize..3, 1usize..300, 0u32..7), 1..200)) {
        let mut a = Arr::<2048, 16>::new();
        let mut live: heapless::Vec<Slot, 16> = heapless::Vec::new();
        for (op, len, align_log) in ops {
            if op == 0 && !live.is_empty() {
                let s = live.swap_remove(len % live.len());
                a.free(s).unwrap();
            } else {
                match a.alloc(len, 1 << align_log, SlotKind::Scratch) {
                    Ok(s) => {
                        let addr = a.bytes(s).unwrap().as_ptr() as usize;
                        proptest::prop_assert_eq!(addr % (1 << align_log), 0);
                        proptest::prop_assert!(s.range().end <= 2048);
                        live.push(s).unwrap();
                    }
                    Err(e) => proptest::prop_assert!(matches!(e, ErrorKind::OutOfMemory | ErrorKind::TooManySlots)),
                }
            }
            let total: usize = live.iter().map(|s| s.len()).sum();
            proptest::prop_assert_eq!(a.used(), total);
            for (i, s) in live.iter().enumerate() {
                for t in &live[i + 1..] {
                    proptest::prop_assert!(s.range().end <= t.offset() || t.range().end <= s.offset());
                }
            }
        }
    }
}
