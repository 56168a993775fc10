//! `lode bench contexts`: context switches under a DRAM budget that holds
//! only a few contexts, for LLMS's lifecycle and its baselines, on one
//! seeded trace, side by side in one run.
//!
//! The trace: `--contexts` conversations, each given a history of 256 to
//! `--max-history` tokens cut from `--text`, then `--switches` calls, each
//! to a conversation chosen at random or by a Markov pattern (mostly to
//! the next app or back to a recent one), each appending a short input
//! and generating `--tokens` tokens. A switch's latency is the time from
//! the call to its first new token: restoring the context, evaluating the
//! input, sampling. The systems, each a fresh session over the same
//! model and budget:
//!
//! - `lode`: LLMS's lifecycle (density-ranked 4-bit copies in DRAM, LCTRU,
//!   ahead-of-time swap-out, pipelined restore);
//! - `recompute`: a switched-out context is killed and recomputed from
//!   its text;
//! - `raw-swap`: vLLM-style, raw f32 chunks swapped out when evicted and
//!   read back whole, no compression, no pipeline.
//!
//! llama.cpp's own state save and load runs in `scripts/bench-contexts`
//! on the trace this command writes with `--trace-out`.

use std::error::Error;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use lode_formats::input::{read_file, Limit};
use lode_kernel::model::KvCache;
use lode_runtime::kv_life::KvPolicy;
use lode_runtime::swap_store::{model_fingerprint, SwapSpec, SwapStore};
use lode_runtime::{
    CallOptions, ContextId, Input, LifeStats, ModelFile, Quiet, Service, ServiceOptions, Session,
    SessionOptions,
};

mod report;
mod trace;

use report::{print_table, SystemResult};
use trace::{Pattern, Trace};

/// Arguments of `lode bench contexts`.
#[derive(clap::Args, Debug)]
pub struct ContextsArgs {
    /// Model (GGUF or lode image).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Text the histories and inputs are cut from.
    #[arg(long, default_value = "/usr/share/common-licenses/GPL-3")]
    pub text: PathBuf,
    /// Conversations.
    #[arg(long, default_value_t = 8)]
    pub contexts: usize,
    /// Longest history (tokens); each is drawn from 256 to this.
    #[arg(long = "max-history", default_value_t = 1024)]
    pub max_history: usize,
    /// Switches measured.
    #[arg(long, default_value_t = 32)]
    pub switches: usize,
    /// How the next conversation is chosen: random or markov.
    #[arg(long, default_value = "markov")]
    pub pattern: String,
    /// Tokens generated per call.
    #[arg(long, default_value_t = 8)]
    pub tokens: usize,
    /// Full KV caches the DRAM plan holds at once.
    #[arg(long = "kv-contexts", default_value_t = 2)]
    pub kv_contexts: usize,
    /// Swap area: a directory for a swap file (this machine's disk), or
    /// fake:<profile>.
    #[arg(long, default_value = "/tmp")]
    pub swap: String,
    /// Seed of the trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Systems to run, comma-separated: lode, recompute, raw-swap, and
    /// single (the switches' calls all in one conversation that is never
    /// switched out: the decode speed of one context alone).
    #[arg(long, default_value = "lode,recompute,raw-swap,single")]
    pub systems: String,
    /// Write the trace (the tokens of every history and input, the
    /// switches) as JSON for scripts/bench-contexts' llama.cpp run.
    #[arg(long = "trace-out")]
    pub trace_out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A system under test: its name, its lifecycle policy, whether it swaps.
fn system(name: &str) -> Result<(KvPolicy, bool), String> {
    Ok(match name {
        "lode" => (KvPolicy::LLMS, true),
        "recompute" => (
            KvPolicy {
                keep_in_dram: false,
                ..KvPolicy::EXACT
            },
            false,
        ),
        "raw-swap" => (
            KvPolicy {
                keep_in_dram: false,
                ahead_of_time: false,
                pipeline: false,
                ..KvPolicy::EXACT
            },
            true,
        ),
        // One conversation alone, never switched out: the decode speed
        // every other system is compared with.
        "single" => (KvPolicy::LLMS, false),
        other => {
            return Err(format!(
                "unknown system `{other}`: lode, recompute, raw-swap, single"
            ))
        }
    })
}

/// Run the benchmark.
pub fn run(a: &ContextsArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let pattern = Pattern::parse(&a.pattern)?;
    let systems: Vec<&str> = a.systems.split(',').map(str::trim).collect();
    for s in &systems {
        system(s)?;
    }
    let file = ModelFile::open(&a.model)?;
    let bytes =
        read_file(&a.text, Limit::new("texts", 64 << 20)).map_err(|e| format!("--text {e}"))?;
    let corpus = file
        .tokenizer()
        .encode(&String::from_utf8_lossy(&bytes), false);
    // Room for the longest history and a fair share of the switches'
    // growth: the plan's `--kv-contexts` contexts of this size are what
    // DRAM holds of the conversations.
    let grow = trace::INPUT_TOKENS + a.tokens + 1;
    let max_context = (a.max_history + grow * (2 * a.switches / a.contexts.max(1) + 4))
        .min(file.config().context)
        .min(lode_kernel::model::MAX_CONTEXT);
    let trace = Trace::new(&corpus, a, pattern, max_context)?;
    if let Some(p) = &a.trace_out {
        std::fs::write(p, serde_json::to_vec(&trace)?)?;
    }
    drop(file);
    let mut results = Vec::new();
    for name in systems {
        let r = run_system(a, name, &trace, max_context)?;
        eprintln!("lode bench contexts: {name} done");
        results.push(r);
    }
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &results)?;
        writeln!(out)?;
        return Ok(());
    }
    print_table(a, &trace, max_context, &results, out)
}

/// One system through the whole trace.
fn run_system(
    a: &ContextsArgs,
    name: &str,
    trace: &Trace,
    max_context: usize,
) -> Result<SystemResult, Box<dyn Error>> {
    let (policy, swaps) = system(name)?;
    let file = ModelFile::open(&a.model)?;
    let mut opts = SessionOptions::new(max_context);
    opts.contexts = a.kv_contexts;
    opts.threads = a.threads;
    let session = Session::load(file, &opts, 64, &mut Quiet)?;
    let chunk = session.kv_layout().max_payload();
    let fp = model_fingerprint(&session)?;
    let svc_opts = ServiceOptions {
        kv: policy,
        ..ServiceOptions::new(a.contexts)
    };
    let mut svc = Service::new(session, svc_opts);
    let mut swap_file = None;
    if swaps {
        let spec = if a.swap.starts_with("fake:") {
            SwapSpec::parse(&a.swap)?
        } else {
            let p = PathBuf::from(&a.swap)
                .join(format!("lode-bench-swap-{}-{name}", std::process::id()));
            let _ = std::fs::remove_file(&p);
            swap_file = Some(p.clone());
            SwapSpec::File(p)
        };
        // Room for every context's f32 chunks twice over.
        let size = (chunk * KvCache::chunks_for(max_context) * a.contexts * 2) as u64 + (64 << 20);
        svc = svc.with_swap(SwapStore::open(&spec, size, fp, chunk)?)?;
    }
    let r = if name == "single" {
        let one = Trace::single(trace);
        drive(&svc, name, &one, a.tokens)
    } else {
        drive(&svc, name, trace, a.tokens)
    };
    drop(svc);
    if let Some(p) = swap_file {
        let _ = std::fs::remove_file(p);
    }
    r
}

/// Builds every history, then runs the switches, timing each.
fn drive(
    svc: &Service,
    name: &str,
    trace: &Trace,
    tokens: usize,
) -> Result<SystemResult, Box<dyn Error>> {
    let ids: Vec<ContextId> = trace
        .histories
        .iter()
        .map(|_| svc.create_context(None))
        .collect::<Result<_, _>>()?;
    let opts = CallOptions::greedy(tokens);
    let text = |t: &[u32]| {
        svc.with_session(|s| s.tokenizer().decode(t))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    for (id, h) in ids.iter().zip(&trace.histories) {
        let t = text(h)?;
        svc.call(*id, Input::Text(&t), &CallOptions::greedy(1), |_| {
            ControlFlow::Continue(())
        })?;
    }
    let before = svc.life_stats();
    let mut first = Vec::with_capacity(trace.switches.len());
    let mut overhead = Vec::with_capacity(trace.switches.len());
    let mut decode = Vec::with_capacity(trace.switches.len());
    let spent = |l: LifeStats| l.restore_seconds + l.reclaim_seconds;
    for (c, input) in &trace.switches {
        let t = text(input)?;
        let was = spent(svc.life_stats());
        let start = Instant::now();
        let mut at = None;
        let s = svc.call(ids[*c], Input::Text(&t), &opts, |_| {
            at.get_or_insert_with(|| start.elapsed().as_secs_f64());
            ControlFlow::Continue(())
        })?;
        first.push(at.unwrap_or_else(|| start.elapsed().as_secs_f64()));
        overhead.push(spent(svc.life_stats()) - was);
        if s.generated_tokens > 1 {
            decode.push(s.decode_seconds / (s.generated_tokens - 1) as f64);
        }
    }
    let after = svc.life_stats();
    Ok(SystemResult::new(
        name,
        [first, overhead, decode],
        before,
        after,
        svc.cost_models(),
    ))
}
