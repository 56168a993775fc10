//! Loading a session's model: a GGUF whole into a locked arena of exactly
//! its plan, or a lode image planned under the budget (less what the
//! session holds outside the arena), checked against its CRCs through the
//! device, and streamed.

use std::sync::OnceLock;
use std::time::Instant;

use lode_formats::gguf::Gguf;
use lode_hal_linux::{HugePages, LockedArena, LockedArenaOptions};
use lode_kernel::arena::{DramArena, LockReport, SlotKind};
use lode_kernel::cache::S3Fifo;
use lode_kernel::flash::{BlockChecks, FlashDevice};
use lode_kernel::limits::CHECK_BLOCK;
use lode_kernel::model::stream::{
    verify_and_record, ColumnEstimate, ColumnReads, Reads, SparseSetup, StreamLayout,
    StreamOptions, StreamPlan, StreamSource,
};
use lode_kernel::model::{
    Arch, KvLayout, Limits, LlamaConfig, LoadError as ModelLoadError, MemoryPlan, Model, RawTensor,
    TensorSource,
};

use crate::columns::OwnedScratch;
use crate::device::{AnyDevice, OpenedDevice};
use crate::error::LoadError;
use crate::image_file::ImageFile;
use crate::model_file::GgufBytes;
use crate::options::{LoadEvents, SessionOptions};

/// The streaming source a session runs.
pub type Streamed = StreamSource<AnyDevice, S3Fifo, OwnedScratch>;

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
    /// How a sparse run reads its down columns, and the price of each way
    /// (`None` for a dense run).
    pub columns: Option<(Option<ColumnEstimate>, ColumnReads)>,
    /// Seconds to check the image's data against its CRCs.
    pub verify_seconds: f64,
    /// Whether reads are checked against the blocks verified at load.
    pub reads_verified: bool,
    /// The budget asked for (`usize::MAX`: none), which a plan holding
    /// everything may not use whole.
    pub asked_budget: usize,
    /// What the budget holds outside the arena.
    pub outside: Outside,
}

/// Nanoseconds since the first call: the ring's clock.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub(crate) enum DenseFail {
    Model(ModelLoadError),
    Load(LoadError),
}

/// A GGUF's tensors for [`Model::load`], their memory given back whenever
/// the next is asked for: the loader copies a tensor into the arena before
/// it asks for another, so the file is never resident beside its copy.
struct ReleasingSource<'a> {
    file: Gguf<'a>,
    bytes: &'a GgufBytes,
}

impl ReleasingSource<'_> {
    /// Gives back the tensor data's pages (the metadata, which every
    /// lookup reads, stays): the whole data section, not only the tensor
    /// copied last, because touching a tensor can map its neighbours too
    /// (the kernel maps pages around a fault, whole large folios).
    fn release_data(&self) {
        let bytes = self.bytes.bytes();
        let start = usize::try_from(self.file.data_offset()).unwrap_or(bytes.len());
        self.bytes.release(bytes.get(start..).unwrap_or_default());
    }
}

impl TensorSource for ReleasingSource<'_> {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, ModelLoadError> {
        self.release_data();
        let Some(info) = self.file.tensor(name) else {
            return Ok(None);
        };
        let data = self.file.data(&info).map_err(ModelLoadError::Format)?;
        Ok(Some(RawTensor {
            dtype: info.dtype,
            dims: info.dims,
            data,
        }))
    }
}

/// The whole GGUF in one locked arena of exactly the planned size.
pub(crate) fn load_dense(
    bytes: &GgufBytes,
    cfg: &LlamaConfig,
    arch: Arch,
    limits: Limits,
) -> Result<(Model, LockedArena, Option<LockReport>), DenseFail> {
    // `ModelFile::open` parsed these bytes already.
    let file =
        Gguf::parse(bytes.bytes()).map_err(|e| DenseFail::Model(ModelLoadError::Format(e)))?;
    let plan = MemoryPlan::dense_for(&file, cfg, &arch, &limits).map_err(DenseFail::Model)?;
    let mut arena = new_arena(plan.total()).map_err(DenseFail::Load)?;
    // Locking is best effort: the report says how much it achieved.
    let lock = arena.lock().ok();
    let source = ReleasingSource { file, bytes };
    let model =
        Model::load_for(&source, *cfg, arch, limits, &mut arena).map_err(DenseFail::Model)?;
    bytes.release(bytes.bytes());
    plan.arena_use
        .check(&arena)
        .map_err(|m| DenseFail::Model(m.into()))?;
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

pub(crate) enum StreamFail {
    Model(ModelLoadError),
    Load(LoadError),
}

impl From<ModelLoadError> for StreamFail {
    fn from(e: ModelLoadError) -> Self {
        StreamFail::Model(e)
    }
}

/// The block every read is made of, and the data bytes whose blocks are
/// checked (0 when reads are trusted): with checks, reads are whole check
/// blocks ([`CHECK_BLOCK`], or the image's block when smaller, or the
/// device's when larger), so every read covers whole checksums.
fn read_block(image: &ImageFile, opts: &SessionOptions, dev: &AnyDevice) -> (usize, u64) {
    let dev_block = dev.geometry().block_size as usize;
    if !opts.verify_reads {
        return (dev_block, 0);
    }
    let img = image.image();
    let h = img.header();
    let image_block = h.block_size as usize;
    let block = dev_block.max(CHECK_BLOCK.min(image_block));
    if !h.meta_len.is_multiple_of(block as u64) {
        // A device whose blocks are larger than the image's: the loader
        // refuses the image with the fix (repack with a larger block).
        return (dev_block, 0);
    }
    (block, h.file_len - h.meta_len)
}

/// The plan of `layout` under `budget` on `dev`, and what the budget holds
/// outside the arena: the device's bounce buffers and `scratch`.
#[allow(clippy::too_many_arguments)]
fn plan_streamed(
    image: &ImageFile,
    layout: &StreamLayout,
    cfg: &LlamaConfig,
    limits: &Limits,
    budget: usize,
    opts: &SessionOptions,
    dev: &AnyDevice,
    (scratch, sparse): (&OwnedScratch, bool),
) -> Result<(StreamPlan, Outside), StreamFail> {
    let (block, checked) = read_block(image, opts, dev);
    let outside = Outside {
        bounce: dev.bounce_bytes(),
        sparse_scratch: scratch.bytes(),
    };
    let stream_opts = StreamOptions {
        budget: budget.saturating_sub(outside.total()),
        ring: opts.ring.unwrap_or_else(|| layout.ring_for(sparse)),
        block,
        stream_all: false,
        sparse,
        checked,
    };
    let with_outside = |e: ModelLoadError| match e {
        ModelLoadError::BudgetTooSmall { need, .. } => {
            StreamFail::Load(LoadError::BudgetTooSmall {
                need: need.saturating_add(outside.total()),
                have: budget,
                kv: KvLayout::new(cfg, &layout.arch)
                    .plan_bytes(limits.max_context, limits.max_batch, limits.contexts)
                    .exact,
                positions: limits.max_context,
                contexts: limits.contexts,
            })
        }
        e => StreamFail::Model(e),
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
pub(crate) fn load_streamed(
    image: &ImageFile,
    opened: OpenedDevice,
    (cfg, arch): (&LlamaConfig, Arch),
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
    // The sparse run's buffers, counted in the budget outside the arena.
    // The device's block and largest read, which size them, stay the same
    // when it is reopened with less bounce memory below.
    let (read_block, _) = read_block(image, opts, &dev);
    let columns = crate::columns::choose(&layout, &dev, read_block, opts);
    let sparse_reads = columns.is_some_and(|(_, r)| r == ColumnReads::Sparse);
    let scratch = OwnedScratch::new(&layout, &dev, sparse_reads);
    let replan = |dev: &AnyDevice| {
        let sparse = (&scratch, sparse_reads);
        plan_streamed(image, &layout, cfg, &limits, budget, opts, dev, sparse)
    };
    let (mut plan, mut outside) = replan(&dev)?;
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
            (plan, outside) = replan(&dev)?;
        }
    }
    let mut dev = dev.with_faults(opts.faults);
    let block = plan.block;
    let sparse = plan.sparse;
    events.plan(image.path(), image.weight_bytes(), &limits, &plan, &outside);
    if let Some((estimate, reads)) = &columns {
        events.columns(estimate.as_ref(), *reads);
    }
    let mut arena = new_arena(plan.budget).map_err(StreamFail::Load)?;
    let lock = arena.lock().ok();

    // The block checks first (they stay), then the pass that verifies the
    // image's stored CRCs and records every block's for the reads that
    // follow, through a buffer given back afterwards; the checks only when
    // the plan counted their table (see `read_block`).
    let checks = if plan.bytes.checks > 0 {
        let h = img.header();
        let c = BlockChecks::new(
            &mut arena,
            h.meta_len,
            h.file_len,
            block,
            lode_hal::checksum::crc32c,
        )
        .map_err(ModelLoadError::from)?;
        Some(c)
    } else {
        None
    };
    let mut verify_seconds = 0.0;
    if opts.verify || checks.is_some() {
        let t = Instant::now();
        let chunk = (plan.budget / 2).clamp(block, 8 << 20) / block * block;
        let slot = arena
            .alloc(chunk, block.max(64), SlotKind::IoBuffer)
            .map_err(ModelLoadError::arena)?;
        verify_and_record(
            &mut dev,
            &mut arena,
            &img,
            slot,
            checks.as_ref(),
            |done, total| events.verify(done, total),
        )?;
        arena.free(slot).map_err(ModelLoadError::arena)?;
        verify_seconds = t.elapsed().as_secs_f64();
    }
    let setup = sparse.then(|| SparseSetup {
        sparsity: opts.sparsity,
        policy: opts.neuron_cache.then(|| S3Fifo::new(10)),
        scratch,
    });
    let reads = Reads {
        clock: now_ns,
        checks,
    };
    let mut source =
        Streamed::load_with(dev, &mut arena, layout, cfg, &limits, plan, reads, setup)?;
    if columns.is_some_and(|(_, r)| r == ColumnReads::Whole) {
        source.keep_strongest(opts.sparsity)?;
    }
    let mut model = Model::new_for(*cfg, arch, limits, source, &mut arena)?;
    if img.arch_params().is_some_and(|a| a.approx_head) {
        // A re-quantized copy of the tied head: the likely tokens' logits
        // come from the embedding table's rows.
        model.refine_head(lode_kernel::limits::REFINED_LOGITS)?;
    }
    // One accountant: the arena holds exactly what the plan counted.
    plan.arena_use.check(&arena).map_err(ModelLoadError::from)?;
    let info = StreamInfo {
        device: name,
        mode,
        plan,
        sparsity: opts.sparsity,
        columns,
        verify_seconds,
        reads_verified: checks.is_some(),
        asked_budget: budget,
        outside,
    };
    Ok((model, arena, lock, info))
}
