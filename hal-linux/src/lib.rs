//! Linux bindings of the kernel traits.
