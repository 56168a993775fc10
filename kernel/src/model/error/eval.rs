//! What evaluating tokens of a context can hit.

use core::fmt;

use crate::{arena, compute, flash};

use super::super::arena_use::Mismatch;
use super::{text, ErrorKind};

/// Why evaluating positions of a context, or an operation on a context's
/// KV cache (reserving, encoding, restoring chunks), failed. A loaded
/// model's tensors and limits were checked when it was loaded, so nothing
/// here is about configuration or files: a tensor found mis-shaped while
/// running is [`EvalError::Internal`]. Loading has its own
/// [`LoadError`](super::LoadError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalError {
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
    /// The context was made for a model of another shape, or one whose
    /// buffers hold fewer positions (see
    /// [`Model::new_context`](crate::model::Model::new_context)).
    ForeignContext,
    /// The arena refused (out of memory for a KV chunk, a stale handle).
    Arena(arena::ErrorKind),
    /// A compute primitive failed.
    Compute(compute::ErrorKind),
    /// The flash device refused or failed as a whole.
    Device(flash::ErrorKind),
    /// A read of streamed weights failed on every attempt.
    Read {
        /// Device offset of the unit whose read failed.
        offset: u64,
        /// What the device reported.
        kind: flash::ErrorKind,
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
    /// The arena holds other bytes than the memory plan predicted, checked
    /// while running (a loader and its planner disagree: a lode bug).
    PlanMismatch(Mismatch),
    /// An internal invariant broke (a lode bug); the text says which.
    /// Never a panic.
    Internal(&'static str),
}

impl EvalError {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EvalError::ContextFull { .. } => ErrorKind::ContextFull,
            EvalError::TokenOutOfRange { .. } => ErrorKind::BadToken,
            EvalError::ForeignContext => ErrorKind::ForeignContext,
            EvalError::Arena(_) | EvalError::PlanMismatch(_) => ErrorKind::Arena,
            EvalError::Compute(_) => ErrorKind::Compute,
            EvalError::Device(_) | EvalError::Read { .. } => ErrorKind::Flash,
            EvalError::Corrupt { .. } => ErrorKind::Corrupt,
            EvalError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Converts any arena error.
    pub fn arena<E: arena::Error>(e: E) -> EvalError {
        EvalError::Arena(e.kind())
    }

    /// Converts any compute error.
    pub fn compute<E: compute::Error>(e: E) -> EvalError {
        EvalError::Compute(e.kind())
    }
}

impl From<arena::ErrorKind> for EvalError {
    fn from(k: arena::ErrorKind) -> Self {
        EvalError::Arena(k)
    }
}

impl From<compute::ErrorKind> for EvalError {
    fn from(k: compute::ErrorKind) -> Self {
        EvalError::Compute(k)
    }
}

impl From<Mismatch> for EvalError {
    fn from(m: Mismatch) -> Self {
        EvalError::PlanMismatch(m)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::ContextFull { max } => {
                write!(f, "the context is full ({max} positions)")
            }
            EvalError::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            EvalError::ForeignContext => {
                f.write_str("the context was made for another model or longer limits")
            }
            EvalError::Arena(k) => text::arena(f, *k),
            EvalError::Compute(k) => text::compute(f, *k),
            EvalError::Device(k) => text::device(f, *k),
            EvalError::Read {
                offset,
                kind,
                attempts,
            } => text::read(f, *offset, *kind, *attempts),
            EvalError::Corrupt { offset, attempts } => text::corrupt(f, *offset, *attempts),
            EvalError::PlanMismatch(m) => text::plan_mismatch(f, m),
            EvalError::Internal(why) => text::internal(f, why),
        }
    }
}

impl core::error::Error for EvalError {}
