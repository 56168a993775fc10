//! `lode pack`: turn a GGUF llama model into a lode image laid out for
//! streaming (a Gemma 3 model: `cmd_pack/gemma.rs`, dense only).
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
use lode_formats::image::StoredCostModel;
use lode_formats::input::{read_file, Limit, TRACE_LIMIT};
use lode_formats::trace::Trace;
use lode_kernel::formats::gguf::{Gguf, GEMMA3_ARCH};
use lode_kernel::model::{LlamaConfig, LlamaConfigExt};
use lode_pack::compress::{compress, AutoChoice, Coded, Compress};
use lode_pack::image::readback::layer_bundles;
use lode_pack::image::{build_image_keeping, FfnLayout, PackSummary};

use lode_pack::model_id::fingerprint;
use lode_pack::output::Output;
use lode_pack::placement::{check_trace, place, PlacementKind};
use lode_pack::profile::TEXT_LIMIT;
use lode_pack::prune::{kept_layers, pruned_fingerprint};

use crate::progress::{Meters, Progress};

/// What the summary line says about the FFN: the bundles' sizes and parts,
/// and for `split` the gate/up tensors beside them.
fn ffn_summary(sum: &PackSummary, layers: usize, ffn: usize) -> String {
    let (rows, down) = (sum.types.rows.name(), sum.types.down.name());
    let bundle = sum.bundle_bytes;
    match sum.layout {
        FfnLayout::Bundled => format!(
            "bundled FFN: {layers} layers x {ffn} bundles of {bundle} B \
             ({rows} gate/up, {down} down)"
        ),
        FfnLayout::Split => format!(
            "split FFN: {layers} layers x ({} B of {rows} gate/up tensors, rows in placement \
             order, + {ffn} down-only bundles of {bundle} B ({down} down))",
            sum.split_tensor_bytes / layers.max(1) as u64
        ),
        FfnLayout::Dense => format!(
            "dense FFN: {layers} layers x {} B of gate/up/down tensors as the model stores \
             them ({rows} gate/up, {down} down), no bundles",
            sum.split_tensor_bytes / layers.max(1) as u64
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
    if file.get_str("general.architecture") == Ok(GEMMA3_ARCH) {
        if a.coarse_scales > 0 {
            return Err(
                "--coarse-scales is for llama models so far (Gemma 3's FFN is Q5_0 and \
                        Q6_K, whose scales it does not re-quantize)"
                    .into(),
            );
        }
        return gemma::pack_gemma(a, &file, output, (cost, check_text), out);
    }
    if a.head.is_some() {
        return Err(format!(
            "{}: --head is for Gemma 3 models so far (their tied head is 70% of the model)",
            a.model.display()
        )
        .into());
    }
    let layout = a.layout.unwrap_or(Layout::Bundled);
    let params = file
        .check_llama()
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let cfg = LlamaConfig::from_gguf(&params).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let fp = fingerprint(&file);
    if a.coarse_scales > 0 && layout != Layout::Dense {
        return Err(
            "--coarse-scales re-quantizes a dense layer's FFN matrices: pack with \
                    --layout dense"
                .into(),
        );
    }
    let coarse = match a.coarse_scales {
        0 => None,
        n => Some(coarse::coarsened(&file, &bytes, n)?),
    };
    let coarse_file = match &coarse {
        Some((b, _)) => Some(Gguf::parse(b).map_err(|e| format!("re-quantized model: {e}"))?),
        None => None,
    };
    let src = coarse_file.as_ref().unwrap_or(&file);
    let trace = match (&trace_bytes, &a.trace) {
        (Some(b), Some(p)) => {
            let t = Trace::parse(b).map_err(|e| format!("{}: {e}", p.display()))?;
            check_trace(&t.header(), &cfg, fp).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(t)
        }
        _ => None,
    };
    if a.compress != Compress::None && layout != Layout::Dense {
        return Err(
            "--compress codes a dense layer's FFN matrices: pack with --layout dense".into(),
        );
    }
    if layout == Layout::Dense && a.placement != PlacementKind::Identity {
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

    let kept =
        kept_layers(cfg.layers, &a.drop_layers).map_err(|e| format!("--drop-layers: {e}"))?;
    let pruned = kept.len() < cfg.layers;
    let image_fp = match (pruned, coarse.is_some()) {
        (true, _) => pruned_fingerprint(fp, cfg.layers, &kept),
        (false, true) => coarse::fingerprint(fp, a.coarse_scales),
        (false, false) => fp,
    };
    let neurons = u32::try_from(cfg.ffn).map_err(|_| "FFN size does not fit an image")?;
    let perm_of = |l: usize| match &placed {
        Some(p) => p.perm(a.placement, l, neurons),
        None => lode_kernel::placement::identity(neurons),
    };
    let mut progress = Progress::new("pack FFN bundles", kept.len() as u64, a.quiet);
    let (mut b, sum) = build_image_keeping(
        src,
        (&cfg, &kept),
        image_fp,
        a.down.dtype(),
        layout.ffn_layout(),
        a.block_size,
        perm_of,
        |_| progress.tick(1),
    )
    .map_err(|e| format!("{}: {e}", a.model.display()))?;
    progress.finish();
    b.cost_model(cost);
    if pruned {
        let as_u32: Vec<u32> = kept.iter().map(|&l| l as u32).collect();
        b.lineage(fp, cfg.layers as u32, &as_u32);
    }
    let coded = compress(&mut b, a.compress, a.units(), read_rate(cost.as_ref()))?;
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
        ffn_summary(&sum, kept.len(), cfg.ffn),
        a.placement
    )?;
    coded_summary(&coded, out)?;
    if pruned {
        writeln!(
            out,
            "pruned: {} of {} layers kept, layers {:?} dropped (recorded in the image)",
            kept.len(),
            cfg.layers,
            (0..cfg.layers)
                .filter(|l| !kept.contains(l))
                .collect::<Vec<_>>()
        )?;
    }
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
    if let (Some(changed), Some(text)) = (&coarse_file, &check_text) {
        let matrices = coarse.as_ref().map_or(0, |c| c.1);
        coarse::report(
            (&file, changed),
            &cfg,
            (text, a.check_tokens),
            (a.coarse_scales, matrices),
            out,
        )?;
    } else if layout == Layout::Dense && check_text.is_some() && !pruned {
        writeln!(
            out,
            "perplexity: unchanged (the dense layout stores the model's FFN matrices byte for \
             byte)"
        )?;
    }
    if pruned && check_text.is_some() {
        writeln!(
            out,
            "perplexity: not measured against the GGUF for a pruned image; `lode prune -m \
             {} --base {} --held-out TEXT` scores it against the unpruned model",
            a.output.display(),
            a.model.display()
        )?;
    }
    if let Some(text) = check_text.filter(|_| layout != Layout::Dense && !pruned) {
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

mod args;
mod coarse;
mod gemma;
#[cfg(test)]
mod tests;

use args::DEFAULT_CHECK_TEXT;

/// The device read rate `--compress auto` chooses for: the packed cost
/// model's, else the built-in one of a file device (1.28 GB/s).
fn read_rate(cost: Option<&StoredCostModel>) -> u64 {
    cost.map_or(1_280_000_000, |c| c.bytes_per_sec)
}

/// What `--compress` coded and, for `auto`, why.
fn coded_summary(
    (c, auto): &(Coded, Option<AutoChoice>),
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if let Some(a) = auto {
        writeln!(
            out,
            "compress auto: {:?} for a device reading {:.0} MB/s (floats: {:.1}% fewer bytes, \
             decoded at {:.0} MB/s; all: {:.1}%, {:.0} MB/s; a coding is chosen when decoding \
             takes at most {:.0}% of the time the device reads it)",
            a.chosen,
            a.read_bytes_per_sec as f64 / 1e6,
            100.0 * (1.0 - a.floats_ratio),
            a.floats_decode / 1e6,
            100.0 * (1.0 - a.all_ratio),
            a.all_decode / 1e6,
            100.0 * lode_pack::compress::AUTO_DECODE_SHARE
        )?;
    }
    if c.tensors == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "coded {} FFN matrices: {} -> {} bytes ({:.2}% fewer; format {})",
        c.tensors,
        c.raw_bytes,
        c.coded_bytes,
        100.0 * c.saved(),
        match (c.v2, c.chained) {
            (true, true) => "1.6, each in several units",
            (true, false) => "1.6",
            (false, true) => "1.5, each in several units",
            (false, false) => "1.4",
        }
    )
}
pub use args::{DownType, Layout, PackArgs};
