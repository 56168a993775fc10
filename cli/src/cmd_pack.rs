//! `lode pack`: turn a GGUF llama model into a lode image laid out for
//! streaming.
//!
//! Everything but the FFN (embeddings, norms, attention, output head) is
//! copied as tensors, byte for byte, for the memory planner to keep
//! resident or stream. Each layer's FFN is stored in the placement's order,
//! so neurons that fire together sit together on flash, in one of two
//! layouts (`--layout`): `bundled`, one bundle per neuron (gate row | up
//! row | down column), which dense streaming reads a layer at a time; or
//! `split`, the gate and up matrices as tensors with their rows in
//! placement order and bundles of the down column alone, which sparse
//! streaming (`lode run --sparsity`) needs: it scores every neuron from the
//! gate and up rows, then reads only the firing neurons' down columns. The
//! down column is re-quantized either way (GGUF quantizes the down matrix
//! along the neuron axis); `--down` picks its type: Q8_0 by default, which
//! keeps the perplexity change under 1% where Q4_1 costs about 7%
//! (DESIGN.md).
//!
//! The model's tokenizer (its `tokenizer.*` metadata, as a GGUF file without
//! tensors) goes into the image's tokenizer section, so the image alone is
//! enough for `lode run`: the source GGUF is not needed after packing.
//!
//! The output is checked before anything is read (it must be a regular
//! file or a new path, and none of the inputs), the small inputs are read
//! before the model, and the image is written to a temporary sibling and
//! renamed ([`lode_pack::output`]), so an error leaves no file behind. The
//! perplexity check then reads the FFN back from the written image, so it
//! measures what is on disk.

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

use lode_formats::image::Image;
use lode_formats::input::{read_file, Limit, TRACE_LIMIT};
use lode_formats::trace::Trace;
use lode_formats::DType;
use lode_kernel::formats::gguf::Gguf;
use lode_kernel::model::{LlamaConfig, LlamaConfigExt};
use lode_pack::image::readback::layer_bundles;
use lode_pack::image::{build_image, FfnLayout, PackSummary};

use lode_pack::model_id::fingerprint;
use lode_pack::output::Output;
use lode_pack::placement::{check_trace, place, PlacementKind};
use lode_pack::profile::TEXT_LIMIT;

use crate::progress::{Meters, Progress};

/// The text the layout's perplexity is measured on when none is named: on
/// every Debian system.
const DEFAULT_CHECK_TEXT: &str = "/usr/share/common-licenses/GPL-3";

/// Arguments of `lode pack`.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// GGUF llama model to pack.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Output image.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Activation trace of this model whose tokens decide the placement.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Order of the bundles in each layer (freq and coact need --trace).
    #[arg(long, value_enum, default_value = "identity")]
    pub placement: PlacementKind,
    /// Element type of the re-laid-out down column (bundled and split;
    /// dense keeps the model's own).
    #[arg(long, value_enum, default_value = "q8-0")]
    pub down: DownType,
    /// How each layer's FFN is stored: `split` keeps the gate and up rows
    /// as tensors in placement order and the down columns as bundles
    /// (needed by `lode run --sparsity`); `bundled` stores one
    /// gate|up|down bundle per neuron; `dense` copies the three matrices
    /// as they are (dense streaming's best: nothing re-quantized, fewest
    /// bytes; identity placement only).
    #[arg(long, value_enum, default_value = "bundled")]
    pub layout: Layout,
    /// Block size the data is aligned to.
    #[arg(long, default_value_t = 4096)]
    pub block_size: u32,
    /// Text the perplexity change of the bundle layout is measured on
    /// (default: /usr/share/common-licenses/GPL-3 when present).
    #[arg(long = "check-text")]
    pub check_text: Option<PathBuf>,
    /// Tokens of that text to measure on; 0 skips the measurement.
    #[arg(long = "check-tokens", default_value_t = 4096)]
    pub check_tokens: usize,
    /// Device cost model to carry in the image: the JSON file `lode
    /// calibrate --json` wrote for the flash the image will be read from.
    /// Without it `lode run` plans reads with its device's own model
    /// (`lode calibrate --store` can add one later).
    #[arg(long = "cost-model")]
    pub cost_model: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl PackArgs {
    /// The defaults of the command line for `model` and `output`, quiet and
    /// without the perplexity measurement (what tests start from).
    #[cfg(test)]
    pub fn quiet_defaults(model: PathBuf, output: PathBuf) -> PackArgs {
        PackArgs {
            model,
            output,
            trace: None,
            placement: PlacementKind::Identity,
            down: DownType::Q8_0,
            layout: Layout::Bundled,
            block_size: 4096,
            check_text: None,
            check_tokens: 0,
            cost_model: None,
            quiet: true,
        }
    }
}

/// Types the down column can be re-quantized to (DESIGN.md's measured
/// perplexity costs on SmolLM2: Q8_0 +0.9%, Q5_1 +3.8%, Q4_1 +7%).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownType {
    /// 8-bit with scale: 34 B per 32 elements.
    Q8_0,
    /// 5-bit with scale and minimum: 24 B per 32 elements.
    Q5_1,
    /// 4-bit with scale and minimum: 20 B per 32 elements.
    Q4_1,
}

impl DownType {
    /// The element type.
    pub fn dtype(self) -> DType {
        match self {
            DownType::Q8_0 => DType::Q8_0,
            DownType::Q5_1 => DType::Q5_1,
            DownType::Q4_1 => DType::Q4_1,
        }
    }
}

/// The FFN layouts `lode pack` writes (see [`FfnLayout`] for why each
/// exists).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One gate|up|down bundle per neuron: dense streaming only.
    Bundled,
    /// Gate/up rows as tensors in placement order, down columns as
    /// bundles: needed by `lode run --sparsity`.
    Split,
    /// The gate, up and down matrices copied as they are, no bundles:
    /// dense streaming only, the source's exact model in the fewest bytes.
    Dense,
}

impl Layout {
    /// The library's layout.
    pub fn ffn_layout(self) -> FfnLayout {
        match self {
            Layout::Bundled => FfnLayout::Bundled,
            Layout::Split => FfnLayout::Split,
            Layout::Dense => FfnLayout::Dense,
        }
    }
}

/// What the summary line says about the FFN: the bundles' sizes and parts,
/// and for `split` the gate/up tensors beside them.
fn ffn_summary(sum: &PackSummary, cfg: &LlamaConfig) -> String {
    let (rows, down) = (sum.types.rows.name(), sum.types.down.name());
    let (layers, ffn, bundle) = (cfg.layers, cfg.ffn, sum.bundle_bytes);
    match sum.layout {
        FfnLayout::Bundled => format!(
            "bundled FFN: {layers} layers x {ffn} bundles of {bundle} B \
             ({rows} gate/up, {down} down)"
        ),
        FfnLayout::Split => format!(
            "split FFN: {layers} layers x ({} B of {rows} gate/up tensors, rows in placement \
             order, + {ffn} down-only bundles of {bundle} B ({down} down))",
            sum.split_tensor_bytes / cfg.layers.max(1) as u64
        ),
        FfnLayout::Dense => format!(
            "dense FFN: {layers} layers x {} B of gate/up/down tensors as the model stores \
             them ({rows} gate/up, {down} down), no bundles",
            sum.split_tensor_bytes / cfg.layers.max(1) as u64
        ),
    }
}

/// Every file `lode pack` reads, which its output must not be.
fn inputs(a: &PackArgs) -> Vec<&Path> {
    let named = [&a.trace, &a.cost_model, &a.check_text];
    std::iter::once(a.model.as_path())
        .chain(named.into_iter().flatten().map(PathBuf::as_path))
        .collect()
}

/// Run `lode pack`.
pub fn run(a: &PackArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // The output and the small inputs first, so a bad one fails before the
    // model is read.
    let output = Output::check(&a.output, &inputs(a))?;
    let cost = match &a.cost_model {
        Some(p) => Some(lode_pack::calibration::read_model_json(p)?),
        None => None,
    };
    let check_text = match (&a.check_text, a.check_tokens) {
        (_, 0) => None,
        (Some(p), _) => {
            // Refused here, before the image is built and written: a file
            // that cannot be read, is too long or has no text.
            let text = read_file(p, TEXT_LIMIT).map_err(|e| format!("--check-text {e}"))?;
            if text.iter().all(u8::is_ascii_whitespace) {
                return Err(format!(
                    "--check-text {}: the file has no text to measure perplexity on",
                    p.display()
                )
                .into());
            }
            Some(p.clone())
        }
        (None, _) => Some(PathBuf::from(DEFAULT_CHECK_TEXT)).filter(|p| p.is_file()),
    };
    let trace_bytes = match &a.trace {
        Some(p) => Some(read_file(p, TRACE_LIMIT)?),
        None => None,
    };
    let bytes = read_file(&a.model, Limit::whole("GGUF model"))?;
    let file = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let params = file
        .check_llama()
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let cfg = LlamaConfig::from_gguf(&params).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let fp = fingerprint(&file);
    let trace = match (&trace_bytes, &a.trace) {
        (Some(b), Some(p)) => {
            let t = Trace::parse(b).map_err(|e| format!("{}: {e}", p.display()))?;
            check_trace(&t.header(), &cfg, fp).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(t)
        }
        _ => None,
    };
    if a.layout == Layout::Dense && a.placement != PlacementKind::Identity {
        return Err(
            "--layout dense keeps the model's neuron order: it takes no --placement \
                    (use --layout split or bundled to place neurons)"
                .into(),
        );
    }
    let placed = match (&trace, a.placement) {
        (_, PlacementKind::Identity) => None,
        (Some(t), _) => Some(place(t, t.header().tokens, &mut Meters::new(a.quiet))?),
        (None, _) => return Err("--placement freq or coact needs --trace".into()),
    };

    let neurons = u32::try_from(cfg.ffn).map_err(|_| "FFN size does not fit an image")?;
    let perm_of = |l: usize| match &placed {
        Some(p) => p.perm(a.placement, l, neurons),
        None => lode_kernel::placement::identity(neurons),
    };
    let mut progress = Progress::new("pack FFN bundles", cfg.layers as u64, a.quiet);
    let (mut b, sum) = build_image(
        &file,
        &cfg,
        fp,
        a.down.dtype(),
        a.layout.ffn_layout(),
        a.block_size,
        perm_of,
        |_| progress.tick(1),
    )
    .map_err(|e| format!("{}: {e}", a.model.display()))?;
    progress.finish();
    b.cost_model(cost);
    let len = output.write(|w| Ok(b.write_to(w)?))?;
    // The builder holds every layer's re-laid-out FFN: free it before the
    // check reads the image back.
    drop(b);
    writeln!(
        out,
        "wrote {} ({len} bytes): {} bytes of tensors, {} bytes of tokenizer; {}, {:?} placement",
        a.output.display(),
        sum.tensor_bytes,
        sum.tokenizer_bytes,
        ffn_summary(&sum, &cfg),
        a.placement
    )?;
    if let Some(c) = cost {
        writeln!(
            out,
            "cost model: {} ns a command, {:.0} MiB/s, queue depth {} (from {})",
            c.command_ns,
            c.bytes_per_sec as f64 / f64::from(1u32 << 20),
            c.queue_depth,
            a.cost_model.as_deref().unwrap_or(Path::new("")).display()
        )?;
    }
    if a.layout == Layout::Dense && check_text.is_some() {
        writeln!(
            out,
            "perplexity: unchanged (the dense layout stores the model's FFN matrices byte for \
             byte)"
        )?;
    }
    if let Some(text) = check_text.filter(|_| a.layout != Layout::Dense) {
        let image = read_file(&a.output, Limit::whole("lode image"))
            .map_err(|e| format!("reading back what was written: {e}"))?;
        let img = Image::parse(&image).map_err(|e| format!("{}: {e}", a.output.display()))?;
        let q = lode_pack::quality::measure(
            &file,
            &cfg,
            sum.types,
            &text,
            a.check_tokens,
            |layer, dst| layer_bundles(&img, &image, layer, dst),
        )
        .map_err(|e| {
            format!(
                "measuring the layout's perplexity on {}: {e}",
                text.display()
            )
        })?;
        writeln!(
            out,
            "perplexity over {} tokens of {}: GGUF FFN {:.4}, image FFN ({} layout, read \
             back) {:.4} ({:+.2}%{})",
            q.scored,
            text.display(),
            q.dense,
            sum.layout.name(),
            q.bundles,
            q.change_percent(),
            // Q8_0 is the finest down type there is: advise it only when
            // another was chosen.
            if q.change_percent() > 1.0 && a.down != DownType::Q8_0 {
                "; over 1%: pack with --down q8-0"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::real_model;
    use lode_formats::image::BundleParts;
    use lode_pack::synth::SynthParams;

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
        a.layout = Layout::Split;
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
        a.layout = Layout::Dense;
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
            a.layout = layout;
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
}
