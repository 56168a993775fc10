//! Linux bindings of the kernel traits.
//!
//! - [`FileFlash`]: a [`FlashDevice`](lode_kernel::flash::FlashDevice) over a
//!   `std::fs::File` (or a window of one, such as an uncompressed asset inside
//!   an APK), reading with positioned `pread`s. It is the plain, portable
//!   binding; direct I/O and io_uring come later as a separate device so this
//!   one stays the simple reference that the fast one is tested against.
//! - [`LockedArena`]: a [`DramArena`](lode_kernel::arena::DramArena) over one
//!   anonymous `mmap` sized to the budget, locked into RAM with `mlock` as far
//!   as `RLIMIT_MEMLOCK` allows, optionally on huge pages.
//!
//! This crate holds the operating-system code the `no_std` kernel cannot.
//! `unsafe` is denied everywhere except the two modules that call libc
//! ([`locked_arena`]'s mapping and the small `sys` module); each block there
//! carries a `SAFETY:` argument.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod file_flash;
pub mod locked_arena;
mod sys;

#[cfg(test)]
mod test_support;

pub use file_flash::{FileFlash, FileFlashError, FileFlashOptions, FileFlashStats, Window};
pub use locked_arena::{
    HugePageStatus, HugePages, LockedArena, LockedArenaError, LockedArenaOptions,
};
pub use sys::{memlock_limit, page_size};
