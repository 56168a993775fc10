//! Android bindings of the kernel traits, and a C interface to them.
//!
//! An Android app cannot hand lode a path: the model arrives as a file
//! descriptor (a `ParcelFileDescriptor` from the storage framework, detached
//! with `detachFd()`) or as an asset stored uncompressed inside the APK, which
//! `AssetManager` exposes as the APK's descriptor plus an offset and a length.
//!
//! - [`AndroidFlash`] turns either into a
//!   [`FlashDevice`](lode_kernel::flash::FlashDevice) read by one dedicated
//!   `pread` thread, optionally pinned to a big core, so reads overlap the
//!   engine's compute. It is `hal-linux`'s
//!   [`BlockFlash`](lode_hal_linux::BlockFlash) with its pread engine forced:
//!   io_uring is blocked for apps by seccomp, and preadv2 buys nothing here.
//! - [`MemoryBudget`] turns `onTrimMemory` levels into the number of bytes
//!   the engine may use (a small, documented policy; see [`budget`]).
//! - [`ffi`] is the C ABI declared in `include/lode.h`, so an app or firmware
//!   links the kernel with no Rust on its side: open from a descriptor and a
//!   window, read blocks, query geometry and cost model, trim, close. Every
//!   function returns an error code and never unwinds.
//!
//! The crate builds as an rlib and as a static library
//! (`cargo build -p lode-hal-android --lib --target aarch64-linux-android`
//! needs no NDK linker for either); all logic is tested on the host.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod budget;
pub mod ffi;
mod flash;

pub use budget::{BudgetError, MemoryBudget, TrimLevel};
pub use flash::{AndroidFlash, AndroidOptions, UFS31_UNCALIBRATED};
pub use lode_hal_linux::block_flash::{
    BlockFlashError, BlockFlashStats, DirectIo, OpenReport, Reason, WriteMode,
};
pub use lode_hal_linux::file_flash::Window;
