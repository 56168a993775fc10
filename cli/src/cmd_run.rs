//! `lode run`: generate text from a GGUF model held in DRAM, or from a lode
//! image streamed from flash under a DRAM budget.
//!
//! A thin front end over `lode-runtime`: the arguments become
//! [`SessionOptions`] and [`GenerateOptions`], the model is opened and
//! loaded by [`Session::load`], the decode loop is [`generate`], and the
//! stats are [`RunStats`]. What is left here is the command line: the
//! plan printed by `--explain`, the verify progress meter, the text
//! streamed as it comes, and the stats line (or one JSON object).

use std::error::Error;
use std::io::Write;
use std::ops::ControlFlow;

use lode_formats::input::{read_file, Limit};
use lode_kernel::model::MAX_CONTEXT;
use lode_runtime::{generate, GenerateOptions, ModelFile, RunStats, Session, StreamStats};

use crate::session_args::{bad, ModelArgs, SampleArgs};

/// Arguments of `lode run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Which model and how it is loaded.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (control tokens written in it are not parsed).
    #[arg(short = 'p', long, required_unless_present = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the prompt from this file instead (UTF-8, at most 64 MiB):
    /// for prompts too long for a command line.
    #[arg(long = "prompt-file", value_name = "PATH", conflicts_with = "prompt")]
    pub prompt_file: Option<std::path::PathBuf>,
    /// Most tokens to generate (stops earlier at end of generation).
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
    /// How tokens are chosen.
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Print one JSON object instead of streaming text and a stats line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
impl RunArgs {
    /// Greedy, 3 tokens after "The capital of France is", 2 threads, JSON,
    /// everything else the command line's default: what tests start from.
    pub fn greedy_json(model: std::path::PathBuf) -> RunArgs {
        RunArgs {
            model: ModelArgs {
                model,
                threads: Some(2),
                batch: 64,
                dram_budget: None,
                device: None,
                ring: None,
                explain: false,
                no_verify: false,
                no_verify_reads: false,
                inject_faults: None,
                sparsity: 0.0,
                no_neuron_cache: false,
                column_reads: crate::session_args::ColumnReadsArg::Auto,
            },
            prompt: Some("The capital of France is".into()),
            prompt_file: None,
            n_predict: 3,
            sample: SampleArgs {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
                seed: 0,
            },
            json: true,
        }
    }
}

/// Runs `lode run`, writing the text (or JSON) to `out`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let gen = GenerateOptions {
        max_tokens: args.n_predict,
        sampler: args.sample.sampler()?,
        seed: args.sample.seed,
    };
    args.model.check()?;
    let prompt = prompt_text(args)?;
    let file = ModelFile::open(&args.model.model)?;
    let ids = file
        .tokenizer()
        .encode(&prompt, file.tokenizer().specials().add_bos);
    let room = file.config().context.min(MAX_CONTEXT);
    if ids.is_empty() {
        return Err(bad("the prompt has no tokens"));
    }
    if ids.len() > room {
        return Err(bad(format!(
            "the prompt has {} tokens; the context holds at most {room}",
            ids.len()
        )));
    }
    let opts = args
        .model
        .session_options(ids.len().saturating_add(args.n_predict).min(room))?;
    let mut events = args.model.events(args.json);
    let mut session = Session::load(file, &opts, ids.len(), &mut events)?;
    let mut ctx = session.new_context();
    let mut write_err = None;
    let mut written = 0usize;
    let g = generate(&mut session, &mut ctx, &ids, &gen, |t| {
        if args.json {
            return ControlFlow::Continue(());
        }
        match out.write_all(t.piece).and_then(|()| out.flush()) {
            Ok(()) => {
                written += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(format!(
            "cannot write the generated text to the output after {written} tokens: {e}"
        )
        .into());
    }
    let stats = RunStats::new(&session, &g, &ids, ctx.kv_bytes());
    if args.json {
        serde_json::to_writer(&mut *out, &stats)?;
        writeln!(out)?;
    } else {
        writeln!(out)?;
        writeln!(out, "{}", stats_line(&stats))?;
        if let Some(s) = &stats.stream {
            writeln!(out, "{}", stats_block(s))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Most bytes `--prompt-file` reads: far more than any context holds
/// (8192 positions), little enough to read whole.
const PROMPT_LIMIT: Limit = Limit::new("prompt file", 64 << 20);

/// The prompt: `-p`, or the text of `--prompt-file` (opened through the
/// bounded reader: a regular file of at most 64 MiB, UTF-8).
fn prompt_text(args: &RunArgs) -> Result<String, Box<dyn Error>> {
    let Some(path) = &args.prompt_file else {
        return Ok(args.prompt.clone().unwrap_or_default());
    };
    let bytes = read_file(path, PROMPT_LIMIT).map_err(|e| bad(format!("--prompt-file {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "--prompt-file {}: not UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The one-line summary printed after the text.
pub fn stats_line(s: &RunStats) -> String {
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

/// The stats block printed after a streaming run's text.
pub fn stats_block(s: &StreamStats) -> String {
    let mib = |b: f64| b / 1048576.0;
    format!(
        "[lode] streamed from {} ({})\n\
         [lode] budget {:.1} MiB{} ({:.1} MiB of it outside the arena; minimum {:.1} MiB): \
         resident attention {} layers, FFN {} \
         layers, head {}; ring {} x {:.2} MiB\n\
         [lode] per token: {:.2} MiB in {:.0} reads; prefetch ready {:.0}%; {}\n\
         [lode] time: I/O wait {:.2} s, compute {:.2} s; image verified in {:.2} s{}\n\
         [lode] {}{}",
        s.device,
        s.device_mode,
        mib(s.budget_bytes as f64),
        match s.unused_budget_bytes {
            Some(asked) => format!(
                ", all the model needs of the {:.1} MiB asked for",
                mib(asked as f64)
            ),
            None => String::new(),
        },
        mib(s.outside_bytes as f64),
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
        if s.sparsity > 0.0 && s.column_reads == Some("whole") {
            format!(
                "sparsity {:.0}%: down columns read whole through the ring, the dropped ones \
                 skipped in the arithmetic (--column-reads)",
                s.sparsity * 100.0
            )
        } else if s.sparsity > 0.0 {
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
        },
        if s.reads_verified {
            format!(
                "every read checked against the blocks verified at load: {:.2} MiB a token \
                 ({:.0}% of it while the rest of its unit was being read), {} reads repeated",
                mib(s.verified_bytes_per_token),
                s.verified_early_rate * 100.0,
                s.read_retries
            )
        } else {
            "reads not checked (--no-verify-reads or --no-verify)".to_string()
        } + &if s.decoded_bytes_per_token > 0.0 {
            format!(
                "\n[lode] coded FFN matrices decoded as they arrived: {:.2} MiB a token, {:.2} s \
                 in all",
                mib(s.decoded_bytes_per_token),
                s.decode_seconds
            )
        } else {
            String::new()
        },
        if s.injected_read_errors + s.injected_bit_flips + s.injected_latency_spikes > 0 {
            format!(
                "\n[lode] faults injected: {} read errors, {} bit flips, {} latency spikes",
                s.injected_read_errors, s.injected_bit_flips, s.injected_latency_spikes
            )
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod columns_tests;
#[cfg(test)]
mod tests;
