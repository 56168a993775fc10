//! `lode pack --compress`: coded FFN matrices decode to the GGUF's bytes,
//! and a coded image generates exactly the tokens of the raw one, streamed
//! (decoded as the ring hands units out) and resident (decoded at load).

use super::*;
use lode_formats::image::TensorCodec;
use lode_kernel::codec::Verify;
use lode_runtime::{generate, Budget, GenerateOptions, ModelFile, Quiet, Session, SessionOptions};

/// `--compress floats` on the real model: every FFN matrix coded (the
/// rest raw), 8-10% fewer bytes for them, each decoding to the GGUF's
/// bytes; `--compress` without `--layout dense` is refused.
#[test]
fn compressed_ffn_matrices_decode_to_the_gguf() {
    let Some(model) = real_model() else { return };
    let mut a = args(model.clone(), tmp("coded.lode"));
    a.layout = Some(Layout::Dense);
    a.compress = lode_pack::compress::Compress::Floats;
    let (bytes, text) = pack_verified(&a);
    assert!(text.contains("coded 90 FFN matrices"), "{text}");
    let img = Image::parse(&bytes).unwrap();
    assert_eq!(img.header().minor, 6);
    let src = std::fs::read(&model).unwrap();
    let gguf = Gguf::parse(&src).unwrap();
    let (mut stored, mut decoded) = (0u64, 0u64);
    for t in img.tensors() {
        let coded = t.codec == TensorCodec::ChainV2;
        assert_eq!(coded, lode_pack::compress::is_coded_tensor(t.name));
        if !coded {
            continue;
        }
        let at = t.offset as usize;
        let mut out = vec![0u8; t.data_len() as usize];
        let units = &bytes[at..at + t.length as usize];
        let pieces = lode_kernel::codec::split(units, &mut out).unwrap().len();
        assert_eq!(pieces, lode_kernel::limits::CODEC_PIECES);
        let mut s = lode_kernel::codec::Scratch::default();
        lode_kernel::codec::decode_chain(&mut s, Verify::Crc, units, &mut out).unwrap();
        let g = gguf.tensor(t.name).unwrap();
        assert_eq!(out, gguf.data(&g).unwrap(), "{}", t.name);
        stored += t.length;
        decoded += t.data_len();
    }
    let saved = 1.0 - stored as f64 / decoded as f64;
    assert!((0.08..0.10).contains(&saved), "{saved}");
    a.layout = Some(Layout::Split);
    let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--layout dense"), "{e}");
}

/// Greedy tokens of `image` for a prompt under `budget` (`None`: resident).
fn tokens_of(image: &std::path::Path, budget: Option<Budget>) -> Vec<u32> {
    let file = ModelFile::open(image).unwrap();
    let prompt = file.tokenizer().encode("The capital of France is", true);
    let opts = SessionOptions {
        budget,
        ..SessionOptions::new(64)
    };
    let mut s = Session::load(file, &opts, prompt.len(), &mut Quiet).unwrap();
    let mut ctx = s.new_context();
    let mut out = Vec::new();
    generate(
        &mut s,
        &mut ctx,
        &prompt,
        &GenerateOptions::greedy(12),
        |t| {
            out.push(t.id);
            std::ops::ControlFlow::Continue(())
        },
    )
    .unwrap();
    out
}

/// Both codings against the raw dense image: the same 12 tokens resident
/// and at 30 MiB (a third of the model: most FFN matrices stream, each
/// coded one decoded as it is taken, a chain's units on both threads).
#[test]
fn coded_images_generate_the_raw_images_tokens() {
    let Some(model) = real_model() else { return };
    let write = |name: &str, how, pieces, version| {
        let mut a = args(model.clone(), tmp(name));
        a.layout = Some(Layout::Dense);
        a.compress = how;
        a.codec_pieces = pieces;
        a.codec_version = version;
        run(&a, &mut Vec::new()).unwrap();
        a.output
    };
    use lode_pack::compress::Compress;
    let raw = write("tok-raw.lode", Compress::None, 1, 2);
    let want = crate::testutil::with_main_stack({
        let raw = raw.clone();
        move || {
            (
                tokens_of(&raw, None),
                tokens_of(&raw, Some(Budget::Bytes(30 << 20))),
            )
        }
    });
    assert_eq!(want.0, want.1);
    // Version 2 units (format 1.6) one and four a matrix, and the
    // version 1 units older images hold: one a matrix (format 1.4) and
    // chains of two (1.5).
    for (how, pieces, version, want_minor) in [
        (Compress::Floats, 1, 2, 6),
        (Compress::Floats, 4, 2, 6),
        (Compress::All, 2, 2, 6),
        (Compress::Floats, 1, 1, 4),
        (Compress::All, 2, 1, 5),
    ] {
        let coded = write("tok-coded.lode", how, pieces, version);
        let minor = Image::parse(&std::fs::read(&coded).unwrap())
            .unwrap()
            .header()
            .minor;
        assert_eq!(minor, want_minor, "{how:?} {pieces} v{version}");
        let got = crate::testutil::with_main_stack({
            let coded = coded.clone();
            move || {
                (
                    tokens_of(&coded, None),
                    tokens_of(&coded, Some(Budget::Bytes(30 << 20))),
                )
            }
        });
        let _ = std::fs::remove_file(&coded);
        assert_eq!(got, want, "{how:?} in {pieces} v{version}");
    }
    let _ = std::fs::remove_file(&raw);
}

/// `--compress auto` codes everything for a slow device (10 MB/s, from
/// --cost-model) and nothing for the built-in 1.28 GB/s file, saying why.
#[test]
fn auto_follows_the_devices_read_rate() {
    let Some(model) = real_model() else { return };
    let slow = tmp("slow-cost.json");
    std::fs::write(
        &slow,
        r#"{"model": {"command_ns": 100000, "bytes_per_sec": 10000000, "queue_depth": 1}}"#,
    )
    .unwrap();
    let mut a = args(model.clone(), tmp("auto-slow.lode"));
    a.layout = Some(Layout::Dense);
    a.compress = lode_pack::compress::Compress::Auto;
    a.cost_model = Some(slow.clone());
    let (bytes, text) = pack_verified(&a);
    let _ = std::fs::remove_file(&slow);
    assert!(
        text.contains("compress auto: All for a device reading 10 MB/s"),
        "{text}"
    );
    assert_eq!(Image::parse(&bytes).unwrap().header().minor, 6);
    let mut a = args(model, tmp("auto-fast.lode"));
    a.layout = Some(Layout::Dense);
    a.compress = lode_pack::compress::Compress::Auto;
    let (bytes, text) = pack_verified(&a);
    assert!(
        text.contains("compress auto: None for a device reading 1280 MB/s"),
        "{text}"
    );
    assert!(!text.contains("FFN matrices:"), "{text}");
    assert!(Image::parse(&bytes).unwrap().header().minor < 4);
}

/// `--coarse-scales 3` with `--compress floats`: the FFN matrices code
/// smaller than without it, the perplexity change is measured and printed
/// (small, and not zero: the weights changed), the image's fingerprint is
/// not the GGUF's, and a bundled layout is refused.
#[test]
fn coarse_scales_code_smaller_at_a_measured_cost() {
    let Some(model) = real_model() else { return };
    let text = tmp("coarse-text.txt");
    std::fs::write(&text, include_str!("../../../../formats/FORMAT.md")).unwrap();
    let coded_bytes = |out: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with("coded ")).unwrap();
        let after = line.split("-> ").nth(1).unwrap();
        after.split(' ').next().unwrap().parse().unwrap()
    };
    let mut a = args(model.clone(), tmp("coarse-0.lode"));
    a.layout = Some(Layout::Dense);
    a.compress = lode_pack::compress::Compress::Floats;
    let (plain, plain_out) = pack_verified(&a);
    a.output = tmp("coarse-3.lode");
    a.coarse_scales = 3;
    a.check_text = Some(text.clone());
    a.check_tokens = 256;
    let (bytes, out) = pack_verified(&a);
    let _ = std::fs::remove_file(&text);
    // 10.30% fewer against 9.36% (README).
    assert!(
        coded_bytes(&out) < coded_bytes(&plain_out) * 995 / 1000,
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("mantissa bits fewer"))
        .unwrap();
    let change: f64 = line
        .rsplit('(')
        .next()
        .unwrap()
        .trim_end_matches("%)")
        .parse()
        .unwrap();
    assert!(change != 0.0 && change.abs() < 5.0, "{line}");
    let fp = |b: &[u8]| Image::parse(b).unwrap().geometry().fingerprint;
    assert_ne!(fp(&bytes), fp(&plain));
    a.layout = Some(Layout::Bundled);
    a.compress = lode_pack::compress::Compress::None;
    a.check_text = None;
    let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--layout dense"), "{e}");
}
