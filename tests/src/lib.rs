//! Shared fixtures for lode's cross-crate tests (in `tests/`): temporary
//! files that delete themselves and small, fully valid lode images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lode_formats::image::{ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry};
use lode_formats::DType;

/// A file under the system temp dir, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// A new file holding `bytes`, with a name unique to this process.
    pub fn with_bytes(bytes: &[u8]) -> TempFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("lode-test-{}-{n}.bin", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        TempFile { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bytes of bundle `pos` of `layer` in [`small_image`]: distinct everywhere.
pub fn bundle_byte(layer: u32, neuron: u32, i: usize) -> u8 {
    (layer as usize * 131 + neuron as usize * 17 + i * 3) as u8
}

/// A small valid image: `layers` layers of `neurons` Q8_0 bundles over a
/// hidden size of 64 (3 x 68 = 204 bytes each) in a reversed placement, plus
/// two tensors. Returns the file bytes.
pub fn small_image(layers: u32, neurons: u32, block_size: u32) -> Vec<u8> {
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").expect("arch"),
        layers,
        hidden: 64,
        ffn: neurons,
        heads: 2,
        kv_heads: 1,
        head_dim: 32,
        vocab: 32,
        context: 128,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        fingerprint: 0x10DE,
    };
    let q = Some(DType::Q8_0);
    let parts = BundleParts {
        gate: q,
        up: q,
        down: q,
    };
    let bundle = 3 * DType::Q8_0.row_bytes(64).expect("row") as usize;
    let mut b = ImageBuilder::new(geometry);
    b.block_size(block_size);
    b.add_tensor(
        "token_embd.weight",
        DType::F32,
        &[64, 32],
        vec![1u8; 64 * 32 * 4],
    )
    .expect("tensor");
    b.add_tensor("output_norm.weight", DType::F32, &[64], vec![2u8; 256])
        .expect("tensor");
    for l in 0..layers {
        // Position p holds neuron perm[p] = neurons - 1 - p.
        let perm: Vec<u32> = (0..neurons).rev().collect();
        let mut data = Vec::with_capacity(bundle * neurons as usize);
        for &n in &perm {
            data.extend((0..bundle).map(|i| bundle_byte(l, n, i)));
        }
        b.add_layer(LayerSpec::new(parts, data, perm));
    }
    b.to_bytes().expect("image")
}

/// A global allocator that counts allocations and otherwise defers to the
/// system's: a test installs it (`#[global_allocator]`) to prove a code path
/// allocates nothing, or at most a stated bound. [`CountingAlloc::count`]
/// counts every thread's, so keep such a test alone in its file;
/// [`CountingAlloc::thread`] counts only the calling thread's, so tests that
/// use it can run side by side.
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// This thread's allocations and bytes requested (a reallocation counts
    /// as one allocation of its new size): plain cells, so updating them
    /// from inside the allocator allocates nothing.
    static THREAD: (std::cell::Cell<u64>, std::cell::Cell<u64>) =
        const { (std::cell::Cell::new(0), std::cell::Cell::new(0)) };
}

/// Allocations a thread made, and the bytes they requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allocated {
    /// Allocations and reallocations.
    pub count: u64,
    /// Bytes requested by them (a reallocation counts its whole new size,
    /// so this bounds what was held at any one time from above).
    pub bytes: u64,
}

impl CountingAlloc {
    /// Allocations (and reallocations) so far, by every thread.
    pub fn count() -> u64 {
        ALLOCATIONS.load(Ordering::SeqCst)
    }

    /// Allocations so far by the calling thread.
    pub fn thread() -> Allocated {
        THREAD
            .try_with(|(count, bytes)| Allocated {
                count: count.get(),
                bytes: bytes.get(),
            })
            .unwrap_or_default()
    }

    /// What `f` allocated on the calling thread, with its result.
    pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
        let before = Self::thread();
        let out = f();
        let after = Self::thread();
        let used = Allocated {
            count: after.count - before.count,
            bytes: after.bytes - before.bytes,
        };
        (out, used)
    }

    fn note(size: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // During thread teardown the cells may be gone: skip counting then.
        let _ = THREAD.try_with(|(count, bytes)| {
            count.set(count.get() + 1);
            bytes.set(bytes.get() + size as u64);
        });
    }
}

// SAFETY: defers to the system allocator unchanged; it only counts calls.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        Self::note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        Self::note(new_size);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// The real model's bytes (`LODE_MODEL`, else where `scripts/fetch-model`
/// puts it), or `None` with a note: tests that need it then pass without
/// checking.
pub fn real_model_bytes() -> Option<Vec<u8>> {
    model_bytes_at("LODE_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf", "")
}

/// [`real_model_bytes`] read once per test binary and shared by its tests.
pub fn real_model() -> Option<&'static [u8]> {
    static BYTES: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    BYTES.get_or_init(real_model_bytes).as_deref()
}

/// Gemma 3 270M's bytes (`LODE_GEMMA_MODEL`, else where `scripts/fetch-model
/// gemma3-270m` puts it), read once per test binary, or `None` with a note.
pub fn gemma_model() -> Option<&'static [u8]> {
    static BYTES: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    BYTES
        .get_or_init(|| {
            model_bytes_at(
                "LODE_GEMMA_MODEL",
                "gemma-3-270m-Q4_K_M.gguf",
                " (run scripts/fetch-model gemma3-270m)",
            )
        })
        .as_deref()
}

fn model_path(var: &str, file: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file)
    })
}

/// The bytes of the model file `$var` names, else `models/<file>`, or
/// `None` with a note (`hint` says how to get it).
fn model_bytes_at(var: &str, file: &str, hint: &str) -> Option<Vec<u8>> {
    let p = model_path(var, file);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("note: {}: {e}{hint}; skipping.", p.display());
            None
        }
    }
}

/// A GGUF llama model packed into a lode image as `lode pack` does, with the
/// bundles in the original neuron order and Q8_0 down columns.
pub fn pack_identity(gguf: &[u8]) -> Vec<u8> {
    pack_layout(gguf, lode_pack::image::FfnLayout::Bundled, |n, _| {
        (0..n).collect()
    })
}

/// A GGUF llama model packed as `lode pack --layout <layout>` does, with
/// Q8_0 down columns (where the layout has any) and layer `l`'s neurons in
/// the order `perm_of(ffn, l)` returns.
pub fn pack_layout(
    gguf: &[u8],
    layout: lode_pack::image::FfnLayout,
    perm_of: impl Fn(u32, usize) -> Vec<u32>,
) -> Vec<u8> {
    use lode_kernel::formats::gguf::Gguf;
    use lode_kernel::model::{LlamaConfig, LlamaConfigExt};
    let file = Gguf::parse(gguf).expect("a GGUF model");
    let cfg = LlamaConfig::from_gguf(&file.check_llama().expect("llama")).expect("config");
    let (b, _) = lode_pack::image::build_image(
        &file,
        &cfg,
        1,
        DType::Q8_0,
        layout,
        4096,
        |l| perm_of(cfg.ffn as u32, l),
        |_| {},
    )
    .expect("pack");
    b.to_bytes().expect("image bytes")
}

/// Where a test that loads a model and then runs it failed: loading or
/// evaluating, each with the kernel's error of that operation, so a test
/// can ask which operation a fault surfaced in as well as its kind.
#[derive(Debug, PartialEq)]
pub enum LoadOrEval {
    /// Planning or loading failed.
    Load(lode_kernel::model::LoadError),
    /// Evaluating failed.
    Eval(lode_kernel::model::EvalError),
}

impl LoadOrEval {
    /// The kind of either.
    pub fn kind(&self) -> lode_kernel::model::ErrorKind {
        match self {
            LoadOrEval::Load(e) => e.kind(),
            LoadOrEval::Eval(e) => e.kind(),
        }
    }
}

impl std::fmt::Display for LoadOrEval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadOrEval::Load(e) => write!(f, "loading: {e}"),
            LoadOrEval::Eval(e) => write!(f, "evaluating: {e}"),
        }
    }
}

impl From<lode_kernel::model::LoadError> for LoadOrEval {
    fn from(e: lode_kernel::model::LoadError) -> Self {
        LoadOrEval::Load(e)
    }
}

impl From<lode_kernel::model::EvalError> for LoadOrEval {
    fn from(e: lode_kernel::model::EvalError) -> Self {
        LoadOrEval::Eval(e)
    }
}

/// The index of the largest logit, the first of equals (as llama.cpp
/// picks its greedy token).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if v.get(best).is_some_and(|b| x > b) {
            best = i;
        }
    }
    best as u32
}

/// A golden file's array of token ids.
pub fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// `n` greedy tokens after `prompt`, one evaluation a token as `lode run`
/// decodes, and the last evaluation's logits; the context is cleared after.
pub fn greedy<W, A, C>(
    model: &mut lode_kernel::model::Model<W>,
    arena: &mut A,
    cpu: &mut C,
    prompt: &[u32],
    n: usize,
) -> Result<(Vec<u32>, Vec<f32>), lode_kernel::model::EvalError>
where
    W: lode_kernel::model::WeightSource,
    A: lode_kernel::arena::DramArena,
    C: lode_kernel::compute::Compute,
{
    let (mut out, mut feed, mut last) = (Vec::new(), prompt.to_vec(), Vec::new());
    let mut ctx = model.new_context();
    for _ in 0..n {
        let mut next = 0u32;
        let want = lode_kernel::model::WantLogits::Last;
        model.eval(&mut ctx, arena, cpu, &feed, want, |_, l| {
            next = (0..l.len())
                .max_by(|&a, &b| l[a].total_cmp(&l[b]))
                .unwrap_or(0) as u32;
            last = l.to_vec();
        })?;
        out.push(next);
        feed = vec![next];
    }
    ctx.clear(arena)?;
    Ok((out, last))
}

/// Two compute threads for `cfg`'s widest product, with scratch for
/// batches of `max_batch` rows: what the streaming tests run on.
pub fn cpu_for(
    cfg: &lode_kernel::model::LlamaConfig,
    max_batch: usize,
) -> lode_hal::compute::CpuCompute<'static> {
    use lode_hal::compute::{CpuCompute, CpuConfig};
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu =
        CpuCompute::new(CpuConfig::new(widest).with_threads(2).with_env()).expect("CPU compute");
    cpu.reserve_batch(widest, max_batch).expect("batch scratch");
    cpu
}
