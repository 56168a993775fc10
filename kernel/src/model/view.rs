//! One step's view of the arena: a few slots written, everything else read.
//!
//! A forward step reads weights and KV chunks while it writes a few scratch
//! buffers, all slots of one arena. The arena hands out one mutable borrow
//! at a time, so [`split`] checks the handles against the slot table and
//! cuts the region into the slots written (`&mut`) and the gaps between them
//! (shared), without `unsafe` and without copying. [`Shared::get`] then
//! serves any other live slot from the gaps; asking it for a slot that is
//! being written is [`ErrorKind::Overlap`], not an alias.
//!
//! Every failure here is the arena's (a stale handle, an overlap, bytes
//! that are not whole floats), and loading and evaluating both cut the
//! arena this way, so these return the arena's [`ErrorKind`], which
//! [`LoadError`](super::LoadError) and [`EvalError`](super::EvalError)
//! both convert from.

use core::ops::Range;

use crate::arena::{ErrorKind, Slot, Slots};

pub use crate::limits::MAX_WRITTEN;

/// The parts of the region not handed out mutably, with their offsets.
pub struct Shared<'m> {
    table: &'m dyn Slots,
    pieces: heapless::Vec<(usize, &'m [u8]), { MAX_WRITTEN + 1 }>,
}

impl<'m> Shared<'m> {
    /// The bytes of `slot`, which must be live and not one of the written.
    pub fn get(&self, slot: Slot) -> Result<&'m [u8], ErrorKind> {
        let Range { start, end } = self.table.check(slot)?;
        for &(base, piece) in &self.pieces {
            if start >= base && end <= base + piece.len() {
                return piece
                    .get(start - base..end - base)
                    .ok_or(ErrorKind::StaleSlot);
            }
        }
        Err(ErrorKind::Overlap)
    }

    /// The f32 values of `slot`.
    pub fn f32s(&self, slot: Slot) -> Result<&'m [f32], ErrorKind> {
        f32s(self.get(slot)?)
    }
}

/// Splits `mem` (the region `table` carves) into the `K` written slots, in
/// the order given, and the shared rest.
pub fn split<'m, const K: usize>(
    table: &'m dyn Slots,
    mem: &'m mut [u8],
    written: [Slot; K],
) -> Result<([&'m mut [u8]; K], Shared<'m>), ErrorKind> {
    const { assert!(K <= MAX_WRITTEN, "too many written slots") };
    let mut order = [(0usize, 0usize, 0usize); K];
    for (i, (o, s)) in order.iter_mut().zip(written).enumerate() {
        let r = table.check(s)?;
        *o = (r.start, r.end, i);
    }
    order.sort_unstable_by_key(|o| o.0);
    let mut outs: [&'m mut [u8]; K] = core::array::from_fn(|_| <&mut [u8]>::default());
    let mut shared = Shared {
        table,
        pieces: heapless::Vec::new(),
    };
    let stale = ErrorKind::StaleSlot;
    let overlap = ErrorKind::Overlap;
    let mut rest = mem;
    let mut base = 0usize;
    for (start, end, i) in order {
        let gap = start.checked_sub(base).ok_or(overlap)?;
        let (piece, tail) = core::mem::take(&mut rest)
            .split_at_mut_checked(gap)
            .ok_or(stale)?;
        let (slot, tail) = tail.split_at_mut_checked(end - start).ok_or(stale)?;
        shared.pieces.push((base, piece)).map_err(|_| overlap)?;
        if let Some(o) = outs.get_mut(i) {
            *o = slot;
        }
        rest = tail;
        base = end;
    }
    shared.pieces.push((base, rest)).map_err(|_| overlap)?;
    Ok((outs, shared))
}

/// Bytes as f32 values (slots are allocated 4-aligned and sized in floats).
pub fn f32s(b: &[u8]) -> Result<&[f32], ErrorKind> {
    bytemuck::try_cast_slice(b).map_err(|_| ErrorKind::InvalidArgument)
}

/// Bytes as mutable f32 values.
pub fn f32s_mut(b: &mut [u8]) -> Result<&mut [f32], ErrorKind> {
    bytemuck::try_cast_slice_mut(b).map_err(|_| ErrorKind::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::testing::VecArena;
    use crate::arena::{DramArena, SlotKind};

    #[test]
    fn written_slots_and_shared_rest() {
        let mut a = VecArena::new(1024);
        let s: [Slot; 4] =
            core::array::from_fn(|i| a.alloc(64 + 64 * i, 64, SlotKind::Scratch).unwrap());
        for (i, &slot) in s.iter().enumerate() {
            a.bytes_mut(slot).unwrap().fill(i as u8 + 1);
        }
        {
            let (t, m) = a.parts_mut();
            // Given out of offset order: results come back in the order asked.
            let ([w2, w0], sh) = split(t, m, [s[2], s[0]]).unwrap();
            assert!(w2.iter().all(|&b| b == 3) && w2.len() == 192);
            assert!(w0.iter().all(|&b| b == 1));
            w2.fill(9);
            assert!(sh.get(s[1]).unwrap().iter().all(|&b| b == 2));
            assert!(sh.get(s[3]).unwrap().iter().all(|&b| b == 4));
            assert_eq!(sh.get(s[0]).err(), Some(ErrorKind::Overlap));
            w0[0] = 5;
        }
        assert_eq!(a.bytes(s[2]).unwrap()[0], 9);
        assert_eq!(a.bytes(s[0]).unwrap()[..2], [5, 1]);
    }

    #[test]
    fn the_same_slot_twice_and_stale_handles_are_errors() {
        let mut a = VecArena::new(256);
        let x = a.alloc(64, 64, SlotKind::Scratch).unwrap();
        let y = a.alloc(64, 64, SlotKind::Scratch).unwrap();
        let (t, m) = a.parts_mut();
        assert_eq!(split(t, m, [x, x]).err(), Some(ErrorKind::Overlap));
        a.free(y).unwrap();
        let (t, m) = a.parts_mut();
        assert_eq!(split(t, m, [x, y]).err(), Some(ErrorKind::StaleSlot));
        let (t, m) = a.parts_mut();
        let ([_], sh) = split(t, m, [x]).unwrap();
        assert_eq!(sh.get(y).err(), Some(ErrorKind::StaleSlot));
    }

    #[test]
    fn float_views_need_whole_aligned_floats() {
        let v = [0f32; 4];
        let b: &[u8] = bytemuck::cast_slice(&v);
        assert_eq!(f32s(b).unwrap().len(), 4);
        assert!(f32s(&b[1..5]).is_err());
        assert!(f32s(&b[..3]).is_err());
    }
}
