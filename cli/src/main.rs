//! `lode`: run language models from flash on devices whose DRAM is smaller
//! than the model. See `lode --help`.

mod cmd_bench;
mod cmd_calibrate;
mod cmd_chat;
mod cmd_image;
mod cmd_inspect;
mod cmd_pack;
mod cmd_profile;
mod cmd_prune;
mod cmd_run;
mod cmd_serve;
mod cmd_trace;
#[cfg(test)]
mod io_safety_tests;
#[cfg(test)]
mod pack_tokenizer_tests;
mod progress;
mod session_args;
#[cfg(test)]
mod testutil;

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// lode runs large language models from flash on devices whose DRAM is
/// smaller than the model, reading only what each token needs.
#[derive(Parser, Debug)]
#[command(name = "lode", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a lode image's header, tensors and bundle regions; with
    /// --verify, check every data byte too. Exits non-zero on any defect.
    Inspect(cmd_inspect::InspectArgs),
    /// Make lode images without a model (random weights in a model's shape).
    #[command(subcommand)]
    Image(cmd_image::ImageCmd),
    /// Make and describe activation traces.
    #[command(subcommand)]
    Trace(cmd_trace::TraceCmd),
    /// Pack a GGUF llama model into a lode image: non-FFN tensors as
    /// tensors, the FFN as neuron bundles in a placement's order (or split,
    /// or dense: --layout).
    Pack(cmd_pack::PackArgs),
    /// Record a real model's FFN activations on a text under thresholds
    /// calibrated to a target sparsity, into an activation trace, and
    /// report the perplexity cost (of those thresholds and of lode run's
    /// per-token rule).
    Profile(cmd_profile::ProfileArgs),
    /// Generate text: a GGUF llama model held in DRAM, or a lode image
    /// streamed from flash under a DRAM budget (--dram-budget).
    Run(cmd_run::RunArgs),
    /// Talk with a model: each line you type is a turn, the reply streams
    /// back, and the conversation's context is kept between turns (only
    /// the new tokens are evaluated). /reset starts over.
    Chat(cmd_chat::ChatArgs),
    /// Serve the model over HTTP with OpenAI's completions and chat
    /// completions API; conversations (sessions) keep their context in
    /// the server between requests. See `lode serve --help`.
    Serve(cmd_serve::ServeArgs),
    /// Measure a device's read latency against read size and fit its cost
    /// model (printed, --json, --plot, or stored into an image).
    Calibrate(cmd_calibrate::CalibrateArgs),
    /// Choose layers to drop: EvoP's evolutionary search against the
    /// unpruned model's next-token distributions on cluster-sampled
    /// calibration windows, side by side with Block Influence, the last
    /// layers and random masks, scored on held-out text; --output-dir packs
    /// EvoP's choice as an image, --base scores a pruned image against its
    /// model.
    Prune(cmd_prune::PruneArgs),
    /// Benchmarks printed side by side in one run.
    #[command(subcommand)]
    Bench(cmd_bench::BenchCmd),
}

/// Runs `cmd`, printing to `out` (`chat` reads its turns from stdin).
fn dispatch(cmd: &Cmd, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    match cmd {
        Cmd::Inspect(args) => cmd_inspect::run(args, out),
        Cmd::Image(cmd) => cmd_image::run(cmd, out),
        Cmd::Trace(cmd) => cmd_trace::run(cmd, out),
        Cmd::Bench(cmd) => cmd_bench::run(cmd, out),
        Cmd::Pack(args) => cmd_pack::run(args, out),
        Cmd::Profile(args) => cmd_profile::run(args, out),
        Cmd::Run(args) => cmd_run::run(args, out),
        Cmd::Chat(args) => cmd_chat::run(args, &mut std::io::stdin().lock(), out),
        Cmd::Calibrate(args) => cmd_calibrate::run(args, out),
        Cmd::Serve(args) => cmd_serve::run(args, out),
        Cmd::Prune(args) => cmd_prune::run(args, out),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match dispatch(&cli.cmd, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lode: error: {e}");
            ExitCode::FAILURE
        }
    }
}
