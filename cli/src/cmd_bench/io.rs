//! `lode bench io`: replay an activation trace against bundle regions on a
//! device for every placement x cache policy x merging choice, plus the
//! dense and per-bundle baselines, side by side in one run.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use lode_formats::input::{read_file, Input, TRACE_LIMIT};
use lode_formats::trace::Trace;
use lode_hal::fake::{FakeFlash, FaultPlan};

use lode_hal_linux::{BlockFlash, BlockFlashOptions};
use lode_kernel::flash::{FlashDevice, Geometry};
use lode_kernel::placement;
use lode_kernel::plan::Mode;
use lode_pack::output::Output;
use lode_pack::placement::{place, PlacementKind};
use lode_pack::synth::SynthParams;
use lode_runtime::DeviceSpec as DeviceArg;

use super::replay::{replay, CacheKind, CacheScope, Setup, Timed};

mod layouts;
use super::report::{self, Row};
use crate::cmd_trace::{self, Preset};
use crate::progress::{Meters, Progress};
use layouts::{contiguous_layout, image_layout};

/// Arguments of `lode bench io`.
#[derive(clap::Args, Debug)]
pub struct IoArgs {
    /// Activation trace to replay (`lode trace synth` or `lode profile`).
    /// Without it a trace is synthesised from --synth.
    #[arg(long, conflicts_with = "synth")]
    pub trace: Option<PathBuf>,
    /// Synthesise an OPT-like or Llama-like 7B-geometry trace in memory.
    #[arg(long, value_enum, default_value = "opt")]
    pub synth: Preset,
    /// Tokens of the synthesised trace.
    #[arg(long, default_value_t = 64)]
    pub tokens: u32,
    /// Seed of the synthesised trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Take bundle regions (offsets, sizes) from this lode image instead of
    /// laying out the trace's geometry contiguously.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Bytes per neuron bundle of a laid-out geometry. Default 5120: an
    /// OPT-6.7B up row and down column (hidden 4096) at Q4_1; 16384 is fp16.
    #[arg(long, default_value_t = 5120)]
    pub bundle_bytes: u32,
    /// Device: `fake:<profile>` (disk, ufs31, ufs40, emmc51, nvme; virtual
    /// time from the profile's cost model) or `file:<path>` (measured,
    /// through BlockFlash: O_DIRECT and io_uring where allowed; the setup
    /// that ran is printed).
    #[arg(long, default_value = "fake:ufs40")]
    pub device: String,
    /// Cache size as a fraction of all FFN bundles of the model.
    #[arg(long, default_value_t = 0.05)]
    pub cache_fraction: f64,
    /// How the cache's slots are shared: `layer` splits them evenly over one
    /// cache per layer (a layer's entries cannot be evicted by the layers
    /// before it); `model` keeps one cache over all layers.
    #[arg(long, value_enum, default_value = "layer")]
    pub cache_scope: CacheScope,
    /// Share of each cache's slots the hot policy (PowerInfer-2) pins to the
    /// most frequently profiled neurons; LRU manages the rest.
    #[arg(long, default_value_t = 0.25)]
    pub hot_share: f64,
    /// Window of the LLM-in-a-flash cache, in tokens.
    #[arg(long, default_value_t = 4)]
    pub window: u32,
    /// Fraction of the trace's tokens used for profiling and placement; the
    /// rest are replayed (so placement is never scored on the tokens it saw).
    #[arg(long, default_value_t = 0.5)]
    pub profile_fraction: f64,
    /// Replay only the strategies whose name contains one of these words
    /// (e.g. `--only coact+hot`); the two baselines always run.
    #[arg(long, num_args = 1..)]
    pub only: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw I/O time per strategy as an SVG bar chart.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// A placement under test.
struct Placed {
    name: &'static str,
    inverse: Vec<Vec<u32>>,
}

/// Open a `file:` device through `BlockFlash`: O_DIRECT where the file
/// system allows it, io_uring where the kernel allows it (the report says
/// which ran, and why).
fn open_file_device(path: &PathBuf) -> Result<BlockFlash, Box<dyn Error>> {
    // Refused by name first, without blocking (BlockFlash's own open would
    // wait forever on a FIFO).
    Input::open(path)?;
    BlockFlash::open(path, BlockFlashOptions::default())
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

impl Timed for BlockFlash {
    fn io_ns(&self) -> u64 {
        0
    }
    fn wall_clock(&self) -> bool {
        true
    }
}

/// Every file the benchmark reads (the device's when it is a file), which
/// its plot must not be.
fn inputs(args: &IoArgs) -> Vec<&Path> {
    let device = args.device.strip_prefix("file:").map(Path::new);
    [args.trace.as_deref(), args.image.as_deref(), device]
        .into_iter()
        .flatten()
        .collect()
}

/// Run the benchmark.
pub fn run(args: &IoArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    if !(0.0..=1.0).contains(&args.cache_fraction)
        || !(0.0..=1.0).contains(&args.hot_share)
        || !(0.05..=0.95).contains(&args.profile_fraction)
    {
        return Err(
            "--cache-fraction and --hot-share must be 0 to 1, --profile-fraction 0.05 to 0.95"
                .into(),
        );
    }
    // The plot's path is checked before any work.
    let plot = match &args.plot {
        Some(p) => Some(Output::check(p, &inputs(args))?),
        None => None,
    };
    // The trace.
    let (bytes, source) = match &args.trace {
        Some(p) => (read_file(p, TRACE_LIMIT)?, p.display().to_string()),
        None => {
            let p = match args.synth {
                Preset::Opt => SynthParams::opt_like(args.tokens, args.seed),
                Preset::Llama => SynthParams::llama_like(args.tokens, args.seed),
            };
            let label = format!(
                "synthetic {:?}-like, {} tokens, seed {}",
                args.synth, args.tokens, args.seed
            )
            .to_lowercase();
            (cmd_trace::synthesize(&p, Vec::new(), args.json)?, label)
        }
    };
    let trace = Trace::parse(&bytes).map_err(|e| format!("{source}: {e}"))?;
    let h = trace.header();
    let profile_tokens = ((f64::from(h.tokens) * args.profile_fraction) as u32)
        .clamp(1, h.tokens.saturating_sub(1).max(1));
    if h.tokens < 2 {
        return Err("the trace needs at least 2 tokens: some to profile, some to replay".into());
    }
    // Offline: profile the first tokens and compute placements.
    let placed = place(&trace, profile_tokens, &mut Meters::new(args.json))?;
    let inverse = |kind: PlacementKind| -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
        (0..h.layers as usize)
            .map(|l| {
                placement::inverse(&placed.perm(kind, l, h.neurons))
                    .ok_or_else(|| "a placement is not a permutation".into())
            })
            .collect()
    };
    let placements = [
        Placed {
            name: "identity",
            inverse: inverse(PlacementKind::Identity)?,
        },
        Placed {
            name: "freq",
            inverse: inverse(PlacementKind::Freq)?,
        },
        Placed {
            name: "coact",
            inverse: inverse(PlacementKind::Coact)?,
        },
    ];
    let (offline_s, profile_s, counts) = (placed.total_s, placed.profile_s, placed.counts);

    // The device and layout. A file is opened first: its block size (the
    // direct-I/O alignment it reports) shapes the layout.
    let device = DeviceArg::parse(&args.device)?;
    let mut file_dev = match &device {
        DeviceArg::File(path) => Some(open_file_device(path)?),
        DeviceArg::Fake(_) => None,
        DeviceArg::PacedFake(_) => {
            return Err(
                "bench io replays in virtual time: name fake:<profile> without ,paced".into(),
            )
        }
    };
    let block = match (&device, &file_dev) {
        (_, Some(dev)) => dev.geometry().block_size,
        (DeviceArg::Fake(p), None) => p.geometry.block_size,
        (_, None) => return Err("the file device did not open".into()),
    };
    let device_label = match &file_dev {
        Some(dev) => format!("{} [{}]", args.device, dev.report()),
        None => args.device.clone(),
    };
    let layout = match &args.image {
        Some(p) => image_layout(p, h.layers, h.neurons)?,
        None => contiguous_layout(h.layers, h.neurons, args.bundle_bytes, block),
    };
    let end = layout
        .regions
        .iter()
        .map(|r| r.end().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let total_bundles = u64::from(h.layers) * u64::from(h.neurons);
    let cache_slots = (total_bundles as f64 * args.cache_fraction).round() as u32;
    let setup = Setup {
        trace: &trace,
        tokens: profile_tokens..h.tokens,
        layout: &layout,
        cache_slots,
        counts: &counts,
        scope: args.cache_scope,
        hot_share: args.hot_share,
    };

    let mut strategies: Vec<(String, usize, CacheKind, Mode, bool)> = vec![
        (
            "baseline: per-bundle".into(),
            0,
            CacheKind::None,
            Mode::PerBundle,
            true,
        ),
        (
            "baseline: dense".into(),
            0,
            CacheKind::None,
            Mode::Dense,
            true,
        ),
    ];
    let caches = [
        CacheKind::None,
        CacheKind::Lru,
        CacheKind::S3Fifo,
        CacheKind::Window(args.window),
        CacheKind::Hot,
        CacheKind::HotWindow,
        CacheKind::Ripple,
    ];
    for (pi, p) in placements.iter().enumerate() {
        for &c in &caches {
            for merge in [false, true] {
                let name = format!(
                    "{}+{}+{}",
                    p.name,
                    c.name(),
                    if merge { "merge" } else { "nomerge" }
                );
                if args.only.is_empty() || args.only.iter().any(|w| name.contains(w.as_str())) {
                    strategies.push((name, pi, c, Mode::Adaptive { merge }, false));
                }
            }
        }
    }
    let mut rows = Vec::new();
    let mut progress = Progress::new("replay", strategies.len() as u64, args.json);
    let (geometry, bandwidth, clock) = match &device {
        DeviceArg::Fake(p) => {
            let g = Geometry {
                capacity: end.div_ceil(u64::from(block)) * u64::from(block) + u64::from(block),
                ..p.geometry
            };
            let mut dev = FakeFlash::timing_only(g, p.cost, FaultPlan::none());
            for (name, pi, c, mode, baseline) in &strategies {
                let t = replay(&mut dev, &setup, &placements[*pi].inverse, *c, *mode)?;
                rows.push(Row::new(
                    name,
                    placements[*pi].name,
                    *c,
                    *mode,
                    *baseline,
                    t,
                ));
                progress.tick(1);
            }
            (dev.geometry(), p.cost.bytes_per_sec, "virtual (cost model)")
        }
        DeviceArg::File(path) => {
            let dev = file_dev.as_mut().ok_or("the file device did not open")?;
            if dev.geometry().capacity < end {
                return Err(format!(
                    "{} holds {} bytes but the layout needs {end}",
                    path.display(),
                    dev.geometry().capacity
                )
                .into());
            }
            for (name, pi, c, mode, baseline) in &strategies {
                let t = replay(dev, &setup, &placements[*pi].inverse, *c, *mode)?;
                rows.push(Row::new(
                    name,
                    placements[*pi].name,
                    *c,
                    *mode,
                    *baseline,
                    t,
                ));
                progress.tick(1);
            }
            (
                dev.geometry(),
                dev.cost_model().bytes_per_sec,
                "measured (wall clock)",
            )
        }
        // Refused where the device is opened, above.
        DeviceArg::PacedFake(_) => return Err("bench io does not pace the fake flash".into()),
    };
    progress.finish();
    if let (Some(dev), false) = (&file_dev, args.json) {
        eprintln!("device: {}", dev.report());
    }
    let meta = report::Meta {
        source,
        device: device_label,
        clock,
        layers: h.layers,
        neurons: h.neurons,
        bundle_bytes: layout.regions.first().map_or(0, |r| r.bundle_bytes),
        block_size: geometry.block_size,
        bandwidth,
        profile_tokens,
        replay_tokens: h.tokens - profile_tokens,
        cache_slots,
        cache_fraction: args.cache_fraction,
        cache_scope: args.cache_scope,
        hot_share: args.hot_share,
        offline_s,
        profile_s,
    };
    if let Some(plot) = &plot {
        plot.write(|w| Ok(w.write_all(report::svg(&meta, &rows).as_bytes())?))?;
    }
    if args.json {
        report::json(&meta, &rows, out)
    } else {
        report::table(&meta, &rows, out)
    }
}

#[cfg(test)]
mod tests;
