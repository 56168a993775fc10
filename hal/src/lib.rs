//! Portable bindings of the kernel traits: a deterministic fake flash
//! ([`fake`]), an arena over a caller's buffer ([`slice_arena`]), and the
//! portable CPU compute ([`compute`]); and, for every device, the flash
//! [`conformance`] suite and [`fault`] injection. Nothing else: the
//! tokenizer is `lode-tokenizer`, the offline tooling (packing, placement,
//! profiling) `lode-pack`.
//!
//! `no_std` without the `std` feature, so firmware can use the arena and the
//! compute. `alloc` lets the compute own its activation scratch (without
//! it the caller lends it) and builds the conformance suite; `std` adds the
//! compute's thread pool and run-time instruction-set detection and
//! overrides from the environment.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod checksum;
pub mod compute;
#[cfg(feature = "alloc")]
pub mod conformance;
pub mod fake;
pub mod fault;
pub mod slice_arena;
