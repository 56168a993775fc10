use super::*;
use crate::testutil::real_model;
use lode_formats::image::BundleParts;
use lode_formats::DType;
use lode_pack::synth::SynthParams;

mod coded;
mod gemma;

fn args(model: PathBuf, output: PathBuf) -> PackArgs {
    PackArgs::quiet_defaults(model, output)
}

/// A small synthetic trace of `layers` x `neurons`.
fn synth_trace(layers: u32, neurons: u32) -> Vec<u8> {
    let p = SynthParams {
        layers,
        neurons,
        ..SynthParams::opt_like(16, 3)
    };
    crate::cmd_trace::synthesize(&p, Vec::new(), true).unwrap()
}

/// Runs `a`, removes its trace and its output, checks every byte of
/// the image and returns the image and what `run` printed.
fn pack_verified(a: &PackArgs) -> (Vec<u8>, String) {
    let mut out = Vec::new();
    let result = run(a, &mut out);
    if let Some(t) = &a.trace {
        let _ = std::fs::remove_file(t);
    }
    let bytes = std::fs::read(&a.output);
    let _ = std::fs::remove_file(&a.output);
    result.unwrap();
    let bytes = bytes.unwrap();
    let img = Image::parse(&bytes).unwrap();
    img.verify_data(&bytes[img.header().meta_len as usize..])
        .unwrap();
    (bytes, String::from_utf8(out).unwrap())
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lode-pack-{}-{name}", std::process::id()))
}

#[test]
fn packs_the_real_model_into_an_image_that_verifies() {
    let Some(model) = real_model() else { return };
    // A calibration file as `lode calibrate --json` writes it (other
    // fields are ignored): its model is carried in the image.
    let calib = tmp("calib.json");
    std::fs::write(
        &calib,
        r#"{"device": "file:/x", "model": {"command_ns": 48000,
                "bytes_per_sec": 1500000000, "queue_depth": 24}, "fit": {}}"#,
    )
    .unwrap();
    let mut a = args(model.clone(), tmp("real.lode"));
    a.cost_model = Some(calib.clone());
    let (bytes, text) = pack_verified(&a);
    let _ = std::fs::remove_file(&calib);
    let img = Image::parse(&bytes).unwrap();
    let want = lode_formats::image::StoredCostModel {
        command_ns: 48000,
        bytes_per_sec: 1_500_000_000,
        queue_depth: 24,
    };
    assert_eq!(img.cost_model(), Some(want));
    assert!(text.contains("cost model: 48000 ns a command"), "{text}");
    let g = img.geometry();
    assert_eq!((g.layers, g.hidden, g.ffn), (30, 576, 1536));
    assert_eq!(img.layer_count(), 30);
    // 360 + 360 B of Q4_1 rows and a 612 B Q8_0 column.
    let r = img.bundle_region(29).unwrap();
    assert_eq!((r.count, r.bundle_size), (1536, 1332));
    assert!(img.tensor_by_name("blk.3.attn_q.weight").is_some());
    assert!(img.tensor_by_name("token_embd.weight").is_some());
    assert!(img.tensor_by_name("blk.3.ffn_down.weight").is_none());
    // Gate rows are copied as stored: bundle 7 of layer 2 starts with
    // the GGUF's gate row 7.
    let gguf_bytes = std::fs::read(&model).unwrap();
    let file = Gguf::parse(&gguf_bytes).unwrap();
    let gate = file.tensor("blk.2.ffn_gate.weight").unwrap();
    let gate = file.data(&gate).unwrap();
    let r = img.bundle_region(2).unwrap();
    let at = r.bundle_offset(7).unwrap() as usize;
    assert_eq!(&bytes[at..at + 360], &gate[7 * 360..8 * 360]);
    assert!(text.contains("q8_0 down"), "{text}");
    // The tokenizer section: the GGUF's tokenizer metadata, format 1.1.
    assert_eq!(img.header().minor, 1);
    let want = lode_formats::gguf::tokenizer_only(&file).unwrap();
    assert_eq!(img.tokenizer_gguf(), Some(want.as_slice()));
    assert!(
        text.contains(&format!("{} bytes of tokenizer", want.len())),
        "{text}"
    );
}

#[test]
fn split_layout_stores_permuted_gate_up_tensors_and_down_only_bundles() {
    let Some(model) = real_model() else { return };
    let trace = tmp("split-shape.trace");
    std::fs::write(&trace, synth_trace(30, 1536)).unwrap();
    let mut a = args(model.clone(), tmp("split.lode"));
    a.layout = Some(Layout::Split);
    a.trace = Some(trace.clone());
    a.placement = PlacementKind::Freq;
    let (bytes, text) = pack_verified(&a);
    let img = Image::parse(&bytes).unwrap();
    let gguf_bytes = std::fs::read(&model).unwrap();
    let file = Gguf::parse(&gguf_bytes).unwrap();
    assert!(img.tensors().all(|t| !t.name.contains("ffn_down")));
    for l in 0..30 {
        // Down-only regions: a 612 B Q8_0 column per neuron.
        let r = img.bundle_region(l).unwrap();
        assert_eq!(
            r.parts,
            BundleParts {
                gate: None,
                up: None,
                down: Some(DType::Q8_0)
            }
        );
        assert_eq!((r.count, r.bundle_size), (1536, 612));
        for part in ["ffn_gate", "ffn_up"] {
            let name = format!("blk.{l}.{part}.weight");
            let (_, t) = img.tensor_by_name(&name).unwrap();
            assert_eq!(t.dtype, DType::Q4_1);
            assert_eq!(t.shape.dims(), &[576, 1536]);
        }
    }
    // Row p of layer 5's up tensor is the GGUF's row of neuron perm[p];
    // the placement really moves neurons.
    let p = img.placement(5).unwrap();
    assert!(!p.is_identity());
    let (_, t) = img.tensor_by_name("blk.5.ffn_up.weight").unwrap();
    let rows = &bytes[t.offset as usize..(t.offset + t.length) as usize];
    let src = file
        .data(&file.tensor("blk.5.ffn_up.weight").unwrap())
        .unwrap();
    for pos in [0u32, 1, 700, 1535] {
        let n = p.neuron_at(pos).unwrap() as usize;
        let pos = pos as usize;
        assert_eq!(
            &rows[pos * 360..(pos + 1) * 360],
            &src[n * 360..(n + 1) * 360]
        );
    }
    assert!(
        text.contains("split FFN: 30 layers x (1105920 B of q4_1 gate/up tensors"),
        "{text}"
    );
    assert!(
        text.contains("1536 down-only bundles of 612 B (q8_0 down)"),
        "{text}"
    );
}

/// The perplexity check reads the FFN back from the written image: a
/// split image and a bundled one of the same placement and down type
/// hold the same weights, so they measure the same to the last digit.
#[test]
fn dense_layout_copies_the_ffn_and_keeps_the_neuron_order() {
    let Some(model) = real_model() else { return };
    let mut a = args(model.clone(), tmp("dense.lode"));
    a.layout = Some(Layout::Dense);
    a.check_tokens = 64; // Asked for, but a dense image needs none.
    let (bytes, text) = pack_verified(&a);
    let img = Image::parse(&bytes).unwrap();
    let gguf_bytes = std::fs::read(&model).unwrap();
    let file = Gguf::parse(&gguf_bytes).unwrap();
    let down = file.tensor("blk.7.ffn_down.weight").unwrap();
    let (_, t) = img.tensor_by_name("blk.7.ffn_down.weight").unwrap();
    assert_eq!(
        &bytes[t.offset as usize..(t.offset + t.length) as usize],
        file.data(&down).unwrap()
    );
    assert_eq!(img.bundle_region(7).unwrap().count, 0);
    assert!(text.contains("dense FFN: 30 layers"), "{text}");
    assert!(text.contains("perplexity: unchanged"), "{text}");
    // The GGUF is about 98.4 MB; the dense image adds only alignment
    // (a bundled one re-quantizes down to Q8_0, about 12 MB more).
    assert!(
        bytes.len() < gguf_bytes.len() + (1 << 20),
        "{}",
        bytes.len()
    );
    // A placement needs a layout with bundles.
    let trace = tmp("dense.trace");
    std::fs::write(&trace, synth_trace(30, 1536)).unwrap();
    a.trace = Some(trace.clone());
    a.placement = PlacementKind::Freq;
    let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
    let _ = std::fs::remove_file(&trace);
    assert!(
        err.contains("--layout dense keeps the model's neuron order"),
        "{err}"
    );
    assert!(!a.output.exists());
}

#[test]
fn the_check_measures_both_layouts_alike() {
    let Some(model) = real_model() else { return };
    let text = tmp("check.txt");
    std::fs::write(
        &text,
        "The capital of France is Paris. It lies on the Seine, and about two million \
             people live in the city itself, many more in the region around it. Its museums, \
             among them the Louvre, draw visitors from every country of the world.",
    )
    .unwrap();
    let measure = |layout: Layout| {
        let path = tmp(&format!("check-{layout:?}.lode"));
        let mut a = args(model.clone(), path.clone());
        a.layout = Some(layout);
        a.down = DownType::Q4_1;
        a.check_text = Some(text.clone());
        a.check_tokens = 40;
        let mut out = Vec::new();
        let result = run(&a, &mut out);
        let _ = std::fs::remove_file(&path);
        result.unwrap();
        let out = String::from_utf8(out).unwrap();
        let line = out.lines().find(|l| l.starts_with("perplexity")).unwrap();
        let ppl = |key: &str| {
            let at = line.find(key).unwrap() + key.len();
            line[at..].split_whitespace().next().unwrap().to_string()
        };
        (ppl("GGUF FFN "), ppl("read back) "), line.to_string())
    };
    let (b_dense, b_image, b_line) = measure(Layout::Bundled);
    let (s_dense, s_image, s_line) = measure(Layout::Split);
    let _ = std::fs::remove_file(&text);
    assert!(
        s_line.contains("image FFN (split layout, read back)"),
        "{s_line}"
    );
    assert!(
        b_line.contains("image FFN (bundled layout, read back)"),
        "{b_line}"
    );
    assert_eq!((&b_dense, &b_image), (&s_dense, &s_image));
    // Q4_1 down columns cost perplexity: the image is not the GGUF.
    assert_ne!(b_dense, b_image);
}

#[test]
fn coactivation_placement_from_a_trace_orders_the_bundles() {
    let Some(model) = real_model() else { return };
    let trace = tmp("real-shape.trace");
    std::fs::write(&trace, synth_trace(30, 1536)).unwrap();
    let mut a = args(model, tmp("coact.lode"));
    a.trace = Some(trace.clone());
    a.placement = PlacementKind::Coact;
    a.down = DownType::Q5_1;
    let (bytes, _) = pack_verified(&a);
    let img = Image::parse(&bytes).unwrap();
    // 360 + 360 B of Q4_1 rows and a 432 B Q5_1 column.
    assert_eq!(img.bundle_region(0).unwrap().bundle_size, 1152);
    let p = img.placement(4).unwrap();
    assert!(!p.is_identity());
    assert_eq!(p.len(), 1536);
}

/// A NaN in a weight of the real model (a norm weight, far into the
/// file): `lode pack` names the tensor and writes no image.
#[test]
fn non_finite_weights_are_refused_before_anything_is_written() {
    let Some(model) = real_model() else { return };
    let mut bytes = std::fs::read(&model).unwrap();
    let name = "blk.17.ffn_norm.weight";
    let at = Gguf::parse(&bytes).unwrap().tensor(name).unwrap().offset as usize + 4 * 9;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let poisoned = tmp("nan.gguf");
    std::fs::write(&poisoned, &bytes).unwrap();
    let output = tmp("nan.lode");
    let result = run(&args(poisoned.clone(), output.clone()), &mut Vec::new());
    let _ = std::fs::remove_file(&poisoned);
    let written = output.exists();
    let _ = std::fs::remove_file(&output);
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("tensor `blk.17.ffn_norm.weight` holds NaN at row 0, element 9"),
        "{err}"
    );
    assert!(!written);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let path = tmp("never.lode");
    // Missing model.
    let a = args(tmp("absent.gguf"), path.clone());
    let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        err.contains("absent.gguf: cannot open: No such file"),
        "{err}"
    );
    // Not a GGUF.
    let junk = tmp("junk.gguf");
    std::fs::write(&junk, b"not a model at all, just some bytes").unwrap();
    let a = args(junk.clone(), path.clone());
    assert!(run(&a, &mut Vec::new()).is_err());
    // A cost model that is not a calibration file, or an impossible one.
    let calib = tmp("bad-calib.json");
    for (doc, want) in [
        ("{}", "not a `lode calibrate --json` file"),
        ("[1, 2", "not a `lode calibrate --json` file"),
        (
            r#"{"model": {"command_ns": 1, "bytes_per_sec": 0, "queue_depth": 1}}"#,
            "must be at least 1",
        ),
    ] {
        std::fs::write(&calib, doc).unwrap();
        let mut a = args(tmp("absent.gguf"), path.clone());
        a.cost_model = Some(calib.clone());
        // Checked before the model is even read.
        std::fs::write(&a.model, b"").unwrap();
        let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
        let _ = std::fs::remove_file(&a.model);
        if !err.contains(want) {
            let _ = std::fs::remove_file(&calib);
            panic!("{doc}: {err}");
        }
    }
    let _ = std::fs::remove_file(&calib);
    // A placement that needs a trace, without one.
    if let Some(model) = real_model() {
        let mut a = args(model, path.clone());
        a.placement = PlacementKind::Coact;
        assert!(run(&a, &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("--trace"));
        // A trace of another shape.
        let trace = tmp("other.trace");
        let t = synth_trace(2, 64);
        std::fs::write(&trace, &t).unwrap();
        a.trace = Some(trace.clone());
        let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
        let _ = std::fs::remove_file(&trace);
        assert!(err.contains("trace of 2 layers"), "{err}");

        // A trace of the right shape recorded on another model (its
        // fingerprint differs; the header CRC is recomputed so only the
        // fingerprint is wrong).
        let mut t = synth_trace(30, 1536);
        t[32..40].copy_from_slice(&0x5EED_u64.to_le_bytes());
        let crc = lode_formats::image::crc32c(&t[..60]);
        t[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&trace, &t).unwrap();
        let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
        let _ = std::fs::remove_file(&trace);
        assert!(err.contains("trace of another model"), "{err}");

        // A model without token texts: the image could not generate
        // text, so it is not written. Renaming the key keeps every
        // length, so the file still parses.
        let mut bytes = std::fs::read(&a.model).unwrap();
        let key = b"tokenizer.ggml.tokens";
        let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
        bytes[at + key.len() - 1] = b'z';
        let untokenized = tmp("untokenized.gguf");
        std::fs::write(&untokenized, &bytes).unwrap();
        let a = args(untokenized.clone(), path.clone());
        let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
        let _ = std::fs::remove_file(&untokenized);
        assert!(err.contains("tokenizer.ggml.tokens"), "{err}");
    }
    let _ = std::fs::remove_file(&junk);
    assert!(!path.exists());
}

/// `--drop-layers` packs the other layers renumbered from 0, with the
/// lineage that names them and a fingerprint of its own; their tensors are
/// the source's bytes.
#[test]
fn dropping_layers_packs_the_rest_renumbered_with_their_lineage() {
    let Some(model) = real_model() else { return };
    let mut a = args(model.clone(), tmp("pruned.lode"));
    a.layout = Some(Layout::Dense);
    a.drop_layers = vec![29, 0, 7];
    let (bytes, text) = pack_verified(&a);
    assert!(
        text.contains("pruned: 27 of 30 layers kept, layers [0, 7, 29] dropped"),
        "{text}"
    );
    let img = Image::parse(&bytes).unwrap();
    assert_eq!((img.header().minor, img.geometry().layers), (2, 27));
    let gguf_bytes = std::fs::read(&model).unwrap();
    let gguf = Gguf::parse(&gguf_bytes).unwrap();
    let l = img.lineage().unwrap();
    assert_eq!(
        (l.base_fingerprint(), l.base_layers()),
        (gguf.fingerprint(), 30)
    );
    assert_eq!(l.dropped().collect::<Vec<_>>(), [0, 7, 29]);
    assert_eq!(img.geometry().fingerprint >> 63, 1);
    // Image layer 6 is source layer 8; no tensor names a layer past 26.
    for (image_name, source_name) in [
        ("blk.6.attn_q.weight", "blk.8.attn_q.weight"),
        ("blk.26.ffn_down.weight", "blk.28.ffn_down.weight"),
        ("blk.0.attn_norm.weight", "blk.1.attn_norm.weight"),
    ] {
        let (_, t) = img.tensor_by_name(image_name).unwrap();
        let stored = &bytes[t.offset as usize..(t.offset + t.length) as usize];
        let src = gguf.tensor(source_name).unwrap();
        assert_eq!(stored, gguf.data(&src).unwrap(), "{image_name}");
    }
    assert!(img.tensors().all(|t| !t.name.starts_with("blk.27.")));
    assert!(img.tensor_by_name("token_embd.weight").is_some());
}

/// A layer that does not exist, or all of them, is refused before any
/// file is written.
#[test]
fn impossible_layer_drops_are_refused() {
    let Some(model) = real_model() else { return };
    for (drop, says) in [
        (vec![30], "--drop-layers: layer 30 does not exist"),
        ((0..30).collect(), "--drop-layers: dropping all 30 layers"),
        (vec![3, 3], "--drop-layers: layer 3 is named twice"),
    ] {
        let mut a = args(model.clone(), tmp("refused.lode"));
        a.drop_layers = drop;
        let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
        assert!(!a.output.exists());
    }
}
