use super::*;
use crate::testutil::real_model;
use lode_formats::image::Image;
use lode_runtime::OpenError;
use std::path::{Path, PathBuf};

/// A little-endian GGUF v3 file written by hand: the header, string
/// metadata, tensor infos `(name, dims, type, offset)` and `data`.
fn gguf(kv: &[(&str, &str)], tensors: &[(&str, &[u64], u32, u64)], data: &[u8]) -> Vec<u8> {
    fn s(b: &mut Vec<u8>, v: &str) {
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        s(&mut b, k);
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, v);
    }
    for (name, dims, ty, off) in tensors {
        s(&mut b, name);
        b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes());
    }
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    b.extend_from_slice(data);
    b
}

fn load_bytes(name: &str, bytes: &[u8]) -> OpenError {
    let dir = std::env::temp_dir().join(format!("lode-run-{}-{name}", std::process::id()));
    std::fs::write(&dir, bytes).unwrap();
    let r = ModelFile::open(&dir);
    std::fs::remove_file(&dir).unwrap();
    match r {
        Ok(_) => panic!("{name}: loaded a broken file"),
        Err(e) => e,
    }
}

#[test]
fn an_image_with_a_damaged_magic_is_called_damaged_not_a_bad_gguf() {
    let mut bytes = lode_formats::image::layout::MAGIC.to_vec();
    bytes[1] ^= 0x20;
    bytes.resize(4096, 0);
    let e = load_bytes("damaged-magic", &bytes).to_string();
    assert!(e.contains("damaged image"), "{e}");
    bytes[1] ^= 0x20;
    bytes[0..4].copy_from_slice(b"ABCD");
    let e = load_bytes("other-magic", &bytes).to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
}

fn gguf_kind(e: &OpenError) -> Option<lode_formats::gguf::ErrorKind> {
    match e {
        OpenError::Gguf { source, .. } => Some(source.kind()),
        _ => None,
    }
}

#[test]
fn bad_files_are_named_errors() {
    use lode_formats::gguf::ErrorKind as K;
    let missing = ModelFile::open(Path::new("/nonexistent/model.gguf")).err();
    let msg = missing.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");

    let arch = [("general.architecture", "llama")];
    let e = load_bytes("magic", b"GGML\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(gguf_kind(&e), Some(K::BadMagic));
    assert!(e.to_string().contains("lode-run-"), "{e}");

    // Claims five tensors, holds none.
    let mut b = gguf(&arch, &[], &[]);
    b[8] = 5;
    assert_eq!(gguf_kind(&load_bytes("truncated", &b)), Some(K::Truncated));

    let past = gguf(&arch, &[("token_embd.weight", &[32, 4], 0, 0)], &[0; 64]);
    assert_eq!(
        gguf_kind(&load_bytes("past", &past)),
        Some(K::TensorOutOfBounds)
    );

    let unknown = gguf(&arch, &[("token_embd.weight", &[32, 4], 99, 0)], &[0; 512]);
    let e = load_bytes("unknown", &unknown);
    assert_eq!(gguf_kind(&e), Some(K::UnknownType));

    let gpt2 = gguf(&[("general.architecture", "gpt2")], &[], &[]);
    let e = load_bytes("arch", &gpt2);
    assert_eq!(gguf_kind(&e), Some(K::NotLlama));
    assert!(e.to_string().contains("gpt2"), "{e}");

    // A llama without hyper-parameters: the missing key is named.
    let e = load_bytes("nokeys", &gguf(&arch, &[], &[]));
    assert_eq!(gguf_kind(&e), Some(K::MissingKey));
    assert!(e.to_string().contains("llama."), "{e}");
}

#[test]
fn bad_arguments_are_refused_before_loading() {
    let args = {
        let mut a = RunArgs::greedy_json(PathBuf::from("/nonexistent.gguf"));
        a.prompt = Some("x".into());
        a.n_predict = 1;
        a.sample.temperature = -1.0;
        a.model.threads = None;
        a.model.batch = 8;
        a.json = false;
        a
    };
    let mut out = Vec::new();
    let e = run(&args, &mut out).unwrap_err().to_string();
    assert!(e.contains("temperature"), "{e}");
    let e = run(
        &{
            let mut a = args.clone();
            a.sample.temperature = 0.0;
            a.model.threads = Some(0);
            a
        },
        &mut out,
    );
    assert!(e.unwrap_err().to_string().contains("--threads"));
    let e = run(
        &{
            let mut a = args.clone();
            a.sample.temperature = 0.0;
            a.model.batch = 0;
            a
        },
        &mut out,
    );
    assert!(e.unwrap_err().to_string().contains("--batch"));
    let e = run(
        &{
            let mut a = args.clone();
            a.sample.temperature = 0.0;
            a.model.threads = Some(10_000);
            a
        },
        &mut out,
    );
    assert!(e.unwrap_err().to_string().contains("at most 16"));
    let e = run(
        &{
            let mut a = args;
            a.sample.temperature = 0.0;
            a.prompt = None;
            a.prompt_file = Some(std::env::temp_dir());
            a
        },
        &mut out,
    );
    assert!(e.unwrap_err().to_string().contains("not a regular file"));
    assert!(out.is_empty());
}

/// A writer that takes `room` bytes, then fails as a full disk does.
struct Full {
    room: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if b.len() > self.room {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        self.room -= b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_prompt_file_is_a_prompt_and_a_full_output_says_where_it_stopped() {
    let Some(model) = real_model() else { return };
    let dir = std::env::temp_dir().join(format!("lode-prompt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompt.txt");
    std::fs::write(&file, "The capital of France is").unwrap();
    let mut a = RunArgs::greedy_json(model);
    let mut by_arg = Vec::new();
    run(&a, &mut by_arg).unwrap();
    a.prompt = None;
    a.prompt_file = Some(file);
    let mut by_file = Vec::new();
    run(&a, &mut by_file).unwrap();
    let text = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap()["text"].clone();
    assert_eq!(text(&by_arg), text(&by_file));
    a.json = false;
    let e = run(&a, &mut Full { room: 2 }).unwrap_err().to_string();
    assert!(
        e.contains("after 0 tokens") && e.contains("No space left"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generates_paris_and_reports_json() {
    let Some(model) = real_model() else { return };
    let args = RunArgs::greedy_json(model);
    let mut out = Vec::new();
    run(&args, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["prompt_tokens"], 5);
    assert!(v["text"].as_str().unwrap().starts_with(" Paris"), "{v}");
    assert_eq!(v["generated_ids"][0], 7042);
    assert_eq!(v["decode_tokens"], 2);
    assert!(v["peak_arena_bytes"].as_u64().unwrap() <= v["arena_bytes"].as_u64().unwrap());

    let mut out = Vec::new();
    run(
        &{
            let mut a = args;
            a.json = false;
            a.n_predict = 1;
            a
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(" Paris\n[lode] prompt 5 tokens"), "{text}");
    assert!(text.contains("peak arena"), "{text}");
}

fn args(model: PathBuf) -> RunArgs {
    RunArgs::greedy_json(model)
}

/// The real model packed into `path` (identity placement).
fn pack(model: &Path, path: &Path) {
    let a = crate::cmd_pack::PackArgs::quiet_defaults(model.to_path_buf(), path.to_path_buf());
    crate::cmd_pack::run(&a, &mut Vec::new()).unwrap();
}

#[test]
fn an_image_streams_under_a_third_of_its_size_and_bad_input_is_refused() {
    crate::testutil::with_main_stack(streams_under_a_third_and_refuses_bad_input);
}

fn streams_under_a_third_and_refuses_bad_input() {
    let Some(model) = real_model() else { return };
    let dir = std::env::temp_dir().join(format!("lode-run-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("smol.lode");
    pack(&model, &image);
    for device in [None, Some("fake:ufs40".to_string())] {
        let mut out = Vec::new();
        let a = {
            let mut a = args(image.clone());
            a.model.dram_budget = Some("33%".into());
            a.model.device = device.clone();
            a
        };
        run(&a, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["generated_ids"][0], 7042, "{device:?}: {v}");
        let st = &v["stream"];
        assert!(
            st["bytes_per_token"].as_f64().unwrap() > 40.0 * 1048576.0,
            "{st}"
        );
        assert!(
            v["peak_arena_bytes"].as_u64() <= st["budget_bytes"].as_u64(),
            "{v}"
        );
        assert!(
            st["resident_attention_layers"].as_u64().unwrap() > 0,
            "{st}"
        );
    }
    // Text mode prints the stats block.
    let mut out = Vec::new();
    let a = {
        let mut a = args(image.clone());
        a.json = false;
        a.model.dram_budget = Some("50%".into());
        a
    };
    run(&a, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(" Paris"), "{text}");
    assert!(
        text.contains("per token:") && text.contains("I/O wait"),
        "{text}"
    );
    assert!(text.contains("the built-in cost model"), "{text}");
    // A cost model stored in the image is the one the planner uses.
    let mut bytes = std::fs::read(&image).unwrap();
    let meta = Image::parse(&bytes).unwrap().header().meta_len as usize;
    let stored = lode_formats::image::StoredCostModel {
        command_ns: 48_000,
        bytes_per_sec: 1 << 30,
        queue_depth: 24,
    };
    lode_formats::image::set_cost_model(&mut bytes[..meta], Some(stored)).unwrap();
    let calibrated = dir.join("calibrated.lode");
    std::fs::write(&calibrated, &bytes).unwrap();
    let mut out = Vec::new();
    run(
        &{
            let mut a = args(calibrated.clone());
            a.json = false;
            a.model.dram_budget = Some("50%".into());
            a
        },
        &mut out,
    )
    .unwrap();
    let _ = std::fs::remove_file(&calibrated);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("the image's cost model (48.0 us a command, 1024 MiB/s, queue depth 24)"),
        "{text}"
    );

    let err = |a: RunArgs| run(&a, &mut Vec::new()).unwrap_err().to_string();
    let e = err({
        let mut a = args(image.clone());
        a.model.dram_budget = Some("2MiB".into());
        a
    });
    assert!(e.contains("minimum working set"), "{e}");
    let e = err({
        let mut a = args(image.clone());
        a.model.dram_budget = Some("lots".into());
        a
    });
    assert!(e.contains("--dram-budget"), "{e}");
    let e = err({
        let mut a = args(image.clone());
        a.model.device = Some("tape:0".into());
        a
    });
    assert!(e.contains("file:<path> or fake:<profile>"), "{e}");
    // A bundled image cannot run sparse; the message names the fix.
    let e = err({
        let mut a = args(image.clone());
        a.model.sparsity = 0.5;
        a
    });
    assert!(e.contains("--layout split"), "{e}");
    let e = err({
        let mut a = args(image.clone());
        a.model.sparsity = 1.0;
        a
    });
    assert!(e.contains("--sparsity"), "{e}");
    let e = err({
        let mut a = args(model.clone());
        a.model.dram_budget = Some("32MiB".into());
        a
    });
    assert!(e.contains("lode image"), "{e}");
    // An image of another format version, and a truncated one.
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[8] = 2;
    let other = dir.join("v2.lode");
    std::fs::write(&other, &bytes).unwrap();
    let e = err(args(other.clone()));
    assert!(e.contains("version"), "{e}");
    let short = dir.join("short.lode");
    std::fs::write(&short, &std::fs::read(&image).unwrap()[..3000]).unwrap();
    assert!(!err(args(short)).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
