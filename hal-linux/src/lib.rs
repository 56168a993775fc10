//! Linux bindings of the kernel traits.
//!
//! - [`BlockFlash`]: the device for real storage. A regular file or a block
//!   device node read around the page cache (O_DIRECT, with the alignment
//!   the device reports), many reads in flight through io_uring, or through
//!   a bounded pool of pread threads where io_uring is refused; what ran, and
//!   why, is in its [`OpenReport`]. Writes for the KV swap area are made
//!   durable with `fdatasync` or O_DSYNC.
//! - [`FileFlash`]: a [`FlashDevice`](lode_kernel::flash::FlashDevice) over a
//!   `std::fs::File` (or a window of one), reading with positioned `pread`s
//!   through the page cache at `complete` time. It is the plain, portable
//!   binding, kept simple as a reference.
//! - [`LockedArena`]: a [`DramArena`](lode_kernel::arena::DramArena) over one
//!   anonymous `mmap` sized to the budget, locked into RAM with `mlock` as far
//!   as `RLIMIT_MEMLOCK` allows (the [`LockReport`](lode_kernel::arena::LockReport)
//!   says how much, and what stopped the rest), optionally on huge pages.
//! - [`MappedFile`]: a file mapped read-only whose pages can be given back
//!   once copied, so a GGUF loaded into an arena is never resident twice.
//!
//! This crate holds the operating-system code the `no_std` kernel cannot.
//! `unsafe` is denied everywhere except the modules that call libc or hand
//! the kernel memory to write asynchronously ([`locked_arena`]'s mapping,
//! [`mapped_file`], the small `sys` module, and `block_flash`'s `os`, `bounce`, `engine`, `uring`
//! and `threads` modules plus two marked functions); each block carries a
//! `SAFETY:` argument, and `block_flash/bounce.rs` holds the argument for
//! asynchronous reads as a whole.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod block_flash;
pub mod device_error;
pub mod file_flash;
pub mod locked_arena;
pub mod mapped_file;
mod sys;
pub mod window;

#[cfg(test)]
mod test_support;

pub use block_flash::{
    BlockFlash, BlockFlashError, BlockFlashOptions, BlockFlashStats, OpenReport,
};
pub use device_error::{DeviceError, DeviceReason};
pub use file_flash::{FileFlash, FileFlashError, FileFlashOptions, FileFlashStats};
pub use locked_arena::{
    HugePageStatus, HugePages, LockedArena, LockedArenaError, LockedArenaOptions,
};
pub use mapped_file::MappedFile;
pub use sys::{memlock_limit, page_size};
pub use window::Window;
