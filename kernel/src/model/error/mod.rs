//! Errors of the model, one type per operation, as embedded-hal 1.0 and
//! redb do it: [`LoadError`] for planning and loading a model (the options
//! and limits, the file or image, the budget, the reads of the load pass),
//! [`EvalError`] for evaluating tokens of a context (the context's room,
//! the token ids, the reads and arithmetic of a forward pass). A caller
//! matches on the variants its operation can actually produce, and a
//! fault one operation cannot hit (a full context while loading, a
//! malformed tensor while evaluating) has no variant to handle.
//!
//! Both report one [`ErrorKind`], so code that only sorts failures (the
//! runtime's exit codes, the C interface) needs one table. Faults both
//! operations can hit keep one shared type each, converted into either
//! enum by `?`: [`arena::ErrorKind`] (what the arena views in `view.rs`
//! return), [`compute::ErrorKind`] and [`Mismatch`] (what
//! [`ArenaUse::check`](super::ArenaUse::check) returns, after loading and
//! while running). Their texts are written once, below.

use core::fmt;

use crate::{arena, compute, flash};

use super::arena_use::Mismatch;

mod eval;
mod load;
#[cfg(test)]
mod tests;

pub use eval::EvalError;
pub use load::LoadError;

/// The category of a [`LoadError`] or an [`EvalError`].
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
    /// A context was evaluated with a model it was not made for (another
    /// shape, or buffers for fewer positions): the caller mixed them up.
    ForeignContext,
}

/// The texts of the faults both enums carry, so a read that fails reads
/// the same whether loading or evaluating hit it.
mod text {
    use super::*;

    pub(super) fn arena(f: &mut fmt::Formatter<'_>, k: arena::ErrorKind) -> fmt::Result {
        write!(f, "DRAM arena: {k}")
    }

    pub(super) fn compute(f: &mut fmt::Formatter<'_>, k: compute::ErrorKind) -> fmt::Result {
        write!(f, "compute: {k}")
    }

    pub(super) fn device(f: &mut fmt::Formatter<'_>, k: flash::ErrorKind) -> fmt::Result {
        write!(f, "flash device: {k}")
    }

    pub(super) fn read(
        f: &mut fmt::Formatter<'_>,
        offset: u64,
        kind: flash::ErrorKind,
        attempts: u32,
    ) -> fmt::Result {
        write!(
            f,
            "reading weights at device offset {offset} failed {attempts} times: {kind}; \
             generation stopped"
        )
    }

    pub(super) fn corrupt(f: &mut fmt::Formatter<'_>, offset: u64, attempts: u32) -> fmt::Result {
        write!(
            f,
            "weights read at device offset {offset} failed their checksum {attempts} \
             times (the data changed since it was verified at load); generation stopped"
        )
    }

    pub(super) fn plan_mismatch(f: &mut fmt::Formatter<'_>, m: &Mismatch) -> fmt::Result {
        write!(f, "the memory plan and the arena disagree: {m}")
    }

    pub(super) fn internal(f: &mut fmt::Formatter<'_>, why: &str) -> fmt::Result {
        write!(f, "internal error (a lode bug): {why}")
    }
}
