//! Devices for the kernel's own tests.

use super::*;
use crate::arena::DramArena;
use crate::cost::CostModel;
use std::vec::Vec;

/// An in-memory device that reads at completion time and can fail one offset.
pub(crate) struct RamFlash {
    pub(crate) data: Vec<u8>,
    pub(crate) geo: Geometry,
    pub(crate) queued: heapless::Vec<ReadRequest, 64>,
    pub(crate) fail_at: Option<u64>,
    pub(crate) commands: u64,
    /// Submits into an empty queue: how often the host let it drain.
    pub(crate) idle_submits: u64,
    /// Break the `complete` contract: report reads in flight, complete none.
    pub(crate) stall: bool,
    /// Complete the newest read first (the default is oldest first).
    pub(crate) lifo: bool,
    /// Most reads one `complete` call reports (0: as many as fit).
    pub(crate) per_call: usize,
    pub(crate) syncs: u64,
}

impl ErrorType for RamFlash {
    type Error = ErrorKind;
}

impl RamFlash {
    /// A device over `data` with `geo`.
    pub(crate) fn new(data: Vec<u8>, geo: Geometry) -> Self {
        RamFlash {
            data,
            geo,
            queued: heapless::Vec::new(),
            fail_at: None,
            commands: 0,
            idle_submits: 0,
            stall: false,
            lifo: true,
            per_call: 0,
            syncs: 0,
        }
    }
}

impl FlashDevice for RamFlash {
    fn geometry(&self) -> Geometry {
        self.geo
    }
    fn cost_model(&self) -> CostModel {
        CostModel {
            command_ns: 8_000,
            bytes_per_sec: 4_200_000_000,
            queue_depth: 2,
        }
    }
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ErrorKind> {
        admit(&self.geo, self.queued.len(), arena, reads)?;
        if self.queued.is_empty() && !reads.is_empty() {
            self.idle_submits += 1;
        }
        self.commands += reads.len() as u64;
        self.queued
            .extend_from_slice(reads)
            .map_err(|_| ErrorKind::QueueFull)
    }
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, ErrorKind> {
        let mut n = 0;
        let most = match self.per_call {
            0 => done.len(),
            k => k.min(done.len()),
        };
        while n < most && !self.stall {
            let next = if self.lifo {
                self.queued.pop()
            } else if self.queued.is_empty() {
                None
            } else {
                Some(self.queued.remove(0))
            };
            let Some(r) = next else { break };
            let status = if Some(r.offset) == self.fail_at {
                Err(ErrorKind::Io)
            } else {
                let src = &self.data[r.offset as usize..][..r.len as usize];
                destination_mut(arena, &r).map(|dst| dst.copy_from_slice(src))
            };
            done[n] = Completion { tag: r.tag, status };
            n += 1;
        }
        Ok(n)
    }
    fn in_flight(&self) -> usize {
        self.queued.len()
    }
}

impl FlashWrite for RamFlash {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ErrorKind> {
        admit_write(&self.geo, offset, data.len())?;
        self.data[offset as usize..][..data.len()].copy_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), ErrorKind> {
        self.syncs += 1;
        Ok(())
    }
}
