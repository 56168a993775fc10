//! Streaming a model from flash under a DRAM budget.
//!
//! - [`StreamLayout`] finds every unit of the model in a lode image (a
//!   layer's attention span, its FFN bundles, the output head);
//! - [`StreamPlan`] splits the budget into fixed costs, an I/O ring and
//!   resident units, by the rule its module states, or says how much
//!   budget the model needs at least;
//! - [`verify_image_data`] checks the image's data against its CRCs
//!   through the device before anything is trusted;
//! - [`StreamSource`] loads the resident units and streams the rest
//!   through a [`Ring`] of I/O slots with layer-ahead prefetch, behind the
//!   [`FfnSource`](super::FfnSource) seam, so [`Model`](super::Model)'s
//!   decode loop is the same as in memory.

mod layout;
mod plan;
mod ring;
mod source;

#[cfg(test)]
mod tests;

pub use layout::{
    config_of, AttnSpan, DenseMatrices, FfnKind, FfnRegion, SplitRows, StreamLayout, TensorAt,
};
pub use plan::{PlanBytes, StreamOptions, StreamPlan, MAX_RING};
pub use ring::{IoStats, Ring, Unit, MAX_UNITS};
pub use source::{
    keep_strongest, neurons_kept, read_extent, verify_image_data, SparseBuffers, SparseScratch,
    SparseSetup, SparseStats, StreamSource,
};
