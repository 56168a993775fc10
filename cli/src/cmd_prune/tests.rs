//! `lode prune`'s tests on the real model (skipped without it).

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

/// A search of 2 generations of 3 children on 16-token windows at 10%:
/// seconds on the real model. `extra` comes first.
fn tiny_search(m: &std::path::Path, extra: &[&str]) -> PruneArgs {
    let common = [
        "--levels",
        "10",
        "--window",
        "16",
        "--calib-windows",
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
    ];
    let all: Vec<&str> = extra.iter().chain(&common).copied().collect();
    args(m, &all)
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
    let a = tiny_search(
        &m,
        &[
            "--clusters",
            "2",
            "--candidates",
            "24",
            "--compare-sampling",
            "--compare-fitness",
            "--held-out-windows",
            "2",
        ],
    );
    let dir = tmp("images");
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = a;
    a.output_dir = Some(dir.clone());
    let out = crate::testutil::with_main_stack(move || {
        let mut out = Vec::new();
        run(&a, &mut out).unwrap();
        out
    });
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let level = &v["levels"][0];
    // EvoP's choice was packed: an image of the kept layers naming them.
    let image = PathBuf::from(v["images"][0]["path"].as_str().unwrap());
    let pruned = ModelFile::open(&image).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let from = pruned.pruned_from().unwrap();
    let dropped: Vec<usize> = (0..30).filter(|l| !from.kept.contains(l)).collect();
    assert_eq!(serde_json::json!(dropped), level["methods"][0]["dropped"]);
    assert_eq!(pruned.config().layers, 27);
    assert_eq!(level["drop"], 3);
    let methods = level["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "evop",
            "evop-random-calib",
            "evop-perplexity",
            "block-influence",
            "last-layers",
            "random"
        ]
    );
    // Two windows, one from each of the two clusters.
    let c = &v["calibration"];
    assert_eq!(c["sampling"], "ccds");
    let mut from: Vec<u64> = c["clusters"]["chosen_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    from.sort_unstable();
    assert_eq!(from, [0, 1]);
    let sizes = c["clusters"]["sizes"].as_array().unwrap();
    let total: u64 = sizes.iter().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(total, 24);
    assert!(c["corpus_windows"].as_u64().unwrap() > 24);
    for m in methods {
        assert_eq!(m["dropped"].as_array().unwrap().len(), 3, "{m}");
        assert!(m["held_out"]["perplexity"].as_f64().unwrap() > 1.0);
    }
    assert_eq!(methods[4]["dropped"], serde_json::json!([27, 28, 29]));
    let kls: Vec<f64> = level["search"]["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["best_fitness"].as_f64().unwrap())
        .collect();
    assert_eq!(kls.len(), 3);
    assert!(kls.windows(2).all(|w| w[1] <= w[0]), "{kls:?}");
    let evop = methods[0]["calibration"]["kl"].as_f64().unwrap();
    assert!((evop - kls[2]).abs() < 1e-9, "{evop} vs {kls:?}");
    assert_eq!(v["block_influence"].as_array().unwrap().len(), 30);
}

/// With `--fitness perplexity` the search minimizes the calibration
/// text's perplexity: its best never rises and is EvoP's calibration
/// perplexity, not its KL.
#[test]
fn a_perplexity_fitness_search_minimizes_perplexity() {
    let Some(m) = real_model() else { return };
    let a = tiny_search(
        &m,
        &[
            "--sampling",
            "random",
            "--fitness",
            "perplexity",
            "--held-out-windows",
            "1",
        ],
    );
    let out = crate::testutil::with_main_stack(move || {
        let mut out = Vec::new();
        run(&a, &mut out).unwrap();
        out
    });
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let level = &v["levels"][0];
    assert_eq!(level["search"]["fitness"], "perplexity");
    let best: Vec<f64> = level["search"]["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["best_fitness"].as_f64().unwrap())
        .collect();
    assert!(best.windows(2).all(|w| w[1] <= w[0]), "{best:?}");
    let calib = &level["methods"][0]["calibration"];
    let ppl = calib["perplexity"].as_f64().unwrap();
    assert!((ppl - best[2]).abs() < 1e-9, "{ppl} vs {best:?}");
    assert!((calib["kl"].as_f64().unwrap() - ppl).abs() > 1e-3);
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lode-prune-{}-{name}", std::process::id()))
}

/// Packs the real model without `drop` (dense layout) into `path`.
fn pack_pruned(model: &std::path::Path, path: &std::path::Path, drop: Vec<usize>) {
    let mut a = crate::cmd_pack::PackArgs::quiet_defaults(model.to_path_buf(), path.into());
    a.layout = Some(Layout::Dense);
    a.drop_layers = drop;
    crate::cmd_pack::run(&a, &mut Vec::new()).unwrap();
}

/// A pruned image scored with `--base` gives what the base gives with the
/// same layers skipped: the image holds those layers' weights exactly.
#[test]
fn a_pruned_image_scores_as_its_base_with_the_layers_skipped() {
    let Some(m) = real_model() else { return };
    let pruned = tmp("scored.lode");
    pack_pruned(&m, &pruned, vec![4, 17, 29]);
    let mut a = args(
        &pruned,
        &["--window", "16", "--held-out-windows", "2", "--json"],
    );
    a.calib.clear();
    a.base = Some(m.clone());
    let scored = crate::testutil::with_main_stack(move || {
        let mut out = Vec::new();
        let r = run(&a, &mut out);
        (r.map_err(|e| e.to_string()), out, a)
    });
    let _ = std::fs::remove_file(&pruned);
    let (r, out, a) = scored;
    r.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["dropped"], serde_json::json!([4, 17, 29]));
    // The same windows through the base with the mask.
    let want = crate::testutil::with_main_stack(move || {
        let file = ModelFile::open(&m).unwrap();
        let held = windows_of(&file, &a.held_out, 16, 2, a.seed, "--held-out").unwrap();
        let mut s = Session::load(file, &SessionOptions::new(16), 16, &mut Quiet).unwrap();
        let r = Reference::new(&mut s, held).unwrap();
        r.score(&mut s, 1 << 4 | 1 << 17 | 1 << 29, 2).unwrap()
    });
    let got = &v["held_out"];
    let ppl = got["perplexity"].as_f64().unwrap();
    assert!(
        (ppl / want.perplexity - 1.0).abs() < 1e-4,
        "{ppl} vs {want:?}"
    );
    assert!(
        (got["kl"].as_f64().unwrap() - want.kl).abs() < 1e-4,
        "{got} vs {want:?}"
    );
    assert_eq!(got["positions"].as_u64().unwrap() as usize, want.positions);
    assert!(v["unpruned_held_out"]["perplexity"].as_f64().unwrap() < ppl);
}

/// `--base` must be the model the image was pruned from, and `-m` a pruned
/// image; `--output-dir` must be a directory: each refused before any work.
#[test]
fn wrong_bases_and_outputs_are_refused_before_any_work() {
    let Some(m) = real_model() else { return };
    let pruned = tmp("base-check.lode");
    pack_pruned(&m, &pruned, vec![2]);
    let with_base = |model: &std::path::Path, base: &std::path::Path| {
        let mut a = args(model, &[]);
        a.calib.clear();
        a.base = Some(base.to_path_buf());
        run(&a, &mut Vec::new()).unwrap_err().to_string()
    };
    let not_pruned = with_base(&m, &m);
    // An image pruned from this GGUF, given itself as the base.
    let other = with_base(&pruned, &pruned);
    let mut a = args(&m, &[]);
    a.output_dir = Some(tmp("no-such-dir"));
    let no_dir = run(&a, &mut Vec::new()).unwrap_err().to_string();
    let mut a = args(&pruned, &[]);
    a.output_dir = Some(std::env::temp_dir());
    let from_image = run(&a, &mut Vec::new()).unwrap_err().to_string();
    let _ = std::fs::remove_file(&pruned);
    assert!(not_pruned.contains("not a pruned image"), "{not_pruned}");
    assert!(other.contains("was pruned from another model"), "{other}");
    assert!(no_dir.contains("not an existing directory"), "{no_dir}");
    assert!(from_image.contains("is a lode image"), "{from_image}");
    // Gemma: refused before the search, not when the image is packed.
    if let Some(g) = crate::testutil::gemma_model() {
        let mut a = args(&g, &[]);
        a.output_dir = Some(std::env::temp_dir());
        let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("is Gemma 3"), "{e}");
    }
}
