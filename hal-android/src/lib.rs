//! Android bindings of the kernel traits.
//!
//! An Android app cannot hand lode a path: the model arrives as a file
//! descriptor (a `ParcelFileDescriptor` from the storage framework, detached
//! with `detachFd()`) or as an asset stored uncompressed inside the APK, which
//! `AssetManager` exposes as the APK's descriptor plus an offset and a length.
//! [`AndroidFlash`] turns either into a
//! [`FlashDevice`](lode_kernel::flash::FlashDevice).
//!
//! The reads themselves are `hal-linux`'s [`FileFlash`](lode_hal_linux::FileFlash)
//! over a window of the file: Android is Linux underneath, and one `pread`
//! path means one set of tests. io_uring is blocked for apps by seccomp, so
//! nothing faster is attempted here; the dedicated I/O thread, the
//! memory-trim callback and the C ABI come with the Android HAL work.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod flash;

pub use flash::AndroidFlash;
pub use lode_hal_linux::file_flash::{
    FileFlashError, FileFlashOptions, FileFlashStats, Reason, Window,
};
