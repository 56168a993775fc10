//! The forward pass against an independent f32 reference on a tiny random
//! model, with a naive [`Compute`] (f64 accumulation, no quantized
//! activations), so any difference is the loop's plumbing: KV chunking,
//! batching, GQA head mapping, RoPE positions, residuals, tied heads.

use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::{dequantize_row, Dims};
use lode_formats::DType;

use super::*;
use crate::arena::testing::VecArena;
use crate::compute::{
    AttentionShape, Bundles, Compute, ErrorKind as CK, KvBits, KvChunk, KvGroups, QuantMatrix,
};
use crate::rng::SplitMix64;

mod bundle;
mod errors;
mod fixture;
mod forward;
pub(crate) mod naive;
mod reference;
mod refusals;
mod skip;
mod window;

use fixture::*;
use naive::Naive;
use reference::*;
