//! Portable bindings of the kernel traits: a deterministic fake flash, an
//! arena over a caller's buffer, and the portable CPU compute; and, for
//! every device, the flash [`conformance`] suite and [`fault`] injection.
//!
//! `no_std` without the `std` feature, so firmware can use the arena and the
//! compute; the fake flash's owned backing store needs `alloc`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod compute;
#[cfg(feature = "alloc")]
pub mod conformance;
pub mod fake;
pub mod fault;
pub mod slice_arena;
