//! What `lode bench contexts` prints: per system, the switch latency's
//! median and 95th percentile, the decode time per token, what the
//! lifecycle did, and the ratios to lode.

use std::error::Error;
use std::io::Write;

use lode_runtime::LifeStats;
use serde::Serialize;

use super::trace::Trace;
use super::ContextsArgs;

/// One system's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// `lode`, `recompute` or `raw-swap`.
    pub system: String,
    /// Seconds from each switch's call to its first new token.
    pub first_token: Vec<f64>,
    /// Median of `first_token`.
    pub median: f64,
    /// 95th percentile of `first_token`.
    pub p95: f64,
    /// Seconds of each switch spent restoring its context and making room
    /// for it (the rest of `first_token` is evaluating the input, alike in
    /// every system).
    pub switch_overhead: Vec<f64>,
    /// Median of `switch_overhead`.
    pub overhead_median: f64,
    /// 95th percentile of `switch_overhead`.
    pub overhead_p95: f64,
    /// Median decode seconds per token after the first.
    pub decode_per_token: f64,
    /// What the lifecycle did during the switches.
    pub restores: u64,
    /// Chunks decoded from DRAM copies.
    pub from_dram: u64,
    /// Chunks read from the swap area.
    pub from_flash: u64,
    /// Chunks recomputed.
    pub recomputed: u64,
    /// Chunks written to the swap area.
    pub swapped_chunks: u64,
    /// Bytes written to the swap area.
    pub swapped_bytes: u64,
    /// The fitted cost models at the end.
    pub cost_models: String,
}

/// The `q` quantile of `v` (nearest rank), 0 for none.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

impl SystemResult {
    /// From the switches' latencies and the lifecycle counters around them.
    pub fn new(
        name: &str,
        [first_token, switch_overhead, decode]: [Vec<f64>; 3],
        before: LifeStats,
        after: LifeStats,
        cost_models: String,
    ) -> SystemResult {
        SystemResult {
            system: name.to_string(),
            median: quantile(&first_token, 0.5),
            p95: quantile(&first_token, 0.95),
            decode_per_token: quantile(&decode, 0.5),
            first_token,
            overhead_median: quantile(&switch_overhead, 0.5),
            overhead_p95: quantile(&switch_overhead, 0.95),
            switch_overhead,
            restores: after.restores - before.restores,
            from_dram: after.from_dram - before.from_dram,
            from_flash: after.from_flash - before.from_flash,
            recomputed: after.recomputed - before.recomputed,
            swapped_chunks: after.swapped_chunks - before.swapped_chunks,
            swapped_bytes: after.swapped_bytes - before.swapped_bytes,
            cost_models,
        }
    }
}

/// The table.
pub fn print_table(
    a: &ContextsArgs,
    trace: &Trace,
    max_context: usize,
    results: &[SystemResult],
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let hist: Vec<usize> = trace.histories.iter().map(Vec::len).collect();
    writeln!(
        out,
        "lode bench contexts: {} conversations (histories {} to {} tokens), {} switches ({:?}), \
         {} tokens a call; DRAM plan holds {} of them ({} positions each); swap {}",
        a.contexts,
        hist.iter().min().unwrap_or(&0),
        hist.iter().max().unwrap_or(&0),
        trace.switches.len(),
        trace.pattern,
        a.tokens,
        a.kv_contexts,
        max_context,
        a.swap
    )?;
    writeln!(
        out,
        "{:<10} {:>22} {:>8} {:>22} {:>8} {:>10} {:>24} {:>9}",
        "system",
        "first token med/p95",
        "x lode",
        "switch cost med/p95",
        "x lode",
        "decode ms",
        "chunks dram/flash/recomp",
        "swap MiB"
    )?;
    let lode = results.iter().find(|r| r.system == "lode");
    let x = |v: f64, l: Option<f64>| {
        l.filter(|&l| l > 0.0)
            .map_or("-".into(), |l| format!("{:.1}x", v / l))
    };
    for r in results {
        writeln!(
            out,
            "{:<10} {:>22} {:>8} {:>22} {:>8} {:>10.2} {:>24} {:>9.1}",
            r.system,
            format!("{:.1} / {:.1} ms", r.median * 1e3, r.p95 * 1e3),
            x(r.median, lode.map(|l| l.median)),
            format!(
                "{:.1} / {:.1} ms",
                r.overhead_median * 1e3,
                r.overhead_p95 * 1e3
            ),
            x(r.overhead_median, lode.map(|l| l.overhead_median)),
            r.decode_per_token * 1e3,
            format!("{}/{}/{}", r.from_dram, r.from_flash, r.recomputed),
            r.swapped_bytes as f64 / 1048576.0
        )?;
    }
    for r in results {
        writeln!(out, "  {} cost models: {}", r.system, r.cost_models)?;
    }
    Ok(())
}
