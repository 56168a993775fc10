//! `AndroidFlash`: a flash device over a descriptor the app hands in, read by
//! one dedicated I/O thread.

use std::fs::File;
use std::os::fd::OwnedFd;

use lode_hal_linux::block_flash::{
    BlockFlash, BlockFlashError, BlockFlashOptions, BlockFlashStats, DirectIo, Engine, OpenReport,
    WriteMode,
};
use lode_hal_linux::Window;
use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{Completion, ErrorType, FlashDevice, FlashWrite, Geometry, ReadRequest};

/// The cost model assumed until `lode calibrate` (or an image) says better:
/// a UFS 3.1 phone part, the same figures as `lode_hal::fake::Profile::UFS31`
/// (2.1 GB/s sequential, 100k random-read IOPS; 20 us per command with an
/// effective overlap of 2).
pub const UFS31_UNCALIBRATED: CostModel = CostModel {
    command_ns: 20_000,
    bytes_per_sec: 2_100_000_000,
    queue_depth: 2,
};

/// How an [`AndroidFlash`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AndroidOptions {
    /// Reads the kernel may queue at once. Default 32 (a UFS command queue).
    pub queue_depth: u16,
    /// Largest single read. Default 512 KiB.
    pub max_transfer: u32,
    /// Device-owned read buffers, outside the arena's budget. Default 4 MiB:
    /// the I/O thread reads one request at a time, so more buys nothing.
    pub bounce_bytes: usize,
    /// Pin the I/O thread to this CPU (a big core, whose number the app
    /// knows from `/sys/devices/system/cpu/*/cpufreq`). Default: unpinned.
    pub io_cpu: Option<usize>,
    /// Direct I/O. Default [`DirectIo::Off`]: an asset's window is rarely
    /// block-aligned and app storage often refuses O_DIRECT; `Auto` tries.
    pub direct: DirectIo,
    /// Durability of writes (the KV swap area). Default: on `sync`.
    pub write_mode: WriteMode,
    /// Costs reported to the scheduler. Default [`UFS31_UNCALIBRATED`].
    pub cost_model: CostModel,
}

impl Default for AndroidOptions {
    fn default() -> Self {
        AndroidOptions {
            queue_depth: 32,
            max_transfer: 512 << 10,
            bounce_bytes: 4 << 20,
            io_cpu: None,
            direct: DirectIo::Off,
            write_mode: WriteMode::SyncOnDemand,
            cost_model: UFS31_UNCALIBRATED,
        }
    }
}

impl AndroidOptions {
    /// The `BlockFlash` options these stand for: the pread engine with one
    /// thread, always (no io_uring, no preadv2 for apps).
    pub fn block_flash_options(&self) -> BlockFlashOptions {
        BlockFlashOptions {
            queue_depth: self.queue_depth,
            max_transfer: self.max_transfer,
            bounce_bytes: self.bounce_bytes,
            engine: Engine::Threads,
            threads: 1,
            pin_cpu: self.io_cpu,
            direct: self.direct,
            write_mode: self.write_mode,
            cost_model: self.cost_model,
            ..BlockFlashOptions::default()
        }
    }
}

/// A [`FlashDevice`] over a file descriptor owned by this process, or over
/// an uncompressed APK asset (a window of the APK's descriptor).
///
/// Reads are `pread`s on one dedicated I/O thread (optionally pinned to a
/// CPU), so [`submit`](FlashDevice::submit) returns at once and the engine
/// computes while the thread reads: PowerInfer-2's one I/O thread pipelined
/// with compute. io_uring is not tried: Android's seccomp policy for apps
/// forbids it, and a refused ring would only cost a system call to learn
/// that. Everything else (checks, bounce buffers, short reads, writes) is
/// `hal-linux`'s [`BlockFlash`], tested there.
#[derive(Debug)]
pub struct AndroidFlash {
    inner: BlockFlash,
}

impl AndroidFlash {
    /// Take ownership of `fd` (for example `ParcelFileDescriptor.detachFd()`)
    /// and expose `window` of it, `(offset, len)`, or the whole file when
    /// `None`. The descriptor is closed when the device is dropped. Writes
    /// work when the descriptor was opened for writing (mode `"rw"`).
    pub fn from_fd(
        fd: OwnedFd,
        window: Option<(u64, u64)>,
        opts: AndroidOptions,
    ) -> Result<Self, BlockFlashError> {
        let inner = BlockFlash::from_file(
            File::from(fd),
            window.map(Window::from),
            opts.block_flash_options(),
        )?;
        Ok(AndroidFlash { inner })
    }

    /// An asset stored uncompressed in the APK: `fd`, `offset` and `len` are
    /// what `AAsset_openFileDescriptor64` (or Java's `AssetFileDescriptor`)
    /// returns. Compressed assets have no descriptor; list the model under
    /// `noCompress` in the build so it stays readable in place.
    pub fn from_asset(
        fd: OwnedFd,
        offset: u64,
        len: u64,
        opts: AndroidOptions,
    ) -> Result<Self, BlockFlashError> {
        Self::from_fd(fd, Some((offset, len)), opts)
    }

    /// The window of the file the device exposes.
    pub fn window(&self) -> Window {
        self.inner.window()
    }

    /// Bytes at the end of the window short of a whole block (unreadable).
    pub fn tail_bytes(&self) -> u64 {
        self.inner.tail_bytes()
    }

    /// What was opened and how it is read.
    pub fn report(&self) -> &OpenReport {
        self.inner.report()
    }

    /// Totals of the work done so far.
    pub fn stats(&self) -> BlockFlashStats {
        self.inner.stats()
    }

    /// Replace the cost model (from a calibration or an image).
    pub fn set_cost_model(&mut self, cost: CostModel) -> Result<(), BlockFlashError> {
        self.inner.set_cost_model(cost)
    }

    /// The underlying device.
    pub fn as_block_flash(&self) -> &BlockFlash {
        &self.inner
    }
}

impl ErrorType for AndroidFlash {
    type Error = BlockFlashError;
}

impl FlashDevice for AndroidFlash {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), BlockFlashError> {
        self.inner.submit(arena, reads)
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, BlockFlashError> {
        self.inner.complete(arena, done)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

impl FlashWrite for AndroidFlash {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockFlashError> {
        self.inner.write(offset, data)
    }

    fn sync(&mut self) -> Result<(), BlockFlashError> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod contract;

#[cfg(test)]
pub(crate) mod tests;
