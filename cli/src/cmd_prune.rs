//! `lode prune`: which layers to drop, by EvoP's evolutionary search,
//! side by side with Block Influence, the last layers and random masks at
//! the same levels (the search and the scores are
//! `lode_runtime::prune`'s; this parses, reads the texts and prints).
//! With `--output-dir` it packs EvoP's choice at each level as an image of
//! fewer layers (`lode pack --drop-layers`, dense layout); with `--base` it
//! scores such an image against the model it was pruned from ([`base`]).

mod base;

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use lode_formats::input::{read_file, Limit};
use lode_runtime::prune::{
    baselines::block_influence, check_drop, compare_level, cut_windows, layers_of, sample_windows,
    LevelResult, Reference, SearchOptions,
};
use lode_runtime::{ModelFile, Quiet, Session, SessionOptions};

use crate::cmd_pack::{DownType, Layout, PackArgs};

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
    #[arg(long, required_unless_present = "base", num_args = 1..)]
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
    /// Write EvoP's choice at each level as a lode image of the kept
    /// layers into this directory (`<model>.evop-drop<N>.lode`, dense
    /// layout, the same as `lode pack --layout dense --drop-layers ...`).
    /// Needs a GGUF as `-m`.
    #[arg(long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Score `-m`, a pruned image, against the model it was pruned from on
    /// the held-out texts, instead of searching (the image's lineage must
    /// name this model).
    #[arg(long, conflicts_with_all = ["calib", "output_dir"])]
    pub base: Option<PathBuf>,
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

/// Refuses an `--output-dir` that cannot be written to, or a `-m` that
/// `lode pack` cannot pack, before the search.
fn check_output_dir(a: &PruneArgs, file: &ModelFile) -> Result<(), Box<dyn Error>> {
    let Some(dir) = &a.output_dir else {
        return Ok(());
    };
    if !dir.is_dir() {
        return Err(format!("--output-dir {}: not an existing directory", dir.display()).into());
    }
    if file.image().is_some() {
        return Err(format!(
            "--output-dir: -m {} is a lode image; pruned images are packed from the GGUF",
            a.model.display()
        )
        .into());
    }
    Ok(())
}

/// Packs the layers `dropped` leaves as `<dir>/<model>.evop-drop<N>.lode`.
fn write_image(a: &PruneArgs, dir: &Path, dropped: u128) -> Result<PathBuf, Box<dyn Error>> {
    let drop_layers = layers_of(dropped);
    let stem = a.model.file_stem().unwrap_or_default().to_string_lossy();
    let output = dir.join(format!("{stem}.evop-drop{}.lode", drop_layers.len()));
    let pack = PackArgs {
        model: a.model.clone(),
        output: output.clone(),
        trace: None,
        placement: lode_pack::placement::PlacementKind::Identity,
        down: DownType::Q8_0,
        layout: Layout::Dense,
        block_size: 4096,
        check_text: None,
        check_tokens: 0,
        cost_model: None,
        drop_layers,
        quiet: true,
    };
    crate::cmd_pack::run(&pack, &mut std::io::sink())?;
    Ok(output)
}

/// Run the command.
pub fn run(a: &PruneArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    if let Some(base) = &a.base {
        return base::run(a, base, out);
    }
    let file = ModelFile::open(&a.model)?;
    check_output_dir(a, &file)?;
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
    let mut images = Vec::new();
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
        if let (Some(dir), Some(evop)) = (&a.output_dir, r.methods.first()) {
            let path = write_image(a, dir, evop.dropped)?;
            images.push(serde_json::json!({ "drop": drop, "path": path.display().to_string() }));
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
            "images": images,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    print_table(out, layers, full.perplexity, &results)?;
    for i in &images {
        writeln!(
            out,
            "wrote {} (EvoP's {} layers dropped; score it with `lode prune -m {} --base {} \
             --held-out ...`)",
            i["path"].as_str().unwrap_or_default(),
            i["drop"],
            i["path"].as_str().unwrap_or_default(),
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
mod tests;
