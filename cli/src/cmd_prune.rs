//! `lode prune`: which layers to drop, by EvoP's evolutionary search,
//! side by side with Block Influence, the last layers and random masks at
//! the same levels (the search and the scores are
//! `lode_runtime::prune`'s; this parses, reads the texts and prints).
//! With `--output-dir` it packs EvoP's choice at each level as an image of
//! fewer layers (`lode pack --drop-layers`, dense layout); with `--base` it
//! scores such an image against the model it was pruned from ([`base`]).

mod args;
mod base;
mod report;

pub use args::{PruneArgs, Sampling};

use report::{Calibration, Outcome};

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use lode_formats::input::{read_file, Limit};
use lode_runtime::prune::ccds::{ccds_sample, check_ccds, CcdsOptions};
use lode_runtime::prune::{
    baselines::block_influence, check_drop, compare_level, cut_windows, layers_of, sample_windows,
    search, Fitness, LevelResult, MethodResult, Reference, SearchOptions,
};
use lode_runtime::{ModelFile, Quiet, Session, SessionOptions};

use crate::cmd_pack::{DownType, Layout, PackArgs};

/// Largest text read.
const TEXT_LIMIT: Limit = Limit::new("texts", 64 << 20);

/// Every window of `--window` tokens in the texts at `paths`.
fn all_windows(
    file: &ModelFile,
    paths: &[PathBuf],
    window: usize,
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
    Ok(all)
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
    let all = all_windows(file, paths, window, flag)?;
    if all.len() < n {
        return Err(format!(
            "{flag}: {} windows of {window} tokens in the texts, fewer than the {n} asked for",
            all.len()
        )
        .into());
    }
    Ok(sample_windows(&all, n, seed))
}

/// Refuses a `--window` the model cannot evaluate.
fn check_window(a: &PruneArgs, file: &ModelFile) -> Result<(), Box<dyn Error>> {
    if a.window < 2 || a.window > file.config().context {
        return Err(format!("--window {}: between 2 and the model's context", a.window).into());
    }
    Ok(())
}

/// The held-out windows: `--held-out-windows` of them, sampled with the seed.
fn held_windows(a: &PruneArgs, file: &ModelFile) -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
    windows_of(
        file,
        &a.held_out,
        a.window,
        a.held_out_windows,
        a.seed,
        "--held-out",
    )
}

/// Loads `file` in DRAM for scoring windows of `--window` tokens.
fn session(file: ModelFile, a: &PruneArgs) -> Result<Session, Box<dyn Error>> {
    let mut opts = SessionOptions::new(a.window);
    opts.threads = a.threads;
    opts.batch = a.window.min(128);
    Ok(Session::load(file, &opts, a.window, &mut Quiet)?)
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
    if file.arch().is_gemma() {
        return Err(format!(
            "--output-dir: -m {} is Gemma 3, which `lode pack` does not prune (renumbering \
             layers would move its global ones)",
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
        layout: Some(Layout::Dense),
        block_size: 4096,
        check_text: None,
        check_tokens: 0,
        cost_model: None,
        drop_layers,
        head: None,
        compress: lode_pack::compress::Compress::None,
        codec_pieces: lode_kernel::limits::CODEC_PIECES,
        codec_version: lode_kernel::codec::VERSION,
        coarse_scales: 0,
        quiet: true,
    };
    crate::cmd_pack::run(&pack, &mut std::io::sink())?;
    Ok(output)
}

/// The calibration and held-out references a search scores against.
struct Refs {
    calib: Reference,
    held: Reference,
    /// A random calibration sample's, with `--compare-sampling`.
    random: Option<Reference>,
}

/// Checks every option against the model and the texts, then loads the
/// model and builds the references: the calibration windows (by
/// `--sampling`), the held-out ones, and with `--compare-sampling` a
/// random calibration sample.
fn prepare(a: &PruneArgs, file: ModelFile) -> Result<(Session, Refs, Calibration), Box<dyn Error>> {
    let layers = file.config().layers;
    check_window(a, &file)?;
    let corpus = all_windows(&file, &a.calib, a.window, "--calib")?;
    let n = a.calib_windows;
    if a.sampling == Sampling::Ccds {
        check_ccds(corpus.len().min(a.candidates), a.clusters, n)
            .map_err(|e| format!("--calib: {e}"))?;
    } else if corpus.len() < n {
        return Err(format!(
            "--calib: {} windows of {} tokens in the texts, fewer than the {n} asked for",
            corpus.len(),
            a.window
        )
        .into());
    }
    let held = held_windows(a, &file)?;
    let say = |what: &str| {
        if !a.json {
            eprintln!("[lode] {what}");
        }
    };
    let mut session = session(file, a)?;
    if a.sampling == Sampling::Ccds {
        say(&format!(
            "embedding and clustering {} calibration windows (CCDS)",
            corpus.len().min(a.candidates)
        ));
    }
    let random_calib = sample_windows(&corpus, n, a.seed);
    let (calib, clusters) = match a.sampling {
        Sampling::Ccds => {
            let o = CcdsOptions {
                clusters: a.clusters,
                windows: n,
                candidates: a.candidates,
                seed: a.seed,
            };
            let (w, c) = ccds_sample(&mut session, &corpus, layers, &o)?;
            (w, Some(c))
        }
        Sampling::Random => (random_calib.clone(), None),
    };
    say("the unpruned model's distributions over the calibration and held-out windows");
    let refs = Refs {
        calib: Reference::new(&mut session, calib)?,
        held: Reference::new(&mut session, held)?,
        random: match (a.compare_sampling, a.sampling) {
            (true, Sampling::Ccds) => Some(Reference::new(&mut session, random_calib)?),
            _ => None,
        },
    };
    let calibration = Calibration {
        sampling: a.sampling.name(),
        windows: n,
        corpus_windows: corpus.len(),
        clusters,
    };
    Ok((session, refs, calibration))
}

/// EvoP and the baselines at `drop` layers; with `--compare-sampling`
/// EvoP on the random calibration sample (`evop-random-calib`) and with
/// `--compare-fitness` EvoP minimizing the other fitness, each right after
/// EvoP's row.
fn level(
    a: &PruneArgs,
    session: &mut Session,
    (refs, influence): (&Refs, &[f64]),
    drop: usize,
) -> Result<LevelResult, Box<dyn Error>> {
    let layers = influence.len();
    let s = SearchOptions {
        fitness: a.fitness.fitness(),
        drop,
        seed: a.seed,
        generations: a.generations,
        offspring: a.offspring,
        survivors: a.survivors,
        cheap_windows: a.cheap_windows,
        full_windows: a.calib_windows,
    };
    let quiet = a.json;
    let on_gen = |g: &lode_runtime::prune::GenerationReport, fitness: Fitness| {
        if !quiet {
            eprint!(
                "\r[lode] drop {drop}: generation {}/{}, best {} {:.4} ({:.0} s)  ",
                g.generation,
                a.generations,
                fitness.name(),
                g.best_fitness,
                g.seconds
            );
        }
    };
    let mut r = compare_level(
        session,
        layers,
        (&refs.calib, &refs.held),
        influence,
        &s,
        a.random,
        &mut |g| on_gen(g, s.fitness),
    )?;
    let mut extra = Vec::new();
    if let Some(random_ref) = &refs.random {
        let found = search(session, random_ref, layers, &s, &mut |g| {
            on_gen(g, s.fitness)
        })?;
        extra.push(("evop-random-calib", found.mask));
    }
    if a.compare_fitness {
        let o = SearchOptions {
            fitness: a.fitness.other(),
            ..s
        };
        let found = search(session, &refs.calib, layers, &o, &mut |g| {
            on_gen(g, o.fitness)
        })?;
        let name = match o.fitness {
            Fitness::Perplexity => "evop-perplexity",
            _ => "evop-kl",
        };
        extra.push((name, found.mask));
    }
    for (i, (method, mask)) in extra.into_iter().enumerate() {
        let m = MethodResult {
            method,
            dropped: mask,
            calibration: refs.calib.score(session, mask, refs.calib.len())?,
            held_out: refs.held.score(session, mask, refs.held.len())?,
        };
        r.methods.insert(1 + i, m);
    }
    session.set_skipped_layers(0)?;
    if !quiet {
        eprintln!();
    }
    Ok(r)
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
    let (mut session, refs, calibration) = prepare(a, file)?;
    let unpruned = refs.held.score(&mut session, 0, refs.held.len())?;
    let influence = block_influence(&mut session, refs.calib.windows(), layers)?;
    let mut levels = Vec::new();
    let mut images = Vec::new();
    for &drop in &drops {
        let r = level(a, &mut session, (&refs, &influence), drop)?;
        if let (Some(dir), Some(evop)) = (&a.output_dir, r.methods.first()) {
            images.push((drop, write_image(a, dir, evop.dropped)?));
        }
        levels.push(r);
    }
    let outcome = Outcome {
        layers,
        unpruned,
        calibration,
        influence,
        levels,
        images,
    };
    report::print(a, &outcome, out)
}

#[cfg(test)]
mod tests;
