//! The read path of a [`BlockFlash`]: batches admitted and queued, reads
//! handed to the engine as bounce memory frees, finished reads copied into
//! their arena slots and retired as completions.

use super::*;

impl BlockFlash {
    /// Give every backlogged read that now fits some bounce memory and hand
    /// it to the engine, then flush the engine.
    pub(super) fn pump(&mut self) -> Result<(), BlockFlashError> {
        while let Some(&id) = self.backlog.front() {
            let Some(Some(p)) = self.pending.get(usize::from(id)).copied() else {
                self.backlog.pop_front();
                continue;
            };
            match self.pool.alloc(p.req.len as usize, self.buf_align) {
                Some(slot) => {
                    self.backlog.pop_front();
                    if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                        *entry = Some(Pending {
                            bounce: Some(slot),
                            ..p
                        });
                    }
                    if let Err(kind) = self.start(id, slot, 0) {
                        let c = self.retire(id, Err(kind));
                        self.ready.push_back(c);
                    }
                }
                None if self.runner.outstanding() == 0 && self.pool.is_idle() => {
                    // Cannot fit even in an empty pool; validated options
                    // make this unreachable, but never wait on it forever.
                    self.backlog.pop_front();
                    let c = self.retire(id, Err(ErrorKind::TooLarge));
                    self.ready.push_back(c);
                }
                None => break,
            }
        }
        self.runner.flush().map_err(|e| self.engine_error(e))
    }

    /// Hand the engine the rest of read `id`, from byte `skip` on, into its
    /// bounce slot.
    #[allow(unsafe_code)]
    pub(super) fn start(&mut self, id: u16, slot: Slot, skip: u32) -> Result<(), ErrorKind> {
        let Some(Some(p)) = self.pending.get(usize::from(id)).copied() else {
            return Err(ErrorKind::Other);
        };
        let len = p.req.len.checked_sub(skip).ok_or(ErrorKind::Other)?;
        let ptr = self.pool.ptr(slot, skip as usize).ok_or(ErrorKind::Other)?;
        let pos = self
            .window
            .position(p.req.offset)
            .and_then(|x| x.checked_add(u64::from(skip)))
            .ok_or(ErrorKind::OutOfRange)?;
        let op = Op { id, ptr, len, pos };
        // SAFETY: `ptr .. ptr + len` is the tail of bounce slot `slot`
        // (`ptr` checked the slot is live and `skip <= slot.len()`, and the
        // slot was carved with the read's full length). The slot belongs to
        // read `id` alone: it is freed only in `retire`, which runs only
        // after the engine has returned this op's `Done` and no other op for
        // `id` is queued (`finish` resubmits only in place of retiring). The
        // mapping outlives the op: `Drop` drains the engine before the pool
        // is dropped, and leaks the pool if it cannot (bounce.rs, point 4).
        unsafe { self.runner.push(op) }.map_err(|_| ErrorKind::Io)?;
        bump(&mut self.stats.commands, 1);
        Ok(())
    }

    /// Turn one engine completion into a collected [`Completion`], or into
    /// a resubmission of the rest of a short or interrupted read (`None`).
    pub(super) fn finish<A: DramArena>(&mut self, arena: &mut A, d: Done) -> Option<Completion> {
        let id = d.id;
        let Some(Some(mut p)) = self.pending.get(usize::from(id)).copied() else {
            return None;
        };
        let slot = p.bounce?;
        let remaining = p.req.len.saturating_sub(p.done);
        let again = match d.result {
            Ok(n) if n >= remaining => false,
            Ok(0) => return Some(self.retire(id, Err(ErrorKind::Io))),
            Ok(n) => {
                p.done += n;
                true
            }
            Err(e) if (e == libc::EINTR || e == libc::EAGAIN) && p.retries < MAX_RETRIES => {
                p.retries += 1;
                true
            }
            Err(_) => return Some(self.retire(id, Err(ErrorKind::Io))),
        };
        if again {
            if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                *entry = Some(p);
            }
            bump(&mut self.stats.resubmits, 1);
            return match self.start(id, slot, p.done) {
                Ok(()) => None,
                Err(kind) => Some(self.retire(id, Err(kind))),
            };
        }
        let status = self.deliver(arena, &p, slot);
        Some(self.retire(id, status))
    }

    /// Copy a finished read from its bounce slot into its arena slot.
    #[allow(unsafe_code)]
    pub(super) fn deliver<A: DramArena>(
        &mut self,
        arena: &mut A,
        p: &Pending,
        slot: Slot,
    ) -> Result<(), ErrorKind> {
        let len = p.req.len as usize;
        // SAFETY: `finish` calls this only after the engine returned the last
        // op of this read, and queues none after it; so no read into `slot`
        // is in flight, and none can start until `retire` frees the slot
        // after the borrow below has ended.
        let src = unsafe { self.pool.bytes(slot) }
            .and_then(|b| b.get(..len))
            .ok_or(ErrorKind::Other)?;
        let window = flash::destination_mut(arena, &p.req)?;
        let started = Instant::now();
        window.copy_from_slice(src);
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        bump(&mut self.stats.copy_ns, ns);
        Ok(())
    }

    /// Forget read `id`: free its bounce memory and id, count it, and make
    /// its completion (the caller delivers it or queues it in `ready`).
    pub(super) fn retire(&mut self, id: u16, status: Result<(), ErrorKind>) -> Completion {
        let entry = self.pending.get_mut(usize::from(id)).and_then(Option::take);
        let Some(p) = entry else {
            return Completion {
                tag: u32::MAX,
                status: Err(ErrorKind::Other),
            };
        };
        if let Some(slot) = p.bounce {
            self.pool.free(slot);
        }
        self.free_ids.push(id);
        bump(&mut self.stats.reads, 1);
        match status {
            Ok(()) => bump(&mut self.stats.bytes_read, u64::from(p.req.len)),
            Err(_) => bump(&mut self.stats.failed_reads, 1),
        }
        Completion {
            tag: p.req.tag,
            status,
        }
    }
}

impl FlashDevice for BlockFlash {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn cost_model(&self) -> CostModel {
        self.cost
    }

    /// Admit the whole batch, accept it, and start as many reads as the
    /// bounce memory holds (the rest start as earlier ones complete). A
    /// refused batch queues nothing. An engine failure after validation
    /// (the ring's submit call failing) is an `Err` with the batch accepted:
    /// its reads stay in flight and later `complete` calls retry them.
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), BlockFlashError> {
        flash::admit(&self.geometry, self.accepted, arena, reads)?;
        for r in reads {
            // Cannot fail: fewer than queue_depth ids are in use.
            let id = self
                .free_ids
                .pop()
                .ok_or(BlockFlashError::from(ErrorKind::QueueFull))?;
            if let Some(entry) = self.pending.get_mut(usize::from(id)) {
                *entry = Some(Pending {
                    req: *r,
                    bounce: None,
                    done: 0,
                    retries: 0,
                });
            }
            self.backlog.push_back(id);
            self.accepted += 1;
        }
        let result = self.pump();
        // The reads of this batch still waiting are at the backlog's tail.
        let waiting = self.backlog.len().min(reads.len());
        bump(&mut self.stats.backlogged, waiting as u64);
        result
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, BlockFlashError> {
        let mut n = 0;
        let result = loop {
            while n < done.len() {
                let Some(c) = self.ready.pop_front() else {
                    break;
                };
                if let Some(slot) = done.get_mut(n) {
                    *slot = c;
                }
                n += 1;
            }
            if n == done.len() || self.runner.outstanding() == 0 {
                break Ok(());
            }
            let wait = n == 0;
            let mut reaped = std::mem::take(&mut self.reaped);
            reaped.clear();
            if let Err(e) = self.runner.reap(wait, done.len() - n, &mut reaped) {
                self.reaped = reaped;
                break Err(self.engine_error(e));
            }
            let got = reaped.len();
            for d in reaped.iter().copied() {
                if let Some(c) = self.finish(arena, d) {
                    if let Some(slot) = done.get_mut(n) {
                        *slot = c;
                    }
                    n += 1;
                }
            }
            self.reaped = reaped;
            if let Err(e) = self.pump() {
                break Err(e);
            }
            if got == 0 {
                break Ok(());
            }
        };
        match result {
            Ok(()) => {
                self.accepted -= n;
                Ok(n)
            }
            Err(e) => {
                // Keep what was collected for the next call.
                for c in done.iter().take(n).rev() {
                    self.ready.push_front(*c);
                }
                Err(e)
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.accepted
    }
}
