//! What planning and loading a model can hit.

use core::fmt;

use lode_formats::gguf::{GgufError, Name};
use lode_formats::image::ImageError;

use crate::{arena, compute, flash};

use super::super::arena_use::Mismatch;
use super::{text, ErrorKind};

/// Why a model could not be planned or loaded: its configuration and
/// limits, its file or image, the budget, and the faults of the reads and
/// allocations loading makes. Evaluating has its own
/// [`EvalError`](super::EvalError).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration or limits are inconsistent; the text says how.
    /// Only options, limits and plans: faults while loading have variants
    /// of their own.
    Config(&'static str),
    /// The image's tensors are not laid out as streaming needs (missing,
    /// scattered, of another architecture); the text says how.
    Layout(&'static str),
    /// Reading a tensor from the model file failed.
    Format(GgufError),
    /// A tensor exists but cannot be used as this model needs it.
    Tensor {
        /// The tensor's name.
        name: Name,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The image's data does not match its checksums (or its tables).
    Image(ImageError),
    /// The DRAM budget is smaller than the minimum working set.
    BudgetTooSmall {
        /// Smallest budget that works, bytes.
        need: usize,
        /// The budget given, bytes.
        have: usize,
    },
    /// The arena refused (out of memory, too many slots, a stale handle).
    Arena(arena::ErrorKind),
    /// A compute primitive failed (laying weights out as they are loaded,
    /// as a bundle FFN's fill does).
    Compute(compute::ErrorKind),
    /// The flash device refused or failed as a whole.
    Device(flash::ErrorKind),
    /// A read of the image failed on every attempt.
    Read {
        /// Device offset of the read that failed.
        offset: u64,
        /// What the device reported.
        kind: flash::ErrorKind,
        /// Times the read was tried.
        attempts: u32,
    },
    /// Resident weights read back differently from what the load pass
    /// verified, on every attempt.
    Corrupt {
        /// Device offset of the first block that failed its checksum.
        offset: u64,
        /// Times the read was tried.
        attempts: u32,
    },
    /// The arena holds other bytes than the memory plan predicted (a
    /// loader and its planner disagree: a lode bug, caught).
    PlanMismatch(Mismatch),
    /// An internal invariant broke (a lode bug, or a plan and a source of
    /// different models combined); the text says which. Never a panic.
    Internal(&'static str),
}

impl LoadError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Config(_) => ErrorKind::BadConfig,
            LoadError::Layout(_) => ErrorKind::BadLayout,
            LoadError::Format(_) | LoadError::Tensor { .. } | LoadError::Image(_) => {
                ErrorKind::BadTensor
            }
            LoadError::BudgetTooSmall { .. } => ErrorKind::Budget,
            LoadError::Arena(_) | LoadError::PlanMismatch(_) => ErrorKind::Arena,
            LoadError::Compute(_) => ErrorKind::Compute,
            LoadError::Device(_) | LoadError::Read { .. } => ErrorKind::Flash,
            LoadError::Corrupt { .. } => ErrorKind::Corrupt,
            LoadError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A [`LoadError::Tensor`] for the tensor `name`.
    pub fn tensor(name: &str, reason: &'static str) -> LoadError {
        LoadError::Tensor {
            name: Name::new(name),
            reason,
        }
    }

    /// Converts any arena error.
    pub fn arena<E: arena::Error>(e: E) -> LoadError {
        LoadError::Arena(e.kind())
    }

    /// Converts any compute error.
    pub fn compute<E: compute::Error>(e: E) -> LoadError {
        LoadError::Compute(e.kind())
    }
}

impl From<GgufError> for LoadError {
    fn from(e: GgufError) -> Self {
        LoadError::Format(e)
    }
}

impl From<ImageError> for LoadError {
    fn from(e: ImageError) -> Self {
        LoadError::Image(e)
    }
}

impl From<arena::ErrorKind> for LoadError {
    fn from(k: arena::ErrorKind) -> Self {
        LoadError::Arena(k)
    }
}

impl From<compute::ErrorKind> for LoadError {
    fn from(k: compute::ErrorKind) -> Self {
        LoadError::Compute(k)
    }
}

impl From<Mismatch> for LoadError {
    fn from(m: Mismatch) -> Self {
        LoadError::PlanMismatch(m)
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(why) => write!(f, "invalid model configuration: {why}"),
            LoadError::Layout(why) => write!(f, "the image cannot be streamed: {why}"),
            LoadError::Format(e) => write!(f, "{e}"),
            LoadError::Tensor { name, reason } => write!(f, "tensor {name}: {reason}"),
            LoadError::Image(e) => write!(f, "image: {e}"),
            LoadError::BudgetTooSmall { need, have } => write!(
                f,
                "a DRAM budget of {have} bytes ({:.1} MiB) cannot hold the minimum working set \
                 of {need} bytes ({:.1} MiB); give at least that",
                *have as f64 / 1048576.0,
                *need as f64 / 1048576.0
            ),
            LoadError::Arena(k) => text::arena(f, *k),
            LoadError::Compute(k) => text::compute(f, *k),
            LoadError::Device(k) => text::device(f, *k),
            LoadError::Read {
                offset,
                kind,
                attempts,
            } => text::read(f, *offset, *kind, *attempts),
            LoadError::Corrupt { offset, attempts } => text::corrupt(f, *offset, *attempts),
            LoadError::PlanMismatch(m) => text::plan_mismatch(f, m),
            LoadError::Internal(why) => text::internal(f, why),
        }
    }
}

impl core::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LoadError::Format(e) => Some(e),
            _ => None,
        }
    }
}
