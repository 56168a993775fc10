//! One error type per service operation ([`CreateError`], [`CallError`],
//! [`DeleteError`]), each with a [`ServiceErrorKind`] a front end maps to
//! its own codes (HTTP statuses, C return values) without matching on
//! variants it does not care about.

use std::fmt;

use crate::error::GenerateError;

use super::ContextId;

/// What kind of failure a service error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// No context has this id (never made, or deleted).
    UnknownContext,
    /// The context is in the middle of another call.
    Busy,
    /// The input does not fit the positions the context has left.
    InputTooLong,
    /// The service already holds its maximum number of contexts.
    TooManyContexts,
    /// The arena cannot take the KV chunks the call needs.
    OutOfKvMemory,
    /// The request itself is unusable (empty input, sampler out of range,
    /// a chat call on a model without a chat template).
    BadRequest,
    /// Evaluating or sampling failed (a device read, the model).
    Generation,
    /// The service is shutting down and takes no new work.
    ShuttingDown,
}

/// Why a context could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// The service holds `max` contexts already.
    TooManyContexts {
        /// The limit (`--max-contexts`).
        max: usize,
    },
    /// The service is shutting down.
    ShuttingDown,
}

impl CreateError {
    /// The kind of failure.
    pub fn kind(&self) -> ServiceErrorKind {
        match self {
            CreateError::TooManyContexts { .. } => ServiceErrorKind::TooManyContexts,
            CreateError::ShuttingDown => ServiceErrorKind::ShuttingDown,
        }
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::TooManyContexts { max } => write!(
                f,
                "the service already holds its maximum of {max} contexts; delete one first"
            ),
            CreateError::ShuttingDown => f.write_str("the service is shutting down"),
        }
    }
}

impl std::error::Error for CreateError {}

/// Why a call failed. Whatever was evaluated before the failure stays in
/// the context, which remains usable.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError {
    /// No context has this id.
    UnknownContext(ContextId),
    /// The context is in another call.
    Busy(ContextId),
    /// The input needs `need` positions; the context has `room` left.
    InputTooLong {
        /// Positions the input needs (with the token left pending).
        need: usize,
        /// Positions the context has left.
        room: usize,
    },
    /// A one-shot call found the service holding `max` contexts already.
    TooManyContexts {
        /// The limit (`--max-contexts`).
        max: usize,
    },
    /// The input has no tokens.
    EmptyInput,
    /// A chat call on a model without a chat template lode understands.
    NoChatTemplate,
    /// The sampling options are out of range.
    BadOptions(String),
    /// The arena cannot take the KV chunks the call needs.
    OutOfKvMemory {
        /// Bytes of KV chunks the call needs.
        need_bytes: usize,
        /// Bytes the arena has free.
        free_bytes: usize,
    },
    /// Evaluating or sampling failed.
    Generate(GenerateError),
    /// The service is shutting down.
    ShuttingDown,
}

impl CallError {
    /// The kind of failure.
    pub fn kind(&self) -> ServiceErrorKind {
        use crate::ErrorKind as G;
        match self {
            CallError::UnknownContext(_) => ServiceErrorKind::UnknownContext,
            CallError::Busy(_) => ServiceErrorKind::Busy,
            CallError::InputTooLong { .. } => ServiceErrorKind::InputTooLong,
            CallError::TooManyContexts { .. } => ServiceErrorKind::TooManyContexts,
            CallError::EmptyInput | CallError::NoChatTemplate | CallError::BadOptions(_) => {
                ServiceErrorKind::BadRequest
            }
            CallError::OutOfKvMemory { .. } => ServiceErrorKind::OutOfKvMemory,
            CallError::Generate(e) => match e.kind() {
                G::OutOfMemory => ServiceErrorKind::OutOfKvMemory,
                G::BadPrompt => ServiceErrorKind::BadRequest,
                _ => ServiceErrorKind::Generation,
            },
            CallError::ShuttingDown => ServiceErrorKind::ShuttingDown,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownContext(id) => write!(f, "no context {id}"),
            CallError::Busy(id) => write!(f, "context {id} is in another call"),
            CallError::InputTooLong { need, room } => write!(
                f,
                "the input needs {need} positions; the context has room for {room}"
            ),
            CallError::TooManyContexts { max } => write!(
                f,
                "the service already holds its maximum of {max} contexts; delete one first"
            ),
            CallError::EmptyInput => f.write_str("the input has no tokens"),
            CallError::NoChatTemplate => {
                f.write_str("the model has no chat template lode understands (ChatML)")
            }
            CallError::BadOptions(why) => write!(f, "sampling: {why}"),
            CallError::OutOfKvMemory {
                need_bytes,
                free_bytes,
            } => write!(
                f,
                "out of KV memory: the call needs {need_bytes} bytes of KV chunks, the arena has \
                 {free_bytes} free; delete a context or reserve room for more (--max-contexts)"
            ),
            CallError::Generate(e) => write!(f, "{e}"),
            CallError::ShuttingDown => f.write_str("the service is shutting down"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Generate(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a context could not be deleted.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeleteError {
    /// No context has this id.
    UnknownContext(ContextId),
    /// The context is in a call; delete it after the call returns.
    Busy(ContextId),
    /// Its KV chunks could not be given back (an arena bookkeeping error;
    /// the context is gone all the same).
    Free(GenerateError),
    /// The swap area could not delete its copy (the context is gone from
    /// the service; the area still holds it until a later delete).
    Swap(crate::swap_store::SwapError),
}

impl DeleteError {
    /// The kind of failure.
    pub fn kind(&self) -> ServiceErrorKind {
        match self {
            DeleteError::UnknownContext(_) => ServiceErrorKind::UnknownContext,
            DeleteError::Busy(_) => ServiceErrorKind::Busy,
            DeleteError::Free(_) | DeleteError::Swap(_) => ServiceErrorKind::Generation,
        }
    }
}

impl fmt::Display for DeleteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteError::UnknownContext(id) => write!(f, "no context {id}"),
            DeleteError::Busy(id) => write!(f, "context {id} is in a call"),
            DeleteError::Free(e) => write!(f, "freeing the context's KV chunks: {e}"),
            DeleteError::Swap(e) => write!(f, "deleting the context's swapped chunks: {e}"),
        }
    }
}

impl std::error::Error for DeleteError {}
