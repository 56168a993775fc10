//! Layer pruning: which layers of a model to drop, chosen by EvoP's
//! evolutionary search (`search`) on calibration windows sampled across
//! clusters of the corpus (`ccds`), and compared with the usual baselines
//! (`baselines`), each scored against the unpruned model's next-token
//! distributions (`reference`).
//!
//! Everything runs on one [`Session`](crate::Session) holding the model in
//! DRAM: a candidate is scored by skipping its layers
//! (`Session::set_skipped_layers`), never by writing an image, so a search
//! scores thousands of masks in minutes.

pub mod baselines;
pub mod ccds;
pub mod compare;
pub mod reference;
pub mod search;

use crate::error::{GenerateError, LoadError};

pub use compare::{compare_level, cut_windows, sample_windows, LevelResult, MethodResult};
pub use reference::{Reference, Score, TOP_K};
pub use search::{search, Fitness, GenerationReport, SearchOptions, SearchResult};

/// Why pruning failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum PruneError {
    /// The options cannot be run (a drop count of 0 or of every layer,
    /// no windows).
    Options(String),
    /// The model refused a mask.
    Mask(LoadError),
    /// Evaluating failed.
    Generate(GenerateError),
}

impl std::fmt::Display for PruneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneError::Options(why) => write!(f, "{why}"),
            PruneError::Mask(e) => write!(f, "{e}"),
            PruneError::Generate(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PruneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PruneError::Mask(e) => Some(e),
            PruneError::Generate(e) => Some(e),
            PruneError::Options(_) => None,
        }
    }
}

impl From<GenerateError> for PruneError {
    fn from(e: GenerateError) -> PruneError {
        PruneError::Generate(e)
    }
}

/// Refuses a drop count that leaves nothing to choose or nothing to run.
pub fn check_drop(layers: usize, drop: usize) -> Result<(), PruneError> {
    if drop == 0 || drop >= layers {
        return Err(PruneError::Options(format!(
            "dropping {drop} of {layers} layers: drop at least 1 and keep at least 1"
        )));
    }
    Ok(())
}

/// The layers of `mask`, lowest first.
pub fn layers_of(mask: u128) -> Vec<usize> {
    (0..128).filter(|&l| mask >> l & 1 == 1).collect()
}

/// Serializes a mask as the list of its layers.
pub(crate) fn mask_as_layers<S: serde::Serializer>(mask: &u128, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    layers_of(*mask).serialize(s)
}
