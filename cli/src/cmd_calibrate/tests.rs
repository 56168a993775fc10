use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CalibrateArgs,
}

fn parse(argv: &[&str]) -> CalibrateArgs {
    Cli::try_parse_from(std::iter::once("calibrate").chain(argv.iter().copied()))
        .unwrap()
        .args
}

struct Temp(PathBuf);
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
fn temp(tag: &str, bytes: &[u8]) -> Temp {
    let p = std::env::temp_dir().join(format!("lode-calibrate-{tag}-{}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    Temp(p)
}

#[test]
fn device_specs() {
    assert_eq!(device_path("file:/a/b").unwrap(), PathBuf::from("/a/b"));
    assert_eq!(
        device_path("/dev/loop0").unwrap(),
        PathBuf::from("/dev/loop0")
    );
    assert_eq!(device_path("./x:y").unwrap(), PathBuf::from("./x:y"));
    assert!(device_path("fake:ufs40").is_err());
    assert!(device_path("file:").is_err());
}

#[test]
fn bad_arguments_are_refused() {
    for argv in [
        &["x", "--seconds", "0"][..],
        &["x", "--queue-depth", "0"],
        &["x", "--sizes-kib", "3,8"],
        &["x", "--sizes-kib", "2048,4"],
        &["x", "--sizes-kib", "4"],
        &["x", "--sizes-kib", "4,4"],
    ] {
        assert!(check_args(&parse(argv)).is_err(), "{argv:?}");
    }
    assert_eq!(
        check_args(&parse(&["x", "--sizes-kib", "8,4,8"])).unwrap(),
        vec![4096, 8192]
    );
}

/// A short calibration of a small file: table, JSON, SVG and a model
/// stored into an image, end to end.
#[test]
fn calibrates_a_file_and_stores_the_model() {
    let dev = temp("dev", &vec![0x5Au8; 8 << 20]);
    let json = temp("json", b"");
    let svg = temp("svg", b"");
    let image = {
        use lode_formats::image::{ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry};
        let geometry = ModelGeometry {
            arch: ArchTag::new("llama").unwrap(),
            layers: 1,
            hidden: 32,
            ffn: 2,
            heads: 1,
            kv_heads: 1,
            head_dim: 32,
            vocab: 16,
            context: 64,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            fingerprint: 7,
        };
        let q = Some(lode_formats::DType::Q8_0);
        let mut b = ImageBuilder::new(geometry);
        b.add_layer(LayerSpec::new(
            BundleParts {
                gate: q,
                up: q,
                down: q,
            },
            vec![1u8; 204],
            vec![0, 1],
        ));
        temp("image", &b.to_bytes().unwrap())
    };
    let args = parse(&[
        &format!("file:{}", dev.0.display()),
        "--seconds",
        "0.05",
        "--queue-depth",
        "4",
        "--sizes-kib",
        "4,64,256",
        "--allow-buffered",
        "--json",
        &json.0.display().to_string(),
        "--plot",
        &svg.0.display().to_string(),
        "--store",
        &image.0.display().to_string(),
    ]);
    let mut out = Vec::new();
    run(&args, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("model    command_ns"), "{text}");
    assert!(text.contains("QD4 IOPS"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" | ")).count(),
        4,
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json.0).unwrap()).unwrap();
    assert_eq!(doc["qd1"].as_array().unwrap().len(), 3);
    assert_eq!(doc["deep"][0]["qd"], 4);
    let model = &doc["model"];
    assert!(model["bytes_per_sec"].as_u64().unwrap() > 0);
    let bytes = std::fs::read(&image.0).unwrap();
    let stored = lode_formats::image::Image::parse(&bytes)
        .unwrap()
        .cost_model()
        .unwrap();
    assert_eq!(
        u64::from(stored.command_ns),
        model["command_ns"].as_u64().unwrap()
    );
    assert_eq!(
        stored.bytes_per_sec,
        model["bytes_per_sec"].as_u64().unwrap()
    );
    assert!(std::fs::read_to_string(&svg.0).unwrap().starts_with("<svg"));
}

#[test]
fn raw_jobs_report_rates() {
    let dev = temp("raw", &vec![1u8; 4 << 20]);
    let json = temp("rawjson", b"");
    for job in ["rand4k", "seq1m"] {
        let args = parse(&[
            &dev.0.display().to_string(),
            "--raw",
            job,
            "--seconds",
            "0.05",
            "--queue-depth",
            "4",
            "--allow-buffered",
            "--json",
            &json.0.display().to_string(),
        ]);
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("{job} qd4: ")), "{text}");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json.0).unwrap()).unwrap();
        assert_eq!(doc["job"], job);
        assert!(doc["point"]["iops"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_device_smaller_than_a_read_is_an_error_not_a_panic() {
    let dev = temp("small", &vec![0u8; 64 << 10]);
    let args = parse(&[
        &dev.0.display().to_string(),
        "--seconds",
        "0.05",
        "--sizes-kib",
        "4,1024",
        "--allow-buffered",
    ]);
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("smaller than one"), "{err}");
}
