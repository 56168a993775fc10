//! `lode bench placement`: how well each placement keeps a token's active
//! neurons together, measured as maximal runs of consecutive positions (the
//! reads a coalescing planner needs at one bundle per block), on a planted
//! synthetic trace or on a model's own recorded one (`--trace`), where it
//! also prices each placement with the kernel's read planner: commands and
//! bytes a token and layer, coalesced and with gaps merged (Ripple's access
//! collapse), against reading the layer whole.

use std::error::Error;
use std::io::Write;

use lode_formats::trace::Trace;
use lode_hal::fake::Profile;
use lode_kernel::placement;
use lode_kernel::plan::{estimate, Mode, Region};
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
    /// Score a recorded trace instead (`lode profile -o`, a model's own
    /// activations): placements learn from its first half and are scored
    /// on its second, every layer, and priced by the read planner.
    #[arg(long, value_name = "FILE", conflicts_with = "synth")]
    pub trace: Option<std::path::PathBuf>,
    /// With --trace: score on this trace (another text's, same model)
    /// instead of the second half, so no placement is scored on what it
    /// learned from.
    #[arg(long, value_name = "FILE", requires = "trace")]
    pub held_out: Option<std::path::PathBuf>,
    /// With --trace: bytes of one neuron's bundle as the planner prices it
    /// (612: SmolLM2's Q8_0 down column of 576 values).
    #[arg(long, default_value_t = 612)]
    pub bundle_bytes: u32,
    /// With --trace: the device block the planner reads whole (a power of
    /// two; this disk takes O_DIRECT reads of 512-byte blocks).
    #[arg(long, default_value_t = 4096)]
    pub block: u32,
}

/// The placements every table compares, by name.
const PLACEMENTS: [(&str, PlacementKind); 3] = [
    ("identity", PlacementKind::Identity),
    ("freq", PlacementKind::Freq),
    ("coact", PlacementKind::Coact),
];

/// Each layer's `position -> neuron` map of `kind` turned into `neuron ->
/// position`.
fn inverses(
    placed: &lode_pack::placement::Placements,
    kind: PlacementKind,
    layers: u32,
    neurons: u32,
) -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
    (0..layers as usize)
        .map(|l| {
            placement::inverse(&placed.perm(kind, l, neurons))
                .ok_or_else(|| "not a permutation".into())
        })
        .collect()
}

/// Calls `f` with each scored token's active positions in each layer
/// (sorted, under the layer's `inverse` map) for tokens `from..`; returns
/// how many calls it made.
fn each_active(
    trace: &Trace<'_>,
    from: u32,
    inverse: &[Vec<u32>],
    mut f: impl FnMut(&[u32]) -> Result<(), Box<dyn Error>>,
) -> Result<u64, Box<dyn Error>> {
    let mut pos = Vec::new();
    let mut n = 0u64;
    for t in from..trace.header().tokens {
        for (l, inv) in inverse.iter().enumerate() {
            pos.clear();
            pos.extend(trace.active(t, l as u32)?.iter().map(|x| inv[x as usize]));
            pos.sort_unstable();
            pos.dedup();
            f(&pos)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Mean runs per token and layer over tokens `from..` with `inverse` maps.
fn runs(trace: &Trace<'_>, from: u32, inverse: &[Vec<u32>]) -> Result<(f64, f64), Box<dyn Error>> {
    let (mut runs, mut active) = (0u64, 0u64);
    let n = each_active(trace, from, inverse, |pos| {
        runs += u64::from(placement::runs(pos));
        active += pos.len() as u64;
        Ok(())
    })?;
    Ok((
        active as f64 / n.max(1) as f64,
        runs as f64 / n.max(1) as f64,
    ))
}

/// Run the benchmark.
pub fn run(a: &PlacementArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    if let Some(path) = &a.trace {
        return run_trace(a, path, out);
    }
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
    for (name, kind) in PLACEMENTS {
        rows.push((name, inverses(&placed, kind, p.layers, p.neurons)?));
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

/// What reading one token's active neurons costs under a placement, per
/// layer: planner commands and bytes, coalesced and with merged gaps.
#[derive(Default)]
struct Priced {
    active: f64,
    runs: f64,
    coalesced: (f64, f64),
    merged: (f64, f64),
}

/// Scores `inverse` maps on tokens `from..` of `trace`, pricing each
/// token's reads on this machine's disk model (4 KiB blocks).
fn price(
    trace: &Trace<'_>,
    from: u32,
    inverse: &[Vec<u32>],
    bundle: u32,
    block: u32,
) -> Result<Priced, Box<dyn Error>> {
    let h = trace.header();
    let mut disk = Profile::DISK;
    disk.geometry.block_size = block;
    let region = Region {
        offset: 0,
        stride: bundle,
        bundle_bytes: bundle,
        count: h.neurons,
    };
    let mut p = Priced::default();
    let n = each_active(trace, from, inverse, |pos| {
        let c = estimate(&region, pos, &disk.geometry, &disk.cost, Mode::Coalesced)?;
        let m = estimate(&region, pos, &disk.geometry, &disk.cost, Mode::Merged)?;
        p.active += pos.len() as f64;
        p.runs += f64::from(placement::runs(pos));
        p.coalesced.0 += f64::from(c.commands);
        p.coalesced.1 += c.bytes as f64;
        p.merged.0 += f64::from(m.commands);
        p.merged.1 += m.bytes as f64;
        Ok(())
    })? as f64;
    let n = n.max(1.0);
    Ok(Priced {
        active: p.active / n,
        runs: p.runs / n,
        coalesced: (p.coalesced.0 / n, p.coalesced.1 / n),
        merged: (p.merged.0 / n, p.merged.1 / n),
    })
}

/// `--trace`: placements learnt from a recorded trace, scored on its second
/// half (or on `--held-out`) and priced by the read planner.
fn run_trace(
    a: &PlacementArgs,
    path: &std::path::Path,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let bytes = read(path)?;
    let trace = Trace::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = trace.header();
    if !a.block.is_power_of_two() || a.block > Profile::DISK.geometry.max_transfer {
        return Err(format!(
            "--block {}: a power of two, at most the largest transfer",
            a.block
        )
        .into());
    }
    if h.tokens < 4 {
        return Err(format!("{}: {} tokens; at least 4 needed", path.display(), h.tokens).into());
    }
    let held = a.held_out.as_deref().map(read).transpose()?;
    let scored = match &held {
        Some(b) => {
            let t = Trace::parse(b).map_err(|e| format!("--held-out: {e}"))?;
            let th = t.header();
            if (th.layers, th.neurons) != (h.layers, h.neurons) {
                return Err("--held-out: a trace of another model shape".into());
            }
            t
        }
        None => Trace::parse(&bytes)?,
    };
    let half = h.tokens / 2;
    let (learn, from) = match held {
        Some(_) => (h.tokens, 0),
        None => (half, half),
    };
    let placed = place(&trace, learn, &mut Silent)?;
    writeln!(
        out,
        "lode bench placement: {} ({} layers x {} neurons), placements learnt on {learn} tokens, \
         scored on {} tokens of {}",
        path.display(),
        h.layers,
        h.neurons,
        scored.header().tokens - from,
        a.held_out.as_deref().unwrap_or(path).display()
    )?;
    let dense = u64::from(h.neurons) * u64::from(a.bundle_bytes);
    writeln!(
        out,
        "per token and layer; {} B bundles, this disk's cost model, {} B blocks; reading the \
         layer whole is {:.1} KiB",
        a.bundle_bytes,
        a.block,
        dense as f64 / 1024.0
    )?;
    writeln!(
        out,
        "{:<10} {:>8} {:>8} {:>22} {:>22}",
        "placement", "active", "runs", "coalesced: reads  KiB", "merged: reads  KiB"
    )?;
    for (name, kind) in PLACEMENTS {
        let inv = inverses(&placed, kind, h.layers, h.neurons)?;
        let p = price(&scored, from, &inv, a.bundle_bytes, a.block)?;
        writeln!(
            out,
            "{name:<10} {:>8.0} {:>8.1} {:>14.1} {:>7.1} {:>14.1} {:>7.1}",
            p.active,
            p.runs,
            p.coalesced.0,
            p.coalesced.1 / 1024.0,
            p.merged.0,
            p.merged.1 / 1024.0
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers of `name`'s row: active, runs, coalesced reads and KiB,
    /// merged reads and KiB.
    fn row(text: &str, name: &str) -> Vec<f64> {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect()
    }

    #[test]
    fn a_recorded_trace_is_priced_and_coactivation_pays_where_neurons_cluster() {
        // An OPT-like trace: sparse, with planted co-activation clusters.
        let p = SynthParams {
            layers: 2,
            ..SynthParams::opt_like(64, 3)
        };
        let bytes = cmd_trace::synthesize(&p, Vec::new(), true).unwrap();
        let dir = std::env::temp_dir().join(format!("lode-bench-placement-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.trace");
        std::fs::write(&path, &bytes).unwrap();
        let args = PlacementArgs {
            synth: Preset::Opt,
            tokens: 64,
            seed: 1,
            layers: 4,
            trace: Some(path.clone()),
            held_out: None,
            bundle_bytes: 612,
            block: 4096,
        };
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let dense = f64::from(p.neurons) * 612.0 / 1024.0;
        let (id, coact) = (row(&text, "identity"), row(&text, "coact"));
        for r in [&id, &coact, &row(&text, "freq")] {
            assert!(r[3] <= dense + 4.0 && r[5] <= dense + 4.0, "{text}");
            assert!(r[1] <= r[0], "runs never exceed active neurons: {text}");
        }
        assert_eq!(id[0], coact[0], "the same neurons, placed apart: {text}");
        assert!(coact[1] < id[1] / 2.0, "clusters become runs: {text}");
        assert!(coact[3] < id[3], "and fewer bytes: {text}");
        // A held-out trace of another shape is refused.
        let other = SynthParams {
            layers: 3,
            ..SynthParams::opt_like(16, 4)
        };
        let other_path = dir.join("other.trace");
        std::fs::write(
            &other_path,
            cmd_trace::synthesize(&other, Vec::new(), true).unwrap(),
        )
        .unwrap();
        let e = run(
            &PlacementArgs {
                held_out: Some(other_path),
                ..args
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("another model shape"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
