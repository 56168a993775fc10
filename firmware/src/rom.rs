//! `RomFlash`: a read-only [`FlashDevice`] over bytes in the MCU's flash.
//!
//! The lode image sits in the firmware's read-only data, as it would in an
//! MCU's internal flash or a memory-mapped QSPI NOR part. The device reads
//! it the way every lode device reads: requests are checked against the
//! geometry by the kernel's one admission check and queued by
//! [`submit`](FlashDevice::submit), then copied into their arena slots and
//! reported by [`complete`](FlashDevice::complete). Nothing is borrowed past
//! a call and nothing is allocated: the queue is inline. It is read-only, so
//! it implements no `FlashWrite`.

use heapless::Vec;
use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    self, Completion, ErrorKind, ErrorType, FlashDevice, Geometry, ReadRequest,
};

/// Requests the device holds at once.
pub const QUEUE_DEPTH: usize = 8;

// The part the example models: the image in NOR flash behind a quad-SPI
// bus. (Here, beside the device, so that the host test that runs the flash
// conformance suite on this file uses the firmware's own geometry.)

/// Reads come in 32-byte bursts (a cache line).
pub const BLOCK: u32 = 32;
/// The most one read command moves.
pub const MAX_TRANSFER: u32 = 4096;
/// A read command costs about 1 us (the instruction, address and dummy
/// cycles plus the driver's setup) and data moves at 40 MB/s (four lines at
/// 80 MHz); the bus runs one command at a time.
pub const COST: CostModel = CostModel {
    command_ns: 1_000,
    bytes_per_sec: 40_000_000,
    queue_depth: 1,
};

/// What the device did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Read commands accepted.
    pub commands: u64,
    /// Bytes those commands read.
    pub bytes: u64,
    /// Batches accepted (calls of `submit` with at least one read).
    pub batches: u64,
    /// Time the cost model charges for the batches, in nanoseconds: what
    /// the same reads would take on the modelled part.
    pub model_ns: u64,
}

impl Counters {
    /// The counts from `earlier` to `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            commands: self.commands - earlier.commands,
            bytes: self.bytes - earlier.bytes,
            batches: self.batches - earlier.batches,
            model_ns: self.model_ns - earlier.model_ns,
        }
    }
}

/// A read-only flash device over `rom`.
pub struct RomFlash<'a> {
    rom: &'a [u8],
    geometry: Geometry,
    cost: CostModel,
    queue: Vec<ReadRequest, QUEUE_DEPTH>,
    counters: Counters,
}

impl<'a> RomFlash<'a> {
    /// A device over `rom` with `block_size`-byte blocks (a power of two),
    /// transfers of up to `max_transfer` bytes and reads priced by `cost`.
    /// Its capacity is `rom`'s length rounded down to a block.
    pub fn new(rom: &'a [u8], block_size: u32, max_transfer: u32, cost: CostModel) -> Self {
        let mut geometry = Geometry {
            block_size,
            capacity: 0,
            max_transfer,
            queue_depth: QUEUE_DEPTH as u16,
        };
        geometry.capacity = geometry.align_down(rom.len() as u64);
        RomFlash {
            rom,
            geometry,
            cost,
            queue: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Totals since creation.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Copy one request's bytes into its slot.
    fn deliver<A: DramArena>(&self, arena: &mut A, r: &ReadRequest) -> Result<(), ErrorKind> {
        let start = usize::try_from(r.offset).map_err(|_| ErrorKind::OutOfRange)?;
        let src = start
            .checked_add(r.len as usize)
            .and_then(|end| self.rom.get(start..end))
            .ok_or(ErrorKind::OutOfRange)?;
        // Checked at submit, but the slot may have been freed since.
        flash::destination_mut(arena, r)?.copy_from_slice(src);
        Ok(())
    }
}

impl ErrorType for RomFlash<'_> {
    type Error = ErrorKind;
}

impl FlashDevice for RomFlash<'_> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn cost_model(&self) -> CostModel {
        self.cost
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ErrorKind> {
        flash::admit(&self.geometry, self.queue.len(), arena, reads)?;
        if reads.is_empty() {
            return Ok(());
        }
        self.queue
            .extend_from_slice(reads)
            .map_err(|_| ErrorKind::QueueFull)?;
        let bytes = reads.iter().map(|r| u64::from(r.len)).sum::<u64>();
        let c = &mut self.counters;
        c.commands += reads.len() as u64;
        c.bytes += bytes;
        c.batches += 1;
        c.model_ns += self.cost.batch_ns(reads.len() as u64, bytes);
        Ok(())
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, ErrorKind> {
        let n = done.len().min(self.queue.len());
        for (i, out) in done.iter_mut().take(n).enumerate() {
            let r = self.queue[i];
            *out = Completion {
                tag: r.tag,
                status: self.deliver(arena, &r),
            };
        }
        // Oldest first: drop the `n` completed requests from the front.
        self.queue.rotate_left(n);
        self.queue.truncate(self.queue.len() - n);
        Ok(n)
    }

    fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
