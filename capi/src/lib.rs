//! The C interface of lode's runtime (`include/lode_runtime.h`): open a
//! model as a session under a DRAM budget, make contexts, generate with a
//! token callback, read the stats.
//!
//! Three rules keep the boundary safe for a caller who makes mistakes:
//!
//! - **No unwinding.** Every function runs its body under `catch_unwind`;
//!   a panic (a lode bug) becomes `LODE_RT_ERR_PANIC`.
//! - **Handles are numbers** ([`registry`]), never reused.
//! - **Pointers are checked as far as C allows.** NULL is
//!   `LODE_RT_ERR_NULL`; a structure whose `size` is not this library's is
//!   `LODE_RT_ERR_INVALID`; strings must be UTF-8. That memory behind a
//!   pointer is as large as stated is the caller's promise, written in
//!   each function's `# Safety`.
#![allow(unsafe_code)]
#![warn(missing_docs)]

pub mod ffi;
pub mod registry;
pub mod service_ffi;
pub mod types;

pub use ffi::*;
pub use service_ffi::*;
