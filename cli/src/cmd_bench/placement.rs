//! `lode bench placement`: how well each placement keeps a token's active
//! neurons together, measured as maximal runs of consecutive positions (the
//! reads a coalescing planner needs at one bundle per block).

use std::error::Error;
use std::io::Write;

use lode_formats::trace::Trace;
use lode_kernel::placement;
use lode_pack::placement::{place, PlacementKind};
use lode_pack::progress::Silent;
use lode_pack::synth::{LayerSynth, SynthParams};

use crate::cmd_trace::{self, Preset};

/// Arguments of `lode bench placement`.
#[derive(clap::Args, Debug)]
pub struct PlacementArgs {
    /// Synthesise this preset (the planted clusters give an oracle row).
    #[arg(long, value_enum, default_value = "opt")]
    pub synth: Preset,
    /// Tokens of the synthesised trace; the first half profiles, the second is scored.
    #[arg(long, default_value_t = 256)]
    pub tokens: u32,
    /// Seed of the synthesised trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Layers to score (the first N; all layers are alike in a synthetic trace).
    #[arg(long, default_value_t = 4)]
    pub layers: u32,
}

/// Mean runs per token and layer over tokens `from..` with `inverse` maps.
fn runs(trace: &Trace<'_>, from: u32, inverse: &[Vec<u32>]) -> Result<(f64, f64), Box<dyn Error>> {
    let h = trace.header();
    let (mut runs, mut active, mut n) = (0u64, 0u64, 0u64);
    let mut pos = Vec::new();
    for t in from..h.tokens {
        for (l, inv) in inverse.iter().enumerate() {
            pos.clear();
            pos.extend(trace.active(t, l as u32)?.iter().map(|x| inv[x as usize]));
            pos.sort_unstable();
            runs += u64::from(placement::runs(&pos));
            active += pos.len() as u64;
            n += 1;
        }
    }
    Ok((
        active as f64 / n.max(1) as f64,
        runs as f64 / n.max(1) as f64,
    ))
}

/// Run the benchmark.
pub fn run(a: &PlacementArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let base = match a.synth {
        Preset::Opt => SynthParams::opt_like(a.tokens, a.seed),
        Preset::Llama => SynthParams::llama_like(a.tokens, a.seed),
    };
    let p = SynthParams {
        layers: a.layers.clamp(1, base.layers),
        ..base
    };
    if p.tokens < 4 {
        return Err("--tokens must be at least 4".into());
    }
    let bytes = cmd_trace::synthesize(&p, Vec::new(), true)?;
    let trace = Trace::parse(&bytes)?;
    let half = p.tokens / 2;
    let placed = place(&trace, half, &mut Silent)?;
    writeln!(out, "lode bench placement: {:?}-like, {} layers x {} neurons, profiled on {half} tokens, scored on {}", a.synth, p.layers, p.neurons, p.tokens - half)?;
    writeln!(
        out,
        "{:<10} {:>12} {:>14} {:>16}",
        "placement", "active/layer", "runs/layer", "active per run"
    )?;
    let mut rows: Vec<(&str, Vec<Vec<u32>>)> = Vec::new();
    for (name, kind) in [
        ("identity", PlacementKind::Identity),
        ("freq", PlacementKind::Freq),
        ("coact", PlacementKind::Coact),
    ] {
        let inv = (0..p.layers as usize)
            .map(|l| {
                placement::inverse(&placed.perm(kind, l, p.neurons)).ok_or("not a permutation")
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((name, inv));
    }
    // The oracle: every planted cluster contiguous, hottest cluster first.
    let oracle = (0..p.layers)
        .map(|l| {
            let g = LayerSynth::new(&p, l);
            let counts = &placed.counts[l as usize];
            let mut clusters: Vec<&Vec<u32>> = g.clusters().iter().collect();
            clusters.sort_by_key(|c| {
                std::cmp::Reverse(c.iter().map(|&n| counts[n as usize]).sum::<u32>())
            });
            let perm: Vec<u32> = clusters.into_iter().flatten().copied().collect();
            placement::inverse(&perm).ok_or("planted clusters are not a permutation")
        })
        .collect::<Result<Vec<_>, _>>()?;
    rows.push(("planted", oracle));
    for (name, inv) in &rows {
        let (active, r) = runs(&trace, half, inv)?;
        writeln!(
            out,
            "{name:<10} {active:>12.0} {r:>14.1} {:>16.2}",
            active / r.max(1e-9)
        )?;
    }
    writeln!(out, "planted = the generator's own clusters laid out contiguously: the best a placement could learn")?;
    Ok(())
}
