//! `lode calibrate <device>`: measure a device's read latency and throughput
//! against read size, at queue depth 1 and at a deep queue depth, around the
//! page cache (O_DIRECT), and fit the scheduler's
//! [`CostModel`](lode_kernel::cost::CostModel) to them (the fit, the JSON
//! and storing into an image are [`lode_pack::calibration`]'s; the
//! measuring loop, which drives the device, is `cmd_calibrate/measure.rs`).
//! Prints a table; optionally writes JSON, draws bandwidth against read
//! size as SVG, and stores the model in a lode image.
//!
//! `--raw rand4k|seq1m` runs one fio-like job instead (random 4 KiB reads,
//! or sequential 1 MiB reads, at `--queue-depth` for `--seconds`), which is
//! what `scripts/bench-fio` sets beside fio's own numbers.

mod measure;
mod plot;

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use lode_formats::input::Input;
use lode_hal_linux::block_flash::{BlockFlashOptions, DirectIo, Engine};
use lode_hal_linux::BlockFlash;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::FlashDevice;
use lode_pack::calibration::{
    fit, predict, store_in_image, CalibrationJson, FitInfo, Job, Pattern, Point, RawJson,
};
use lode_pack::output::Output;

use crate::progress::Progress;
use measure::Bench;

/// Which I/O engine to measure.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineArg {
    /// io_uring if the kernel allows it, else the pread pool.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// The pread thread pool.
    Threads,
}

/// A single fio-like job for `--raw`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawJob {
    /// Random 4 KiB reads (fio `--rw=randread --bs=4k`).
    Rand4k,
    /// Sequential 1 MiB reads (fio `--rw=read --bs=1m`).
    Seq1m,
}

/// Arguments of `lode calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// The device: `file:<path>`, or the path of a file or block device.
    /// Use a file much larger than the largest read (fio's 2 GiB is good).
    pub device: String,
    /// Reads kept in flight in the deep measurements (1 to 256).
    #[arg(long, default_value_t = 32)]
    pub queue_depth: u16,
    /// Wall-clock seconds per measured point (per job with --raw).
    #[arg(long, default_value_t = 0.6)]
    pub seconds: f64,
    /// Read sizes to measure, in KiB (each 4 to 1024, a multiple of 4).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4,8,16,32,64,128,256,512,1024"
    )]
    pub sizes_kib: Vec<u32>,
    /// I/O engine.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineArg,
    /// Worker threads of the pread pool, when it runs.
    #[arg(long, default_value_t = 8)]
    pub threads: u16,
    /// Measure through the page cache where the file system refuses
    /// O_DIRECT, instead of failing (the numbers then describe memory).
    #[arg(long)]
    pub allow_buffered: bool,
    /// Seed of the random offsets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the measurements and the model as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw effective bandwidth against read size as SVG to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Store the fitted model in this lode image (rewrites only its
    /// cost-model section and the checksums over it).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run one fio-like job instead of calibrating.
    #[arg(long, value_enum, conflicts_with_all = ["plot", "store"])]
    pub raw: Option<RawJob>,
}

/// The device path of a `file:<path>` or plain-path specification.
pub fn device_path(spec: &str) -> Result<PathBuf, String> {
    let path = spec.strip_prefix("file:").unwrap_or(spec);
    if path.is_empty() {
        return Err(format!("device `{spec}` names no path"));
    }
    if let Some((scheme, _)) = path.split_once(':') {
        if !path.starts_with('/') && !path.starts_with('.') && !scheme.contains('/') {
            return Err(format!(
                "device `{spec}`: only file:<path> or a path can be calibrated"
            ));
        }
    }
    Ok(PathBuf::from(path))
}

fn check_args(args: &CalibrateArgs) -> Result<Vec<u32>, String> {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err("--seconds must be more than 0 and at most 600".into());
    }
    if args.queue_depth == 0 || args.queue_depth > 256 {
        return Err("--queue-depth must be 1 to 256".into());
    }
    if args.raw.is_some() {
        return Ok(Vec::new());
    }
    let mut sizes = Vec::new();
    for &kib in &args.sizes_kib {
        if !(4..=1024).contains(&kib) || !kib.is_multiple_of(4) {
            return Err(format!(
                "read size {kib} KiB: sizes must be 4 to 1024 KiB, multiples of 4"
            ));
        }
        sizes.push(kib * 1024);
    }
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.len() < 2 {
        return Err("calibration needs at least two read sizes".into());
    }
    Ok(sizes)
}

fn open(args: &CalibrateArgs, path: &Path, max_size: u32) -> Result<BlockFlash, Box<dyn Error>> {
    // Refused by name first, without blocking (BlockFlash's own open would
    // wait forever on a FIFO, and a character device has no end to read).
    Input::open(path)?;
    let qd = args.queue_depth;
    let opts = BlockFlashOptions {
        queue_depth: qd,
        max_transfer: max_size,
        bounce_bytes: usize::from(qd) * max_size as usize,
        engine: match args.engine {
            EngineArg::Auto => Engine::Auto,
            EngineArg::IoUring => Engine::IoUring,
            EngineArg::Threads => Engine::Threads,
        },
        threads: args.threads,
        direct: if args.allow_buffered {
            DirectIo::Auto
        } else {
            DirectIo::Require
        },
        ..BlockFlashOptions::default()
    };
    BlockFlash::open(path, opts).map_err(|e| {
        let hint = if e.reason() == lode_hal_linux::block_flash::Reason::DirectRefused {
            " (pass --allow-buffered to measure through the page cache)"
        } else {
            ""
        };
        format!("{e}{hint}").into()
    })
}

/// The files `--json` and `--plot` write, checked before the device is
/// measured: each is replaced whole or not at all, and neither may be the
/// device or the image `--store` rewrites.
struct Outputs {
    json: Option<Output>,
    plot: Option<Output>,
}

impl Outputs {
    fn check(args: &CalibrateArgs, device: &Path) -> Result<Outputs, Box<dyn Error>> {
        let mut inputs = vec![device];
        inputs.extend(args.store.as_deref());
        let check =
            |p: &Option<PathBuf>| p.as_deref().map(|p| Output::check(p, &inputs)).transpose();
        let outputs = Outputs {
            json: check(&args.json)?,
            plot: check(&args.plot)?,
        };
        if let (Some(j), Some(p)) = (&args.json, &args.plot) {
            if j == p {
                return Err(format!("--json and --plot both name {}", j.display()).into());
            }
        }
        Ok(outputs)
    }
}

/// Run `lode calibrate`.
pub fn run(args: &CalibrateArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let sizes = check_args(args)?;
    let path = device_path(&args.device)?;
    let outputs = Outputs::check(args, &path)?;
    if let Some(job) = args.raw {
        return raw(args, &path, job, &outputs, out);
    }
    let max_size = sizes.iter().copied().max().unwrap_or(1 << 20);
    let mut dev = open(args, &path, max_size)?;
    let setup = dev.report().to_string();
    let qd = args.queue_depth;
    let (qd1, deep) = {
        let mut bench = Bench::new(&mut dev, max_size, qd, args.seed)?;
        let mut progress = Progress::new("calibrate", 2 * sizes.len() as u64 + 1, false);
        // Warm up the engine and the device's queue before anything counts.
        bench.run(&Job {
            size: sizes[0],
            qd,
            seconds: (args.seconds / 4.0).min(0.2),
            pattern: Pattern::Random,
        })?;
        progress.tick(1);
        let mut series = |depth: u16| -> Result<Vec<Point>, Box<dyn Error>> {
            let mut v = Vec::new();
            for &size in &sizes {
                v.push(bench.run(&Job {
                    size,
                    qd: depth,
                    seconds: args.seconds,
                    pattern: Pattern::Random,
                })?);
                progress.tick(1);
            }
            Ok(v)
        };
        let qd1 = series(1)?;
        let deep = series(qd)?;
        progress.finish();
        (qd1, deep)
    };
    let (model, info) = fit(&qd1, &deep, qd)?;
    table(out, &args.device, &setup, &qd1, &deep, &model, &info)?;
    if let Some(p) = &outputs.json {
        let g = dev.geometry();
        let doc = CalibrationJson {
            device: &args.device,
            setup: setup.clone(),
            io_uring: dev.report().engine.is_io_uring(),
            direct: dev.report().direct.is_direct(),
            block_size: g.block_size,
            capacity: g.capacity,
            queue_depth: qd,
            seconds_per_point: args.seconds,
            qd1: &qd1,
            deep: &deep,
            model: model.into(),
            fit: info,
        };
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        p.write(|w| Ok(w.write_all(text.as_bytes())?))?;
    }
    if let Some(p) = &outputs.plot {
        let title = format!("{} ({})", args.device, engine_word(&dev));
        let svg = plot::svg(&title, &qd1, &deep, &model);
        p.write(|w| Ok(w.write_all(svg.as_bytes())?))?;
    }
    if let Some(image) = &args.store {
        store_in_image(image, &model)?;
        writeln!(out, "stored   in {}", image.display())?;
    }
    Ok(())
}

fn engine_word(dev: &BlockFlash) -> &'static str {
    match (
        dev.report().engine.is_io_uring(),
        dev.report().direct.is_direct(),
    ) {
        (true, true) => "io_uring, O_DIRECT",
        (true, false) => "io_uring, buffered",
        (false, true) => "pread pool, O_DIRECT",
        (false, false) => "pread pool, buffered",
    }
}

fn size_label(size: u32) -> String {
    if size >= 1 << 20 && size.is_multiple_of(1 << 20) {
        format!("{}M", size >> 20)
    } else {
        format!("{}K", size >> 10)
    }
}

fn table(
    out: &mut dyn Write,
    device: &str,
    setup: &str,
    qd1: &[Point],
    deep: &[Point],
    model: &CostModel,
    info: &FitInfo,
) -> Result<(), Box<dyn Error>> {
    let qd = deep.first().map_or(0, |p| p.qd);
    let mib = |b: f64| b / f64::from(1u32 << 20);
    writeln!(out, "device   {device}")?;
    writeln!(out, "setup    {setup}")?;
    writeln!(
        out,
        "{:>6} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "size",
        "QD1 us",
        "model",
        "MiB/s",
        format!("QD{qd} IOPS"),
        "model",
        "MiB/s",
        "p99 us"
    )?;
    for (a, b) in qd1.iter().zip(deep) {
        let (lat, _) = predict(model, a.size, 1);
        let (_, iops) = predict(model, b.size, b.qd);
        writeln!(
            out,
            "{:>6} | {:>9.1} {:>9.1} {:>9.1} | {:>9.0} {:>9.0} {:>9.1} {:>9.1}",
            size_label(a.size),
            a.mean_ns / 1e3,
            lat / 1e3,
            mib(a.bytes_per_sec),
            b.iops,
            iops,
            mib(b.bytes_per_sec),
            b.p99_ns / 1e3
        )?;
    }
    writeln!(
        out,
        "model    command_ns {}, bytes_per_sec {} ({:.0} MiB/s), queue_depth {}",
        model.command_ns,
        model.bytes_per_sec,
        mib(model.bytes_per_sec as f64),
        model.queue_depth
    )?;
    writeln!(
        out,
        "fit      QD1: {:.1} us + {:.3} us/KiB (r2 {:.3}); bandwidth from {} at QD{}; \
         overlap {:.2} from {:.0} IOPS of the smallest reads at QD{qd}",
        info.qd1_intercept_ns / 1e3,
        info.qd1_ns_per_byte * 1024.0 / 1e3,
        info.qd1_r2,
        size_label(info.bandwidth_size),
        info.bandwidth_qd,
        info.overlap,
        info.small_deep_iops
    )?;
    Ok(())
}

/// One fio-like job, printed as one line (and JSON with `--json`).
fn raw(
    args: &CalibrateArgs,
    path: &Path,
    job: RawJob,
    outputs: &Outputs,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let (name, size, pattern) = match job {
        RawJob::Rand4k => ("rand4k", 4096, Pattern::Random),
        RawJob::Seq1m => ("seq1m", 1 << 20, Pattern::Sequential),
    };
    let mut dev = open(args, path, size)?;
    let setup = dev.report().to_string();
    let point = {
        let mut bench = Bench::new(&mut dev, size, args.queue_depth, args.seed)?;
        bench.run(&Job {
            size,
            qd: args.queue_depth,
            seconds: (args.seconds / 10.0).min(0.5),
            pattern,
        })?;
        bench.run(&Job {
            size,
            qd: args.queue_depth,
            seconds: args.seconds,
            pattern,
        })?
    };
    let copy = dev.stats().copy_bytes_per_sec();
    writeln!(
        out,
        "{name} qd{}: {:.0} IOPS, {:.1} MiB/s, mean {:.1} us, p99 {:.1} us ({} reads in {:.2} s; {setup})",
        point.qd,
        point.iops,
        point.bytes_per_sec / f64::from(1u32 << 20),
        point.mean_ns / 1e3,
        point.p99_ns / 1e3,
        point.reads,
        point.seconds
    )?;
    if let Some(p) = &outputs.json {
        let doc = RawJson {
            job: name,
            device: &args.device,
            setup,
            io_uring: dev.report().engine.is_io_uring(),
            direct: dev.report().direct.is_direct(),
            point,
            copy_bytes_per_sec: copy,
        };
        let text = serde_json::to_string_pretty(&doc)? + "\n";
        p.write(|w| Ok(w.write_all(text.as_bytes())?))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
