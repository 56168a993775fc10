//! The arguments every generating command shares (`lode run`, `lode
//! chat`): which model, how it is loaded (budget, device, ring, sparsity),
//! and how tokens are sampled; turned into the runtime's options here, so
//! each command only adds what is its own.

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

use lode_hal::compute::MAX_THREADS;
use lode_kernel::flash::Faults;
use lode_kernel::limits::SPARSE_READ_SHARE;
use lode_kernel::model::stream::{ColumnEstimate, ColumnReads, StreamPlan};
use lode_kernel::model::Limits;
use lode_runtime::{
    parse_faults, Budget, DeviceSpec, LoadEvents, Outside, SamplerConfig, SessionOptions,
};

use crate::progress::Progress;

/// How the model is opened and loaded.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a GGUF llama model (held in DRAM) or a lode image (`lode
    /// pack`; streamed from flash under --dram-budget).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Threads for the numeric work (default: every available core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prompt positions evaluated per pass over the weights.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// DRAM budget for a lode image (`-m image.lode`): bytes with a
    /// K/M/G (KiB/MiB/GiB) suffix, or a percentage of the model's weights
    /// such as 33%. Whatever does not fit streams from flash. Default:
    /// everything resident.
    #[arg(long = "dram-budget", value_name = "SIZE")]
    pub dram_budget: Option<String>,
    /// Where a lode image's weights are read from: file:<path> (default: the
    /// image itself, O_DIRECT where possible) or fake:<profile> (the
    /// deterministic fake flash: disk, ufs31, ufs40, emmc51, nvme). The
    /// fake flash models a chip in process memory: it holds the whole
    /// image there (outside the budget) so its virtual time and faults are
    /// reproducible; measure memory with file:. Its reads complete at once
    /// unless `,paced` follows the profile (fake:emmc51,paced): then each
    /// completes no sooner, in real time, than the profile's cost model
    /// says, so tok/s shows that flash under real compute.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// I/O slots streamed weights rotate through, 1 to 8 (default: enough
    /// to read one whole streamed FFN layer ahead while the unit before it
    /// computes: 4 for a dense image, whose layers stream a matrix at a
    /// time; 2 for bundles or a sparse run).
    #[arg(long)]
    pub ring: Option<usize>,
    /// Print the memory plan (what stays resident, what streams) first.
    #[arg(long)]
    pub explain: bool,
    /// Skip checking the image's data against its CRCs before the run
    /// (and so also the checks of every read, which need that pass).
    #[arg(long = "no-verify")]
    pub no_verify: bool,
    /// Trust the device while running: do not check every streamed read
    /// against the checksums of the blocks verified at load (by default a
    /// read that fails its check, or fails, is read again up to 3 times,
    /// then the run stops with an error naming the offset).
    #[arg(long = "no-verify-reads")]
    pub no_verify_reads: bool,
    /// Inject faults into the device's reads, for testing what a run does
    /// when storage misbehaves: comma-separated `read-error=P`,
    /// `bit-flip=P`, `latency-spike=P:MICROS`, `seed=N` (P a probability
    /// per read). A run either prints exactly the text of a clean run or
    /// stops with an error; never other text. Needs a lode image.
    #[arg(long = "inject-faults", value_name = "SPEC")]
    pub inject_faults: Option<String>,
    /// Fraction of FFN neurons skipped per token (0: dense). Each token
    /// keeps, per layer, the neurons with the largest |silu(gate)·up| and
    /// computes the down projection over those only; needs an image packed
    /// with `--layout split`. Whether it also reads only their down
    /// columns is `--column-reads`.
    #[arg(long, default_value_t = 0.0)]
    pub sparsity: f32,
    /// How a sparse run reads a streamed layer's down columns: `sparse`
    /// reads the kept ones once a token's activations are known (and caches
    /// them), `whole` streams every column through the ring ahead of use
    /// and skips the dropped ones in the arithmetic; `auto` prices both
    /// with the device's cost model and the read planner (kept sets drawn
    /// uniformly) and reads sparsely only at 3/4 of the whole read's time
    /// or less (`--explain` shows the prices).
    #[arg(long = "column-reads", value_enum, default_value = "auto")]
    pub column_reads: ColumnReadsArg,
    /// Run a sparse image without the neuron cache of down columns (by
    /// default what the memory plan leaves over caches them, S3-FIFO).
    #[arg(long = "no-neuron-cache")]
    pub no_neuron_cache: bool,
}

/// `--column-reads`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnReadsArg {
    /// The device's cost model decides.
    Auto,
    /// The kept columns, per token.
    Sparse,
    /// Every column, through the ring.
    Whole,
}

/// How tokens are chosen.
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the K most likely tokens (0: no limit).
    #[arg(long = "top-k", default_value_t = 0)]
    pub top_k: usize,
    /// Sample only among the most likely tokens whose probability adds up
    /// to P (1: no limit).
    #[arg(long = "top-p", default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler's random numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A command-line value that is out of range.
#[derive(Debug)]
pub struct BadArgument(pub String);

impl fmt::Display for BadArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for BadArgument {}

/// A [`BadArgument`], boxed.
pub fn bad(why: impl Into<String>) -> Box<dyn Error> {
    Box::new(BadArgument(why.into()))
}

impl SampleArgs {
    /// The sampler, checked.
    pub fn sampler(&self) -> Result<SamplerConfig, Box<dyn Error>> {
        let sampler = SamplerConfig::new(self.temperature, self.top_k, self.top_p);
        sampler
            .validate()
            .map_err(|e| bad(format!("sampling: {e}")))?;
        Ok(sampler)
    }
}

impl ModelArgs {
    /// Checks what can be checked before the model is opened.
    pub fn check(&self) -> Result<(), Box<dyn Error>> {
        match self.threads {
            Some(0) => return Err(bad("--threads must be at least 1")),
            Some(t) if t > MAX_THREADS => {
                return Err(bad(format!(
                    "--threads {t}: at most {MAX_THREADS} compute threads are supported"
                )))
            }
            _ => {}
        }
        if self.batch == 0 {
            return Err(bad("--batch must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(bad("--sparsity must be at least 0 and below 1"));
        }
        self.faults()?;
        Ok(())
    }

    /// The faults to inject (none without `--inject-faults`).
    fn faults(&self) -> Result<Faults, Box<dyn Error>> {
        match &self.inject_faults {
            Some(spec) => parse_faults(spec).map_err(|e| bad(format!("--inject-faults: {e}"))),
            None => Ok(Faults::none()),
        }
    }

    /// The session options for contexts of `max_context` positions.
    pub fn session_options(&self, max_context: usize) -> Result<SessionOptions, Box<dyn Error>> {
        let budget = match &self.dram_budget {
            Some(b) => Some(Budget::parse(b).map_err(|e| bad(format!("--dram-budget: {e}")))?),
            None => None,
        };
        let device = match &self.device {
            Some(d) => Some(DeviceSpec::parse(d).map_err(|e| bad(format!("--device: {e}")))?),
            None => None,
        };
        Ok(SessionOptions {
            batch: self.batch,
            threads: self.threads,
            budget,
            device,
            ring: self.ring,
            sparsity: self.sparsity,
            neuron_cache: !self.no_neuron_cache,
            column_reads: match self.column_reads {
                ColumnReadsArg::Auto => None,
                ColumnReadsArg::Sparse => Some(ColumnReads::Sparse),
                ColumnReadsArg::Whole => Some(ColumnReads::Whole),
            },
            verify: !self.no_verify,
            verify_reads: !self.no_verify && !self.no_verify_reads,
            faults: self.faults()?,
            ..SessionOptions::new(max_context)
        })
    }

    /// What loading prints: the plan with `--explain`, a verify meter
    /// unless `quiet`.
    pub fn events(&self, quiet: bool) -> CliEvents {
        CliEvents {
            explain: self.explain,
            sparsity: self.sparsity,
            quiet,
            progress: None,
            last: 0,
        }
    }
}

/// The process's resident memory now (Linux `VmRSS`), if known.
fn resident_set_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `--explain` and the verify meter, on stderr.
pub struct CliEvents {
    explain: bool,
    /// The run's `--sparsity`, for the predicted bytes a token.
    sparsity: f32,
    quiet: bool,
    progress: Option<Progress>,
    last: u64,
}

impl LoadEvents for CliEvents {
    fn plan(
        &mut self,
        path: &Path,
        weight_bytes: u64,
        limits: &Limits,
        plan: &StreamPlan,
        o: &Outside,
    ) {
        if self.explain {
            eprintln!(
                "{}: {} layers, model {:.1} MiB; context {} positions, prompt batches of {}",
                path.display(),
                plan.layers,
                weight_bytes as f64 / 1048576.0,
                limits.max_context,
                limits.max_batch
            );
            eprintln!(
                "DRAM budget {:.1} MiB: the arena below, and {:.2} MiB outside it",
                (plan.budget + o.total()) as f64 / 1048576.0,
                o.total() as f64 / 1048576.0
            );
            eprintln!("{plan}");
            if plan.sparse {
                eprintln!(
                    "  per token at sparsity {}: {:.2} MiB if only the kept neurons' columns \
                     are read (the read planner also reads gaps cheaper to read than to skip)",
                    self.sparsity,
                    plan.predicted_per_token(self.sparsity) as f64 / 1048576.0
                );
            }
            if let Some(rss) = resident_set_bytes() {
                eprintln!(
                    "  not in the budget     {:>8.2} MiB  this process so far: code, tokenizer, \
                     image metadata (peak RSS = budget + this + compute threads' stacks)",
                    rss as f64 / 1048576.0
                );
            }
            eprintln!(
                "  outside the arena     {:>8.2} MiB  device bounce buffers {:.2} MiB, sparse \
                 scratch {:.2} MiB; counted in the budget",
                o.total() as f64 / 1048576.0,
                o.bounce as f64 / 1048576.0,
                o.sparse_scratch as f64 / 1048576.0
            );
        }
    }

    fn columns(&mut self, estimate: Option<&ColumnEstimate>, reads: ColumnReads) {
        if !self.explain {
            return;
        }
        let how = match reads {
            ColumnReads::Sparse => "only the kept neurons' columns, per token",
            ColumnReads::Whole => {
                "every column, through the ring (dropped neurons skipped in the arithmetic)"
            }
        };
        eprintln!("  down columns: a streamed layer reads {how}");
        if let Some(e) = estimate {
            let kib = |b: u64| b as f64 / 1024.0;
            let ms = |ns: u64| ns as f64 / 1e6;
            eprintln!(
                "    priced per layer and token: {} of {} columns kept at random: {:.0} KiB in \
                 {:.3} ms sparse, {:.0} KiB in {:.3} ms whole; sparse reads at {}/{} of whole or \
                 less",
                e.keep,
                e.count,
                kib(e.sparse_bytes),
                ms(e.sparse_ns),
                kib(e.whole_bytes),
                ms(e.whole_ns),
                SPARSE_READ_SHARE.0,
                SPARSE_READ_SHARE.1
            );
        }
    }

    fn verify(&mut self, done: u64, total: u64) {
        let quiet = self.quiet;
        let p = self
            .progress
            .get_or_insert_with(|| Progress::new("verify image data", total, quiet));
        p.tick(done.saturating_sub(self.last));
        self.last = done;
        if done >= total {
            if let Some(p) = self.progress.take() {
                p.finish();
            }
        }
    }
}
