//! `Window`: a block-aligned part of any device, as a device of its own.
//!
//! A model image and a KV swap area can share one partition; a firmware's
//! flash holds the image after the code; a test wants a device that starts
//! somewhere other than byte 0. Each is "the bytes `start .. start + len` of
//! that device". The adapter checks the window once, in [`Window::new`], then
//! on every call admits the request against the window's own geometry (so a
//! read past the window's end is `OutOfRange` even where the device goes
//! on), adds `start`, and forwards. It knows nothing of the device below, so
//! one implementation serves every binding and every test device.
//!
//! A window's start must be block-aligned: then every aligned request in the
//! window is an aligned request on the device. A byte range of a *file* that
//! starts mid-block (an asset inside an APK, which zip aligns to 4 bytes) is
//! not a window of a device but a different medium, and is the OS binding's
//! business (`lode_hal_linux::Window`).

use crate::arena::DramArena;
use crate::cost::CostModel;

use super::{
    admit, admit_write, AdapterError, Completion, ErrorKind, ErrorType, FlashDevice, FlashWrite,
    Geometry, ReadRequest,
};

pub use crate::limits::WINDOW_BATCH;

/// The bytes `start .. start + len` of device `D`, as a device whose offset 0
/// is the device's `start`.
///
/// Its geometry is the device's, with capacity `len` and a queue depth of at
/// most `BATCH`: translated requests are staged on the stack (no heap), so a
/// batch is bounded, and a window that admitted more reads in flight than
/// one batch could not forward a full batch whole. Lend the device
/// (`Window::new(&mut dev, ..)`) to use it again after the window.
///
/// `lode_hal::fault`'s example stacks a fault injector on a window over the
/// fake flash; `lode_hal::conformance` checks a window keeps the contract.
///
#[derive(Debug)]
pub struct Window<D, const BATCH: usize = WINDOW_BATCH> {
    inner: D,
    start: u64,
    geometry: Geometry,
}

impl<D: FlashDevice, const BATCH: usize> Window<D, BATCH> {
    /// The window of `len` bytes at `start` of `inner`. Both must be
    /// non-zero multiples of the block size (`start` may be 0): `Misaligned`
    /// otherwise; the window must end inside the device: `OutOfRange`
    /// otherwise.
    pub fn new(inner: D, start: u64, len: u64) -> Result<Self, ErrorKind> {
        let g = inner.geometry();
        if len == 0 || !g.is_aligned(start) || !g.is_aligned(len) {
            return Err(ErrorKind::Misaligned);
        }
        g.check_range(start, len)?;
        let batch = u16::try_from(BATCH).unwrap_or(u16::MAX);
        let geometry = Geometry {
            capacity: len,
            queue_depth: g.queue_depth.min(batch),
            ..g
        };
        Ok(Window {
            inner,
            start,
            geometry,
        })
    }

    /// Device offset of the window's first byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The device under the window.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Give the device back.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// The device offset of window offset `offset`. Only called on admitted
    /// requests, which end inside the window, so it cannot overflow; checked
    /// all the same.
    fn shift(&self, offset: u64) -> Result<u64, ErrorKind> {
        self.start.checked_add(offset).ok_or(ErrorKind::OutOfRange)
    }
}

impl<D: FlashDevice, const BATCH: usize> ErrorType for Window<D, BATCH> {
    type Error = AdapterError<D::Error>;
}

impl<D: FlashDevice, const BATCH: usize> FlashDevice for Window<D, BATCH> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The device's, as it is now (a calibration may replace it).
    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), Self::Error> {
        admit(&self.geometry, self.inner.in_flight(), arena, reads)?;
        let mut shifted: heapless::Vec<ReadRequest, BATCH> = heapless::Vec::new();
        for r in reads {
            let moved = ReadRequest {
                offset: self.shift(r.offset)?,
                ..*r
            };
            // Cannot fail: admission bounds the batch by queue_depth <= BATCH.
            shifted.push(moved).map_err(|_| ErrorKind::QueueFull)?;
        }
        self.inner
            .submit(arena, &shifted)
            .map_err(AdapterError::Device)
    }

    /// Forwarded unchanged: completions carry only the caller's tags.
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, Self::Error> {
        self.inner
            .complete(arena, done)
            .map_err(AdapterError::Device)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

impl<D: FlashWrite, const BATCH: usize> FlashWrite for Window<D, BATCH> {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        admit_write(&self.geometry, offset, data.len())?;
        let at = self.shift(offset)?;
        self.inner.write(at, data).map_err(AdapterError::Device)
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        self.inner.sync().map_err(AdapterError::Device)
    }
}

#[cfg(test)]
mod tests;
