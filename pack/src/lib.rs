//! lode's offline tooling: everything that prepares a model for flash before
//! it runs, on a host with `std`.
//!
//! - [`image`]: a GGUF llama model into a lode image laid out for streaming
//!   (the library half of `lode pack`), and [`image::readback`] of a written
//!   image's FFN;
//! - [`codec`]: GGUF quantized blocks losslessly entropy-coded into units
//!   that `lode_kernel::codec` decodes;
//! - [`compress`]: which of an image's tensors `lode pack --compress`
//!   stores coded; [`requant`]: compression-aware re-quantization of their
//!   scales (`--coarse-scales`);
//! - [`gemma`]: a Gemma 3 GGUF into a (dense) lode image;
//! - [`head`]: a narrower output head for a tied model, and its quality
//!   cost;
//! - [`finite`]: the check that refuses NaN and infinite weights while a
//!   model is packed;
//! - [`bundle`]: the re-layout of a layer's FFN matrices into neuron
//!   bundles that `image` writes;
//! - [`synth`]: synthetic activation traces with planted structure, for
//!   placement and caching benchmarks;
//! - [`placement`]: each layer's neuron order on flash, from a trace;
//! - [`model_id`]: the fingerprint that ties an image or a trace to the
//!   GGUF it came from;
//! - [`prune`]: which source layers an image with layers dropped keeps,
//!   their tensor names and its fingerprint;
//! - [`profile`]: a real model's FFN activations on a text, recorded into
//!   a trace under thresholds calibrated to a sparsity, with what that
//!   sparsity costs in perplexity;
//! - [`quality`]: what an image's FFN layout costs in perplexity;
//! - [`calibration`]: a device's measured cost model as data: fitted,
//!   written and read as JSON, stored into an image;
//! - [`output`]: files written all or nothing;
//! - [`progress`]: how long jobs report their progress.
//!
//! The `clap` feature derives `clap::ValueEnum` for the enums a command line
//! takes as they are ([`placement::PlacementKind`],
//! [`profile::ScoreMode`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod calibration;
pub mod codec;
pub mod compress;
pub mod entropy;
pub mod finite;
pub mod gemma;
pub mod head;
pub mod image;
pub mod model_id;
pub mod output;
pub mod placement;
pub mod profile;
pub mod progress;
pub mod prune;
pub mod quality;
pub mod requant;
pub mod synth;
