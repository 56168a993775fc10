//! What a memory plan says the arena holds, by kind of slot: one type for
//! dense and streamed models, checked against the arena itself.
//!
//! Both planners ([`MemoryPlan`](super::MemoryPlan) for a model held whole,
//! [`StreamPlan`](super::stream::StreamPlan) for one streamed under a
//! budget) size every slot before anything is allocated, and the loaders
//! allocate exactly those sizes (every slot a whole number of
//! [`ALIGN`](super::ALIGN) bytes). [`ArenaUse::check`] compares the two
//! after loading and while running, so a loader that allocates something
//! the plan did not count (or counts twice) is caught by every test that
//! loads a model, at every budget, instead of silently overrunning the
//! budget on a device.

use core::fmt;

use crate::arena::{DramArena, SlotKind};

/// Slots a loader will allocate: their count, their lengths, and what
/// they cost in an arena whose slots start on [`ALIGN`](super::ALIGN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    /// Slot lengths added up (what [`DramArena::used_by`] reports).
    pub exact: usize,
    /// The same, each rounded up to the alignment (what they cost).
    pub aligned: usize,
    /// Slots.
    pub slots: usize,
}

impl Footprint {
    /// One more slot of `len` bytes.
    pub fn add(&mut self, len: usize) {
        self.exact = self.exact.saturating_add(len);
        self.aligned = self.aligned.saturating_add(super::weights::aligned(len));
        self.slots += 1;
    }
}

/// Arena bytes by kind of slot, as a plan predicts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArenaUse {
    /// Resident weights ([`SlotKind::Resident`]): exactly this.
    pub resident: usize,
    /// I/O slots ([`SlotKind::IoBuffer`]): exactly this once loaded.
    pub io: usize,
    /// Working buffers ([`SlotKind::Scratch`]): exactly this.
    pub scratch: usize,
    /// The neuron cache ([`SlotKind::NeuronCache`]): at most this.
    pub cache: usize,
    /// KV chunks of every context ([`SlotKind::KvChunk`]): at most this.
    pub kv: usize,
    /// The arena's capacity: its peak stays within it.
    pub capacity: usize,
}

/// A kind of slot whose use differs from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The kind (`None`: the arena's peak against its capacity).
    pub kind: Option<SlotKind>,
    /// Bytes the plan predicts (exactly, or at most).
    pub planned: usize,
    /// Bytes the arena holds.
    pub used: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Some(k) => write!(
                f,
                "{k:?} slots hold {} bytes where the memory plan has {}",
                self.used, self.planned
            ),
            None => write!(
                f,
                "the arena's peak of {} bytes exceeds the planned {}",
                self.used, self.planned
            ),
        }
    }
}

impl core::error::Error for Mismatch {}

impl ArenaUse {
    /// Checks `arena` against the plan: resident, I/O and scratch bytes
    /// equal it, the cache and the KV cache are within it, and the peak is
    /// within the capacity. Callers check after loading and may again after
    /// evaluating (the tests do, at every budget), so it returns the [`Mismatch`] itself, which
    /// [`LoadError`](super::LoadError) and [`EvalError`](super::EvalError)
    /// both convert from.
    pub fn check<A: DramArena>(&self, arena: &A) -> Result<(), Mismatch> {
        let exact = [
            (SlotKind::Resident, self.resident),
            (SlotKind::IoBuffer, self.io),
            (SlotKind::Scratch, self.scratch),
        ];
        let at_most = [
            (SlotKind::NeuronCache, self.cache),
            (SlotKind::KvChunk, self.kv),
        ];
        for (kind, planned) in exact {
            let used = arena.used_by(kind);
            if used != planned {
                return Err(Mismatch {
                    kind: Some(kind),
                    planned,
                    used,
                });
            }
        }
        for (kind, planned) in at_most {
            let used = arena.used_by(kind);
            if used > planned {
                return Err(Mismatch {
                    kind: Some(kind),
                    planned,
                    used,
                });
            }
        }
        if arena.peak() > self.capacity {
            return Err(Mismatch {
                kind: None,
                planned: self.capacity,
                used: arena.peak(),
            });
        }
        Ok(())
    }
}
