//! `lode run`: generate text with a GGUF llama model held entirely in DRAM.
//!
//! The model file is read and checked ([`Gguf::parse`], then
//! [`check_llama`](Gguf::check_llama)), the memory the run needs is computed
//! up front ([`MemoryPlan`]) and one [`LockedArena`] of exactly that size is
//! mapped and locked; the weights are copied into it and the file's bytes
//! are dropped. The prompt is evaluated in batches, then tokens are sampled
//! and evaluated one at a time, each printed (and flushed) as soon as it is
//! known. A stats line (or, with `--json`, one JSON object) reports prompt
//! and decode speed and the arena's peak use.
//!
//! Every defect of the input (a missing file, a wrong magic, a truncated
//! tensor table, a tensor past the end of the file, an unknown block type,
//! another architecture) is an error that names the file and what is wrong.

use std::error::Error;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lode_formats::gguf::{Gguf, GgufError};
use lode_hal::compute::sample::{sample, SampleError, SamplerConfig};
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal::tokenizer::{EncodeOptions, GgufVocabError, Tokenizer};
use lode_hal_linux::{HugePages, LockedArena, LockedArenaError, LockedArenaOptions};
use lode_kernel::arena::{DramArena, LockReport, SlotKind};
use lode_kernel::model::{
    FfnSource, KvCache, Limits, LlamaConfig, MemoryPlan, Model, ModelError, WantLogits, MAX_CONTEXT,
};
use lode_kernel::rng::SplitMix64;
use serde::Serialize;

/// Arguments of `lode run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// GGUF model file (llama architecture).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Prompt text (control tokens written in it are not parsed).
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Most tokens to generate (stops earlier at end of generation).
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
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
    /// Threads for the numeric work (default: every available core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prompt positions evaluated per pass over the weights.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Print one JSON object instead of streaming text and a stats line.
    #[arg(long)]
    pub json: bool,
    /// DRAM budget for a lode image (`-m image.lode`): bytes with a
    /// K/M/G (KiB/MiB/GiB) suffix, or a percentage of the model's weights
    /// such as 33%. Whatever does not fit streams from flash. Default:
    /// everything resident.
    #[arg(long = "dram-budget", value_name = "SIZE")]
    pub dram_budget: Option<String>,
    /// Where a lode image's weights are read from: file:<path> (default: the
    /// image itself, O_DIRECT where possible) or fake:<profile> (the
    /// deterministic fake flash: disk, ufs31, ufs40, emmc51, nvme).
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
    /// Skip checking the image's data against its CRCs before the run.
    #[arg(long = "no-verify")]
    pub no_verify: bool,
    /// Fraction of FFN neurons skipped per token (0: dense). Each token
    /// keeps, per layer, the neurons with the largest |silu(gate)·up| and
    /// reads only their down columns; needs an image packed with
    /// `--layout split`.
    #[arg(long, default_value_t = 0.0)]
    pub sparsity: f32,
    /// Run a sparse image without the neuron cache of down columns (by
    /// default what the memory plan leaves over caches them, S3-FIFO).
    #[arg(long = "no-neuron-cache")]
    pub no_neuron_cache: bool,
}

#[cfg(test)]
impl RunArgs {
    /// Greedy, 3 tokens after "The capital of France is", 2 threads, JSON,
    /// everything else the command line's default: what tests start from.
    pub fn greedy_json(model: PathBuf) -> RunArgs {
        RunArgs {
            model,
            prompt: "The capital of France is".into(),
            n_predict: 3,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            threads: Some(2),
            batch: 64,
            json: true,
            dram_budget: None,
            device: None,
            ring: None,
            explain: false,
            no_verify: false,
            sparsity: 0.0,
            no_neuron_cache: false,
        }
    }
}

/// Why `lode run` stopped before generating.
#[derive(Debug)]
pub enum RunError {
    /// The model file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a GGUF llama model lode can use.
    Gguf {
        /// The file.
        path: PathBuf,
        /// What the reader found.
        source: GgufError,
    },
    /// The file's tokenizer metadata is unusable.
    Vocab {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: GgufVocabError,
    },
    /// Loading or running the model failed.
    Model {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: ModelError,
    },
    /// The DRAM arena could not be created.
    Arena(LockedArenaError),
    /// The sampler parameters or the logits are unusable.
    Sample(SampleError),
    /// The CPU backend could not start (threads, scratch).
    Compute(lode_kernel::compute::ErrorKind),
    /// The prompt has no tokens.
    EmptyPrompt,
    /// The prompt does not fit the model's context.
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Positions available.
        max: usize,
    },
    /// A command-line value is out of range.
    BadArgument(&'static str),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Gguf { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Vocab { path, source } => {
                write!(f, "{}: tokenizer: {source}", path.display())
            }
            RunError::Model { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Arena(e) => write!(f, "DRAM arena: {e}"),
            RunError::Sample(e) => write!(f, "sampling: {e}"),
            RunError::Compute(k) => write!(f, "CPU compute: {k}"),
            RunError::EmptyPrompt => f.write_str("the prompt has no tokens"),
            RunError::PromptTooLong { tokens, max } => write!(
                f,
                "the prompt has {tokens} tokens; the context holds at most {max}"
            ),
            RunError::BadArgument(why) => f.write_str(why),
        }
    }
}

impl Error for RunError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RunError::Read { source, .. } => Some(source),
            RunError::Gguf { source, .. } => Some(source),
            RunError::Vocab { source, .. } => Some(source),
            RunError::Model { source, .. } => Some(source),
            RunError::Arena(e) => Some(e),
            _ => None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// `--n-predict` tokens were generated.
    Length,
    /// The model produced an end-of-generation token.
    Eos,
    /// The context is full.
    Context,
}

/// What a run measured; the `--json` output.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// The model file.
    pub model: String,
    /// Generated text (lossy UTF-8; control tokens left out).
    pub text: String,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (without the end-of-generation token).
    pub generated_ids: Vec<u32>,
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Seconds evaluating the prompt (including sampling the first token).
    pub prompt_seconds: f64,
    /// Prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Tokens evaluated one at a time after the prompt.
    pub decode_tokens: usize,
    /// Seconds of those evaluations (and their sampling).
    pub decode_seconds: f64,
    /// Decode tokens per second.
    pub decode_tokens_per_s: f64,
    /// Why generation ended.
    pub stop: Stop,
    /// Seconds to read the file and copy the weights into the arena.
    pub load_seconds: f64,
    /// Arena capacity: the planned budget.
    pub arena_bytes: usize,
    /// Most arena bytes held at once.
    pub peak_arena_bytes: usize,
    /// Arena bytes of resident weights (embeddings, attention, FFN, norms).
    pub weight_bytes: usize,
    /// Arena bytes of the KV cache at its largest this run.
    pub kv_bytes: usize,
    /// Bytes `mlock` kept in RAM.
    pub locked_bytes: usize,
    /// Threads of the compute backend.
    pub threads: usize,
    /// The instruction set of the inner loops.
    pub isa: String,
    /// Streaming statistics (runs of a lode image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::run_stream::StreamStats>,
}

/// Runs `lode run`, writing the text (or JSON) to `out`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let stats = if crate::run_stream::is_image(&args.model) {
        crate::run_stream::generate(args, out)?
    } else {
        let streaming = args.dram_budget.is_some() || args.device.is_some() || args.sparsity != 0.0;
        if streaming && !args.model.exists() {
            return Err(format!("{}: no such file", args.model.display()).into());
        }
        if streaming {
            return Err(RunError::BadArgument(
                "--dram-budget, --device and --sparsity need a lode image (make one with \
                 `lode pack`; --sparsity with `--layout split`)",
            )
            .into());
        }
        generate(args, out)?
    };
    if args.json {
        serde_json::to_writer(&mut *out, &stats)?;
        writeln!(out)?;
    } else {
        writeln!(out)?;
        writeln!(out, "{}", stats_line(&stats))?;
        if let Some(s) = &stats.stream {
            writeln!(out, "{}", crate::run_stream::stats_block(s))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The one-line summary printed after the text.
fn stats_line(s: &RunStats) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    format!(
        "[lode] prompt {} tokens {:.1} tok/s | decode {} tokens {:.1} tok/s | stop {:?} | \
         peak arena {} bytes ({:.1} MiB of {:.1} MiB, {:.1} MiB locked) | load {:.2} s | {} threads {}",
        s.prompt_tokens,
        s.prompt_tokens_per_s,
        s.decode_tokens,
        s.decode_tokens_per_s,
        s.stop,
        s.peak_arena_bytes,
        mib(s.peak_arena_bytes),
        mib(s.arena_bytes),
        mib(s.locked_bytes),
        s.load_seconds,
        s.threads,
        s.isa,
    )
}

/// A model loaded into its arena, with its tokenizer and compute backend.
pub struct Loaded {
    /// The model and its context.
    pub model: Model,
    /// The arena holding the weights, buffers and KV cache.
    pub arena: LockedArena,
    /// The vocabulary.
    pub tokenizer: Tokenizer,
    /// The compute backend.
    pub cpu: CpuCompute<'static>,
    /// What locking the arena achieved (`None` when `mlock` failed).
    pub lock: Option<LockReport>,
}

/// Tokenizes `prompt` and sizes a generation after it: a context of the
/// prompt plus `n_predict` positions (at most the model's trained context)
/// and prompt batches of at most `batch` positions. The batch never exceeds
/// the prompt: decoding takes one position a pass, so wider batch buffers
/// would hold memory nothing uses (under a DRAM budget, weights that could
/// have stayed resident).
pub fn prompt_limits(
    tokenizer: &Tokenizer,
    prompt: &str,
    cfg: &LlamaConfig,
    n_predict: usize,
    batch: usize,
) -> Result<(Vec<u32>, Limits), RunError> {
    let mut ids = Vec::new();
    tokenizer.encode_into(
        prompt,
        EncodeOptions {
            add_bos: tokenizer.specials().add_bos,
            parse_special: false,
        },
        &mut ids,
    );
    if ids.is_empty() {
        return Err(RunError::EmptyPrompt);
    }
    let room = cfg.context.min(MAX_CONTEXT);
    if ids.len() > room {
        return Err(RunError::PromptTooLong {
            tokens: ids.len(),
            max: room,
        });
    }
    let max_context = ids.len().saturating_add(n_predict).min(room);
    let batch = batch.clamp(1, ids.len());
    Ok((ids, Limits::new(max_context, batch)))
}

/// Reads `path`, tokenizes `prompt` and loads the model for a context of
/// the prompt plus `n_predict` positions (at most the model's trained
/// context), prompts evaluated `batch` positions per weight pass, on
/// `threads` threads. Returns the model and the prompt's token ids.
pub fn load(
    path: &Path,
    prompt: &str,
    n_predict: usize,
    batch: usize,
    threads: usize,
) -> Result<(Loaded, Vec<u32>), RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let gguf_err = |source| RunError::Gguf {
        path: path.to_path_buf(),
        source,
    };
    let model_err = |source| RunError::Model {
        path: path.to_path_buf(),
        source,
    };
    let file = Gguf::parse(&bytes).map_err(gguf_err)?;
    let params = file.check_llama().map_err(gguf_err)?;
    let cfg = LlamaConfig::from_gguf(&params).map_err(model_err)?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|source| RunError::Vocab {
        path: path.to_path_buf(),
        source,
    })?;

    let (ids, limits) = prompt_limits(&tokenizer, prompt, &cfg, n_predict, batch)?;
    let plan = MemoryPlan::dense(&file, &cfg, &limits).map_err(model_err)?;
    let mut arena = LockedArena::with_options(
        plan.total(),
        LockedArenaOptions {
            huge_pages: HugePages::Transparent,
        },
    )
    .map_err(RunError::Arena)?;
    // Locking is best effort: the report says how much it achieved.
    let lock = arena.lock().ok();
    let model = Model::load(&file, cfg, limits, &mut arena).map_err(model_err)?;
    drop(bytes);

    let widest = cfg.hidden.max(cfg.ffn).max(cfg.heads * cfg.head_dim);
    let mut cpu = CpuCompute::new(CpuConfig::new(widest).with_threads(threads).with_env())
        .map_err(RunError::Compute)?;
    cpu.reserve_batch(widest, limits.max_batch)
        .map_err(RunError::Compute)?;
    Ok((
        Loaded {
            model,
            arena,
            tokenizer,
            cpu,
            lock,
        },
        ids,
    ))
}

/// Loads the model, evaluates the prompt and generates, streaming text to
/// `out` unless `--json`.
fn generate(args: &RunArgs, out: &mut dyn Write) -> Result<RunStats, Box<dyn Error>> {
    let sampler = SamplerConfig::new(args.temperature, args.top_k, args.top_p);
    sampler.validate().map_err(RunError::Sample)?;
    let threads = match args.threads {
        Some(0) => return Err(RunError::BadArgument("--threads must be at least 1").into()),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if args.batch == 0 {
        return Err(RunError::BadArgument("--batch must be at least 1").into());
    }

    let t_load = Instant::now();
    let (loaded, prompt_ids) = load(
        &args.model,
        &args.prompt,
        args.n_predict,
        args.batch,
        threads,
    )?;
    let load_seconds = t_load.elapsed().as_secs_f64();
    let Loaded {
        mut model,
        mut arena,
        tokenizer,
        mut cpu,
        lock,
    } = loaded;
    let d = decode(
        &mut model,
        &mut arena,
        &mut cpu,
        &tokenizer,
        &prompt_ids,
        args,
        out,
    )?;
    Ok(RunStats {
        model: args.model.display().to_string(),
        load_seconds,
        arena_bytes: arena.capacity(),
        peak_arena_bytes: arena.peak(),
        weight_bytes: arena.used_by(SlotKind::Resident),
        kv_bytes: model.kv().chunks().len() * KvCache::chunk_bytes(model.config()),
        locked_bytes: lock.map_or(0, |l| l.locked),
        threads: cpu.threads(),
        isa: format!("{:?}", cpu.isa()),
        stream: None,
        ..d.into_stats(prompt_ids)
    })
}

/// What the generation loop produced and how long it took.
pub struct Decoded {
    /// Generated text bytes.
    pub text: Vec<u8>,
    /// Generated ids.
    pub generated: Vec<u32>,
    /// Why it stopped.
    pub stop: Stop,
    /// Seconds of the prompt.
    pub prompt_seconds: f64,
    /// Single-token evaluations after the prompt.
    pub decode_tokens: usize,
    /// Their seconds.
    pub decode_seconds: f64,
}

impl Decoded {
    /// The timing and text fields of [`RunStats`]; the rest default.
    pub fn into_stats(self, prompt_ids: Vec<u32>) -> RunStats {
        let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        RunStats {
            model: String::new(),
            text: String::from_utf8_lossy(&self.text).into_owned(),
            prompt_tokens: prompt_ids.len(),
            prompt_tokens_per_s: per_s(prompt_ids.len(), self.prompt_seconds),
            prompt_ids,
            generated_ids: self.generated,
            prompt_seconds: self.prompt_seconds,
            decode_tokens: self.decode_tokens,
            decode_seconds: self.decode_seconds,
            decode_tokens_per_s: per_s(self.decode_tokens, self.decode_seconds),
            stop: self.stop,
            load_seconds: 0.0,
            arena_bytes: 0,
            peak_arena_bytes: 0,
            weight_bytes: 0,
            kv_bytes: 0,
            locked_bytes: 0,
            threads: 0,
            isa: String::new(),
            stream: None,
        }
    }
}

/// Evaluates the prompt and generates up to `--n-predict` tokens, writing
/// each as it comes unless `--json`: the loop shared by in-memory and
/// streaming runs.
pub fn decode<F: FfnSource, A: DramArena>(
    model: &mut Model<F>,
    arena: &mut A,
    cpu: &mut CpuCompute<'static>,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    args: &RunArgs,
    out: &mut dyn Write,
) -> Result<Decoded, Box<dyn Error>> {
    let sampler = SamplerConfig::new(args.temperature, args.top_k, args.top_p);
    let model_err = |source| RunError::Model {
        path: args.model.clone(),
        source,
    };

    let mut rng = SplitMix64::new(args.seed);
    let mut scratch = vec![0u32; model.config().vocab];
    let mut picked: Result<u32, SampleError> = Err(SampleError::BadLength);
    let mut pick = |logits: &[f32]| sample(logits, &sampler, &mut rng, &mut scratch);

    let t_prompt = Instant::now();
    model
        .eval(arena, cpu, prompt_ids, WantLogits::Last, |_, l| {
            picked = pick(l);
        })
        .map_err(model_err)?;
    let mut next = picked.map_err(RunError::Sample)?;
    let prompt_seconds = t_prompt.elapsed().as_secs_f64();

    let mut generated = Vec::new();
    let mut text = Vec::new();
    let mut piece = Vec::new();
    let mut stop = Stop::Length;
    let mut decode_tokens = 0usize;
    let mut decode_seconds = 0.0f64;
    let max_context = model.limits().max_context;
    for i in 0..args.n_predict {
        if tokenizer.is_end_of_generation(next) {
            stop = Stop::Eos;
            break;
        }
        generated.push(next);
        piece.clear();
        tokenizer.decode_into(&[next], false, &mut piece)?;
        text.extend_from_slice(&piece);
        if !args.json {
            out.write_all(&piece)?;
            out.flush()?;
        }
        if i + 1 == args.n_predict {
            break;
        }
        if model.len() >= max_context {
            stop = Stop::Context;
            break;
        }
        let t = Instant::now();
        picked = Err(SampleError::BadLength);
        model
            .eval(arena, cpu, &[next], WantLogits::Last, |_, l| {
                picked = pick(l);
            })
            .map_err(model_err)?;
        next = picked.map_err(RunError::Sample)?;
        decode_seconds += t.elapsed().as_secs_f64();
        decode_tokens += 1;
    }

    Ok(Decoded {
        text,
        generated,
        stop,
        prompt_seconds,
        decode_tokens,
        decode_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::real_model;

    /// A little-endian GGUF v3 file written by hand: the header, string
    /// metadata, tensor infos `(name, dims, type, offset)` and `data`.
    fn gguf(kv: &[(&str, &str)], tensors: &[(&str, &[u64], u32, u64)], data: &[u8]) -> Vec<u8> {
        fn s(b: &mut Vec<u8>, v: &str) {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            s(&mut b, k);
            b.extend_from_slice(&8u32.to_le_bytes());
            s(&mut b, v);
        }
        for (name, dims, ty, off) in tensors {
            s(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend_from_slice(data);
        b
    }

    fn load_bytes(name: &str, bytes: &[u8]) -> RunError {
        let dir = std::env::temp_dir().join(format!("lode-run-{}-{name}", std::process::id()));
        std::fs::write(&dir, bytes).unwrap();
        let r = load(&dir, "hello", 4, 8, 1);
        std::fs::remove_file(&dir).unwrap();
        match r {
            Ok(_) => panic!("{name}: loaded a broken file"),
            Err(e) => e,
        }
    }

    fn gguf_kind(e: &RunError) -> Option<lode_formats::gguf::ErrorKind> {
        match e {
            RunError::Gguf { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    #[test]
    fn bad_files_are_named_errors() {
        use lode_formats::gguf::ErrorKind as K;
        let missing = load(Path::new("/nonexistent/model.gguf"), "x", 1, 1, 1).err();
        let msg = missing.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");

        let arch = [("general.architecture", "llama")];
        let e = load_bytes("magic", b"GGML\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(gguf_kind(&e), Some(K::BadMagic));
        assert!(e.to_string().contains("lode-run-"), "{e}");

        // Claims five tensors, holds none.
        let mut b = gguf(&arch, &[], &[]);
        b[8] = 5;
        assert_eq!(gguf_kind(&load_bytes("truncated", &b)), Some(K::Truncated));

        let past = gguf(&arch, &[("token_embd.weight", &[32, 4], 0, 0)], &[0; 64]);
        assert_eq!(
            gguf_kind(&load_bytes("past", &past)),
            Some(K::TensorOutOfBounds)
        );

        let unknown = gguf(&arch, &[("token_embd.weight", &[32, 4], 99, 0)], &[0; 512]);
        let e = load_bytes("unknown", &unknown);
        assert_eq!(gguf_kind(&e), Some(K::UnknownType));

        let gpt2 = gguf(&[("general.architecture", "gpt2")], &[], &[]);
        let e = load_bytes("arch", &gpt2);
        assert_eq!(gguf_kind(&e), Some(K::NotLlama));
        assert!(e.to_string().contains("gpt2"), "{e}");

        // A llama without hyper-parameters: the missing key is named.
        let e = load_bytes("nokeys", &gguf(&arch, &[], &[]));
        assert_eq!(gguf_kind(&e), Some(K::MissingKey));
        assert!(e.to_string().contains("llama."), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused_before_loading() {
        let args = RunArgs {
            prompt: "x".into(),
            n_predict: 1,
            temperature: -1.0,
            threads: None,
            batch: 8,
            json: false,
            ..RunArgs::greedy_json(PathBuf::from("/nonexistent.gguf"))
        };
        let mut out = Vec::new();
        let e = run(&args, &mut out).unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        let e = run(
            &RunArgs {
                temperature: 0.0,
                threads: Some(0),
                ..args.clone()
            },
            &mut out,
        );
        assert!(e.unwrap_err().to_string().contains("--threads"));
        let e = run(
            &RunArgs {
                temperature: 0.0,
                batch: 0,
                ..args
            },
            &mut out,
        );
        assert!(e.unwrap_err().to_string().contains("--batch"));
        assert!(out.is_empty());
    }

    #[test]
    fn generates_paris_and_reports_json() {
        let Some(model) = real_model() else { return };
        let args = RunArgs::greedy_json(model);
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["prompt_tokens"], 5);
        assert!(v["text"].as_str().unwrap().starts_with(" Paris"), "{v}");
        assert_eq!(v["generated_ids"][0], 7042);
        assert_eq!(v["decode_tokens"], 2);
        assert!(v["peak_arena_bytes"].as_u64().unwrap() <= v["arena_bytes"].as_u64().unwrap());

        let mut out = Vec::new();
        run(
            &RunArgs {
                json: false,
                n_predict: 1,
                ..args
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(" Paris\n[lode] prompt 5 tokens"), "{text}");
        assert!(text.contains("peak arena"), "{text}");
    }
}
