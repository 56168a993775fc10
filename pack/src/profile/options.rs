//! `lode profile`'s options ([`ProfileOptions`]) and what it refuses
//! before reading anything ([`OptionError`]).

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

use super::ScoreMode;

/// What to profile, and how: the options of `lode profile`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOptions {
    /// GGUF model file (llama architecture).
    pub model: PathBuf,
    /// UTF-8 text to calibrate on and profile.
    pub text: PathBuf,
    /// Target fraction of each layer's FFN neurons to cut, in [0, 1).
    pub sparsity: f64,
    /// Output activation trace.
    pub output: PathBuf,
    /// How a neuron is scored.
    pub mode: ScoreMode,
    /// Tokens per window (the context is reset between windows).
    pub window: usize,
    /// Most tokens of the text to use.
    pub max_tokens: usize,
    /// Threads for the numeric work (`None`: every available core).
    pub threads: Option<usize>,
    /// Neurons the top-k pass keeps or drops together: 1 is `lode run`'s
    /// per-neuron rule; 32 prices a layout that reads a source block's 32
    /// neurons as one ([`keep_strongest_groups`](lode_kernel::model::stream::keep_strongest_groups)).
    pub group: usize,
}

/// An option [`profile`] refuses, before it reads anything (or, for
/// [`OptionError::WindowPastContext`], once it knows the model). A command
/// line words these in terms of its own flags.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionError {
    /// `sparsity` is outside [0, 1).
    Sparsity(f64),
    /// `window` is under 2 (a window scores its tokens after the first).
    Window(usize),
    /// `max_tokens` is under 2.
    MaxTokens(usize),
    /// `threads` is `Some(0)`.
    Threads,
    /// `group` is 0.
    Group,
    /// `window` exceeds the positions the model can attend to.
    WindowPastContext {
        /// The window asked for.
        window: usize,
        /// The positions the model attends to: its trained context, at
        /// most the kernel's `MAX_CONTEXT`.
        room: usize,
        /// The model file.
        model: PathBuf,
    },
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Sparsity(s) => write!(f, "sparsity {s} is outside [0, 1)"),
            OptionError::Window(_) => f.write_str(
                "a window must be at least 2 tokens (it scores its tokens after the first)",
            ),
            OptionError::MaxTokens(_) => f.write_str("max_tokens must be at least 2"),
            OptionError::Threads => f.write_str("threads must be at least 1"),
            OptionError::Group => f.write_str("the top-k group must be at least 1 neuron"),
            OptionError::WindowPastContext {
                window,
                room,
                model,
            } => write!(
                f,
                "a window of {window} exceeds the {room} positions {} can attend to",
                model.display()
            ),
        }
    }
}

impl Error for OptionError {}

impl ProfileOptions {
    /// Refuses options out of range (what can be checked without the
    /// model).
    pub fn check(&self) -> Result<(), OptionError> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(OptionError::Sparsity(self.sparsity));
        }
        if self.window < 2 {
            return Err(OptionError::Window(self.window));
        }
        if self.max_tokens < 2 {
            return Err(OptionError::MaxTokens(self.max_tokens));
        }
        if self.threads == Some(0) {
            return Err(OptionError::Threads);
        }
        if self.group == 0 {
            return Err(OptionError::Group);
        }
        Ok(())
    }
}
