//! The service's values: ids, inputs, options and what calls and
//! listings return.

use std::fmt;
use std::time::SystemTime;

use lode_hal::compute::sample::SamplerConfig;

/// A context's id: never reused while the service lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub(super) u64);

impl ContextId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a service is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Most contexts held at once (at least 1).
    pub max_contexts: usize,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// What a call appends to its context.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Raw text, evaluated as it is (a completion).
    Text(&'a str),
    /// Chat messages, rendered with the model's chat template, followed by
    /// the assistant's turn header.
    Chat(&'a [Message]),
}

/// How a call generates.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Temperature, top-k, top-p (temperature 0 is greedy).
    pub sampler: SamplerConfig,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation ends before the first of these strings (it is not
    /// returned).
    pub stop: Vec<String>,
}

impl CallOptions {
    /// Greedy, at most `max_tokens` tokens, no stop strings.
    pub fn greedy(max_tokens: usize) -> CallOptions {
        CallOptions {
            max_tokens,
            sampler: SamplerConfig::new(0.0, 0, 1.0),
            seed: 0,
            stop: Vec::new(),
        }
    }
}

/// Why a call's generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finish {
    /// `max_tokens` were generated.
    Length,
    /// The model ended its turn.
    Eos,
    /// The context is full.
    ContextFull,
    /// A stop string was generated.
    StopSequence,
    /// `on_token` asked to stop.
    Caller,
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The generated text (up to a stop string).
    pub text: String,
    /// Tokens evaluated before generating: the input's new tokens and the
    /// token the previous call left pending.
    pub evaluated_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Why generation ended.
    pub finish: Finish,
    /// Positions the context holds after the call.
    pub context_tokens: usize,
    /// Whether the context was rebuilt from its conversation's text (its
    /// tokens no longer matched the rendered conversation).
    pub rebuilt: bool,
    /// Seconds evaluating the input (and sampling the first token).
    pub prompt_seconds: f64,
    /// Seconds generating after that.
    pub decode_seconds: f64,
}

/// One context, as [`Service::contexts`] lists it.
#[derive(Debug, Clone)]
pub struct ContextInfo {
    /// Its id.
    pub id: ContextId,
    /// Positions it holds (as of its last call).
    pub tokens: usize,
    /// KV chunks it holds in the arena.
    pub chunks: usize,
    /// When it was made or last called.
    pub last_used: SystemTime,
    /// Whether a call is running in it.
    pub busy: bool,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every running call finished within the wait.
    pub finished: bool,
    /// Contexts handed to the swap-out hook.
    pub swapped_out: usize,
}
