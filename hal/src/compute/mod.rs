//! The portable CPU implementation of the kernel's `Compute` trait.
