//! Android bindings of the kernel traits.
