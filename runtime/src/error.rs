//! One error type per operation: opening a model file ([`OpenError`]),
//! loading a session ([`LoadError`]) and generating ([`GenerateError`]),
//! each with a `kind()` a caller can match on, as embedded-hal 1.0 does.

use std::fmt;
use std::path::PathBuf;

use lode_formats::gguf::GgufError;
use lode_formats::input::InputError;
use lode_hal::compute::sample::SampleError;
use lode_hal_linux::LockedArenaError;
use lode_kernel::model::{EvalError, LoadError as ModelLoadError};
use lode_tokenizer::TokenizerError;

use crate::image_file::ImageFileError;

/// What kind of failure an error is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A file could not be read (missing, unreadable).
    Io,
    /// The file is not a model lode can run (format, version, architecture,
    /// tokenizer), or its data does not match its checksums.
    BadModel,
    /// An option is out of range or does not fit this model.
    BadOptions,
    /// The DRAM budget or the arena cannot hold what is needed.
    OutOfMemory,
    /// The flash device refused or failed a read, or delivered data that
    /// failed its checksum on every attempt.
    Device,
    /// The prompt is empty or does not fit the context.
    BadPrompt,
    /// The context is full.
    ContextFull,
    /// A numeric or sampling failure while generating.
    Compute,
    /// An internal invariant broke (a lode bug), caught as an error.
    Internal,
}

/// Why a model file could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The path was refused before reading (a FIFO, a directory, a
    /// character device), could not be opened, or is larger than the
    /// format allows.
    Input(InputError),
    /// The file is not a GGUF llama model lode can use.
    Gguf {
        /// The file.
        path: PathBuf,
        /// What the reader found.
        source: GgufError,
    },
    /// The file is a lode image that cannot be used.
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ImageFileError,
    },
    /// The model's shape or its tokenizer is one lode cannot run.
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl OpenError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Read { .. } | OpenError::Input(_) => ErrorKind::Io,
            OpenError::Image {
                source: ImageFileError::Io(_) | ImageFileError::Input(_),
                ..
            } => ErrorKind::Io,
            _ => ErrorKind::BadModel,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            OpenError::Input(e) => write!(f, "{e}"),
            OpenError::Gguf { path, source } => write!(f, "{}: {source}", path.display()),
            OpenError::Image { path, source } => write!(f, "{}: {source}", path.display()),
            OpenError::Model { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Read { source, .. } => Some(source),
            OpenError::Input(e) => Some(e),
            OpenError::Gguf { source, .. } => Some(source),
            OpenError::Image { source, .. } => Some(source),
            OpenError::Model { .. } => None,
        }
    }
}

/// Why a session could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// An option is out of range, or needs another kind of model file.
    Options(String),
    /// The device could not be opened.
    Device(String),
    /// The DRAM arena could not be created.
    Arena(LockedArenaError),
    /// The CPU backend could not start (threads, scratch).
    Compute(lode_kernel::compute::ErrorKind),
    /// Planning, checking or loading the model failed (the kernel's
    /// [`LoadError`](lode_kernel::model::LoadError), also its `source()`).
    Model {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: ModelLoadError,
    },
    /// The DRAM budget is smaller than the minimum working set, which the
    /// KV cache for the positions asked for may drive.
    BudgetTooSmall {
        /// The smallest budget that works, bytes.
        need: usize,
        /// The budget given, bytes.
        have: usize,
        /// Of `need`, the KV cache, bytes.
        kv: usize,
        /// Positions each context holds (the prompt and the tokens asked
        /// for, or the context asked for).
        positions: usize,
        /// Contexts planned for.
        contexts: usize,
    },
}

impl LoadError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        use lode_kernel::model::ErrorKind as M;
        match self {
            LoadError::Options(_) => ErrorKind::BadOptions,
            LoadError::Device(_) => ErrorKind::Device,
            LoadError::Arena(_) => ErrorKind::OutOfMemory,
            LoadError::Compute(_) => ErrorKind::Compute,
            LoadError::BudgetTooSmall { .. } => ErrorKind::OutOfMemory,
            LoadError::Model { source, .. } => match source.kind() {
                M::Budget | M::Arena => ErrorKind::OutOfMemory,
                M::Flash | M::Corrupt => ErrorKind::Device,
                M::BadConfig => ErrorKind::BadOptions,
                M::Internal => ErrorKind::Internal,
                _ => ErrorKind::BadModel,
            },
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Options(why) => f.write_str(why),
            LoadError::Device(why) => f.write_str(why),
            LoadError::Arena(e) => write!(f, "DRAM arena: {e}"),
            LoadError::Compute(k) => write!(f, "CPU compute: {k}"),
            LoadError::BudgetTooSmall {
                need,
                have,
                kv,
                positions,
                contexts,
            } => {
                let mib = |b: &usize| *b as f64 / 1048576.0;
                write!(
                    f,
                    "a DRAM budget of {:.1} MiB cannot hold the minimum working set of {:.1} MiB \
                     ({need} bytes), of which {:.1} MiB is the KV cache for {positions} positions \
                     (the prompt and the tokens asked for) in {contexts} context(s); give at \
                     least that, or ask for fewer tokens",
                    mib(have),
                    mib(need),
                    mib(kv)
                )
            }
            LoadError::Model { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Arena(e) => Some(e),
            LoadError::Model { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why evaluating or generating failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GenerateError {
    /// There is nothing to evaluate.
    EmptyPrompt,
    /// The prompt does not fit the context.
    PromptTooLong {
        /// Tokens to evaluate.
        tokens: usize,
        /// Positions left in the context.
        room: usize,
    },
    /// The context belongs to another session.
    ForeignContext,
    /// The sampler parameters or the logits are unusable.
    Sample(SampleError),
    /// A generated id has no text.
    Tokenizer(TokenizerError),
    /// The model failed while evaluating (a device read, the arena, ...):
    /// the kernel's [`EvalError`], also its `source()`.
    Model(EvalError),
}

impl GenerateError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        use lode_kernel::model::ErrorKind as M;
        match self {
            GenerateError::EmptyPrompt | GenerateError::PromptTooLong { .. } => {
                ErrorKind::BadPrompt
            }
            GenerateError::ForeignContext => ErrorKind::BadOptions,
            GenerateError::Sample(_) | GenerateError::Tokenizer(_) => ErrorKind::Compute,
            GenerateError::Model(e) => match e.kind() {
                M::ContextFull => ErrorKind::ContextFull,
                M::Flash | M::Corrupt => ErrorKind::Device,
                M::Arena => ErrorKind::OutOfMemory,
                M::BadToken => ErrorKind::BadPrompt,
                M::ForeignContext => ErrorKind::BadOptions,
                M::Internal => ErrorKind::Internal,
                _ => ErrorKind::Compute,
            },
        }
    }
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenerateError::EmptyPrompt => f.write_str("the prompt has no tokens"),
            GenerateError::PromptTooLong { tokens, room } => write!(
                f,
                "the prompt has {tokens} tokens; the context has room for {room}"
            ),
            GenerateError::ForeignContext => f.write_str("the context was made by another session"),
            GenerateError::Sample(e) => write!(f, "sampling: {e}"),
            GenerateError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            GenerateError::Model(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GenerateError::Model(e) => Some(e),
            _ => None,
        }
    }
}

impl From<EvalError> for GenerateError {
    fn from(e: EvalError) -> Self {
        GenerateError::Model(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use lode_kernel::flash::ErrorKind as FlashKind;

    use super::*;

    /// The kernel's error is the runtime's `source()`, recoverable as its
    /// own type, and the runtime's kind follows the kernel's.
    #[test]
    fn a_kernel_load_error_is_the_source_of_a_load_error() {
        let kernel = ModelLoadError::BudgetTooSmall { need: 2, have: 1 };
        let e = LoadError::Model {
            path: "m.lode".into(),
            source: kernel,
        };
        assert_eq!(e.kind(), ErrorKind::OutOfMemory);
        let source = e.source().and_then(|s| s.downcast_ref::<ModelLoadError>());
        assert_eq!(source, Some(&kernel));
        assert_eq!(e.to_string(), format!("m.lode: {kernel}"));
        for (kernel, kind) in [
            (ModelLoadError::Config("x"), ErrorKind::BadOptions),
            (ModelLoadError::Layout("x"), ErrorKind::BadModel),
            (
                ModelLoadError::Corrupt {
                    offset: 0,
                    attempts: 3,
                },
                ErrorKind::Device,
            ),
            (ModelLoadError::Internal("x"), ErrorKind::Internal),
        ] {
            let e = LoadError::Model {
                path: "m.lode".into(),
                source: kernel,
            };
            assert_eq!(e.kind(), kind, "{kernel:?}");
        }
    }

    #[test]
    fn a_kernel_eval_error_is_the_source_of_a_generate_error() {
        let kernel = EvalError::ContextFull { max: 256 };
        let e = GenerateError::from(kernel);
        assert_eq!(e.kind(), ErrorKind::ContextFull);
        let source = e.source().and_then(|s| s.downcast_ref::<EvalError>());
        assert_eq!(source, Some(&kernel));
        assert_eq!(e.to_string(), kernel.to_string());
        for (kernel, kind) in [
            (
                EvalError::Read {
                    offset: 0,
                    kind: FlashKind::Io,
                    attempts: 3,
                },
                ErrorKind::Device,
            ),
            (
                EvalError::TokenOutOfRange { token: 9, vocab: 8 },
                ErrorKind::BadPrompt,
            ),
            (EvalError::ForeignContext, ErrorKind::BadOptions),
            (
                EvalError::Arena(lode_kernel::arena::ErrorKind::OutOfMemory),
                ErrorKind::OutOfMemory,
            ),
            (
                EvalError::Compute(lode_kernel::compute::ErrorKind::NonFinite),
                ErrorKind::Compute,
            ),
            (EvalError::Internal("x"), ErrorKind::Internal),
        ] {
            assert_eq!(GenerateError::Model(kernel).kind(), kind, "{kernel:?}");
        }
        assert!(GenerateError::EmptyPrompt.source().is_none());
    }
}
