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
    CacheConfig, HotPinned, HotWindow, LinkAdmission, Lru, NeuronCache, Policy, S3Fifo, Window,
};
use lode_kernel::fetch::{fetch_layer, BundleLoc, FetchIo, FetchScratch};
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
    /// PowerInfer-2: hottest profiled neurons pinned in a share of the
    /// slots ([`Setup::hot_share`]), LRU for the rest.
    Hot,
    /// Ripple: S3-FIFO with linking-aligned admission.
    Ripple,
    /// LLM in a flash's window of one token, evicting the coldest profiled
    /// neurons first (PowerInfer-2's heat) instead of pinning any.
    HotWindow,
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
            CacheKind::HotWindow => "hotwindow".into(),
            CacheKind::Ripple => "ripple".into(),
        }
    }
}

/// How the cache's slots are shared among layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// One cache per layer, the slots split evenly. Layers are visited in
    /// a cycle, so in one cache over all layers the misses of the early
    /// layers evict what the later layers of the previous token left, just
    /// before they need it (the LRU cliff of a loop slightly larger than
    /// the cache); a cache per layer cannot lose a layer's entries to
    /// another. LLM in a flash keeps its window per layer too.
    Layer,
    /// One cache over every layer's neurons.
    Model,
}

/// Most layers a per-layer cache scope supports (two arena slots each).
pub const MAX_CACHED_LAYERS: usize = 512;

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
    /// Profiled activation counts per layer (hot pinning, heat levels).
    pub counts: &'t [Vec<u32>],
    /// One cache per layer or one for the model.
    pub scope: CacheScope,
    /// Share of each cache's slots the hot policy pins (0 to 1).
    pub hot_share: f64,
}

/// Slots of each cache: one cache of `total` slots, or `total` split over
/// `layers` caches as evenly as whole slots allow (the first layers take the
/// remainder), so the budget is the same in both scopes.
pub fn cache_slots(total: u32, layers: u32, scope: CacheScope) -> Vec<u32> {
    match scope {
        CacheScope::Model => vec![total],
        CacheScope::Layer => {
            let layers = layers.max(1);
            (0..layers)
                .map(|l| total / layers + u32::from(l < total % layers))
                .collect()
        }
    }
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
    let layers = u32::try_from(s.layout.regions.len()).map_err(|_| "too many layers")?;
    let keys = match s.scope {
        CacheScope::Model => s.layout.neurons as usize * layers as usize,
        CacheScope::Layer => s.layout.neurons as usize,
    };
    let keys = u32::try_from(keys).map_err(|_| "more neurons than a cache can key")?;
    let slots = if kind == CacheKind::None {
        Vec::new()
    } else {
        cache_slots(s.cache_slots, layers, s.scope)
    };
    let bundle_bytes = s.layout.regions.first().map_or(1, |r| r.bundle_bytes);
    let cfgs: Vec<CacheConfig> = slots
        .iter()
        .map(|&slots| CacheConfig {
            slots,
            keys,
            bundle_bytes,
        })
        .collect();
    match kind {
        CacheKind::None => run::<F, Lru>(dev, s, inverse, &[], |_| Lru::new(), mode),
        CacheKind::Lru => run(dev, s, inverse, &cfgs, |_| Lru::new(), mode),
        CacheKind::S3Fifo => run(dev, s, inverse, &cfgs, |_| S3Fifo::default(), mode),
        CacheKind::Window(k) => run(dev, s, inverse, &cfgs, |_| Window::new(k), mode),
        CacheKind::Ripple => run(
            dev,
            s,
            inverse,
            &cfgs,
            |c| LinkAdmission::new(S3Fifo::default(), 0x5eed + c as u64),
            mode,
        ),
        CacheKind::Hot => {
            let hot = hot_keys(s, inverse, &slots);
            run(dev, s, inverse, &cfgs, |c| HotPinned::new(&hot[c]), mode)
        }
        CacheKind::HotWindow => {
            let heat = heat_levels(s, inverse, slots.len());
            run(dev, s, inverse, &cfgs, |c| HotWindow::new(&heat[c]), mode)
        }
    }
}

/// The heat level of every key of each of `caches` caches (one per layer,
/// or one for the model), from the profiled activation counts.
fn heat_levels(s: &Setup<'_>, inverse: &[Vec<u32>], caches: usize) -> Vec<Vec<u8>> {
    let n = s.layout.neurons as usize;
    let mut heat = vec![vec![0u8; if caches == 1 { n * inverse.len() } else { n }]; caches];
    for (l, counts) in s.counts.iter().enumerate() {
        let (cache, base) = if caches == 1 { (0, l * n) } else { (l, 0) };
        for (neuron, &c) in counts.iter().enumerate() {
            heat[cache][base + inverse[l][neuron] as usize] =
                HotWindow::heat_level(c, s.tokens.start);
        }
    }
    heat
}

/// The hottest profiled neurons of each cache, as its keys (placement
/// positions, layer-major in a model-wide cache), sorted: a `hot_share` of
/// each cache's `slots`.
fn hot_keys(s: &Setup<'_>, inverse: &[Vec<u32>], slots: &[u32]) -> Vec<Vec<u32>> {
    let neurons = s.layout.neurons;
    let pin = |slots: u32| (f64::from(slots) * s.hot_share.clamp(0.0, 1.0)) as usize;
    let hottest = |mut all: Vec<(u32, u32)>, n: usize| {
        all.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut keys: Vec<u32> = all.into_iter().take(n).map(|(_, k)| k).collect();
        keys.sort_unstable();
        keys
    };
    match s.scope {
        CacheScope::Model => {
            let mut all = Vec::new();
            for (l, counts) in s.counts.iter().enumerate() {
                for (neuron, &c) in counts.iter().enumerate() {
                    all.push((c, l as u32 * neurons + inverse[l][neuron]));
                }
            }
            vec![hottest(all, pin(slots.first().copied().unwrap_or(0)))]
        }
        CacheScope::Layer => s
            .counts
            .iter()
            .zip(slots)
            .enumerate()
            .map(|(l, (counts, &n))| {
                let all = counts
                    .iter()
                    .enumerate()
                    .map(|(neuron, &c)| (c, inverse[l][neuron]))
                    .collect();
                hottest(all, pin(n))
            })
            .collect(),
    }
}

/// Replay with one cache per entry of `cfgs` (none, one for the model, or
/// one per layer), each with the policy `policy(cache index)`.
fn run<F: Timed, P: Policy>(
    dev: &mut F,
    s: &Setup<'_>,
    inverse: &[Vec<u32>],
    cfgs: &[CacheConfig],
    policy: impl Fn(usize) -> P,
    mode: Mode,
) -> Result<Totals, Box<dyn Error>> {
    const ARENA_SLOTS: usize = 2 * MAX_CACHED_LAYERS + 1;
    if cfgs.len() > MAX_CACHED_LAYERS {
        return Err(format!(
            "a cache per layer supports at most {MAX_CACHED_LAYERS} layers; use --cache-scope model"
        )
        .into());
    }
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
    let block = geo.block_size as usize;
    let mut cache_len = 0usize;
    for (c, cfg) in cfgs.iter().enumerate() {
        // Each cache takes two slots: words (4-aligned) and bundles (64-aligned).
        let bytes = cfg.arena_bytes(&policy(c)).ok_or("cache too large")?;
        cache_len = cache_len.saturating_add(bytes + 128);
    }
    let mut mem = vec![0u8; io_len as usize + cache_len + 4 * block + 4096];
    let mut arena: Box<SliceArena<'_, ARENA_SLOTS>> = Box::new(SliceArena::with_slots(&mut mem));
    let arena = &mut *arena;
    let io = arena
        .alloc(io_len.max(1) as usize, block, SlotKind::IoBuffer)
        .map_err(|e| format!("I/O buffer: {e}"))?;
    // A layer whose share of the budget is 0 slots has no cache.
    let mut caches: Vec<Option<NeuronCache<P>>> = Vec::with_capacity(cfgs.len());
    for (c, cfg) in cfgs.iter().enumerate() {
        caches.push(if cfg.slots == 0 {
            None
        } else {
            Some(NeuronCache::new(arena, *cfg, policy(c)).map_err(|e| format!("cache: {e}"))?)
        });
    }
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
            // The layer's cache and where its keys start in that cache.
            let (cache, key_base) = match caches.len() {
                0 => (None, 0),
                1 => (caches[0].as_mut(), l as u32 * s.layout.neurons),
                _ => (caches[l].as_mut(), 0),
            };
            let f = fetch_layer(
                dev,
                arena,
                cache,
                region,
                key_base,
                &positions,
                token,
                mode,
                FetchIo {
                    slot: io,
                    checks: None,
                },
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
        for c in caches.iter_mut().flatten() {
            c.end_token(arena, token)
                .map_err(|e| format!("cache: {e}"))?;
        }
        t.tokens += 1;
    }
    Ok(t)
}
