//! A session: one model loaded under one DRAM budget, serving contexts.
//!
//! [`Session::load`] turns an opened [`ModelFile`] into a running model:
//! a GGUF is copied whole into a locked arena sized by
//! [`MemoryPlan::dense`]; a lode image is planned under the budget by
//! [`StreamPlan`], checked against its CRCs through the device, and what
//! the plan keeps resident is loaded while the rest streams through the
//! ring. Either way the session then evaluates any number of
//! [`Context`]s, one at a time, with the kernel's decode loop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use lode_formats::gguf::Gguf;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal_linux::{HugePages, LockedArena, LockedArenaOptions};
use lode_kernel::arena::{DramArena, LockReport, SlotKind};
use lode_kernel::cache::S3Fifo;
use lode_kernel::fetch::BundleLoc;
use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    verify_image_data, IoStats, SparseBuffers, SparseScratch, SparseSetup, SparseStats,
    StreamLayout, StreamOptions, StreamPlan, StreamSource,
};
use lode_kernel::model::{
    Limits, LlamaConfig, MemoryPlan, Model, ModelError, WantLogits, MAX_CONTEXT,
};
use lode_kernel::plan::Extent;
use lode_tokenizer::{ChatTemplate, Tokenizer};

use crate::budget::Budget;
use crate::context::Context;
use crate::device::{AnyDevice, DeviceSpec, OpenedDevice, STREAM_BOUNCE};
use crate::error::{GenerateError, LoadError};
use crate::image_file::ImageFile;
use crate::model_file::{ModelFile, Weights};

/// How a session is sized and where it reads from.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Most positions one context may reach (at most the model's trained
    /// context and [`MAX_CONTEXT`]).
    pub max_context: usize,
    /// Prompt positions evaluated per pass over the weights.
    pub batch: usize,
    /// Contexts whose full KV caches the budget reserves room for.
    pub contexts: usize,
    /// Threads for the numeric work (`None`: every available core).
    pub threads: Option<usize>,
    /// DRAM budget of a lode image (`None`: everything resident). A GGUF
    /// is always held whole.
    pub budget: Option<Budget>,
    /// Where an image's weights are read from (`None`: the image itself).
    pub device: Option<DeviceSpec>,
    /// I/O slots of the ring (`None`: enough to read a whole streamed FFN
    /// layer ahead).
    pub ring: Option<usize>,
    /// Fraction of FFN neurons skipped per token (0: dense).
    pub sparsity: f32,
    /// Cache down columns in what the plan leaves over (sparse runs).
    pub neuron_cache: bool,
    /// Check the image's data against its CRCs before loading.
    pub verify: bool,
}

impl SessionOptions {
    /// Defaults for contexts of up to `max_context` positions: prompt
    /// batches of 64, one context, every core, everything resident, the
    /// image's own file, dense, with the neuron cache, verified.
    pub fn new(max_context: usize) -> SessionOptions {
        SessionOptions {
            max_context,
            batch: 64,
            contexts: 1,
            threads: None,
            budget: None,
            device: None,
            ring: None,
            sparsity: 0.0,
            neuron_cache: true,
            verify: true,
        }
    }

    /// The limits these options give a model of `cfg`. Prompt batches are
    /// no wider than `widest_prompt` positions: decoding takes one position
    /// a pass, so wider batch buffers would hold memory nothing uses
    /// (under a budget, weights that could have stayed resident).
    fn limits(&self, cfg: &LlamaConfig, widest_prompt: usize) -> Result<Limits, LoadError> {
        let room = cfg.context.min(MAX_CONTEXT);
        if self.max_context == 0 || self.max_context > room {
            return Err(LoadError::Options(format!(
                "contexts of {} positions: this model holds 1 to {room}",
                self.max_context
            )));
        }
        if self.batch == 0 {
            return Err(LoadError::Options("--batch must be at least 1".into()));
        }
        let batch = self.batch.min(widest_prompt.max(1)).min(self.max_context);
        let limits = Limits::new(self.max_context, batch).with_contexts(self.contexts);
        limits
            .validate(cfg)
            .map_err(|e| LoadError::Options(e.to_string()))?;
        Ok(limits)
    }
}

/// What a session reports of its loading, as it happens (the CLI prints
/// the plan and a progress meter; a library caller may ignore both).
pub trait LoadEvents {
    /// The streaming plan of the image at `path` (`weight_bytes` of
    /// weights), before anything is allocated: the arena's, which is the
    /// budget less what `outside` holds.
    fn plan(
        &mut self,
        _path: &Path,
        _weight_bytes: u64,
        _limits: &Limits,
        _plan: &StreamPlan,
        _outside: &Outside,
    ) {
    }
    /// `done` of `total` data bytes verified.
    fn verify(&mut self, _done: u64, _total: u64) {}
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl LoadEvents for Quiet {}

/// The sparse path's buffers, owned by the session (sized by
/// [`SparseScratch::lens`]; empty for a dense run).
#[derive(Debug, Default)]
pub struct OwnedScratch {
    positions: Vec<u32>,
    missing: Vec<u32>,
    locs: Vec<BundleLoc>,
    extents: Vec<Extent>,
}

impl SparseBuffers for OwnedScratch {
    fn lend(&mut self) -> SparseScratch<'_> {
        SparseScratch {
            positions: &mut self.positions,
            missing: &mut self.missing,
            locs: &mut self.locs,
            extents: &mut self.extents,
        }
    }
}

/// The streaming source a session runs.
pub type Streamed = StreamSource<AnyDevice, S3Fifo, OwnedScratch>;

/// The model, held whole or streamed.
#[derive(Debug)]
enum Engine {
    Dense(Box<Model>),
    Streamed(Box<Model<Streamed>>),
}

/// Memory a streamed session holds outside its arena, counted in its
/// budget: the arena is the budget less these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outside {
    /// The device's bounce buffers (O_DIRECT reads land there first).
    pub bounce: usize,
    /// The sparse path's position, location and read-plan buffers.
    pub sparse_scratch: usize,
}

impl Outside {
    /// Both.
    pub fn total(&self) -> usize {
        self.bounce.saturating_add(self.sparse_scratch)
    }
}

/// How a streamed session reads (for the stats).
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// `file:<path>` or `fake:<profile>`.
    pub device: String,
    /// How the device reads.
    pub mode: String,
    /// The memory plan.
    pub plan: StreamPlan,
    /// Sparsity of the FFN.
    pub sparsity: f32,
    /// Seconds to check the image's data against its CRCs.
    pub verify_seconds: f64,
    /// What the budget holds outside the arena.
    pub outside: Outside,
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
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Nanoseconds since the first call: the ring's clock.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

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
            tokenizer,
            chat,
        } = file;
        let model_err = |source| LoadError::Model {
            path: path.clone(),
            source,
        };
        let (engine, arena, lock, stream) = match &weights {
            Weights::Gguf(bytes) => {
                if opts.budget.is_some() || opts.device.is_some() || opts.sparsity != 0.0 {
                    return Err(LoadError::Options(
                        "--dram-budget, --device and --sparsity need a lode image (make one \
                         with `lode pack`; --sparsity with `--layout split`)"
                            .into(),
                    ));
                }
                let (model, arena, lock) =
                    load_dense(bytes, &cfg, limits).map_err(|e| match e {
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
                let (model, arena, lock, info) = load_streamed(
                    image, opened, &cfg, limits, budget, opts, events,
                )
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
        ctx.inner.clear(&mut self.arena)?;
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
        let (inner, arena, cpu) = (&mut ctx.inner, &mut self.arena, &mut self.cpu);
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
        let done = ctx.inner.len().saturating_sub(before).min(tokens.len());
        ctx.tokens.extend_from_slice(&tokens[..done]);
        Ok(r?)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The limits the session was sized for.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, when it has one lode understands.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The model file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// How a streamed session reads (`None` when the model is in DRAM).
    pub fn stream_info(&self) -> Option<&StreamInfo> {
        self.stream.as_ref()
    }

    /// Seconds the load took.
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// The arena: capacity, peak and use by kind.
    pub fn arena(&self) -> &LockedArena {
        &self.arena
    }

    /// Bytes `mlock` kept in RAM.
    pub fn locked_bytes(&self) -> usize {
        self.lock.map_or(0, |l| l.locked)
    }

    /// The compute backend (threads, instruction set).
    pub fn compute(&self) -> &CpuCompute<'static> {
        &self.cpu
    }

    /// The read counters of a streamed session (zero in DRAM).
    pub fn io_counters(&self) -> IoCounters {
        match &self.engine {
            Engine::Dense(_) => IoCounters::default(),
            Engine::Streamed(m) => IoCounters {
                io: m.weights().io_stats(),
                sparse: m.weights().sparse_stats().unwrap_or_default(),
                virtual_ns: m.weights().device().virtual_ns(),
            },
        }
    }

    /// Down columns the neuron cache holds (0: none).
    pub fn cache_slots(&self) -> u32 {
        match &self.engine {
            Engine::Dense(_) => 0,
            Engine::Streamed(m) => m.weights().cache_stats().map_or(0, |(_, slots)| slots),
        }
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

enum DenseFail {
    Model(ModelError),
    Load(LoadError),
}

/// The whole GGUF in one locked arena of exactly the planned size.
fn load_dense(
    bytes: &[u8],
    cfg: &LlamaConfig,
    limits: Limits,
) -> Result<(Model, LockedArena, Option<LockReport>), DenseFail> {
    // `ModelFile::open` parsed these bytes already.
    let file = Gguf::parse(bytes).map_err(|e| DenseFail::Model(ModelError::Format(e)))?;
    let plan = MemoryPlan::dense(&file, cfg, &limits).map_err(DenseFail::Model)?;
    let mut arena = new_arena(plan.total()).map_err(DenseFail::Load)?;
    // Locking is best effort: the report says how much it achieved.
    let lock = arena.lock().ok();
    let model = Model::load(&file, *cfg, limits, &mut arena).map_err(DenseFail::Model)?;
    plan.arena_use.check(&arena).map_err(DenseFail::Model)?;
    Ok((model, arena, lock))
}

fn new_arena(bytes: usize) -> Result<LockedArena, LoadError> {
    LockedArena::with_options(
        bytes,
        LockedArenaOptions {
            huge_pages: HugePages::Transparent,
        },
    )
    .map_err(LoadError::Arena)
}

enum StreamFail {
    Model(ModelError),
    Load(LoadError),
}

impl From<ModelError> for StreamFail {
    fn from(e: ModelError) -> Self {
        StreamFail::Model(e)
    }
}

/// The plan of `layout` under `budget` on `dev`, and what the budget holds
/// outside the arena: the device's bounce buffers and the sparse scratch.
fn plan_streamed(
    layout: &StreamLayout,
    cfg: &LlamaConfig,
    limits: &Limits,
    budget: usize,
    opts: &SessionOptions,
    dev: &AnyDevice,
) -> Result<(StreamPlan, Outside), StreamFail> {
    let block = dev.geometry().block_size as usize;
    let sparse = opts.sparsity > 0.0;
    let (n, n_ext) = SparseScratch::lens(layout, block, dev.geometry().max_transfer as usize);
    let outside = Outside {
        bounce: match dev {
            AnyDevice::File(d) => d.report().bounce_bytes,
            AnyDevice::Fake(_) => 0,
        },
        sparse_scratch: if sparse {
            n * (2 * size_of::<u32>() + size_of::<BundleLoc>()) + n_ext * size_of::<Extent>()
        } else {
            0
        },
    };
    let stream_opts = StreamOptions {
        budget: budget.saturating_sub(outside.total()),
        ring: opts.ring.unwrap_or_else(|| layout.ring_for(sparse)),
        block,
        stream_all: false,
        sparse,
    };
    let with_outside = |e: ModelError| match e {
        ModelError::BudgetTooSmall { need, .. } => ModelError::BudgetTooSmall {
            need: need.saturating_add(outside.total()),
            have: budget,
        },
        e => e,
    };
    let plan = StreamPlan::new(layout, cfg, limits, stream_opts).map_err(with_outside)?;
    // Without a budget, or with more than the model needs: exactly what
    // holds everything resident (the arena is mapped and locked whole, so
    // a larger one would only hold idle memory).
    if budget >= plan.resident_budget() && plan.ring == 0 {
        let all = StreamOptions {
            budget: plan.resident_budget(),
            ..stream_opts
        };
        return Ok((StreamPlan::new(layout, cfg, limits, all)?, outside));
    }
    Ok((plan, outside))
}

/// Plans `budget`, maps the arena, verifies the image through the device,
/// and loads the resident units.
#[allow(clippy::too_many_arguments)]
fn load_streamed(
    image: &ImageFile,
    opened: OpenedDevice,
    cfg: &LlamaConfig,
    limits: Limits,
    budget: usize,
    opts: &SessionOptions,
    events: &mut dyn LoadEvents,
) -> Result<(Model<Streamed>, LockedArena, Option<LockReport>, StreamInfo), StreamFail> {
    let img = image.image();
    let OpenedDevice {
        device: mut dev,
        mut name,
        mut mode,
    } = opened;
    let layout = StreamLayout::new(&img, cfg)?;
    let (mut plan, mut outside) = plan_streamed(&layout, cfg, &limits, budget, opts, &dev)?;
    // The device needs bounce memory for what can be in flight: the ring's
    // slots, the sparse read slot and the embedding row (at least one
    // whole read). A smaller bounce area leaves that much more to the arena.
    if let AnyDevice::File(d) = &dev {
        let max_transfer = dev.geometry().max_transfer as usize;
        let need = plan.arena_use.io.max(max_transfer);
        if need < d.report().bounce_bytes {
            let reopened = AnyDevice::open(opts.device.as_ref(), image, need)
                .map_err(|e| StreamFail::Load(LoadError::Device(e)))?;
            (dev, name, mode) = (reopened.device, reopened.name, reopened.mode);
            (plan, outside) = plan_streamed(&layout, cfg, &limits, budget, opts, &dev)?;
        }
    }
    let block = plan.block;
    let sparse = plan.sparse;
    let (n, n_ext) = SparseScratch::lens(&layout, block, dev.geometry().max_transfer as usize);
    events.plan(image.path(), image.weight_bytes(), &limits, &plan, &outside);
    let mut arena = new_arena(plan.budget).map_err(StreamFail::Load)?;
    let lock = arena.lock().ok();

    let mut verify_seconds = 0.0;
    if opts.verify {
        let t = Instant::now();
        let chunk = (plan.budget / 2).clamp(block, 8 << 20) / block * block;
        let slot = arena
            .alloc(chunk, 64, SlotKind::IoBuffer)
            .map_err(ModelError::arena)?;
        verify_image_data(&mut dev, &mut arena, &img, slot, |done, total| {
            events.verify(done, total)
        })?;
        arena.free(slot).map_err(ModelError::arena)?;
        verify_seconds = t.elapsed().as_secs_f64();
    }
    let scratch = if sparse {
        OwnedScratch {
            positions: vec![0; n],
            missing: vec![0; n],
            locs: vec![BundleLoc::default(); n],
            extents: vec![Extent::default(); n_ext],
        }
    } else {
        OwnedScratch::default()
    };
    let setup = sparse.then(|| SparseSetup {
        sparsity: opts.sparsity,
        policy: opts.neuron_cache.then(|| S3Fifo::new(10)),
        scratch,
    });
    let source = Streamed::load_with(dev, &mut arena, layout, cfg, &limits, plan, now_ns, setup)?;
    let model = Model::new(*cfg, limits, source, &mut arena)?;
    // One accountant: the arena holds exactly what the plan counted.
    plan.arena_use.check(&arena)?;
    let info = StreamInfo {
        device: name,
        mode,
        plan,
        sparsity: opts.sparsity,
        verify_seconds,
        outside,
    };
    Ok((model, arena, lock, info))
}
