//! The first-fit slot table every arena carves its memory with.

use core::ops::Range;

use super::{ErrorKind, Slot, SlotKind, Slots};

#[derive(Debug, Clone, Copy)]
struct Entry {
    live: bool,
    generation: u16,
    offset: usize,
    len: usize,
    kind: SlotKind,
}

impl Entry {
    const EMPTY: Entry = Entry {
        live: false,
        generation: 0,
        offset: 0,
        len: 0,
        kind: SlotKind::Scratch,
    };
}

/// First-fit slot allocator for up to `N` live slots. No heap: the table is
/// `N` entries plus an offset-ordered index, both inline.
#[derive(Debug, Clone)]
pub struct SlotTable<const N: usize> {
    entries: [Entry; N],
    /// Indices of live entries, ordered by offset.
    order: heapless::Vec<u16, N>,
    used: usize,
    peak: usize,
    by_kind: [usize; SlotKind::COUNT],
}

impl<const N: usize> Default for SlotTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SlotTable<N> {
    /// An empty table. `N` must fit in a `u16`; larger tables are refused
    /// at compile time.
    pub const fn new() -> Self {
        const {
            assert!(
                N <= u16::MAX as usize,
                "SlotTable holds at most 65535 slots"
            )
        };
        SlotTable {
            entries: [Entry::EMPTY; N],
            order: heapless::Vec::new(),
            used: 0,
            peak: 0,
            by_kind: [0; SlotKind::COUNT],
        }
    }

    /// First offset `>= from` whose absolute address is aligned.
    fn aligned(base_addr: usize, from: usize, align: usize) -> Option<usize> {
        let addr = base_addr.checked_add(from)?;
        let up = addr.checked_add(align - 1)? & !(align - 1);
        Some(from + (up - addr))
    }
}

impl<const N: usize> Slots for SlotTable<N> {
    fn alloc(
        &mut self,
        base_addr: usize,
        capacity: usize,
        len: usize,
        align: usize,
        kind: SlotKind,
    ) -> Result<Slot, ErrorKind> {
        if len == 0 || align == 0 || !align.is_power_of_two() {
            return Err(ErrorKind::InvalidArgument);
        }
        let Some(index) = self.entries.iter().position(|e| !e.live) else {
            return Err(ErrorKind::TooManySlots);
        };
        // Walk the gaps between live slots in offset order; take the first fit.
        let mut cursor = 0usize;
        let mut place = None;
        for pos in 0..=self.order.len() {
            let gap_end = match self.order.get(pos) {
                Some(&i) => self.entries[usize::from(i)].offset,
                None => capacity,
            };
            if let Some(start) = Self::aligned(base_addr, cursor, align) {
                if start.checked_add(len).is_some_and(|end| end <= gap_end) {
                    place = Some((pos, start));
                    break;
                }
            }
            if let Some(&i) = self.order.get(pos) {
                let e = &self.entries[usize::from(i)];
                cursor = e.offset + e.len;
            }
        }
        let Some((pos, offset)) = place else {
            return Err(ErrorKind::OutOfMemory);
        };
        let entry = &mut self.entries[index];
        entry.live = true;
        entry.generation = entry.generation.wrapping_add(1);
        entry.offset = offset;
        entry.len = len;
        entry.kind = kind;
        let generation = entry.generation;
        // `index < N` and `order` holds only live indices, so it has room.
        self.order
            .insert(pos, index as u16)
            .map_err(|_| ErrorKind::TooManySlots)?;
        self.used += len;
        self.peak = self.peak.max(self.used);
        self.by_kind[kind.index()] += len;
        Ok(Slot {
            index: index as u16,
            generation,
            offset,
            len,
        })
    }

    fn free(&mut self, slot: Slot) -> Result<(), ErrorKind> {
        self.check(slot)?;
        let entry = &mut self.entries[usize::from(slot.index)];
        entry.live = false;
        self.used -= entry.len;
        self.by_kind[entry.kind.index()] -= entry.len;
        if let Some(pos) = self.order.iter().position(|&i| i == slot.index) {
            self.order.remove(pos);
        }
        Ok(())
    }

    fn check(&self, slot: Slot) -> Result<Range<usize>, ErrorKind> {
        match self.entries.get(usize::from(slot.index)) {
            Some(e)
                if e.live
                    && e.generation == slot.generation
                    && e.offset == slot.offset
                    && e.len == slot.len =>
            {
                Ok(slot.range())
            }
            _ => Err(ErrorKind::StaleSlot),
        }
    }

    fn used(&self) -> usize {
        self.used
    }

    fn used_by(&self, kind: SlotKind) -> usize {
        self.by_kind[kind.index()]
    }

    fn peak(&self) -> usize {
        self.peak
    }

    fn live(&self) -> usize {
        self.order.len()
    }

    fn max_slots(&self) -> usize {
        N
    }

    fn clear(&mut self) {
        for e in self.entries.iter_mut() {
            e.live = false;
        }
        self.order.clear();
        self.used = 0;
        self.peak = 0;
        self.by_kind = [0; SlotKind::COUNT];
    }
}
