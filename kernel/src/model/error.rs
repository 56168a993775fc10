//! Errors of loading and running a model.

use core::fmt;

use lode_formats::gguf::{GgufError, Name};

use crate::{arena, compute};

/// The category of a [`ModelError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model's hyper-parameters or the run's limits are unusable.
    BadConfig,
    /// A weight tensor is missing, of the wrong shape or type, or unreadable.
    BadTensor,
    /// The DRAM arena refused a slot or a handle.
    Arena,
    /// A numeric primitive failed.
    Compute,
    /// The context is full: no room for more positions.
    ContextFull,
    /// A token id outside the vocabulary.
    BadToken,
    /// The DRAM budget cannot hold the minimum working set.
    Budget,
    /// The flash device failed, or a read of streamed weights failed.
    Flash,
    /// A lode image's layout is one this streaming cannot use.
    BadLayout,
    /// Data read from flash failed its checksum on every attempt.
    Corrupt,
    /// An internal invariant broke (a lode bug), caught as an error.
    Internal,
}

/// Why a model could not be loaded or run.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ModelError {
    /// The configuration or limits are inconsistent; the text says how.
    /// Only options, limits and plans: faults while loading or running
    /// have variants of their own.
    Config(&'static str),
    /// The image's tensors are not laid out as streaming needs (missing,
    /// scattered, of another architecture); the text says how.
    Layout(&'static str),
    /// An internal invariant broke (a lode bug, or a plan and a source of
    /// different models combined); the text says which. Never a panic.
    Internal(&'static str),
    /// Reading a tensor from the model file failed.
    Format(GgufError),
    /// A tensor exists but cannot be used as this model needs it.
    Tensor {
        /// The tensor's name.
        name: Name,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The arena refused (out of memory, too many slots, a stale handle).
    Arena(arena::ErrorKind),
    /// A compute primitive failed.
    Compute(compute::ErrorKind),
    /// Evaluating more positions would exceed the context the run was
    /// sized for.
    ContextFull {
        /// The run's `max_context`.
        max: usize,
    },
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The DRAM budget is smaller than the minimum working set.
    BudgetTooSmall {
        /// Smallest budget that works, bytes.
        need: usize,
        /// The budget given, bytes.
        have: usize,
    },
    /// The flash device refused or failed as a whole.
    Device(crate::flash::ErrorKind),
    /// The image's data does not match its checksums (or its tables).
    Image(lode_formats::image::ImageError),
    /// The arena holds other bytes than the memory plan predicted (a
    /// loader and its planner disagree: a lode bug, caught).
    PlanMismatch(super::arena_use::Mismatch),
    /// A read of streamed weights failed.
    Read {
        /// Device offset of the unit whose read failed.
        offset: u64,
        /// What the device reported.
        kind: crate::flash::ErrorKind,
        /// Times the read was tried.
        attempts: u32,
    },
    /// Streamed weights read back differently from what was verified at
    /// load, on every attempt: the medium changed under the run.
    Corrupt {
        /// Device offset of the first block that failed its checksum.
        offset: u64,
        /// Times the read was tried.
        attempts: u32,
    },
}

impl ModelError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::Config(_) => ErrorKind::BadConfig,
            ModelError::Format(_) | ModelError::Tensor { .. } => ErrorKind::BadTensor,
            ModelError::Arena(_) | ModelError::PlanMismatch(_) => ErrorKind::Arena,
            ModelError::Compute(_) => ErrorKind::Compute,
            ModelError::ContextFull { .. } => ErrorKind::ContextFull,
            ModelError::TokenOutOfRange { .. } => ErrorKind::BadToken,
            ModelError::BudgetTooSmall { .. } => ErrorKind::Budget,
            ModelError::Device(_) | ModelError::Read { .. } => ErrorKind::Flash,
            ModelError::Image(_) => ErrorKind::BadTensor,
            ModelError::Layout(_) => ErrorKind::BadLayout,
            ModelError::Corrupt { .. } => ErrorKind::Corrupt,
            ModelError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A [`ModelError::Tensor`] for the tensor `name`.
    pub fn tensor(name: &str, reason: &'static str) -> ModelError {
        ModelError::Tensor {
            name: Name::new(name),
            reason,
        }
    }

    /// Converts any arena error.
    pub fn arena<E: arena::Error>(e: E) -> ModelError {
        ModelError::Arena(e.kind())
    }

    /// Converts any compute error.
    pub fn compute<E: compute::Error>(e: E) -> ModelError {
        ModelError::Compute(e.kind())
    }
}

impl From<GgufError> for ModelError {
    fn from(e: GgufError) -> Self {
        ModelError::Format(e)
    }
}

impl From<arena::ErrorKind> for ModelError {
    fn from(e: arena::ErrorKind) -> Self {
        ModelError::Arena(e)
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Config(why) => write!(f, "invalid model configuration: {why}"),
            ModelError::Layout(why) => write!(f, "the image cannot be streamed: {why}"),
            ModelError::Internal(why) => write!(f, "internal error (a lode bug): {why}"),
            ModelError::Format(e) => write!(f, "{e}"),
            ModelError::Tensor { name, reason } => write!(f, "tensor {name}: {reason}"),
            ModelError::Arena(k) => write!(f, "DRAM arena: {k}"),
            ModelError::Compute(k) => write!(f, "compute: {k}"),
            ModelError::ContextFull { max } => {
                write!(f, "the context is full ({max} positions)")
            }
            ModelError::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            ModelError::BudgetTooSmall { need, have } => write!(
                f,
                "a DRAM budget of {have} bytes ({:.1} MiB) cannot hold the minimum working set \
                 of {need} bytes ({:.1} MiB); give at least that",
                *have as f64 / 1048576.0,
                *need as f64 / 1048576.0
            ),
            ModelError::Device(k) => write!(f, "flash device: {k}"),
            ModelError::PlanMismatch(m) => {
                write!(f, "the memory plan and the arena disagree: {m}")
            }
            ModelError::Image(e) => write!(f, "image: {e}"),
            ModelError::Read {
                offset,
                kind,
                attempts,
            } => write!(
                f,
                "reading weights at device offset {offset} failed {attempts} times: {kind}; \
                 generation stopped"
            ),
            ModelError::Corrupt { offset, attempts } => write!(
                f,
                "weights read at device offset {offset} failed their checksum {attempts} \
                 times (the data changed since it was verified at load); generation stopped"
            ),
        }
    }
}

impl core::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ModelError::Format(e) => Some(e),
            _ => None,
        }
    }
}
