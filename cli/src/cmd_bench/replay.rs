//! Replaying an activation trace through placement, cache and read planning
//! on a flash device, one strategy at a time.

use std::error::Error;
use std::time::Instant;

use lode_formats::trace::Trace;
use lode_hal::fake::FakeFlash;
use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::FileFlash;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cache::{
    CacheConfig, HotPinned, LinkAdmission, Lru, NeuronCache, Policy, S3Fifo, Window,
};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchScratch};
use lode_kernel::flash::FlashDevice;
use lode_kernel::plan::{self, Extent, Mode, Region};

/// Where each layer's bundles are on the device.
#[derive(Debug, Clone)]
pub struct Layout {
    /// One region per layer.
    pub regions: Vec<Region>,
    /// Neurons (bundles) per layer.
    pub neurons: u32,
}

/// Which cache a strategy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CacheKind {
    /// No cache.
    None,
    /// Least recently used.
    Lru,
    /// S3-FIFO.
    S3Fifo,
    /// LLM in a flash: neurons of the last `k` tokens.
    Window(u32),
    /// PowerInfer-2: hottest profiled neurons pinned in half the slots, LRU for the rest.
    Hot,
    /// Ripple: S3-FIFO with linking-aligned admission.
    Ripple,
}

impl CacheKind {
    /// Short name for tables.
    pub fn name(&self) -> String {
        match self {
            CacheKind::None => "none".into(),
            CacheKind::Lru => "lru".into(),
            CacheKind::S3Fifo => "s3fifo".into(),
            CacheKind::Window(k) => format!("window{k}"),
            CacheKind::Hot => "hot".into(),
            CacheKind::Ripple => "ripple".into(),
        }
    }
}

/// Sums over the replayed tokens.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    /// Tokens replayed.
    pub tokens: u64,
    /// Read commands.
    pub commands: u64,
    /// Bytes read from the device.
    pub bytes_read: u64,
    /// Bytes of active bundles (before the cache).
    pub active_bytes: u64,
    /// Bytes of active bundles that missed the cache: what a perfect reader
    /// of this strategy must read.
    pub needed_bytes: u64,
    /// Cache hits.
    pub hits: u64,
    /// Cache misses.
    pub misses: u64,
    /// I/O time: virtual on a fake device, measured on a file.
    pub io_ns: u64,
    /// Physical bound: `needed_bytes` at the device's sequential bandwidth.
    pub bound_ns: u64,
    /// Layers whose plan chose one dense read.
    pub dense_layers: u64,
    /// Layers whose plan was bandwidth-bound.
    pub bandwidth_bound_layers: u64,
}

/// A device the benchmark can time.
pub trait Timed: FlashDevice {
    /// Nanoseconds the device spent on I/O so far (virtual or measured).
    fn io_ns(&self) -> u64;
    /// `true` when time is measured on a real clock around each fetch.
    fn wall_clock(&self) -> bool;
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Timed for FakeFlash<S> {
    fn io_ns(&self) -> u64 {
        self.now_ns()
    }
    fn wall_clock(&self) -> bool {
        false
    }
}

impl Timed for FileFlash {
    fn io_ns(&self) -> u64 {
        0
    }
    fn wall_clock(&self) -> bool {
        true
    }
}

/// Everything one replay needs besides the strategy.
pub struct Setup<'t> {
    /// The trace.
    pub trace: &'t Trace<'t>,
    /// Tokens to replay.
    pub tokens: std::ops::Range<u32>,
    /// Device layout.
    pub layout: &'t Layout,
    /// Cache slots (0 disables caching for every strategy).
    pub cache_slots: u32,
    /// Profiled activation counts per layer (for hot pinning).
    pub counts: &'t [Vec<u32>],
}

/// Replay with `inverse[layer][neuron] = position`, a cache of `kind` and
/// read planning `mode`.
pub fn replay<F: Timed>(
    dev: &mut F,
    s: &Setup<'_>,
    inverse: &[Vec<u32>],
    kind: CacheKind,
    mode: Mode,
) -> Result<Totals, Box<dyn Error>> {
    let keys = s.layout.neurons as usize * s.layout.regions.len();
    let keys = u32::try_from(keys).map_err(|_| "more neurons than a cache can key")?;
    let slots = if kind == CacheKind::None {
        0
    } else {
        s.cache_slots
    };
    let cfg = CacheConfig {
        slots,
        keys,
        bundle_bytes: s.layout.regions.first().map_or(1, |r| r.bundle_bytes),
    };
    match kind {
        CacheKind::None => run::<F, Lru>(dev, s, inverse, None, cfg, mode),
        CacheKind::Lru => run(dev, s, inverse, Some(Lru::new()), cfg, mode),
        CacheKind::S3Fifo => run(dev, s, inverse, Some(S3Fifo::default()), cfg, mode),
        CacheKind::Window(k) => run(dev, s, inverse, Some(Window::new(k)), cfg, mode),
        CacheKind::Ripple => run(
            dev,
            s,
            inverse,
            Some(LinkAdmission::new(S3Fifo::default(), 0x5eed)),
            cfg,
            mode,
        ),
        CacheKind::Hot => {
            let hot = hot_keys(s, inverse, slots / 2);
            run(dev, s, inverse, Some(HotPinned::new(&hot)), cfg, mode)
        }
    }
}

/// The `n` most frequently profiled neurons as cache keys (layer-major
/// placement positions), sorted.
fn hot_keys(s: &Setup<'_>, inverse: &[Vec<u32>], n: u32) -> Vec<u32> {
    let neurons = s.layout.neurons;
    let mut all: Vec<(u32, u32)> = Vec::new();
    for (l, counts) in s.counts.iter().enumerate() {
        for (neuron, &c) in counts.iter().enumerate() {
            all.push((c, l as u32 * neurons + inverse[l][neuron]));
        }
    }
    all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut keys: Vec<u32> = all.into_iter().take(n as usize).map(|(_, k)| k).collect();
    keys.sort_unstable();
    keys
}

fn run<F: Timed, P: Policy>(
    dev: &mut F,
    s: &Setup<'_>,
    inverse: &[Vec<u32>],
    policy: Option<P>,
    cfg: CacheConfig,
    mode: Mode,
) -> Result<Totals, Box<dyn Error>> {
    let geo = dev.geometry();
    let cost = dev.cost_model();
    let io_len = s
        .layout
        .regions
        .iter()
        .map(|r| plan::io_bytes_bound(r, &geo, mode))
        .max()
        .unwrap_or(0);
    let ext_len = s
        .layout
        .regions
        .iter()
        .map(|r| plan::extents_bound(r, &geo, mode))
        .max()
        .unwrap_or(0);
    let cache_len = policy
        .as_ref()
        .and_then(|p| cfg.arena_bytes(p))
        .unwrap_or(0);
    let block = geo.block_size as usize;
    let mut mem = vec![0u8; io_len as usize + cache_len + 4 * block + 4096];
    let mut arena: SliceArena<'_, 8> = SliceArena::with_slots(&mut mem);
    let io = arena
        .alloc(io_len.max(1) as usize, block, SlotKind::IoBuffer)
        .map_err(|e| format!("I/O buffer: {e}"))?;
    let mut cache = match policy {
        Some(p) => Some(NeuronCache::new(&mut arena, cfg, p).map_err(|e| format!("cache: {e}"))?),
        None => None,
    };
    let n = s.layout.neurons as usize;
    let mut missing = vec![0u32; n];
    let mut extents = vec![Extent::default(); ext_len as usize];
    let mut locs = vec![BundleLoc::Nowhere; n];
    let mut positions: Vec<u32> = Vec::with_capacity(n);
    let mut t = Totals::default();
    for token in s.tokens.clone() {
        for (l, region) in s.layout.regions.iter().enumerate() {
            positions.clear();
            positions.extend(
                s.trace
                    .active(token, l as u32)?
                    .iter()
                    .map(|nr| inverse[l][nr as usize]),
            );
            positions.sort_unstable();
            let mut scratch = FetchScratch {
                missing: &mut missing,
                extents: &mut extents,
                locs: &mut locs,
            };
            let before = dev.io_ns();
            let wall = Instant::now();
            let f = fetch_layer(
                dev,
                &mut arena,
                cache.as_mut(),
                region,
                l as u32 * s.layout.neurons,
                &positions,
                token,
                mode,
                io,
                &mut scratch,
            )
            .map_err(|e| format!("token {token} layer {l}: {e}"))?;
            t.io_ns += if dev.wall_clock() {
                wall.elapsed().as_nanos() as u64
            } else {
                dev.io_ns() - before
            };
            t.commands += u64::from(f.plan.commands);
            t.bytes_read += f.plan.bytes;
            t.needed_bytes += f.needed_bytes;
            t.active_bytes += positions.len() as u64 * u64::from(region.bundle_bytes);
            t.hits += u64::from(f.hits);
            t.misses += u64::from(f.misses);
            t.bound_ns += cost.transfer_ns(f.needed_bytes);
            t.dense_layers += u64::from(f.plan.strategy == plan::Strategy::Dense);
            t.bandwidth_bound_layers += u64::from(f.plan.bandwidth_bound);
        }
        if let Some(c) = cache.as_mut() {
            c.end_token(&mut arena, token)
                .map_err(|e| format!("cache: {e}"))?;
        }
        t.tokens += 1;
    }
    Ok(t)
}
