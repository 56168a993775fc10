//! `lode bench`: benchmarks that print ratios measured side by side in one run.

pub mod codec;
pub mod contexts;
pub mod entropy;
pub mod io;
pub mod kv;
pub mod placement;
mod replay;
mod report;

/// Subcommands of `lode bench`.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// Replay an activation trace through every placement x cache policy x
    /// merging choice (plus dense and per-bundle baselines) on a device and
    /// print per-token commands, bytes, I/O time, cache hit rate and the
    /// ratio to the physical bound.
    Io(io::IoArgs),
    /// Score placements by how many runs of consecutive positions a token's
    /// active neurons form (fewer runs, fewer reads), against the planted
    /// clusters of a synthetic trace.
    Placement(placement::PlacementArgs),
    /// What compressing a context's KV chunks costs: perplexity and top-1
    /// agreement against full-precision KV after the first --prefix tokens
    /// of each text are compressed, for LLMS's density-ranked 8/4/2-bit
    /// levels at several mean bits, uniform 4 and 2 bits, per-token and
    /// KIVI (keys per channel) layouts.
    Kv(kv::KvArgs),
    /// Context switches under a DRAM budget that holds only a few
    /// conversations: the latency to the first new token for LLMS's
    /// lifecycle, kill-and-recompute and vLLM-style raw chunk swapping,
    /// on one seeded trace (medians and p95).
    Contexts(contexts::ContextsArgs),
    /// How far a GGUF's quantized weights could be losslessly shrunk: each
    /// tensor class's streams (values, scales, minimums), their order-0
    /// entropy and the bound it gives, against zstd and LZ4.
    Entropy(entropy::EntropyArgs),
    /// The kernel's lossless weight codec on a GGUF: every quantized
    /// tensor coded and decoded back, each class's and stream's coded bits
    /// a symbol against its order-0 entropy, the model's bytes raw and
    /// coded, and single-thread decode MB/s.
    Codec(codec::CodecArgs),
}

/// Run `lode bench`.
pub fn run(cmd: &BenchCmd, out: &mut dyn std::io::Write) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        BenchCmd::Io(args) => io::run(args, out),
        BenchCmd::Placement(args) => placement::run(args, out),
        BenchCmd::Kv(args) => kv::run(args, out),
        BenchCmd::Contexts(args) => contexts::run(args, out),
        BenchCmd::Entropy(args) => entropy::run(args, out),
        BenchCmd::Codec(args) => codec::run(args, out),
    }
}
