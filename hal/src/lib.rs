//! Portable bindings of the kernel traits: a deterministic fake flash, an
//! arena over a caller's buffer, and (later) the portable CPU compute.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
