//! `lode run` on a lode image: generate with the model streamed from flash
//! under a DRAM budget.
//!
//! The image's metadata prefix is read and checked; the model's units are
//! located ([`StreamLayout`]) and the budget is split by the kernel's
//! memory planner ([`StreamPlan`], printed by `--explain`). One locked
//! arena of exactly the budget is mapped; the image's data is checked
//! against its CRCs through the device; the resident units are loaded and
//! the rest stream through the ring of I/O slots with layer-ahead
//! prefetch. The decode loop is the in-memory one ([`decode`]).

use std::error::Error;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use lode_formats::image::{Image, ImageHeader};
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal::fake::{FakeFlash, FaultPlan};
use lode_hal_linux::{BlockFlash, BlockFlashOptions, HugePages, LockedArena, LockedArenaOptions};
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::FlashDevice;
use lode_kernel::model::stream::{
    config_of, verify_image_data, SparseScratch, SparseSetup, StreamLayout, StreamOptions,
    StreamPlan, StreamSource,
};
use lode_kernel::model::{Model, ModelError};
use serde::Serialize;

use crate::cmd_run::{decode, RunArgs, RunError, RunStats};
use crate::device_arg::DeviceArg;
use crate::progress::Progress;

/// The magic bytes a lode image starts with.
const IMAGE_MAGIC: [u8; 8] = [0x8A, b'L', b'O', b'D', b'E', 0x0D, 0x0A, 0x1A];

/// Bounce memory of a `file:` device in a streaming run.
const STREAM_BOUNCE: usize = 4 << 20;

/// What a streaming run measured (the `stream` object of `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    /// The device the weights were read from.
    pub device: String,
    /// How it reads (direct or buffered, io_uring or threads).
    pub device_mode: String,
    /// The DRAM budget (arena capacity).
    pub budget_bytes: usize,
    /// The smallest budget this run could have had.
    pub minimum_bytes: usize,
    /// Layers whose attention stayed resident.
    pub resident_attention_layers: usize,
    /// Layers whose FFN stayed resident.
    pub resident_ffn_layers: usize,
    /// Whether the output head stayed resident.
    pub head_resident: bool,
    /// Rows of the output head that stayed resident (all of them when
    /// `head_resident`; its first rows when only those fit).
    pub head_resident_rows: usize,
    /// I/O slots and their size.
    pub ring_slots: usize,
    /// Bytes of each I/O slot.
    pub ring_slot_bytes: usize,
    /// Sparsity of the FFN (0: dense streaming).
    pub sparsity: f32,
    /// Passes over the model (the prompt's batches plus one per generated
    /// token after the first).
    pub passes: u64,
    /// Bytes read from flash per pass.
    pub bytes_per_token: f64,
    /// Read commands per pass.
    pub reads_per_token: f64,
    /// Neuron-cache hit rate of the needed down columns (0 in dense
    /// streaming, which has no neuron cache).
    pub cache_hit_rate: f64,
    /// Down columns the neuron cache holds (0: no cache).
    pub cache_slots: u32,
    /// Down columns needed per pass, over every streamed layer (sparse).
    pub needed_columns_per_token: f64,
    /// Share of sparse layer fetches the planner served with one dense
    /// read of the layer's columns (cheaper than many small reads).
    pub dense_plan_rate: f64,
    /// Units that were complete when the layer needed them.
    pub prefetch_ready_rate: f64,
    /// Seconds the decode loop waited for reads.
    pub io_wait_seconds: f64,
    /// Seconds of the prompt and decode not spent waiting for reads.
    pub compute_seconds: f64,
    /// Seconds to check the image's data against its CRCs.
    pub verify_seconds: f64,
    /// Virtual I/O time of a fake device, seconds (0 on a real one).
    pub fake_io_seconds: f64,
}

/// Whether `path` starts with a lode image's magic.
pub fn is_image(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == IMAGE_MAGIC)
}

/// Nanoseconds since the first call: the ring's clock.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Parses a budget: bytes with an optional `K`/`KiB`/`M`/`MiB`/`G`/`GiB`
/// suffix (powers of 1024), or `N%` of `model_bytes`.
pub fn parse_budget(s: &str, model_bytes: u64) -> Result<usize, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "--dram-budget `{s}`: give bytes such as 32MiB, 512K, 1G, or a percentage such as 33%"
        )
    };
    if let Some(p) = t.strip_suffix('%') {
        let pct: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(pct > 0.0 && pct <= 1000.0) {
            return Err(bad());
        }
        return Ok((model_bytes as f64 * pct / 100.0) as usize);
    }
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("gib", 1u64 << 30),
        ("mib", 1 << 20),
        ("kib", 1 << 10),
        ("g", 1 << 30),
        ("m", 1 << 20),
        ("k", 1 << 10),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((lower.clone(), 1));
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !(v.is_finite() && v > 0.0) {
        return Err(bad());
    }
    let bytes = v * mult as f64;
    if bytes > usize::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(bytes as usize)
}

/// Reads and parses the image's metadata prefix.
fn read_prefix(path: &Path) -> Result<Vec<u8>, Box<dyn Error>> {
    let io = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).map_err(io)?;
    let meta_len = ImageHeader::parse(&head)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .meta_len;
    let meta_len = usize::try_from(meta_len)
        .ok()
        .filter(|&m| m <= 256 << 20)
        .ok_or_else(|| format!("{}: metadata prefix too large", path.display()))?;
    let mut prefix = vec![0u8; meta_len];
    prefix[..64].copy_from_slice(&head);
    f.read_exact(&mut prefix[64..]).map_err(io)?;
    Image::parse(&prefix).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(prefix)
}

/// Weight bytes of the image: every tensor and bundle region.
fn model_bytes(img: &Image<'_>) -> u64 {
    img.tensors().map(|t| t.length).sum::<u64>() + img.layers().map(|r| r.length).sum::<u64>()
}

/// Runs `lode run` on a lode image.
pub fn generate(args: &RunArgs, out: &mut dyn Write) -> Result<RunStats, Box<dyn Error>> {
    if !(0.0..1.0).contains(&args.sparsity) {
        return Err(RunError::BadArgument("--sparsity must be at least 0 and below 1").into());
    }
    let prefix = read_prefix(&args.model)?;
    let img = Image::parse(&prefix).map_err(|e| format!("{}: {e}", args.model.display()))?;
    let device = match args.device.as_deref() {
        Some(d) => DeviceArg::parse(d).map_err(|e| format!("--device: {e}"))?,
        None => DeviceArg::File(args.model.clone()),
    };
    match device {
        DeviceArg::File(path) => {
            // The ring has at most its slots' reads in flight; a few MiB of
            // bounce memory keeps four 1 MiB reads going, enough for this
            // disk's bandwidth, instead of the default 32 MiB outside the
            // budget.
            let opts = BlockFlashOptions {
                bounce_bytes: STREAM_BOUNCE,
                ..BlockFlashOptions::default()
            };
            let mut dev =
                BlockFlash::open(&path, opts).map_err(|e| format!("{}: {e}", path.display()))?;
            // A cost model measured on this flash (`pack --cost-model`,
            // `calibrate --store`) replaces the built-in one: the read
            // planner's merge and dense choices follow it.
            let cost = match img.cost_model() {
                Some(c) => {
                    dev.set_cost_model(CostModel {
                        command_ns: c.command_ns,
                        bytes_per_sec: c.bytes_per_sec,
                        queue_depth: c.queue_depth,
                    })
                    .map_err(|e| {
                        format!("{}: the image's cost model: {e}", args.model.display())
                    })?;
                    "the image's"
                }
                None => "the built-in",
            };
            let m = dev.cost_model();
            let mode = format!(
                "{}, {}, {:.1} MiB of bounce buffers outside the budget; {cost} cost model \
                 ({:.1} us a command, {:.0} MiB/s, queue depth {})",
                dev.report().direct,
                dev.report().engine,
                dev.report().bounce_bytes as f64 / 1048576.0,
                f64::from(m.command_ns) / 1e3,
                m.bytes_per_sec as f64 / 1048576.0,
                m.queue_depth
            );
            run_on(
                args,
                out,
                &img,
                dev,
                format!("file:{}", path.display()),
                mode,
                |_| 0,
            )
        }
        DeviceArg::Fake(profile) => {
            let bytes = std::fs::read(&args.model)
                .map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
            let dev = FakeFlash::new(bytes, profile, FaultPlan::default());
            let name = format!("fake:{}", profile.name);
            run_on(args, out, &img, dev, name, "virtual time".into(), |d| {
                d.now_ns()
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_on<D: FlashDevice>(
    args: &RunArgs,
    out: &mut dyn Write,
    img: &Image<'_>,
    mut dev: D,
    device: String,
    device_mode: String,
    fake_ns: impl Fn(&D) -> u64,
) -> Result<RunStats, Box<dyn Error>> {
    let path = &args.model;
    let model_err = |source| RunError::Model {
        path: path.clone(),
        source,
    };
    let quiet = args.json;
    let t_load = Instant::now();
    let tokenizer = crate::image_tokenizer::tokenizer_from_image(img)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = config_of(img).map_err(model_err)?;
    let layout = StreamLayout::new(img, &cfg).map_err(model_err)?;

    let (ids, limits) =
        crate::cmd_run::prompt_limits(&tokenizer, &args.prompt, &cfg, args.n_predict, args.batch)?;
    let model_size = model_bytes(img);
    let budget = match &args.dram_budget {
        Some(b) => parse_budget(b, model_size)?,
        None => usize::MAX,
    };
    let block = dev.geometry().block_size as usize;
    let sparse = args.sparsity > 0.0;
    let opts = StreamOptions {
        budget,
        ring: args.ring.unwrap_or_else(|| layout.ring_for(sparse)),
        block,
        stream_all: false,
        sparse,
    };
    let plan = StreamPlan::new(&layout, &cfg, &limits, opts).map_err(model_err)?;
    // Without --dram-budget, or with more than the model needs: exactly
    // what holds everything resident (the arena is mapped and locked whole,
    // so a larger one would only hold idle memory).
    let plan = if budget >= plan.resident_budget() && plan.ring == 0 {
        let all = plan.resident_budget();
        StreamPlan::new(
            &layout,
            &cfg,
            &limits,
            StreamOptions {
                budget: all,
                ..opts
            },
        )
        .map_err(model_err)?
    } else {
        plan
    };
    if args.explain {
        let mut err = std::io::stderr().lock();
        writeln!(
            err,
            "{}: {} layers, model {:.1} MiB; context {} positions, prompt batches of {}",
            path.display(),
            cfg.layers,
            model_size as f64 / 1048576.0,
            limits.max_context,
            limits.max_batch
        )?;
        writeln!(err, "{plan}")?;
    }
    let mut arena = LockedArena::with_options(
        plan.budget,
        LockedArenaOptions {
            huge_pages: HugePages::Transparent,
        },
    )
    .map_err(RunError::Arena)?;
    let lock = arena.lock().ok();

    let mut verify_seconds = 0.0;
    if !args.no_verify {
        let t = Instant::now();
        let span = img.header().file_len - img.header().meta_len;
        let mut progress = Progress::new("verify image data", span, quiet);
        let chunk = (plan.budget / 2).clamp(block, 8 << 20) / block * block;
        let slot = arena
            .alloc(chunk, 64, SlotKind::IoBuffer)
            .map_err(|e| model_err(ModelError::arena(e)))?;
        let mut last = 0;
        verify_image_data(&mut dev, &mut arena, img, slot, |done, _| {
            progress.tick(done - last);
            last = done;
        })
        .map_err(model_err)?;
        progress.finish();
        arena
            .free(slot)
            .map_err(|e| model_err(ModelError::arena(e)))?;
        verify_seconds = t.elapsed().as_secs_f64();
    }
    let (n, n_ext) = SparseScratch::lens(&layout, block, dev.geometry().max_transfer as usize);
    let (mut positions, mut missing, mut locs, mut extents) = if sparse {
        (
            vec![0u32; n],
            vec![0u32; n],
            vec![Default::default(); n],
            vec![Default::default(); n_ext],
        )
    } else {
        Default::default()
    };
    let (weights, source) = if sparse {
        let setup = SparseSetup {
            sparsity: args.sparsity,
            policy: (!args.no_neuron_cache).then(|| lode_kernel::cache::S3Fifo::new(10)),
            scratch: SparseScratch {
                positions: &mut positions,
                missing: &mut missing,
                locs: &mut locs,
                extents: &mut extents,
            },
        };
        StreamSource::load_sparse(dev, &mut arena, layout, &cfg, &limits, plan, now_ns, setup)
    } else {
        StreamSource::load(dev, &mut arena, layout, &cfg, &limits, plan, now_ns)
    }
    .map_err(model_err)?;
    let mut model =
        Model::from_parts(cfg, limits, weights, source, &mut arena).map_err(model_err)?;
    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let threads = match args.threads {
        Some(0) => return Err(RunError::BadArgument("--threads must be at least 1").into()),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(threads).with_env())
        .map_err(RunError::Compute)?;
    cpu.reserve_batch(widest, limits.max_batch)
        .map_err(RunError::Compute)?;
    let load_seconds = t_load.elapsed().as_secs_f64();

    let io0 = model.ffn().io_stats();
    let sp0 = model.ffn().sparse_stats().unwrap_or_default();
    let fake0 = fake_ns(model.ffn().device());
    let result = decode(
        &mut model, &mut arena, &mut cpu, &tokenizer, &ids, args, out,
    );
    // Reads may still be in flight after an error: collect them before the
    // arena they write into goes away.
    let _ = model.ffn_mut().quiesce(&mut arena);
    let d = result?;
    let io = model.ffn().io_stats();
    let passes = ids.len().div_ceil(limits.max_batch) as u64 + d.decode_tokens as u64;
    let per = |v: u64| v as f64 / passes.max(1) as f64;
    let wait = (io.wait_ns - io0.wait_ns) as f64 / 1e9;
    let units = io.units - io0.units;
    let sp = model.ffn().sparse_stats().unwrap_or_default();
    let (needed, hits) = (sp.needed - sp0.needed, sp.hits - sp0.hits);
    let fetches = sp.fetches - sp0.fetches;
    let stream = StreamStats {
        device,
        device_mode,
        budget_bytes: plan.budget,
        minimum_bytes: plan.minimum,
        resident_attention_layers: plan.resident_attention_layers(),
        resident_ffn_layers: plan.resident_ffn_layers(),
        head_resident: plan.head_resident,
        head_resident_rows: plan.head_resident_rows,
        ring_slots: plan.ring,
        ring_slot_bytes: plan.ring_slot,
        sparsity: args.sparsity,
        passes,
        bytes_per_token: per(io.bytes - io0.bytes),
        reads_per_token: per(io.reads - io0.reads),
        cache_hit_rate: if needed == 0 {
            0.0
        } else {
            hits as f64 / needed as f64
        },
        cache_slots: model.ffn().cache_stats().map_or(0, |(_, slots)| slots),
        needed_columns_per_token: per(needed),
        dense_plan_rate: if fetches == 0 {
            0.0
        } else {
            (sp.dense_plans - sp0.dense_plans) as f64 / fetches as f64
        },
        prefetch_ready_rate: if units == 0 {
            1.0
        } else {
            (io.ready_hits - io0.ready_hits) as f64 / units as f64
        },
        io_wait_seconds: wait,
        compute_seconds: (d.prompt_seconds + d.decode_seconds - wait).max(0.0),
        verify_seconds,
        fake_io_seconds: (fake_ns(model.ffn().device()) - fake0) as f64 / 1e9,
    };
    Ok(RunStats {
        model: path.display().to_string(),
        load_seconds,
        arena_bytes: arena.capacity(),
        peak_arena_bytes: arena.peak(),
        weight_bytes: arena.used_by(SlotKind::Resident),
        kv_bytes: model.kv().chunks().len()
            * lode_kernel::model::KvCache::chunk_bytes(model.config()),
        locked_bytes: lock.map_or(0, |l| l.locked),
        threads: cpu.threads(),
        isa: format!("{:?}", cpu.isa()),
        stream: Some(stream),
        ..d.into_stats(ids)
    })
}

/// The stats block printed after a streaming run's text.
pub fn stats_block(s: &StreamStats) -> String {
    let mib = |b: f64| b / 1048576.0;
    format!(
        "[lode] streamed from {} ({})\n\
         [lode] budget {:.1} MiB (minimum {:.1} MiB): resident attention {} layers, FFN {} \
         layers, head {}; ring {} x {:.2} MiB\n\
         [lode] per token: {:.2} MiB in {:.0} reads; prefetch ready {:.0}%; {}\n\
         [lode] time: I/O wait {:.2} s, compute {:.2} s; image verified in {:.2} s{}",
        s.device,
        s.device_mode,
        mib(s.budget_bytes as f64),
        mib(s.minimum_bytes as f64),
        s.resident_attention_layers,
        s.resident_ffn_layers,
        match (s.head_resident, s.head_resident_rows) {
            (true, _) => "resident".to_string(),
            (false, 0) => "streamed".to_string(),
            (false, rows) => format!("{rows} rows resident"),
        },
        s.ring_slots,
        mib(s.ring_slot_bytes as f64),
        mib(s.bytes_per_token),
        s.reads_per_token,
        s.prefetch_ready_rate * 100.0,
        if s.sparsity > 0.0 {
            format!(
                "sparsity {:.0}%: {:.0} down columns needed, neuron cache hit rate {:.1}% ({} \
                 slots), {:.0}% of layer reads dense",
                s.sparsity * 100.0,
                s.needed_columns_per_token,
                s.cache_hit_rate * 100.0,
                s.cache_slots,
                s.dense_plan_rate * 100.0
            )
        } else {
            "dense streaming, no neuron cache".to_string()
        },
        s.io_wait_seconds,
        s.compute_seconds,
        s.verify_seconds,
        if s.fake_io_seconds > 0.0 {
            format!("; fake device virtual I/O {:.2} s", s.fake_io_seconds)
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd_run::run;
    use crate::testutil::real_model;
    use std::path::PathBuf;

    fn args(model: PathBuf) -> RunArgs {
        RunArgs::greedy_json(model)
    }

    /// The real model packed into `path` (identity placement).
    fn pack(model: &Path, path: &Path) {
        let a = crate::cmd_pack::PackArgs::quiet_defaults(model.to_path_buf(), path.to_path_buf());
        crate::cmd_pack::run(&a, &mut Vec::new()).unwrap();
    }

    #[test]
    fn an_image_streams_under_a_third_of_its_size_and_bad_input_is_refused() {
        crate::testutil::with_main_stack(streams_under_a_third_and_refuses_bad_input);
    }

    fn streams_under_a_third_and_refuses_bad_input() {
        let Some(model) = real_model() else { return };
        let dir = std::env::temp_dir().join(format!("lode-run-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("smol.lode");
        pack(&model, &image);
        for device in [None, Some("fake:ufs40".to_string())] {
            let mut out = Vec::new();
            let a = RunArgs {
                dram_budget: Some("33%".into()),
                device: device.clone(),
                ..args(image.clone())
            };
            run(&a, &mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["generated_ids"][0], 7042, "{device:?}: {v}");
            let st = &v["stream"];
            assert!(
                st["bytes_per_token"].as_f64().unwrap() > 40.0 * 1048576.0,
                "{st}"
            );
            assert!(
                v["peak_arena_bytes"].as_u64() <= st["budget_bytes"].as_u64(),
                "{v}"
            );
            assert!(
                st["resident_attention_layers"].as_u64().unwrap() > 0,
                "{st}"
            );
        }
        // Text mode prints the stats block.
        let mut out = Vec::new();
        let a = RunArgs {
            json: false,
            dram_budget: Some("50%".into()),
            ..args(image.clone())
        };
        run(&a, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(" Paris"), "{text}");
        assert!(
            text.contains("per token:") && text.contains("I/O wait"),
            "{text}"
        );
        assert!(text.contains("the built-in cost model"), "{text}");
        // A cost model stored in the image is the one the planner uses.
        let mut bytes = std::fs::read(&image).unwrap();
        let meta = Image::parse(&bytes).unwrap().header().meta_len as usize;
        let stored = lode_formats::image::StoredCostModel {
            command_ns: 48_000,
            bytes_per_sec: 1 << 30,
            queue_depth: 24,
        };
        lode_formats::image::set_cost_model(&mut bytes[..meta], Some(stored)).unwrap();
        let calibrated = dir.join("calibrated.lode");
        std::fs::write(&calibrated, &bytes).unwrap();
        let mut out = Vec::new();
        run(
            &RunArgs {
                json: false,
                dram_budget: Some("50%".into()),
                ..args(calibrated.clone())
            },
            &mut out,
        )
        .unwrap();
        let _ = std::fs::remove_file(&calibrated);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("the image's cost model (48.0 us a command, 1024 MiB/s, queue depth 24)"),
            "{text}"
        );

        let err = |a: RunArgs| run(&a, &mut Vec::new()).unwrap_err().to_string();
        let e = err(RunArgs {
            dram_budget: Some("2MiB".into()),
            ..args(image.clone())
        });
        assert!(e.contains("minimum working set"), "{e}");
        let e = err(RunArgs {
            dram_budget: Some("lots".into()),
            ..args(image.clone())
        });
        assert!(e.contains("--dram-budget"), "{e}");
        let e = err(RunArgs {
            device: Some("tape:0".into()),
            ..args(image.clone())
        });
        assert!(e.contains("file:<path> or fake:<profile>"), "{e}");
        // A bundled image cannot run sparse; the message names the fix.
        let e = err(RunArgs {
            sparsity: 0.5,
            ..args(image.clone())
        });
        assert!(e.contains("--layout split"), "{e}");
        let e = err(RunArgs {
            sparsity: 1.0,
            ..args(image.clone())
        });
        assert!(e.contains("--sparsity"), "{e}");
        let e = err(RunArgs {
            dram_budget: Some("32MiB".into()),
            ..args(model.clone())
        });
        assert!(e.contains("lode image"), "{e}");
        // An image of another format version, and a truncated one.
        let mut bytes = std::fs::read(&image).unwrap();
        bytes[8] = 2;
        let other = dir.join("v2.lode");
        std::fs::write(&other, &bytes).unwrap();
        let e = err(args(other.clone()));
        assert!(e.contains("version"), "{e}");
        let short = dir.join("short.lode");
        std::fs::write(&short, &std::fs::read(&image).unwrap()[..3000]).unwrap();
        assert!(!err(args(short)).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn budgets_parse_with_units_and_percentages() {
        assert_eq!(parse_budget("32MiB", 0), Ok(32 << 20));
        assert_eq!(parse_budget("32M", 0), Ok(32 << 20));
        assert_eq!(parse_budget("1.5k", 0), Ok(1536));
        assert_eq!(parse_budget("2G", 0), Ok(2 << 30));
        assert_eq!(parse_budget("4096", 0), Ok(4096));
        assert_eq!(parse_budget("50%", 1000), Ok(500));
        for bad in ["", "MiB", "-1M", "0", "abc", "0%", "nan", "5%%"] {
            assert!(parse_budget(bad, 1000).is_err(), "{bad}");
        }
    }
}
