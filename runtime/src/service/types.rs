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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceOptions {
    /// Most contexts held at once (at least 1).
    pub max_contexts: usize,
    /// How idle contexts' KV chunks are compressed.
    pub kv: crate::kv_life::KvPolicy,
}

impl ServiceOptions {
    /// At most `max_contexts` contexts, idle ones compressed to LLMS's
    /// default (a mean of 4 bits).
    pub fn new(max_contexts: usize) -> ServiceOptions {
        ServiceOptions {
            max_contexts,
            kv: crate::kv_life::KvPolicy::default(),
        }
    }
}

/// What the KV lifecycle has done since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LifeStats {
    /// Idle contexts parked or chunks evicted to make room.
    pub reclaims: u64,
    /// Seconds spent making room (parking, evicting, and writing chunks
    /// out when that is not done ahead of time).
    pub reclaim_seconds: f64,
    /// Contexts restored.
    pub restores: u64,
    /// Chunks restored from compressed DRAM copies.
    pub from_dram: u64,
    /// Chunks read from the swap area.
    pub from_flash: u64,
    /// Chunks recomputed from their tokens.
    pub recomputed: u64,
    /// Reads that failed their checks and were recomputed instead.
    pub failed_reads: u64,
    /// Seconds spent restoring.
    pub restore_seconds: f64,
    /// Chunks written to the swap area.
    pub swapped_chunks: u64,
    /// Bytes written to the swap area.
    pub swapped_bytes: u64,
    /// Seconds spent swapping out.
    pub swap_seconds: f64,
    /// Swap-outs that failed (the chunks stayed in DRAM).
    pub swap_failures: u64,
}

impl LifeStats {
    pub(crate) fn add_restore(&mut self, r: &crate::kv_life::RestoreReport) {
        self.restores += 1;
        self.from_dram += r.from_dram as u64;
        self.from_flash += r.from_flash as u64;
        self.recomputed += r.recomputed as u64;
        self.failed_reads += r.failed_reads as u64;
        self.restore_seconds += r.seconds;
    }

    pub(crate) fn add_swap_out(&mut self, r: &crate::kv_life::SwapOutReport) {
        self.swapped_chunks += r.chunks as u64;
        self.swapped_bytes += r.bytes as u64;
        self.swap_seconds += r.seconds;
    }
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
    /// What restoring the context before the call did, when it was parked
    /// (compressed, on flash or dropped): where its chunks came from and
    /// the read/recompute split the cost models chose.
    pub restore: Option<crate::kv_life::RestoreReport>,
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
