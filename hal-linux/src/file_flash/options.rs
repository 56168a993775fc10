//! How a [`FileFlash`](super::FileFlash) is shaped: its block size, transfer
//! and queue limits, and the cost model it reports.

use lode_kernel::cost::CostModel;

use super::error::{FileFlashError, Reason};

/// Most reads one `FileFlash` can hold queued. The queue is inline (no heap),
/// so this bounds its size; 256 requests is far beyond the 32-entry command
/// queues of UFS and the queue depths at which NVMe and virtio disks saturate.
pub const MAX_QUEUE_DEPTH: usize = 256;

/// The read costs of the disk lode is developed on, measured with fio
/// (O_DIRECT, io_uring, 2 GiB file on ext4 over virtio; `DESIGN.md`, "Facts
/// about this machine's storage"): about 50 us fixed per read plus 0.8 us per
/// KiB (1.28 GB/s), and about 80k IOPS for 4 KiB reads at QD32, which is an
/// *effective* overlap of 4 commands. It is only a starting point:
/// `lode calibrate` measures the actual device and replaces it.
pub const DEV_MACHINE_DISK: CostModel = CostModel {
    command_ns: 50_000,
    bytes_per_sec: 1_280_000_000,
    queue_depth: 4,
};

/// Shape and pricing of a [`FileFlash`](super::FileFlash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFlashOptions {
    /// Alignment of offsets, lengths and destination addresses, in bytes; a
    /// power of two. The default 4096 matches the logical block of UFS, NVMe
    /// and ext4, so plans made against this device also suit direct I/O.
    pub block_size: u32,
    /// Largest single read in bytes; a multiple of `block_size`. Default
    /// 1 MiB, past which this machine's bandwidth no longer grows.
    pub max_transfer: u32,
    /// Reads that may be queued at once (1..=[`MAX_QUEUE_DEPTH`]). Default 32,
    /// the depth of a UFS command queue.
    pub queue_depth: u16,
    /// Costs reported to the scheduler. Default [`DEV_MACHINE_DISK`].
    pub cost_model: CostModel,
    /// Open the file for writing too ([`FileFlash::open`] only; a file handed
    /// to [`FileFlash::from_file`] keeps the mode it was opened with).
    /// Default `false`: model images are read-only, the KV swap area is not.
    ///
    /// [`FileFlash::open`]: super::FileFlash::open
    /// [`FileFlash::from_file`]: super::FileFlash::from_file
    pub writable: bool,
}

impl Default for FileFlashOptions {
    fn default() -> Self {
        FileFlashOptions {
            block_size: 4096,
            max_transfer: 1 << 20,
            queue_depth: 32,
            cost_model: DEV_MACHINE_DISK,
            writable: false,
        }
    }
}

impl FileFlashOptions {
    /// Check that the options describe a usable device; every constructor
    /// calls this, so a device never exists with a zero or odd block size.
    pub fn validate(&self) -> Result<(), FileFlashError> {
        let bad = |why| Err(FileFlashError::new(Reason::InvalidOptions(why)));
        if !self.block_size.is_power_of_two() {
            return bad("block_size must be a power of two");
        }
        if self.max_transfer < self.block_size || !self.max_transfer.is_multiple_of(self.block_size)
        {
            return bad("max_transfer must be a non-zero multiple of block_size");
        }
        if self.queue_depth == 0 || usize::from(self.queue_depth) > MAX_QUEUE_DEPTH {
            return bad("queue_depth must be between 1 and MAX_QUEUE_DEPTH (256)");
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
    fn defaults_are_the_documented_machine() {
        let o = FileFlashOptions::default();
        assert_eq!(o.block_size, 4096);
        assert_eq!(o.max_transfer, 1 << 20);
        assert_eq!(o.queue_depth, 32);
        assert_eq!(o.cost_model.command_ns, 50_000);
        assert_eq!(o.cost_model.bytes_per_sec, 1_280_000_000);
        assert_eq!(o.cost_model.queue_depth, 4);
        assert!(!o.writable);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn bad_options_are_refused() {
        let base = FileFlashOptions::default();
        let cases = [
            FileFlashOptions {
                block_size: 0,
                ..base
            },
            FileFlashOptions {
                block_size: 3000,
                ..base
            },
            FileFlashOptions {
                max_transfer: 0,
                ..base
            },
            FileFlashOptions {
                max_transfer: 4096 + 512,
                ..base
            },
            FileFlashOptions {
                max_transfer: 2048,
                ..base
            },
            FileFlashOptions {
                queue_depth: 0,
                ..base
            },
            FileFlashOptions {
                queue_depth: MAX_QUEUE_DEPTH as u16 + 1,
                ..base
            },
            FileFlashOptions {
                cost_model: CostModel {
                    bytes_per_sec: 0,
                    ..DEV_MACHINE_DISK
                },
                ..base
            },
        ];
        for opts in cases {
            let err = opts.validate().unwrap_err();
            assert!(
                matches!(err.reason(), Reason::InvalidOptions(_)),
                "{opts:?} gave {err}"
            );
        }
        let edge = FileFlashOptions {
            block_size: 512,
            max_transfer: 512,
            queue_depth: MAX_QUEUE_DEPTH as u16,
            ..base
        };
        assert!(edge.validate().is_ok());
    }
}
