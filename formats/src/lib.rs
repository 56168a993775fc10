//! Byte layouts of lode, parsed from byte slices without allocation.
//!
//! Every reader here validates before it trusts: lengths, alignment, versions,
//! ranges and checksums are checked and each failure is a typed error. Writers
//! need `std` (feature `std`), as does `input`, which opens the files the
//! readers parse without blocking on or reading past what is not a file.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod checksum;
pub mod dtype;
pub mod gguf;
pub mod image;
#[cfg(feature = "std")]
pub mod input;
pub mod shape;
pub mod swap;
pub mod trace;

pub use dtype::DType;
pub use shape::ModelShape;
