//! The fake flash device: storage in memory, time from the cost model,
//! faults from a seed.

use core::fmt;

use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    self, Completion, ErrorKind, ErrorType, FlashDevice, Geometry, ReadRequest,
};
use lode_kernel::rng::SplitMix64;

mod writes;

use super::counters::Counters;
use super::plan::FaultPlan;
use super::profile::Profile;

/// Most reads a [`FakeFlash`] holds in flight. The queue is inline (no heap),
/// so it needs a compile-time bound; 64 covers the effective overlap of every
/// profile, and a profile with a deeper protocol queue is reported with this
/// depth instead.
pub const MAX_IN_FLIGHT: usize = MAX_IN_FLIGHT_U16 as usize;
const MAX_IN_FLIGHT_U16: u16 = 64;

/// A deterministic in-memory flash device.
///
/// Reads go through the same admission as a real device
/// ([`flash::admit`]), are queued in a bounded inline queue, and are
/// copied from `storage` into arena slots when their completions are
/// collected. Each accepted batch advances a virtual clock by exactly
/// [`CostModel::batch_ns`] of its command count and bytes (plus any injected
/// latency spikes), so a read policy's I/O cost can be measured exactly and
/// identically on every machine. Batches do not overlap each other in
/// virtual time: the model prices each batch as if the device were idle
/// before it.
///
/// Faults come from a [`FaultPlan`] and one [`SplitMix64`] seeded from it:
/// the same plan and the same calls give the same faults, data and order.
///
/// `S` is any byte store: `Vec<u8>` with `alloc`, or `&mut [u8]` (or an
/// array) without it. The device's capacity is the store's length rounded
/// down to the block size. By default the fake has no volatile write cache:
/// a write reaches the store at once, and [`sync`](FlashWrite::sync) only
/// counts; [`FaultPlan::volatile_writes`] adds one.
///
/// ```
/// use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
/// use lode_hal::slice_arena::SliceArena;
/// use lode_kernel::arena::{DramArena, SlotKind};
/// use lode_kernel::flash::{FlashDevice, ReadRequest};
///
/// // No allocator needed: the medium and the DRAM budget are borrowed arrays.
/// let mut medium = [0u8; 16 * 4096];
/// medium[2 * 4096] = 42;
/// let mut flash = FakeFlash::new(&mut medium[..], &Profile::UFS40, FaultPlan::none());
///
/// let mut dram = [0u8; 3 * 4096];
/// let mut arena = SliceArena::new(&mut dram);
/// let slot = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
///
/// let read = ReadRequest { tag: 7, offset: 2 * 4096, len: 4096, dest: slot, dest_offset: 0 };
/// flash.read_blocking(&mut arena, &[read]).unwrap();
/// assert_eq!(arena.bytes(slot).unwrap()[0], 42);
///
/// // One 4 KiB read at queue depth 1, priced by the UFS 4.0 model.
/// assert_eq!(flash.counters().virtual_ns, Profile::UFS40.cost.batch_ns(1, 4096));
/// ```
pub struct FakeFlash<S> {
    storage: S,
    geometry: Geometry,
    cost: CostModel,
    plan: FaultPlan,
    rng: SplitMix64,
    queue: heapless::Vec<ReadRequest, MAX_IN_FLIGHT>,
    counters: Counters,
    /// Virtual clock: never reset, never decreases.
    now_ns: u64,
    /// Commands and bytes submitted since the queue was last empty: the run
    /// of work the device is going through without idling.
    open: (u64, u64),
    /// Bytes persisted since creation; drives the planned power loss.
    written: u64,
    powered: bool,
    /// The planned power loss has not fired yet.
    power_loss_armed: bool,
    /// No medium: see [`FakeFlash::timing_only`].
    hollow: bool,
    /// With [`FaultPlan::volatile_writes`]: the durable contents of every
    /// block written since the last sync, by block number.
    #[cfg(feature = "alloc")]
    unsynced: alloc::collections::BTreeMap<u64, alloc::vec::Vec<u8>>,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> FakeFlash<S> {
    /// A device that behaves like `profile`, over `storage`, with `plan`'s
    /// faults.
    pub fn new(storage: S, profile: &Profile, plan: FaultPlan) -> Self {
        Self::with_model(storage, profile.geometry, profile.cost, plan)
    }

    /// A device with an explicit geometry and cost model. The geometry's
    /// capacity is replaced by the store's length (rounded down to the block
    /// size) and its queue depth is capped at [`MAX_IN_FLIGHT`].
    ///
    /// A degenerate geometry does not panic: with a block size of zero every
    /// request is [`ErrorKind::Misaligned`], with a queue depth of zero every
    /// non-empty batch is [`ErrorKind::QueueFull`].
    pub fn with_model(storage: S, geometry: Geometry, cost: CostModel, plan: FaultPlan) -> Self {
        let len = u64::try_from(storage.as_ref().len()).unwrap_or(u64::MAX);
        let geometry = Geometry {
            capacity: geometry.align_down(len),
            queue_depth: geometry.queue_depth.min(MAX_IN_FLIGHT_U16),
            ..geometry
        };
        FakeFlash {
            storage,
            geometry,
            cost,
            plan,
            rng: SplitMix64::new(plan.seed),
            queue: heapless::Vec::new(),
            counters: Counters::default(),
            now_ns: 0,
            open: (0, 0),
            written: 0,
            powered: true,
            power_loss_armed: plan.power_loss_after_bytes.is_some(),
            hollow: false,
            #[cfg(feature = "alloc")]
            unsynced: alloc::collections::BTreeMap::new(),
        }
    }

    /// The medium's bytes, including the tail past the last whole block.
    pub fn storage(&self) -> &[u8] {
        self.storage.as_ref()
    }

    /// The medium's bytes, mutably: for a test to lay out an image without
    /// going through (and being counted as) device writes. Works even while
    /// the device is without power, like reprogramming the chip off-board.
    pub fn storage_mut(&mut self) -> &mut [u8] {
        self.storage.as_mut()
    }

    /// Give the backing store back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The fault plan the device was built with.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Totals since creation or the last [`reset_counters`](Self::reset_counters).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Zero the counters. The virtual clock ([`now_ns`](Self::now_ns)) keeps
    /// running, so time stays monotone across resets.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    /// The virtual clock in nanoseconds: the sum of every batch's charge since
    /// creation. Never decreases.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// `false` after a planned power loss, until [`power_cycle`](Self::power_cycle).
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Cut and restore power, as after a power loss. Reads in flight are
    /// dropped (they never complete); the medium keeps exactly what had
    /// persisted. The planned power loss does not fire again.
    pub fn power_cycle(&mut self) {
        self.powered = true;
        self.queue.clear();
    }

    fn ensure_powered(&self) -> Result<(), ErrorKind> {
        if self.powered {
            Ok(())
        } else {
            Err(ErrorKind::PowerLoss)
        }
    }

    fn lose_power(&mut self) {
        self.drop_unsynced();
        self.powered = false;
        self.power_loss_armed = false;
        self.counters.faults.power_losses = self.counters.faults.power_losses.saturating_add(1);
    }

    /// Virtual time of one accepted batch: the cost model's price plus any
    /// injected spikes (one draw per command, none when spikes are off).
    ///
    /// A batch submitted while earlier reads are still queued joins them:
    /// the device never went idle, so the batch pays what it adds to the
    /// running total, `batch_ns(all) - batch_ns(earlier)`, not a second
    /// fixed command latency. A host that refills the queue as reads
    /// complete thus pays for one long batch; one that lets it drain pays the
    /// fixed latency again. `was_idle` says the queue was empty before.
    fn charge(&mut self, reads: &[ReadRequest], was_idle: bool) {
        let commands = u64::try_from(reads.len()).unwrap_or(u64::MAX);
        let bytes = reads
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(u64::from(r.len)));
        if was_idle {
            self.open = (0, 0);
        }
        let before = self.cost.batch_ns(self.open.0, self.open.1);
        self.open = (
            self.open.0.saturating_add(commands),
            self.open.1.saturating_add(bytes),
        );
        // `batch_ns` is monotone in both arguments, so this never underflows.
        let mut ns = self
            .cost
            .batch_ns(self.open.0, self.open.1)
            .saturating_sub(before);
        if self.plan.spike_ns > 0 {
            for _ in reads {
                if self.rng.chance_ppm(self.plan.spike_ppm) {
                    ns = ns.saturating_add(self.plan.spike_ns);
                    let f = &mut self.counters.faults;
                    f.latency_spikes = f.latency_spikes.saturating_add(1);
                }
            }
        }
        self.now_ns = self.now_ns.saturating_add(ns);
        let c = &mut self.counters;
        c.virtual_ns = c.virtual_ns.saturating_add(ns);
        c.batches = c.batches.saturating_add(1);
        c.read_commands = c.read_commands.saturating_add(commands);
        c.bytes_read = c.bytes_read.saturating_add(bytes);
    }

    /// Pick the next read to complete: the oldest, or a seeded random one.
    fn next_read(&mut self) -> Option<ReadRequest> {
        let len = self.queue.len();
        if len == 0 {
            return None;
        }
        if self.plan.reorder {
            let drawn = self.rng.below(u64::try_from(len).unwrap_or(u64::MAX));
            let index = usize::try_from(drawn).unwrap_or(0).min(len - 1);
            Some(self.queue.swap_remove(index))
        } else {
            Some(self.queue.remove(0))
        }
    }

    /// Carry out one read: inject an error, or copy the data and maybe flip
    /// one bit of the copy.
    fn deliver<A: DramArena>(&mut self, arena: &mut A, r: &ReadRequest) -> Result<(), ErrorKind> {
        if self.rng.chance_ppm(self.plan.read_error_ppm) {
            let f = &mut self.counters.faults;
            f.read_errors = f.read_errors.saturating_add(1);
            return Err(ErrorKind::Io);
        }
        if self.hollow {
            // No medium: check the destination as a real read would, move
            // nothing.
            return flash::destination_mut(arena, r).map(|_| ());
        }
        let src = extent(self.storage.as_ref(), r.offset, u64::from(r.len))
            .ok_or(ErrorKind::OutOfRange)?;
        // The slot was checked at submit time, but it may have been freed (or
        // the caller may pass another arena) since: check again.
        let window = flash::destination_mut(arena, r)?;
        window.copy_from_slice(src);
        if self.rng.chance_ppm(self.plan.bit_flip_ppm) {
            let bits = u64::try_from(window.len())
                .unwrap_or(u64::MAX)
                .saturating_mul(8);
            let bit = self.rng.below(bits);
            let byte = usize::try_from(bit / 8)
                .ok()
                .and_then(|i| window.get_mut(i));
            if let Some(byte) = byte {
                *byte ^= 1 << (bit % 8);
                let f = &mut self.counters.faults;
                f.bit_flips = f.bit_flips.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// `len` bytes of `storage` at `offset`, if they are all there.
fn extent(storage: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    storage.get(start..end)
}

impl FakeFlash<[u8; 0]> {
    /// A device with no medium, for benchmarks of I/O policies over layouts
    /// far larger than RAM (a 7B model's FFN), where only time and counts
    /// matter: reads are validated against `geometry` (its capacity is kept),
    /// charged and counted exactly as on a device with storage, but deliver no
    /// bytes (destinations keep their contents); writes are validated, counted
    /// and dropped. Read errors, spikes and power loss still apply; bit flips
    /// have nothing to flip.
    pub fn timing_only(geometry: Geometry, cost: CostModel, plan: FaultPlan) -> Self {
        let mut dev = Self::with_model([], geometry, cost, plan);
        dev.geometry.capacity = geometry.capacity;
        dev.hollow = true;
        dev
    }
}

impl<S> fmt::Debug for FakeFlash<S> {
    /// Everything but the medium's bytes, which would drown the output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeFlash")
            .field("geometry", &self.geometry)
            .field("cost", &self.cost)
            .field("plan", &self.plan)
            .field("in_flight", &self.queue.len())
            .field("counters", &self.counters)
            .field("now_ns", &self.now_ns)
            .field("powered", &self.powered)
            .finish_non_exhaustive()
    }
}

impl<S> ErrorType for FakeFlash<S> {
    type Error = ErrorKind;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> FlashDevice for FakeFlash<S> {
    /// The construction geometry, with the store's capacity and a queue depth
    /// of at most [`MAX_IN_FLIGHT`].
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn cost_model(&self) -> CostModel {
        self.cost
    }

    /// Validate the whole batch, queue it, and charge its virtual time. A
    /// refused batch queues nothing, draws nothing from the generator and
    /// charges no time. An empty batch is accepted and not counted.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ErrorKind> {
        self.ensure_powered()?;
        flash::admit(&self.geometry, self.queue.len(), arena, reads)?;
        if reads.is_empty() {
            return Ok(());
        }
        let was_idle = self.queue.is_empty();
        self.queue
            .extend_from_slice(reads)
            .map_err(|_| ErrorKind::QueueFull)?;
        self.charge(reads, was_idle);
        Ok(())
    }

    /// Complete up to `done.len()` queued reads (all of them are ready at
    /// once: virtual time was charged at submission).
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, ErrorKind> {
        self.ensure_powered()?;
        let mut n = 0;
        for out in done.iter_mut() {
            let Some(r) = self.next_read() else { break };
            let status = self.deliver(arena, &r);
            *out = Completion { tag: r.tag, status };
            n += 1;
            let c = &mut self.counters;
            c.completions = c.completions.saturating_add(1);
            if status.is_err() {
                c.failed_reads = c.failed_reads.saturating_add(1);
            }
        }
        Ok(n)
    }

    /// Reads queued and not yet completed. After a power loss they stay
    /// counted (and `complete` fails) until [`FakeFlash::power_cycle`] drops them.
    fn in_flight(&self) -> usize {
        self.queue.len()
    }
}
