//! Arenas for the kernel's own tests.
use super::*;
use std::vec;
use std::vec::Vec;

/// A heap-backed arena with room for 256 slots.
pub(crate) struct VecArena {
    table: SlotTable<256>,
    mem: Vec<u8>,
}

impl VecArena {
    pub(crate) fn new(capacity: usize) -> Self {
        VecArena {
            table: SlotTable::new(),
            mem: vec![0; capacity],
        }
    }
}

impl DramArena for VecArena {
    type Error = ErrorKind;
    fn parts(&self) -> (&dyn Slots, &[u8]) {
        (&self.table, &self.mem)
    }
    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
        (&mut self.table, &mut self.mem)
    }
}
