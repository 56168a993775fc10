//! lode's kernel: the hardware traits and every policy written against them.
//!
//! The kernel is `#![no_std]`, forbids `unsafe`, and never allocates on the
//! decode path: buffers are borrowed from the caller or carved from a
//! fixed [`DramArena`](arena::DramArena), and every queue and table has a
//! compile-time bound. It knows no operating system; HAL crates bind its
//! three traits to real hardware:
//!
//! - [`flash::FlashDevice`]: geometry, a [`cost::CostModel`] and
//!   split-phase batched reads (see the [`flash`] module for why), with
//!   [`flash::FlashWrite`] for media that also take writes,
//! - [`arena::DramArena`]: the DRAM budget as one region carved into slots,
//! - [`compute::Compute`]: the numeric primitives of a decode step.
//!
//! [`codec`] decodes weights that were losslessly entropy-coded (a streamed
//! unit from its I/O slot into its compute slot), so flash reads fewer bytes.
//!
//! Errors follow embedded-hal 1.0: each trait has an `Error` trait with
//! `kind()` returning a `#[non_exhaustive]` `ErrorKind`.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod arena;
pub mod cache;
pub mod codec;
pub mod compute;
pub mod cost;
pub mod fetch;
pub mod flash;
pub mod limits;
pub mod model;
#[cfg(feature = "alloc")]
pub mod placement;
pub mod plan;
#[cfg(feature = "alloc")]
pub mod profile;
pub mod rng;
pub mod swap;

pub use lode_formats as formats;
