//! Timing reads on a real device: a closed loop that keeps `qd` reads of one
//! size in flight (as fio's `iodepth` does), replacing each read the moment
//! its completion is collected, for a fixed wall-clock time.
//!
//! Each read is submitted on its own, as fio does by default
//! (`iodepth_batch_submit=1`). Resubmitting all the reads one collection
//! returned as one batch is worse on a disk that completes requests in
//! bursts (the virtio disk of lode's development machine): the queue falls
//! into lock step, every read of a burst finishing and restarting together,
//! and 4 KiB random reads at QD32 lose 10-20% against fio.

use std::error::Error;
use std::time::{Duration, Instant};

use lode_hal_linux::{BlockFlash, LockedArena};
use lode_kernel::arena::{DramArena, Slot, SlotKind};
use lode_kernel::flash::{Completion, FlashDevice, ReadRequest};
use lode_kernel::rng::SplitMix64;
use lode_pack::calibration::{summarise, Job, Pattern, Point};

/// A device and the arena slots its reads land in, ready to run jobs.
pub struct Bench<'d> {
    dev: &'d mut BlockFlash,
    arena: LockedArena,
    slots: Vec<Slot>,
    rng: SplitMix64,
    cursor: u64,
}

impl<'d> Bench<'d> {
    /// Room for `qd` reads of up to `max_size` bytes each.
    pub fn new(
        dev: &'d mut BlockFlash,
        max_size: u32,
        qd: u16,
        seed: u64,
    ) -> Result<Self, Box<dyn Error>> {
        let block = dev.geometry().block_size.max(4096) as usize;
        let each = (max_size as usize).next_multiple_of(block);
        let mut arena = LockedArena::new(each * usize::from(qd) + block)?;
        let slots = (0..qd)
            .map(|_| arena.alloc(each, block, SlotKind::IoBuffer))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Bench {
            dev,
            arena,
            slots,
            rng: SplitMix64::new(seed),
            cursor: 0,
        })
    }

    fn offset(&mut self, job: &Job, positions: u64) -> u64 {
        let size = u64::from(job.size);
        match job.pattern {
            Pattern::Random => self.rng.below(positions) * size,
            Pattern::Sequential => {
                let at = self.cursor;
                self.cursor = (self.cursor + 1) % positions;
                at * size
            }
        }
    }

    /// Run one job to completion and summarise it.
    pub fn run(&mut self, job: &Job) -> Result<Point, Box<dyn Error>> {
        let g = self.dev.geometry();
        let qd = usize::from(job.qd);
        if qd == 0 || qd > self.slots.len() || job.qd > g.queue_depth {
            return Err(format!(
                "queue depth {} is outside 1..={}",
                job.qd,
                self.slots.len().min(usize::from(g.queue_depth))
            )
            .into());
        }
        if job.size == 0 || job.size > g.max_transfer || !g.is_aligned(u64::from(job.size)) {
            return Err(format!(
                "read size {} must be a multiple of the {}-byte block, at most {}",
                job.size, g.block_size, g.max_transfer
            )
            .into());
        }
        let positions = g.capacity / u64::from(job.size);
        if positions == 0 {
            return Err(format!(
                "the device ({} bytes) is smaller than one {}-byte read",
                g.capacity, job.size
            )
            .into());
        }
        self.cursor = 0;
        let deadline = Duration::from_secs_f64(job.seconds.max(0.0));
        let mut started = vec![Instant::now(); qd];
        let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
        let mut batch: Vec<ReadRequest> = Vec::with_capacity(qd);
        let mut done = vec![Completion::EMPTY; qd];
        let t0 = Instant::now();
        for tag in 0..qd {
            let offset = self.offset(job, positions);
            batch.push(ReadRequest {
                tag: tag as u32,
                offset,
                len: job.size,
                dest: self.slots[tag],
                dest_offset: 0,
            });
        }
        for r in &batch {
            if let Some(s) = started.get_mut(r.tag as usize) {
                *s = Instant::now();
            }
            self.dev.submit(&mut self.arena, std::slice::from_ref(r))?;
        }
        while self.dev.in_flight() > 0 {
            let n = self.dev.complete(&mut self.arena, &mut done)?;
            let now = Instant::now();
            let more = now.duration_since(t0) < deadline;
            batch.clear();
            for c in &done[..n] {
                c.status
                    .map_err(|k| format!("read tagged {} failed: {k}", c.tag))?;
                let tag = c.tag as usize;
                let began = started.get(tag).copied().ok_or("unknown completion tag")?;
                latencies
                    .push(u64::try_from(now.duration_since(began).as_nanos()).unwrap_or(u64::MAX));
                if more {
                    let offset = self.offset(job, positions);
                    batch.push(ReadRequest {
                        tag: c.tag,
                        offset,
                        len: job.size,
                        dest: self.slots[tag],
                        dest_offset: 0,
                    });
                    started[tag] = now;
                }
            }
            for r in &batch {
                self.dev.submit(&mut self.arena, std::slice::from_ref(r))?;
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        Ok(summarise(job, &mut latencies, seconds))
    }
}
