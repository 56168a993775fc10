//! The decode loop: evaluate a prompt in a context, then sample and
//! evaluate one token at a time until a stop condition, handing each token
//! to the caller as soon as it is known.

use std::ops::ControlFlow;
use std::time::Instant;

use lode_hal::compute::sample::{sample, SampleError, SamplerConfig};
use lode_kernel::model::WantLogits;
use lode_kernel::rng::SplitMix64;
use serde::Serialize;

use crate::context::Context;
use crate::error::GenerateError;
use crate::session::{IoCounters, Session};

/// How to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Temperature, top-k and top-p (temperature 0 is greedy).
    pub sampler: SamplerConfig,
    /// Seed of the sampler's random numbers.
    pub seed: u64,
}

impl GenerateOptions {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampler: SamplerConfig::new(0.0, 0, 1.0),
            seed: 0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// `max_tokens` tokens were generated.
    Length,
    /// The model produced an end-of-generation token.
    Eos,
    /// The context is full.
    Context,
    /// The token callback asked to stop.
    Caller,
}

/// One generated token, as the callback sees it.
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    /// Its id.
    pub id: u32,
    /// Its text bytes (control tokens: none). A token may end inside a
    /// UTF-8 character.
    pub piece: &'a [u8],
}

/// What one generation produced and how long it took.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Tokens evaluated before the first sample (the pending token, if
    /// any, and the prompt).
    pub prompt_tokens: usize,
    /// Generated ids (without the end-of-generation token).
    pub generated: Vec<u32>,
    /// Their text bytes.
    pub text: Vec<u8>,
    /// Why it stopped.
    pub stop: Stop,
    /// Seconds of the prompt (its evaluation and the first sample).
    pub prompt_seconds: f64,
    /// Single-token evaluations after the prompt.
    pub decode_tokens: usize,
    /// Their seconds.
    pub decode_seconds: f64,
    /// Prompt passes over the weights (batches).
    pub prompt_passes: usize,
    /// The session's read counters before and after.
    pub io: (IoCounters, IoCounters),
}

/// Evaluates `prompt` in `ctx` (after the token a previous generation left
/// pending) and generates up to `opts.max_tokens` tokens, calling
/// `on_token` with each; it may return `ControlFlow::Break(())` to stop.
/// The last sampled token stays pending in `ctx` for the next call.
pub fn generate(
    session: &mut Session,
    ctx: &mut Context,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(Token<'_>) -> ControlFlow<()>,
) -> Result<Generation, GenerateError> {
    opts.sampler.validate().map_err(GenerateError::Sample)?;
    let mut feed: Vec<u32> = ctx.pending.into_iter().collect();
    feed.extend_from_slice(prompt);
    if feed.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    if feed.len() > ctx.room() {
        return Err(GenerateError::PromptTooLong {
            tokens: feed.len(),
            room: ctx.room(),
        });
    }
    let io0 = session.io_counters();
    let mut rng = SplitMix64::new(opts.seed);
    let mut scratch = vec![0u32; session.config().vocab];
    let mut picked: Result<u32, SampleError> = Err(SampleError::BadLength);
    let sampler = opts.sampler;
    let mut pick = |logits: &[f32]| sample(logits, &sampler, &mut rng, &mut scratch);

    let t_prompt = Instant::now();
    session.eval(ctx, &feed, WantLogits::Last, |_, l| picked = pick(l))?;
    ctx.pending = None;
    let mut next = picked.map_err(GenerateError::Sample)?;
    let prompt_seconds = t_prompt.elapsed().as_secs_f64();

    let mut generated = Vec::new();
    let mut text = Vec::new();
    let mut piece = Vec::new();
    let mut stop = Stop::Length;
    let (mut decode_tokens, mut decode_seconds) = (0usize, 0.0f64);
    for i in 0..opts.max_tokens {
        ctx.pending = Some(next);
        if session.tokenizer().is_end_of_generation(next) {
            stop = Stop::Eos;
            break;
        }
        generated.push(next);
        piece.clear();
        session
            .tokenizer()
            .decode_into(&[next], false, &mut piece)
            .map_err(GenerateError::Tokenizer)?;
        text.extend_from_slice(&piece);
        if on_token(Token {
            id: next,
            piece: &piece,
        })
        .is_break()
        {
            stop = Stop::Caller;
            break;
        }
        if i + 1 == opts.max_tokens {
            break;
        }
        if ctx.room() == 0 {
            stop = Stop::Context;
            break;
        }
        let t = Instant::now();
        picked = Err(SampleError::BadLength);
        session.eval(ctx, &[next], WantLogits::Last, |_, l| picked = pick(l))?;
        ctx.pending = None;
        next = picked.map_err(GenerateError::Sample)?;
        decode_seconds += t.elapsed().as_secs_f64();
        decode_tokens += 1;
    }
    if opts.max_tokens == 0 {
        ctx.pending = Some(next);
    }
    Ok(Generation {
        prompt_tokens: feed.len(),
        generated,
        text,
        stop,
        prompt_seconds,
        decode_tokens,
        decode_seconds,
        prompt_passes: feed.len().div_ceil(session.limits().max_batch),
        io: (io0, session.io_counters()),
    })
}
