//! `lode bench`: benchmarks that print ratios measured side by side in one run.

pub mod io;
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
}

/// Run `lode bench`.
pub fn run(cmd: &BenchCmd, out: &mut dyn std::io::Write) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        BenchCmd::Io(args) => io::run(args, out),
        BenchCmd::Placement(args) => placement::run(args, out),
    }
}
