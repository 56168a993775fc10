//! The C interface (`include/lode.h`): open a device over a descriptor,
//! read blocks into a caller's buffer, query geometry and cost model, pass
//! on memory-trim levels, close.
//!
//! Three rules keep the boundary safe for a caller who makes mistakes:
//!
//! - **No unwinding.** Every function runs its body under
//!   `catch_unwind`; a panic (a lode bug) becomes `LODE_ERR_PANIC`.
//! - **Handles are numbers.** An open device lives in a registry keyed by a
//!   `u64` that is never reused, so a stale, closed or invented handle is
//!   `LODE_ERR_BAD_HANDLE`, not a dangling pointer. A read holds its own
//!   reference, so `lode_close` on another thread cannot free a device under
//!   it.
//! - **Pointers are checked as far as C allows.** NULL is `LODE_ERR_NULL`; a
//!   misaligned struct pointer is `LODE_ERR_INVALID_ARGUMENT`; a structure
//!   whose `size` field is not this library's is refused. That the memory
//!   behind a pointer is as large as stated is the caller's promise, written
//!   in each function's `# Safety`.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use lode_hal_linux::block_flash::{BlockFlashError, DirectIo, Reason, WriteMode};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::{DramArena, Slot, SlotKind};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{self, Error as _, ErrorKind, FlashDevice, ReadError, ReadRequest};

use crate::budget::{MemoryBudget, TrimLevel};
use crate::flash::{AndroidFlash, AndroidOptions, UFS31_UNCALIBRATED};

/// Success.
pub const LODE_OK: i32 = 0;
/// A required pointer was NULL.
pub const LODE_ERR_NULL: i32 = -1;
/// Not an open handle.
pub const LODE_ERR_BAD_HANDLE: i32 = -2;
/// A value outside its documented range.
pub const LODE_ERR_INVALID_ARGUMENT: i32 = -3;
/// Offset or length not a multiple of the block size.
pub const LODE_ERR_MISALIGNED: i32 = -4;
/// Past the end of the device or window.
pub const LODE_ERR_OUT_OF_RANGE: i32 = -5;
/// Larger than the device allows.
pub const LODE_ERR_TOO_LARGE: i32 = -6;
/// The operating system reported an I/O error.
pub const LODE_ERR_IO: i32 = -7;
/// Not supported (for example direct I/O refused).
pub const LODE_ERR_UNSUPPORTED: i32 = -8;
/// Buffers could not be mapped.
pub const LODE_ERR_NO_MEMORY: i32 = -9;
/// An earlier failure left the handle unusable.
pub const LODE_ERR_BUSY: i32 = -10;
/// An internal bug, caught at the boundary.
pub const LODE_ERR_PANIC: i32 = -11;
/// Anything else.
pub const LODE_ERR_OTHER: i32 = -12;

/// `lode_options.flags`: try O_DIRECT.
pub const LODE_OPEN_DIRECT: u32 = 1;
/// `lode_options.flags`: writes durable on return.
pub const LODE_OPEN_DSYNC: u32 = 2;

/// `struct lode_cost_model`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LodeCostModel {
    /// Fixed cost of one read command, ns.
    pub command_ns: u32,
    /// Commands that overlap their fixed cost.
    pub queue_depth: u16,
    /// Zero.
    pub reserved: u16,
    /// Sequential bandwidth.
    pub bytes_per_sec: u64,
}

/// `struct lode_geometry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LodeGeometry {
    /// Alignment of read offsets and lengths.
    pub block_size: u32,
    /// Largest single read.
    pub max_transfer: u32,
    /// Readable bytes.
    pub capacity: u64,
    /// Reads accepted at once.
    pub queue_depth: u16,
    /// Zero.
    pub reserved: [u16; 3],
}

/// `struct lode_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LodeOptions {
    /// `sizeof(struct lode_options)`.
    pub size: u32,
    /// `LODE_OPEN_*`.
    pub flags: u32,
    /// 1..=256.
    pub queue_depth: u32,
    /// Largest single read, a multiple of 512.
    pub max_transfer: u32,
    /// Read buffers owned by lode.
    pub bounce_bytes: u64,
    /// CPU for the I/O thread, -1 for none.
    pub io_cpu: i32,
    /// Zero.
    pub reserved: u32,
    /// DRAM budget with no pressure.
    pub budget_bytes: u64,
    /// Trims never go below this.
    pub budget_floor: u64,
    /// All zero: the uncalibrated default.
    pub cost: LodeCostModel,
}

impl LodeOptions {
    fn defaults() -> Self {
        let d = AndroidOptions::default();
        LodeOptions {
            size: std::mem::size_of::<LodeOptions>() as u32,
            flags: 0,
            queue_depth: u32::from(d.queue_depth),
            max_transfer: d.max_transfer,
            bounce_bytes: d.bounce_bytes as u64,
            io_cpu: -1,
            reserved: 0,
            budget_bytes: 0,
            budget_floor: 0,
            cost: LodeCostModel::default(),
        }
    }

    /// The Rust options and the budget these describe.
    fn decode(&self) -> Result<(AndroidOptions, MemoryBudget), i32> {
        let bad = LODE_ERR_INVALID_ARGUMENT;
        if self.size as usize != std::mem::size_of::<LodeOptions>()
            || self.reserved != 0
            || self.flags & !(LODE_OPEN_DIRECT | LODE_OPEN_DSYNC) != 0
        {
            return Err(bad);
        }
        let cost = if self.cost == LodeCostModel::default() {
            UFS31_UNCALIBRATED
        } else {
            cost_from_c(&self.cost)?
        };
        let opts = AndroidOptions {
            queue_depth: u16::try_from(self.queue_depth).map_err(|_| bad)?,
            max_transfer: self.max_transfer,
            bounce_bytes: usize::try_from(self.bounce_bytes).map_err(|_| bad)?,
            io_cpu: usize::try_from(self.io_cpu).ok(),
            direct: if self.flags & LODE_OPEN_DIRECT != 0 {
                DirectIo::Auto
            } else {
                DirectIo::Off
            },
            write_mode: if self.flags & LODE_OPEN_DSYNC != 0 {
                WriteMode::Dsync
            } else {
                WriteMode::SyncOnDemand
            },
            cost_model: cost,
        };
        if self.io_cpu < -1 {
            return Err(bad);
        }
        let full = usize::try_from(self.budget_bytes).map_err(|_| bad)?;
        let floor = usize::try_from(self.budget_floor).map_err(|_| bad)?;
        let budget = MemoryBudget::new(full, floor).map_err(|_| bad)?;
        Ok((opts, budget))
    }
}

fn cost_from_c(c: &LodeCostModel) -> Result<CostModel, i32> {
    let m = CostModel {
        command_ns: c.command_ns,
        bytes_per_sec: c.bytes_per_sec,
        queue_depth: c.queue_depth,
    };
    if c.reserved != 0 || !m.is_valid() {
        return Err(LODE_ERR_INVALID_ARGUMENT);
    }
    Ok(m)
}

/// One open device: the flash, a staging slot the reads land in before
/// they are copied to the caller's buffer, and the budget.
struct Device {
    flash: AndroidFlash,
    arena: LockedArena,
    staging: Slot,
}

struct Entry {
    device: Mutex<Device>,
    budget: MemoryBudget,
}

struct Registry {
    next: u64,
    open: BTreeMap<u64, Arc<Entry>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next: 1,
    open: BTreeMap::new(),
});

/// The registry, even after a panic elsewhere (the map is never left
/// half-updated: every change is one insert or remove).
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn lookup(handle: u64) -> Result<Arc<Entry>, i32> {
    registry()
        .open
        .get(&handle)
        .cloned()
        .ok_or(LODE_ERR_BAD_HANDLE)
}

/// Run `body`, turning a panic into `LODE_ERR_PANIC`.
fn guard(body: impl FnOnce() -> Result<(), i32>) -> i32 {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LODE_OK,
        Ok(Err(code)) => code,
        Err(_) => LODE_ERR_PANIC,
    }
}

fn kind_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Misaligned => LODE_ERR_MISALIGNED,
        ErrorKind::OutOfRange => LODE_ERR_OUT_OF_RANGE,
        ErrorKind::TooLarge => LODE_ERR_TOO_LARGE,
        ErrorKind::Io | ErrorKind::PowerLoss => LODE_ERR_IO,
        ErrorKind::Unsupported => LODE_ERR_UNSUPPORTED,
        _ => LODE_ERR_OTHER,
    }
}

fn error_code(e: &BlockFlashError) -> i32 {
    match e.reason() {
        Reason::InvalidOptions(_)
        | Reason::BlockSizeTooSmall { .. }
        | Reason::Pin { .. }
        | Reason::NotAFile => LODE_ERR_INVALID_ARGUMENT,
        Reason::Bounce => LODE_ERR_NO_MEMORY,
        _ => kind_code(e.kind()),
    }
}

/// Write `value` through `out` after checking it is non-null and aligned.
///
/// # Safety
///
/// A non-null `out` must be valid for a write of one `T`.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), i32> {
    if out.is_null() {
        return Err(LODE_ERR_NULL);
    }
    if !out.is_aligned() {
        return Err(LODE_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-null and aligned (checked), valid for a write of `T` (the
    // caller's promise).
    unsafe { out.write(value) };
    Ok(())
}

/// Read a `T` through `ptr` after checking it is non-null and aligned.
///
/// # Safety
///
/// A non-null `ptr` must be valid for a read of one initialised `T`.
unsafe fn get<T: Copy>(ptr: *const T) -> Result<T, i32> {
    if ptr.is_null() {
        return Err(LODE_ERR_NULL);
    }
    if !ptr.is_aligned() {
        return Err(LODE_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-null and aligned (checked), valid for a read (the caller's
    // promise); every bit pattern of these plain C structs is a valid `T`.
    Ok(unsafe { ptr.read() })
}

/// Fill `*out` with the default options.
///
/// # Safety
///
/// `out` must be NULL or point to writable memory for a `struct lode_options`.
#[no_mangle]
pub unsafe extern "C" fn lode_options_default(out: *mut LodeOptions) -> i32 {
    // SAFETY: the caller's promise about `out` is `put`'s.
    guard(|| unsafe { put(out, LodeOptions::defaults()) })
}

/// Open a device over (a duplicate of) `fd`, exposing `length` bytes from
/// `offset` (`length` 0: to the end of the file).
///
/// # Safety
///
/// `options` must be NULL or point to a readable `struct lode_options`;
/// `out` must be NULL or point to a writable `lode_handle`.
#[no_mangle]
pub unsafe extern "C" fn lode_open_fd(
    fd: c_int,
    offset: u64,
    length: u64,
    options: *const LodeOptions,
    out: *mut u64,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err(LODE_ERR_NULL);
        }
        let raw = if options.is_null() {
            LodeOptions::defaults()
        } else {
            // Check the size field before trusting the rest of the struct.
            // SAFETY: every version of the struct starts with `size`, and
            // the caller promised a readable struct.
            let size = unsafe { get(options.cast::<u32>()) }?;
            if size as usize != std::mem::size_of::<LodeOptions>() {
                return Err(LODE_ERR_INVALID_ARGUMENT);
            }
            // SAFETY: as above, and the size matches this library's struct.
            unsafe { get(options) }?
        };
        let (opts, budget) = raw.decode()?;
        if fd < 0 {
            return Err(LODE_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and reads no
        // memory; an invalid `fd` is EBADF, not undefined behaviour.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(LODE_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: `dup` is a descriptor this call just created and nothing
        // else owns; `OwnedFd` closes it exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let window = if length == 0 {
            let file = File::from(owned.try_clone().map_err(|_| LODE_ERR_IO)?);
            let len = file.metadata().map_err(|_| LODE_ERR_IO)?.len();
            let rest = len.checked_sub(offset).ok_or(LODE_ERR_OUT_OF_RANGE)?;
            (offset, rest)
        } else {
            (offset, length)
        };
        let flash = AndroidFlash::from_fd(owned, Some(window), opts).map_err(|e| error_code(&e))?;
        let block = flash.geometry().block_size as usize;
        let chunk = flash.geometry().max_transfer as usize;
        let mut arena = LockedArena::new(chunk + block).map_err(|_| LODE_ERR_NO_MEMORY)?;
        let staging = arena
            .alloc(chunk, block, SlotKind::IoBuffer)
            .map_err(|_| LODE_ERR_NO_MEMORY)?;
        let entry = Arc::new(Entry {
            device: Mutex::new(Device {
                flash,
                arena,
                staging,
            }),
            budget,
        });
        let handle = {
            let mut reg = registry();
            let h = reg.next;
            reg.next = reg.next.checked_add(1).ok_or(LODE_ERR_OTHER)?;
            reg.open.insert(h, entry);
            h
        };
        // SAFETY: `out` is non-null (checked) and writable (the caller's
        // promise). On failure the device is closed again, not leaked.
        if let Err(code) = unsafe { put(out, handle) } {
            let entry = registry().open.remove(&handle);
            drop(entry);
            return Err(code);
        }
        Ok(())
    })
}

/// Read `len` bytes at device `offset` into `buf`.
///
/// # Safety
///
/// `buf` must be NULL (only with `len` 0) or point to `len` writable bytes
/// that nothing else accesses during the call.
#[no_mangle]
pub unsafe extern "C" fn lode_read(handle: u64, offset: u64, buf: *mut c_void, len: usize) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        if len == 0 {
            return Ok(());
        }
        if buf.is_null() {
            return Err(LODE_ERR_NULL);
        }
        if isize::try_from(len).is_err() {
            return Err(LODE_ERR_INVALID_ARGUMENT);
        }
        // SAFETY: non-null (checked), `len <= isize::MAX` (checked), `u8`
        // needs no alignment, and the caller promised `len` writable bytes
        // no one else touches while this borrow lives.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let mut dev = entry.device.lock().map_err(|_| LODE_ERR_BUSY)?;
        let dev = &mut *dev;
        let len64 = u64::try_from(len).map_err(|_| LODE_ERR_INVALID_ARGUMENT)?;
        // The whole span is admitted before any piece is read, by the
        // kernel's rule for spans a binding splits itself.
        flash::admit_span(&dev.flash.geometry(), offset, len64).map_err(kind_code)?;
        let chunk = dev.staging.len();
        let mut at = 0usize;
        for piece in out.chunks_mut(chunk) {
            let request = ReadRequest {
                tag: 0,
                offset: offset + at as u64,
                len: u32::try_from(piece.len()).map_err(|_| LODE_ERR_TOO_LARGE)?,
                dest: dev.staging,
                dest_offset: 0,
            };
            dev.flash
                .read_blocking(&mut dev.arena, &[request])
                .map_err(|e| match e {
                    ReadError::Device(e) => error_code(&e),
                    ReadError::Failed { kind, .. } => kind_code(kind),
                })?;
            let staged = dev
                .arena
                .bytes(dev.staging)
                .map_err(|_| LODE_ERR_OTHER)?
                .get(..piece.len())
                .ok_or(LODE_ERR_OTHER)?;
            piece.copy_from_slice(staged);
            at += piece.len();
        }
        Ok(())
    })
}

/// The device's geometry.
///
/// # Safety
///
/// `out` must be NULL or point to a writable `struct lode_geometry`.
#[no_mangle]
pub unsafe extern "C" fn lode_geometry(handle: u64, out: *mut LodeGeometry) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        let g = entry
            .device
            .lock()
            .map_err(|_| LODE_ERR_BUSY)?
            .flash
            .geometry();
        let value = LodeGeometry {
            block_size: g.block_size,
            max_transfer: g.max_transfer,
            capacity: g.capacity,
            queue_depth: g.queue_depth,
            reserved: [0; 3],
        };
        // SAFETY: the caller's promise about `out` is `put`'s.
        unsafe { put(out, value) }
    })
}

/// The device's cost model.
///
/// # Safety
///
/// `out` must be NULL or point to a writable `struct lode_cost_model`.
#[no_mangle]
pub unsafe extern "C" fn lode_cost_model(handle: u64, out: *mut LodeCostModel) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        let m = entry
            .device
            .lock()
            .map_err(|_| LODE_ERR_BUSY)?
            .flash
            .cost_model();
        let value = LodeCostModel {
            command_ns: m.command_ns,
            queue_depth: m.queue_depth,
            reserved: 0,
            bytes_per_sec: m.bytes_per_sec,
        };
        // SAFETY: the caller's promise about `out` is `put`'s.
        unsafe { put(out, value) }
    })
}

/// Replace the device's cost model.
///
/// # Safety
///
/// `model` must be NULL or point to a readable `struct lode_cost_model`.
#[no_mangle]
pub unsafe extern "C" fn lode_set_cost_model(handle: u64, model: *const LodeCostModel) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        // SAFETY: the caller's promise about `model` is `get`'s.
        let m = cost_from_c(&unsafe { get(model) }?)?;
        let mut dev = entry.device.lock().map_err(|_| LODE_ERR_BUSY)?;
        dev.flash.set_cost_model(m).map_err(|e| error_code(&e))
    })
}

/// Apply an `onTrimMemory` level; `*allowed` receives the bytes now allowed.
///
/// # Safety
///
/// `allowed` must be NULL or point to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn lode_trim(handle: u64, level: i32, allowed: *mut u64) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        let level = TrimLevel::from_android(level).ok_or(LODE_ERR_INVALID_ARGUMENT)?;
        let now = entry.budget.trim(level) as u64;
        if !allowed.is_null() {
            // SAFETY: non-null here; the caller's promise covers the rest.
            unsafe { put(allowed, now) }?;
        }
        Ok(())
    })
}

/// The bytes the engine may use now and the budget's change counter.
///
/// # Safety
///
/// Each pointer must be NULL or point to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn lode_budget(handle: u64, allowed: *mut u64, epoch: *mut u64) -> i32 {
    guard(|| {
        let entry = lookup(handle)?;
        if !allowed.is_null() {
            // SAFETY: non-null here; the caller's promise covers the rest.
            unsafe { put(allowed, entry.budget.allowed() as u64) }?;
        }
        if !epoch.is_null() {
            // SAFETY: as above.
            unsafe { put(epoch, entry.budget.epoch()) }?;
        }
        Ok(())
    })
}

/// Close a handle. A read in progress on another thread keeps the device
/// alive until it returns.
#[no_mangle]
pub extern "C" fn lode_close(handle: u64) -> i32 {
    guard(|| {
        let entry = registry().open.remove(&handle);
        // Dropped here, outside the registry lock: closing joins the I/O
        // thread, which must not hold up other handles.
        match entry {
            Some(e) => {
                drop(e);
                Ok(())
            }
            None => Err(LODE_ERR_BAD_HANDLE),
        }
    })
}

/// A static description of a code.
#[no_mangle]
pub extern "C" fn lode_strerror(code: i32) -> *const c_char {
    let text: &'static std::ffi::CStr = match code {
        LODE_OK => c"success",
        LODE_ERR_NULL => c"a required pointer was NULL",
        LODE_ERR_BAD_HANDLE => c"not an open lode handle",
        LODE_ERR_INVALID_ARGUMENT => c"invalid argument",
        LODE_ERR_MISALIGNED => c"offset or length is not a multiple of the block size",
        LODE_ERR_OUT_OF_RANGE => c"past the end of the device",
        LODE_ERR_TOO_LARGE => c"larger than the device allows",
        LODE_ERR_IO => c"I/O error",
        LODE_ERR_UNSUPPORTED => c"not supported",
        LODE_ERR_NO_MEMORY => c"out of memory",
        LODE_ERR_BUSY => c"the handle is unusable after an earlier failure",
        LODE_ERR_PANIC => c"internal error in lode (caught)",
        LODE_ERR_OTHER => c"other error",
        _ => c"unknown error code",
    };
    text.as_ptr()
}

#[cfg(test)]
mod tests;
