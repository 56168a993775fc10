//! The device traits: [`FlashDevice`] reads, [`FlashWrite`] writes.

use crate::arena::DramArena;
use crate::cost::CostModel;

use super::{Completion, ErrorType, Geometry, ReadError, ReadRequest};

/// A flash device's read side: its shape, its cost model and split-phase
/// batched reads.
///
/// A minimal in-memory device, reading synchronously at `complete` time:
///
/// ```
/// use lode_kernel::arena::{DramArena, ErrorKind as ArenaKind, SlotKind, SlotTable, Slots};
/// use lode_kernel::cost::CostModel;
/// use lode_kernel::flash::{self, Completion, ErrorKind, ErrorType, FlashDevice, Geometry, ReadRequest};
///
/// struct Ram { data: [u8; 1024], queued: heapless::Vec<ReadRequest, 4> }
///
/// impl ErrorType for Ram { type Error = ErrorKind; }
///
/// impl FlashDevice for Ram {
///     fn geometry(&self) -> Geometry {
///         Geometry { block_size: 1, capacity: 1024, max_transfer: 1024, queue_depth: 4 }
///     }
///     fn cost_model(&self) -> CostModel {
///         CostModel { command_ns: 0, bytes_per_sec: u64::MAX, queue_depth: 4 }
///     }
///     fn submit<A: DramArena>(&mut self, arena: &mut A, reads: &[ReadRequest]) -> Result<(), ErrorKind> {
///         // The one admission check: queue room, extents, destinations.
///         flash::admit(&self.geometry(), self.queued.len(), arena, reads)?;
///         self.queued.extend_from_slice(reads).map_err(|_| ErrorKind::QueueFull)
///     }
///     fn complete<A: DramArena>(&mut self, arena: &mut A, done: &mut [Completion]) -> Result<usize, ErrorKind> {
///         let mut n = 0;
///         while n < done.len() {
///             let Some(r) = self.queued.pop() else { break };
///             let src = &self.data[r.offset as usize..][..r.len as usize];
///             let status = flash::destination_mut(arena, &r).map(|dst| dst.copy_from_slice(src));
///             done[n] = Completion { tag: r.tag, status };
///             n += 1;
///         }
///         Ok(n)
///     }
///     fn in_flight(&self) -> usize { self.queued.len() }
/// }
///
/// # struct Tiny { table: SlotTable<4>, mem: [u8; 64] }
/// # impl DramArena for Tiny {
/// #     type Error = ArenaKind;
/// #     fn parts(&self) -> (&dyn Slots, &[u8]) { (&self.table, &self.mem) }
/// #     fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) { (&mut self.table, &mut self.mem) }
/// # }
/// let mut flash = Ram { data: core::array::from_fn(|i| i as u8), queued: heapless::Vec::new() };
/// let mut arena = Tiny { table: SlotTable::new(), mem: [0; 64] };
/// let slot = arena.alloc(16, 1, SlotKind::IoBuffer).unwrap();
/// let read = ReadRequest { tag: 1, offset: 100, len: 16, dest: slot, dest_offset: 0 };
/// flash.read_blocking(&mut arena, &[read]).unwrap();
/// assert_eq!(arena.bytes(slot).unwrap()[0], 100);
/// ```
pub trait FlashDevice: ErrorType {
    /// The device's fixed shape.
    fn geometry(&self) -> Geometry;

    /// How the device prices reads (measured by `lode calibrate`, or a profile).
    fn cost_model(&self) -> CostModel;

    /// Queue a batch of reads. The whole batch is admitted first (see
    /// [`admit`](super::admit)); on error nothing is queued. Returns once the
    /// reads are queued, not when they are done.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error>;

    /// Collect up to `done.len()` completions, in any order, waiting until at
    /// least one is available if any read is in flight. Returns how many were
    /// written into `done` (0 when nothing is in flight). A failed read is a
    /// completion with an error status; `Err` means the device itself failed.
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error>;

    /// Reads submitted but not yet collected.
    fn in_flight(&self) -> usize;

    /// Submit a batch and wait for all of it; the first failed read's kind is
    /// returned as the error after every read has completed.
    fn read_blocking<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ReadError<Self::Error>> {
        self.submit(arena, reads).map_err(ReadError::Device)?;
        let mut first_failure = None;
        let mut done = [Completion::EMPTY; crate::limits::BLOCKING_COMPLETIONS];
        while self.in_flight() > 0 {
            let n = self.complete(arena, &mut done).map_err(ReadError::Device)?;
            for c in &done[..n] {
                if let (Err(kind), None) = (c.status, first_failure) {
                    first_failure = Some((c.tag, kind));
                }
            }
        }
        match first_failure {
            Some((tag, kind)) => Err(ReadError::Failed { tag, kind }),
            None => Ok(()),
        }
    }
}

/// A flash device's write side, for media that take writes (the KV swap
/// area). A read-only device does not implement it.
///
/// Writes are synchronous: when `write` returns the data is in the device,
/// though not necessarily durable. Writes are admitted by
/// [`admit_write`](super::admit_write): aligned, non-empty, inside the
/// capacity, and not bounded by `max_transfer`.
pub trait FlashWrite: FlashDevice {
    /// Write `data` at `offset` (both block-aligned). Durable only after
    /// [`sync`](FlashWrite::sync).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Make every completed write durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
}

/// A device lent by `&mut` is a device: a policy (a [`Window`](super::Window),
/// a [`FaultInjector`](super::FaultInjector), a read loop) can borrow one
/// without taking it from its owner.
impl<D: FlashDevice + ?Sized> FlashDevice for &mut D {
    fn geometry(&self) -> Geometry {
        D::geometry(self)
    }

    fn cost_model(&self) -> CostModel {
        D::cost_model(self)
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error> {
        D::submit(self, arena, reads)
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error> {
        D::complete(self, arena, done)
    }

    fn in_flight(&self) -> usize {
        D::in_flight(self)
    }
}

impl<D: FlashWrite + ?Sized> FlashWrite for &mut D {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        D::write(self, offset, data)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        D::sync(self)
    }
}
