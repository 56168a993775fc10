use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    io: IoArgs,
}

/// A small OPT-like trace (4 layers x 1024 neurons, 48 tokens) on disk.
fn small_trace(name: &str) -> PathBuf {
    let p = SynthParams {
        layers: 4,
        neurons: 1024,
        ..SynthParams::opt_like(48, 3)
    };
    let path =
        std::env::temp_dir().join(format!("lode-bench-io-{}-{name}.trace", std::process::id()));
    let bytes = cmd_trace::synthesize(&p, Vec::new(), true).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

fn bench(args: &[&str]) -> Result<serde_json::Value, Box<dyn Error>> {
    let mut argv = vec!["lode-bench-io", "--json"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    run(&cli.io, &mut out)?;
    Ok(serde_json::from_slice(&out)?)
}

fn rows(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["rows"].as_array().expect("rows")
}

fn row<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    rows(v)
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

#[test]
fn per_layer_caches_split_the_same_budget() {
    assert_eq!(
        super::super::replay::cache_slots(10, 4, CacheScope::Layer),
        [3, 3, 2, 2]
    );
    assert_eq!(
        super::super::replay::cache_slots(10, 4, CacheScope::Model),
        [10]
    );
    assert_eq!(
        super::super::replay::cache_slots(3, 8, CacheScope::Layer)
            .iter()
            .sum::<u32>(),
        3
    );
}

/// Every strategy of the table runs in both cache scopes; strategies
/// without a cache do not depend on the scope, cached ones hit, and
/// `--only` keeps the baselines and the named strategies.
#[test]
fn both_scopes_replay_every_strategy() {
    let trace = small_trace("scopes");
    let t = trace.to_str().unwrap();
    let layer = bench(&["--trace", t, "--cache-fraction", "0.1"]).unwrap();
    let model = bench(&[
        "--trace",
        t,
        "--cache-fraction",
        "0.1",
        "--cache-scope",
        "model",
    ])
    .unwrap();
    // 2 baselines + 3 placements x 7 caches x 2 merge settings.
    assert_eq!(rows(&layer).len(), 2 + 3 * 7 * 2);
    assert_eq!(rows(&model).len(), rows(&layer).len());
    for name in [
        "baseline: per-bundle",
        "coact+none+merge",
        "identity+none+nomerge",
    ] {
        assert_eq!(
            row(&layer, name)["io_us"],
            row(&model, name)["io_us"],
            "{name}"
        );
    }
    for v in [&layer, &model] {
        for r in rows(v) {
            let hit = r["hit_rate"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&hit), "{r}");
            if r["cache"] != "None" {
                assert!(hit > 0.0, "a cache of 10% never hit: {r}");
            }
        }
    }
    let only = bench(&["--trace", t, "--only", "coact+hotwindow"]).unwrap();
    let names: Vec<&str> = rows(&only)
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "baseline: per-bundle",
            "baseline: dense",
            "coact+hotwindow+nomerge",
            "coact+hotwindow+merge"
        ]
    );
    let _ = std::fs::remove_file(&trace);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let trace = small_trace("bad");
    let t = trace.to_str().unwrap();
    let err = bench(&["--trace", t, "--hot-share", "1.5"]).unwrap_err();
    assert!(err.to_string().contains("--hot-share"), "{err}");
    assert!(bench(&["--trace", t, "--cache-scope", "galaxy"]).is_err());
    let _ = std::fs::remove_file(&trace);
}
