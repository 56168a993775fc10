//! A session: one model loaded under one DRAM budget, serving contexts.
//!
//! [`Session::load`] (its loaders are in `load.rs`) turns an opened [`ModelFile`] into a running model:
//! a GGUF is copied whole into a locked arena sized by
//! [`MemoryPlan::dense`]; a lode image is planned under the budget by
//! [`StreamPlan`], checked against its CRCs through the device, and what
//! the plan keeps resident is loaded while the rest streams through the
//! ring. Either way the session then evaluates any number of
//! [`Context`]s, one at a time, with the kernel's decode loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::LockReport;
use lode_kernel::flash::FaultCounts;
use lode_kernel::model::stream::{IoStats, SparseStats};
use lode_kernel::model::{EvalError, Limits, LlamaConfig, Model, WantLogits};
use lode_tokenizer::{ChatTemplate, Tokenizer};

mod held;

use crate::context::Context;
use crate::device::{AnyDevice, STREAM_BOUNCE};
use crate::error::{GenerateError, LoadError};
use crate::load::{load_dense, load_streamed, DenseFail, StreamFail, StreamInfo, Streamed};
use crate::model_file::{ModelFile, Weights};
use crate::options::{LoadEvents, SessionOptions};

/// The model, held whole or streamed.
#[derive(Debug)]
enum Engine {
    Dense(Box<Model>),
    Streamed(Box<Model<Streamed>>),
}

/// Counters of a streamed session's reads, to difference around a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct IoCounters {
    /// The ring's counters.
    pub io: IoStats,
    /// The sparse fetches' counters.
    pub sparse: SparseStats,
    /// Virtual nanoseconds of a fake device.
    pub virtual_ns: u64,
    /// Faults injected into the device (`--inject-faults`).
    pub faults: FaultCounts,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A loaded model serving contexts under one DRAM budget.
pub struct Session {
    id: u64,
    path: PathBuf,
    cfg: LlamaConfig,
    limits: Limits,
    tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    engine: Engine,
    cpu: CpuCompute<'static>,
    arena: LockedArena,
    lock: Option<LockReport>,
    load_seconds: f64,
    stream: Option<StreamInfo>,
}

impl Session {
    /// Loads `file` under `opts`. `widest_prompt` bounds the prompt batch
    /// buffers (pass the longest prompt expected, or `opts.batch`).
    pub fn load(
        file: ModelFile,
        opts: &SessionOptions,
        widest_prompt: usize,
        events: &mut dyn LoadEvents,
    ) -> Result<Session, LoadError> {
        let t = Instant::now();
        if !(0.0..1.0).contains(&opts.sparsity) {
            return Err(LoadError::Options(
                "--sparsity must be at least 0 and below 1".into(),
            ));
        }
        let threads = match opts.threads {
            Some(0) => return Err(LoadError::Options("--threads must be at least 1".into())),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let limits = opts.limits(&file.cfg, widest_prompt)?;
        let ModelFile {
            path,
            weights,
            cfg,
            arch,
            tokenizer,
            chat,
            fingerprint: _,
        } = file;
        let model_err = |source| LoadError::Model {
            path: path.clone(),
            source,
        };
        let (engine, arena, lock, stream) = match &weights {
            Weights::Gguf(bytes) => {
                if opts.budget.is_some()
                    || opts.device.is_some()
                    || opts.sparsity != 0.0
                    || !opts.faults.is_none()
                {
                    return Err(LoadError::Options(
                        "--dram-budget, --device, --sparsity and --inject-faults need a lode \
                         image (make one with `lode pack`; --sparsity with `--layout split`)"
                            .into(),
                    ));
                }
                let (model, arena, lock) =
                    load_dense(bytes, &cfg, arch, limits).map_err(|e| match e {
                        DenseFail::Model(m) => model_err(m),
                        DenseFail::Load(l) => l,
                    })?;
                (Engine::Dense(Box::new(model)), arena, lock, None)
            }
            Weights::Image(image) => {
                let opened = AnyDevice::open(opts.device.as_ref(), image, STREAM_BOUNCE)
                    .map_err(LoadError::Device)?;
                let budget = opts
                    .budget
                    .map_or(usize::MAX, |b| b.bytes(image.weight_bytes()));
                if arch.is_gemma() && opts.sparsity != 0.0 {
                    return Err(LoadError::Options(
                        "--sparsity: Gemma 3 streams dense only (its sparse FFN path is not \
                         built)"
                            .into(),
                    ));
                }
                let (model, arena, lock, info) =
                    load_streamed(image, opened, (&cfg, arch), limits, budget, opts, events)
                        .map_err(|e| match e {
                            StreamFail::Model(m) => model_err(m),
                            StreamFail::Load(l) => l,
                        })?;
                (Engine::Streamed(Box::new(model)), arena, lock, Some(info))
            }
        };
        drop(weights);
        let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
        let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(threads).with_env())
            .map_err(LoadError::Compute)?;
        cpu.reserve_batch(widest, limits.max_batch)
            .map_err(LoadError::Compute)?;
        Ok(Session {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            path,
            cfg,
            limits,
            tokenizer,
            chat,
            engine,
            cpu,
            arena,
            lock,
            load_seconds: t.elapsed().as_secs_f64(),
            stream,
        })
    }

    /// A new, empty context. Its KV chunks come from the session's arena
    /// as it grows; give them back with [`Session::delete_context`].
    pub fn new_context(&self) -> Context {
        let inner = match &self.engine {
            Engine::Dense(m) => m.new_context(),
            Engine::Streamed(m) => m.new_context(),
        };
        Context::new(self.id, inner)
    }

    /// Frees `ctx`'s KV chunks.
    pub fn delete_context(&mut self, mut ctx: Context) -> Result<(), GenerateError> {
        self.clear_context(&mut ctx)
    }

    /// Empties `ctx` (frees its KV chunks, forgets its tokens); it can be
    /// used again.
    pub fn clear_context(&mut self, ctx: &mut Context) -> Result<(), GenerateError> {
        if ctx.session != self.id {
            return Err(GenerateError::ForeignContext);
        }
        crate::kv_life::free_parked(self, ctx)?;
        ctx.inner.clear(&mut self.arena)?;
        ctx.kv = crate::kv_life::KvState::default();
        ctx.tokens.clear();
        ctx.pending = None;
        Ok(())
    }

    /// Evaluates `tokens` at the next positions of `ctx`, calling
    /// `on_logits(position, logits)` where `want` asks. On a failure the
    /// context keeps the batches that completed, and reads still in flight
    /// are collected before the error is returned.
    pub fn eval(
        &mut self,
        ctx: &mut Context,
        tokens: &[u32],
        want: WantLogits,
        on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), GenerateError> {
        if ctx.session != self.id {
            return Err(GenerateError::ForeignContext);
        }
        let before = ctx.inner.len();
        let r = self.eval_kv(&mut ctx.inner, tokens, want, on_logits);
        let done = ctx.inner.len().saturating_sub(before).min(tokens.len());
        ctx.tokens.extend_from_slice(&tokens[..done]);
        r
    }

    /// Evaluates `tokens` at the next positions of `ctx` like
    /// [`eval`](Self::eval), calling `on_hidden(position, row)` for every
    /// position with the residual stream after the last layer run (see
    /// `lode_kernel::model::Model::eval_hidden`).
    pub fn eval_hidden(
        &mut self,
        ctx: &mut Context,
        tokens: &[u32],
        on_hidden: impl FnMut(usize, &[f32]),
    ) -> Result<(), GenerateError> {
        if ctx.session != self.id {
            return Err(GenerateError::ForeignContext);
        }
        let before = ctx.inner.len();
        let (arena, cpu, inner) = (&mut self.arena, &mut self.cpu, &mut ctx.inner);
        let r = match &mut self.engine {
            Engine::Dense(m) => m.eval_hidden(inner, arena, cpu, tokens, on_hidden),
            Engine::Streamed(m) => {
                let r = m.eval_hidden(inner, arena, cpu, tokens, on_hidden);
                if r.is_err() {
                    let _ = m.weights_mut().quiesce(arena);
                }
                r
            }
        };
        let done = ctx.inner.len().saturating_sub(before).min(tokens.len());
        ctx.tokens.extend_from_slice(&tokens[..done]);
        Ok(r?)
    }

    /// Skips the layers of `mask` (bit `l` for layer `l`) in every
    /// evaluation from now on, as if they were cut from the model; contexts
    /// started under another mask are refused until cleared. Meant for a
    /// model held in DRAM: a streamed one still reads the skipped layers.
    pub fn set_skipped_layers(&mut self, mask: u128) -> Result<(), LoadError> {
        let r = match &mut self.engine {
            Engine::Dense(m) => m.set_skipped_layers(mask),
            Engine::Streamed(m) => m.set_skipped_layers(mask),
        };
        r.map_err(|source| LoadError::Model {
            path: self.path.clone(),
            source,
        })
    }

    /// Evaluates again `n` of `ctx`'s own tokens from position `from`,
    /// which must be where its KV cache ends: a restore recomputing a
    /// chunk it did not keep. The tokens are not appended again.
    pub(crate) fn recompute(
        &mut self,
        ctx: &mut Context,
        from: usize,
        n: usize,
    ) -> Result<(), GenerateError> {
        if ctx.session != self.id {
            return Err(GenerateError::ForeignContext);
        }
        if ctx.inner.len() != from {
            return Err(GenerateError::Model(EvalError::Internal(
                "recompute must continue where the KV cache ends",
            )));
        }
        let tokens = ctx
            .tokens
            .get(from..from + n)
            .ok_or(GenerateError::Model(EvalError::Internal(
                "recompute past the context's tokens",
            )))?
            .to_vec();
        self.eval_kv(&mut ctx.inner, &tokens, WantLogits::None, |_, _| {})
    }

    fn eval_kv(
        &mut self,
        inner: &mut lode_kernel::model::Context,
        tokens: &[u32],
        want: WantLogits,
        on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), GenerateError> {
        let (arena, cpu) = (&mut self.arena, &mut self.cpu);
        let r = match &mut self.engine {
            Engine::Dense(m) => m.eval(inner, arena, cpu, tokens, want, on_logits),
            Engine::Streamed(m) => {
                let r = m.eval(inner, arena, cpu, tokens, want, on_logits);
                if r.is_err() {
                    let _ = m.weights_mut().quiesce(arena);
                }
                r
            }
        };
        Ok(r?)
    }

    /// Collects the streamed reads still in flight (the ring prefetches
    /// the next pass's first units when a pass ends). A session about to
    /// be used from another thread settles first: a device bound to the
    /// thread that submitted its reads (io_uring with deferred
    /// completions) can move only with nothing in flight. Nothing to do
    /// for a model held in DRAM.
    pub fn settle(&mut self) -> Result<(), GenerateError> {
        if let Engine::Streamed(m) = &mut self.engine {
            m.weights_mut().quiesce(&mut self.arena)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Reads may still be in flight after an error: collect them before
        // the arena they write into is unmapped.
        if let Engine::Streamed(m) = &mut self.engine {
            let _ = m.weights_mut().quiesce(&mut self.arena);
        }
    }
}
