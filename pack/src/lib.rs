//! lode's offline tooling: everything that prepares a model for flash before
//! it runs, on a host with `std`.
//!
//! - [`image`]: a GGUF llama model into a lode image laid out for streaming
//!   (the library half of `lode pack`), and [`image::readback`] of a written
//!   image's FFN;
//! - [`bundle`]: the re-layout of a layer's FFN matrices into neuron
//!   bundles that `image` writes;
//! - [`synth`]: synthetic activation traces with planted structure, for
//!   placement and caching benchmarks.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod image;
pub mod synth;
