//! How a [`BlockFlash`](super::BlockFlash) is opened: queue and transfer
//! limits, the bounce-buffer budget, which I/O engine and whether direct I/O
//! is required, and how writes are made durable.

use lode_kernel::cost::CostModel;

use super::error::{BlockFlashError, Reason};
use crate::file_flash::{DEV_MACHINE_DISK, MAX_QUEUE_DEPTH};

/// Which I/O engine carries the reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// io_uring when the kernel lets this process set up a ring, otherwise
    /// the pread thread pool; [`OpenReport::engine`](super::OpenReport)
    /// says which ran and why.
    #[default]
    Auto,
    /// io_uring or an error: for benchmarks that must not silently measure
    /// something else.
    IoUring,
    /// The pread thread pool even where io_uring works: how the fallback is
    /// tested, and what Android apps get (seccomp forbids io_uring there).
    Threads,
}

/// Whether to bypass the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectIo {
    /// O_DIRECT when the file system accepts it; buffered reads, reported,
    /// when it refuses (tmpfs on older kernels, some FUSE and network file
    /// systems).
    #[default]
    Auto,
    /// O_DIRECT or an error: a calibration through the page cache would
    /// measure memory, not flash.
    Require,
    /// Buffered reads through the page cache (the Android default: an app's
    /// descriptor may sit on a file system without direct I/O, and an APK
    /// asset's window is rarely block-aligned).
    Off,
}

/// How a write becomes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Writes land in the device's volatile state; `sync` makes every
    /// completed write durable with one `fdatasync`. Cheapest for a KV swap
    /// area written in bursts.
    #[default]
    SyncOnDemand,
    /// Every write is durable when it returns: the file is opened with
    /// O_DSYNC (or, for a descriptor opened elsewhere, each write is followed
    /// by `fdatasync`); `sync` has nothing left to do.
    Dsync,
}

/// Shape, engine and pricing of a [`BlockFlash`](super::BlockFlash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockFlashOptions {
    /// Block size reported in the geometry; `None` takes the alignment the
    /// device reports (BLKSSZGET, statx DIOALIGN or a probe), or 4096 for
    /// buffered I/O. An explicit value must be a power of two and a multiple
    /// of what the device needs.
    pub block_size: Option<u32>,
    /// Largest single read in bytes (a multiple of the block size, at most
    /// `bounce_bytes`). Default 1 MiB, past which this machine's bandwidth no
    /// longer grows.
    pub max_transfer: u32,
    /// Reads accepted at once (1..=256). Default 32: a UFS command queue, and
    /// where this machine's NVMe-over-virtio disk saturates.
    pub queue_depth: u16,
    /// Bytes of device-owned, page-aligned bounce memory the kernel reads
    /// into (see the module docs for why reads do not land in the arena
    /// directly). Reads that do not fit wait inside the device until earlier
    /// ones complete. Default 32 MiB: `queue_depth` reads of `max_transfer`,
    /// so a full queue of the largest reads is in flight at once. This memory
    /// is outside the arena's budget; size it down on small devices.
    pub bounce_bytes: usize,
    /// Engine choice; default [`Engine::Auto`].
    pub engine: Engine,
    /// Worker threads of the pread pool when it is used (1..=64). Default 8.
    pub threads: u16,
    /// Pin the pool's workers to this CPU (for example a phone's big core);
    /// `None` leaves placement to the scheduler. Ignored by io_uring.
    pub pin_cpu: Option<usize>,
    /// Direct-I/O choice; default [`DirectIo::Auto`].
    pub direct: DirectIo,
    /// Open for writing too (paths only; a handed-in file keeps its mode).
    pub writable: bool,
    /// Durability of writes; default [`WriteMode::SyncOnDemand`].
    pub write_mode: WriteMode,
    /// Costs reported to the scheduler; default the development disk's model,
    /// until `lode calibrate` measures the device.
    pub cost_model: CostModel,
}

impl Default for BlockFlashOptions {
    fn default() -> Self {
        BlockFlashOptions {
            block_size: None,
            max_transfer: 1 << 20,
            queue_depth: 32,
            bounce_bytes: 32 << 20,
            engine: Engine::Auto,
            threads: 8,
            pin_cpu: None,
            direct: DirectIo::Auto,
            writable: false,
            write_mode: WriteMode::SyncOnDemand,
            cost_model: DEV_MACHINE_DISK,
        }
    }
}

/// Most pread workers a pool may have: far past where a flash device's
/// queue saturates, and a bound on the threads one device can start.
pub const MAX_THREADS: u16 = 64;

impl BlockFlashOptions {
    /// Check what can be checked before the device is seen; the block size
    /// against the device's alignment is checked at open.
    pub fn validate(&self) -> Result<(), BlockFlashError> {
        let bad = |why| Err(BlockFlashError::new(Reason::InvalidOptions(why)));
        if let Some(b) = self.block_size {
            if !b.is_power_of_two() || b < 512 {
                return bad("block_size must be a power of two of at least 512");
            }
        }
        if self.queue_depth == 0 || usize::from(self.queue_depth) > MAX_QUEUE_DEPTH {
            return bad("queue_depth must be between 1 and 256");
        }
        if self.max_transfer < 512 || !self.max_transfer.is_multiple_of(512) {
            return bad("max_transfer must be a non-zero multiple of 512");
        }
        if usize::try_from(self.max_transfer).map_or(true, |m| m > self.bounce_bytes) {
            return bad("bounce_bytes must hold at least one max_transfer read");
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad("threads must be between 1 and 64");
        }
        if !self.cost_model.is_valid() {
            return bad("cost_model needs non-zero bytes_per_sec and queue_depth");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_hold_a_full_queue_of_large_reads() {
        let o = BlockFlashOptions::default();
        assert!(o.validate().is_ok());
        assert_eq!(
            o.bounce_bytes,
            usize::from(o.queue_depth) * o.max_transfer as usize
        );
        assert_eq!(o.engine, Engine::Auto);
        assert_eq!(o.direct, DirectIo::Auto);
        assert!(!o.writable);
    }

    #[test]
    fn bad_options_are_refused() {
        let base = BlockFlashOptions::default();
        let cases = [
            BlockFlashOptions {
                block_size: Some(1000),
                ..base
            },
            BlockFlashOptions {
                block_size: Some(256),
                ..base
            },
            BlockFlashOptions {
                queue_depth: 0,
                ..base
            },
            BlockFlashOptions {
                queue_depth: 257,
                ..base
            },
            BlockFlashOptions {
                max_transfer: 0,
                ..base
            },
            BlockFlashOptions {
                max_transfer: 4096 + 100,
                ..base
            },
            BlockFlashOptions {
                bounce_bytes: 4096,
                ..base
            },
            BlockFlashOptions { threads: 0, ..base },
            BlockFlashOptions {
                threads: MAX_THREADS + 1,
                ..base
            },
            BlockFlashOptions {
                cost_model: CostModel {
                    queue_depth: 0,
                    ..DEV_MACHINE_DISK
                },
                ..base
            },
        ];
        for o in cases {
            let err = o.validate().unwrap_err();
            assert!(
                matches!(err.reason(), Reason::InvalidOptions(_)),
                "{o:?}: {err}"
            );
        }
    }
}
