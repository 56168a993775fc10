//! `lode prune`: which layers to drop, by EvoP's evolutionary search,
//! side by side with Block Influence, the last layers and random masks at
//! the same levels (the search and the scores are
//! `lode_runtime::prune`'s; this parses, reads the texts and prints).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::input::{read_file, Limit};
use lode_runtime::prune::{
    baselines::block_influence, check_drop, compare_level, cut_windows, layers_of, sample_windows,
    LevelResult, Reference, SearchOptions,
};
use lode_runtime::{ModelFile, Quiet, Session, SessionOptions};

/// Largest text read.
const TEXT_LIMIT: Limit = Limit::new("texts", 64 << 20);

/// Arguments of `lode prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Model (GGUF or lode image; held in DRAM while searching).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Texts the calibration windows are cut from (the search is tuned on
    /// these).
    #[arg(long, required = true, num_args = 1..)]
    pub calib: Vec<PathBuf>,
    /// Texts nothing is tuned on, for the held-out scores (use more than
    /// one kind: legal text is unusually easy).
    #[arg(long, required = true, num_args = 1..)]
    pub held_out: Vec<PathBuf>,
    /// Pruning levels, percent of the layers dropped (rounded to whole
    /// layers).
    #[arg(long, value_delimiter = ',', default_values_t = [20u32])]
    pub levels: Vec<u32>,
    /// Tokens a window.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Calibration windows (sampled at random from the calibration texts).
    #[arg(long, default_value_t = 8)]
    pub calib_windows: usize,
    /// Held-out windows (sampled at random from the held-out texts).
    #[arg(long, default_value_t = 16)]
    pub held_out_windows: usize,
    /// Windows of the search's cheap first scoring.
    #[arg(long, default_value_t = 1)]
    pub cheap_windows: usize,
    /// Generations of the search.
    #[arg(long, default_value_t = 20)]
    pub generations: usize,
    /// Children a generation.
    #[arg(long, default_value_t = 32)]
    pub offspring: usize,
    /// Children scored again on every calibration window.
    #[arg(long, default_value_t = 3)]
    pub survivors: usize,
    /// Random masks scored as the random baseline (the median is shown).
    #[arg(long, default_value_t = 4)]
    pub random: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Windows of `--window` tokens from `paths`, `n` sampled with `seed`.
fn windows_of(
    file: &ModelFile,
    paths: &[PathBuf],
    window: usize,
    n: usize,
    seed: u64,
    flag: &str,
) -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
    let mut all = Vec::new();
    for path in paths {
        let bytes = read_file(path, TEXT_LIMIT).map_err(|e| format!("{flag} {e}"))?;
        let tokens = file
            .tokenizer()
            .encode(&String::from_utf8_lossy(&bytes), false);
        all.extend(cut_windows(&tokens, window));
    }
    if all.len() < n {
        return Err(format!(
            "{flag}: {} windows of {window} tokens in the texts, fewer than the {n} asked for",
            all.len()
        )
        .into());
    }
    Ok(sample_windows(&all, n, seed))
}

/// Run the command.
pub fn run(a: &PruneArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let file = ModelFile::open(&a.model)?;
    let layers = file.config().layers;
    let drops: Vec<usize> = a
        .levels
        .iter()
        .map(|&p| (layers * p as usize + 50) / 100)
        .collect();
    for (&p, &d) in a.levels.iter().zip(&drops) {
        check_drop(layers, d).map_err(|e| format!("--levels {p}: {e}"))?;
    }
    if a.window < 2 || a.window > file.config().context {
        return Err(format!("--window {}: between 2 and the model's context", a.window).into());
    }
    let calib = windows_of(
        &file,
        &a.calib,
        a.window,
        a.calib_windows,
        a.seed,
        "--calib",
    )?;
    let held = windows_of(
        &file,
        &a.held_out,
        a.window,
        a.held_out_windows,
        a.seed,
        "--held-out",
    )?;
    let mut opts = SessionOptions::new(a.window);
    opts.threads = a.threads;
    opts.batch = a.window.min(128);
    let mut session = Session::load(file, &opts, a.window, &mut Quiet)?;
    let calib_ref = Reference::new(&mut session, calib.clone())?;
    let held_ref = Reference::new(&mut session, held)?;
    let full = held_ref.score(&mut session, 0, held_ref.len())?;
    let influence = block_influence(&mut session, &calib, layers)?;
    let mut results = Vec::new();
    for &drop in &drops {
        let s = SearchOptions {
            drop,
            seed: a.seed,
            generations: a.generations,
            offspring: a.offspring,
            survivors: a.survivors,
            cheap_windows: a.cheap_windows,
            full_windows: a.calib_windows,
        };
        let quiet = a.json;
        let mut on_gen = |g: &lode_runtime::prune::GenerationReport| {
            if !quiet {
                eprint!(
                    "\r[lode] drop {drop}: generation {}/{}, best KL {:.4} ({:.0} s)  ",
                    g.generation, a.generations, g.best_kl, g.seconds
                );
            }
        };
        let r = compare_level(
            &mut session,
            layers,
            (&calib_ref, &held_ref),
            &influence,
            &s,
            a.random,
            &mut on_gen,
        )?;
        if !quiet {
            eprintln!();
        }
        results.push(r);
    }
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "layers": layers,
            "unpruned_held_out": full,
            "block_influence": influence,
            "levels": results,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    print_table(out, layers, full.perplexity, &results)
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
        "{:>5} {:<16} {:>9} {:>10} {:>7}  dropped layers",
        "drop", "method", "calib KL", "held ppl", "top-1"
    )?;
    for r in results {
        for m in &r.methods {
            writeln!(
                out,
                "{:>5} {:<16} {:>9.4} {:>10.3} {:>6.1}%  {:?}",
                r.drop,
                m.method,
                m.calibration.kl,
                m.held_out.perplexity,
                m.held_out.top1_agreement_pct,
                layers_of(m.dropped)
            )?;
        }
        writeln!(
            out,
            "      search: {} masks scored in {:.0} s",
            r.search.evaluations, r.search.seconds
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::real_model;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: PruneArgs,
    }

    fn args(model: &std::path::Path, extra: &[&str]) -> PruneArgs {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut v = vec![
            "prune".to_string(),
            "-m".into(),
            model.display().to_string(),
            "--calib".into(),
            format!("{root}/README.md"),
            "--held-out".into(),
            format!("{root}/formats/FORMAT.md"),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        Cli::parse_from(v).a
    }

    /// Levels that drop nothing or everything, a window too short and too
    /// few windows are refused with a message naming the option.
    #[test]
    fn options_that_cannot_run_are_refused_before_any_work() {
        let Some(m) = real_model() else { return };
        for (extra, says) in [
            (&["--levels", "1"][..], "--levels 1"),
            (&["--levels", "100"][..], "--levels 100"),
            (&["--window", "1"][..], "--window 1"),
            (&["--calib-windows", "100000"][..], "--calib"),
        ] {
            let e = run(&args(&m, extra), &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{extra:?}: {e}");
        }
    }

    /// A tiny search end to end: every method drops the level's layers,
    /// the search's best KL never rises, and EvoP's calibration KL is the
    /// search's result.
    #[test]
    fn a_small_search_reports_every_method_at_the_level() {
        let Some(m) = real_model() else { return };
        let a = args(
            &m,
            &[
                "--levels",
                "10",
                "--window",
                "16",
                "--calib-windows",
                "2",
                "--held-out-windows",
                "2",
                "--generations",
                "2",
                "--offspring",
                "3",
                "--survivors",
                "1",
                "--random",
                "1",
                "--threads",
                "2",
                "--json",
            ],
        );
        let out = crate::testutil::with_main_stack(move || {
            let mut out = Vec::new();
            run(&a, &mut out).unwrap();
            out
        });
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let level = &v["levels"][0];
        assert_eq!(level["drop"], 3);
        let methods = level["methods"].as_array().unwrap();
        let names: Vec<&str> = methods
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["evop", "block-influence", "last-layers", "random"]);
        for m in methods {
            assert_eq!(m["dropped"].as_array().unwrap().len(), 3, "{m}");
            assert!(m["held_out"]["perplexity"].as_f64().unwrap() > 1.0);
        }
        assert_eq!(methods[2]["dropped"], serde_json::json!([27, 28, 29]));
        let kls: Vec<f64> = level["search"]["generations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["best_kl"].as_f64().unwrap())
            .collect();
        assert_eq!(kls.len(), 3);
        assert!(kls.windows(2).all(|w| w[1] <= w[0]), "{kls:?}");
        let evop = methods[0]["calibration"]["kl"].as_f64().unwrap();
        assert!((evop - kls[2]).abs() < 1e-9, "{evop} vs {kls:?}");
        assert_eq!(v["block_influence"].as_array().unwrap().len(), 30);
    }
}
