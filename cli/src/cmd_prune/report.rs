//! What `lode prune`'s search prints: a table, or with `--json` every
//! score, the calibration sampling and the images written.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_runtime::prune::ccds::Clusters;
use lode_runtime::prune::{layers_of, LevelResult, Score};

use super::PruneArgs;

/// How the calibration windows were chosen.
#[derive(Debug, serde::Serialize)]
pub(super) struct Calibration {
    /// `ccds` or `random`.
    pub sampling: &'static str,
    /// Windows chosen.
    pub windows: usize,
    /// Windows the calibration texts give.
    pub corpus_windows: usize,
    /// The clustering, with `ccds`.
    pub clusters: Option<Clusters>,
}

/// Everything a search found.
pub(super) struct Outcome {
    pub layers: usize,
    /// The unpruned model on the held-out windows.
    pub unpruned: Score,
    pub calibration: Calibration,
    /// Block Influence of every layer.
    pub influence: Vec<f64>,
    pub levels: Vec<LevelResult>,
    /// Images written (`--output-dir`): layers dropped and path.
    pub images: Vec<(usize, PathBuf)>,
}

/// Prints `o` as `a` asks.
pub(super) fn print(a: &PruneArgs, o: &Outcome, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let images: Vec<serde_json::Value> = o
        .images
        .iter()
        .map(|(drop, path)| serde_json::json!({ "drop": drop, "path": path.display().to_string() }))
        .collect();
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "layers": o.layers,
            "unpruned_held_out": o.unpruned,
            "calibration": o.calibration,
            "block_influence": o.influence,
            "levels": o.levels,
            "images": images,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    let c = &o.calibration;
    match &c.clusters {
        Some(k) => writeln!(
            out,
            "calibration: {} windows sampled across {} clusters of {} windows (sizes {:?}; \
             chosen from clusters {:?})",
            c.windows,
            k.sizes.len(),
            k.candidates,
            k.sizes,
            k.chosen_from
        )?,
        None => writeln!(
            out,
            "calibration: {} windows sampled at random from {}",
            c.windows, c.corpus_windows
        )?,
    }
    print_table(out, o.layers, o.unpruned.perplexity, &o.levels)?;
    for (drop, path) in &o.images {
        writeln!(
            out,
            "wrote {} (EvoP's {drop} layers dropped; score it with `lode prune -m {} --base {} \
             --held-out ...`)",
            path.display(),
            path.display(),
            a.model.display()
        )?;
    }
    Ok(())
}

fn print_table(
    out: &mut dyn Write,
    layers: usize,
    full_ppl: f64,
    results: &[LevelResult],
) -> Result<(), Box<dyn Error>> {
    writeln!(
        out,
        "unpruned: {layers} layers, held-out perplexity {full_ppl:.3}"
    )?;
    writeln!(
        out,
        "{:>5} {:<17} {:>9} {:>10} {:>10} {:>7}  dropped layers",
        "drop", "method", "calib KL", "calib ppl", "held ppl", "top-1"
    )?;
    for r in results {
        for m in &r.methods {
            writeln!(
                out,
                "{:>5} {:<17} {:>9.4} {:>10.3} {:>10.3} {:>6.1}%  {:?}",
                r.drop,
                m.method,
                m.calibration.kl,
                m.calibration.perplexity,
                m.held_out.perplexity,
                m.held_out.top1_agreement_pct,
                layers_of(m.dropped)
            )?;
        }
        writeln!(
            out,
            "      search ({}): {} masks scored in {:.0} s",
            r.search.fitness.name(),
            r.search.evaluations,
            r.search.seconds
        )?;
    }
    Ok(())
}
