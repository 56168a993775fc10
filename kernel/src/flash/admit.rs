//! Admission: the one check every device runs on a request before it queues
//! it, so all devices refuse the same requests with the same [`ErrorKind`].
//!
//! Before this module each device carried its own copy of the rules and
//! they drifted (one checked the queue room only through its container's
//! capacity, two accepted empty writes and one refused them). The order of
//! the checks is part of the contract, because a request can break several
//! rules and the kind reported must not depend on the device:
//!
//! 1. the batch fits the queue room left (`QueueFull`),
//! 2. each read's extent: non-empty and aligned (`Misaligned`), at most
//!    `max_transfer` (`TooLarge`), inside the capacity (`OutOfRange`),
//! 3. each read's destination: a live slot with room (`BadDestination`) at
//!    a block-aligned address (`Misaligned`).
//!
//! A write is checked like a read's extent, except that it is not bounded by
//! `max_transfer` (a binding splits long writes; KV chunks are written whole)
//! and has no destination: an [`admit_span`].

use crate::arena::DramArena;

use super::{ErrorKind, Geometry, ReadRequest};

/// Admit a batch of reads onto a device with `geometry` that already holds
/// `in_flight` reads: the batch fits the queue and every read passes
/// [`admit_read`]. Call it before queueing anything, so a refused batch
/// leaves the device untouched. An empty batch is always admitted.
pub fn admit<A: DramArena>(
    geometry: &Geometry,
    in_flight: usize,
    arena: &A,
    reads: &[ReadRequest],
) -> Result<(), ErrorKind> {
    let room = usize::from(geometry.queue_depth).saturating_sub(in_flight);
    if reads.len() > room {
        return Err(ErrorKind::QueueFull);
    }
    reads
        .iter()
        .try_for_each(|r| admit_read(geometry, arena, r))
}

/// Admit one read: its extent (see [`Geometry::check_extent`]) and its
/// destination, a live slot of `arena` with room for `len` bytes at
/// `dest_offset`, at a block-aligned address.
pub fn admit_read<A: DramArena>(
    geometry: &Geometry,
    arena: &A,
    r: &ReadRequest,
) -> Result<(), ErrorKind> {
    geometry.check_extent(r.offset, u64::from(r.len))?;
    let dest = arena.bytes(r.dest).map_err(|_| ErrorKind::BadDestination)?;
    let end = r.dest_offset.checked_add(r.len as usize);
    let Some(window) = end.and_then(|end| dest.get(r.dest_offset..end)) else {
        return Err(ErrorKind::BadDestination);
    };
    if !geometry.is_aligned(window.as_ptr() as usize as u64) {
        return Err(ErrorKind::Misaligned);
    }
    Ok(())
}

/// Admit a write of `len` bytes at `offset`: an [`admit_span`].
pub fn admit_write(geometry: &Geometry, offset: u64, len: usize) -> Result<(), ErrorKind> {
    let len = u64::try_from(len).map_err(|_| ErrorKind::OutOfRange)?;
    admit_span(geometry, offset, len)
}

/// Admit a span of the device of any length, for an operation a binding
/// splits into transfers itself (a write, a long synchronous read through a
/// C interface): non-empty and aligned (`Misaligned`), inside the capacity
/// (`OutOfRange`). Not bounded by `max_transfer`.
pub fn admit_span(geometry: &Geometry, offset: u64, len: u64) -> Result<(), ErrorKind> {
    if len == 0 || !geometry.is_aligned(offset) || !geometry.is_aligned(len) {
        return Err(ErrorKind::Misaligned);
    }
    geometry.check_range(offset, len)
}

/// The bytes of `arena` a read lands in, checked again at delivery time:
/// the slot may have been freed (or handed out anew) since the read was
/// admitted, and then the read must fail with `BadDestination` rather than
/// write through a stale handle.
pub fn destination_mut<'a, A: DramArena>(
    arena: &'a mut A,
    r: &ReadRequest,
) -> Result<&'a mut [u8], ErrorKind> {
    let dest = arena
        .bytes_mut(r.dest)
        .map_err(|_| ErrorKind::BadDestination)?;
    r.dest_offset
        .checked_add(r.len as usize)
        .and_then(|end| dest.get_mut(r.dest_offset..end))
        .ok_or(ErrorKind::BadDestination)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::testing::VecArena;
    use crate::arena::SlotKind;

    const G: Geometry = Geometry {
        block_size: 512,
        capacity: 1 << 20,
        max_transfer: 64 << 10,
        queue_depth: 4,
    };

    fn arena() -> VecArena {
        VecArena::new(8192)
    }

    #[test]
    fn queue_room_counts_what_is_in_flight() {
        let mut a = arena();
        let s = a.alloc(512, 512, SlotKind::IoBuffer).unwrap();
        let r = ReadRequest {
            tag: 0,
            offset: 0,
            len: 512,
            dest: s,
            dest_offset: 0,
        };
        assert_eq!(admit(&G, 0, &a, &[r; 4]), Ok(()));
        assert_eq!(admit(&G, 0, &a, &[r; 5]), Err(ErrorKind::QueueFull));
        assert_eq!(admit(&G, 3, &a, &[r; 2]), Err(ErrorKind::QueueFull));
        assert_eq!(admit(&G, 9, &a, &[]), Ok(()));
        // Room is checked before the reads: a full queue is `QueueFull` even
        // for a bad read.
        let bad = ReadRequest { offset: 1, ..r };
        assert_eq!(admit(&G, 4, &a, &[bad]), Err(ErrorKind::QueueFull));
        assert_eq!(admit(&G, 0, &a, &[r, bad]), Err(ErrorKind::Misaligned));
    }

    #[test]
    fn destinations_are_live_roomy_and_aligned() {
        let mut a = arena();
        let s = a.alloc(1024, 512, SlotKind::IoBuffer).unwrap();
        let r = ReadRequest {
            tag: 0,
            offset: 0,
            len: 512,
            dest: s,
            dest_offset: 512,
        };
        assert_eq!(admit_read(&G, &a, &r), Ok(()));
        let off = ReadRequest {
            dest_offset: 100,
            ..r
        };
        assert_eq!(admit_read(&G, &a, &off), Err(ErrorKind::Misaligned));
        let long = ReadRequest { len: 1024, ..r };
        assert_eq!(admit_read(&G, &a, &long), Err(ErrorKind::BadDestination));
        let wrap = ReadRequest {
            dest_offset: usize::MAX,
            ..r
        };
        assert_eq!(admit_read(&G, &a, &wrap), Err(ErrorKind::BadDestination));
        assert_eq!(destination_mut(&mut a, &r).map(|d| d.len()), Ok(512));
        a.free(s).unwrap();
        assert_eq!(admit_read(&G, &a, &r), Err(ErrorKind::BadDestination));
        assert_eq!(
            destination_mut(&mut a, &r).map(|d| d.len()),
            Err(ErrorKind::BadDestination)
        );
    }

    #[test]
    fn writes_are_aligned_non_empty_in_range_and_may_be_long() {
        assert_eq!(admit_write(&G, 512, 128 << 10), Ok(()));
        assert_eq!(admit_write(&G, 0, 0), Err(ErrorKind::Misaligned));
        assert_eq!(admit_write(&G, 1, 512), Err(ErrorKind::Misaligned));
        assert_eq!(admit_write(&G, 0, 100), Err(ErrorKind::Misaligned));
        assert_eq!(
            admit_write(&G, (1 << 20) - 512, 1024),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            admit_write(&G, u64::MAX - 511, 512),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(admit_span(&G, 0, 1 << 20), Ok(()));
        assert_eq!(admit_span(&G, 512, 1 << 20), Err(ErrorKind::OutOfRange));
    }
}
