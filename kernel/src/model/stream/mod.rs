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
//!   [`WeightSource`](super::WeightSource) seam, so
//!   [`Model`](super::Model)'s decode loop is the same as in memory.

mod column_reads;
mod decode;
mod explain;
mod ffn_region;
mod fixed;
mod image_model;
mod io;
mod kernels;
mod layout;
mod load;
mod plan;
mod ring;
mod schedule;
mod source;
mod sparse;
mod sparsity;
mod tensor_at;
mod units;
mod verify;

#[cfg(test)]
mod tests;

pub use column_reads::{estimate_column_reads, ColumnEstimate, ColumnReads};
pub use image_model::{arch_of, config_of};
pub use io::{read_checked, read_extent};
pub use layout::{
    AttnSpan, DenseMatrices, FfnKind, FfnRegion, SplitRows, StoredAt, StreamLayout, TensorAt,
};
pub use load::Reads;
pub use plan::{PlanBytes, StreamOptions, StreamPlan, MAX_RING};
pub use ring::{IoStats, Ring, Unit, MAX_UNITS};
pub use source::StreamSource;
pub use sparse::{SparseBuffers, SparseScratch, SparseSetup, SparseStats};
pub use sparsity::{keep_strongest, keep_strongest_groups, neurons_kept};
pub use units::CodedStreamed;
pub use verify::{verify_and_record, verify_image_data};
