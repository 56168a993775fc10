//! `lode pack` of a Gemma 3 GGUF: the dense image `lode_pack::gemma`
//! builds. Options that only mean something for llama's re-laid-out FFN
//! (a placement, a trace, the bundled or split layouts, dropped layers)
//! are refused by name before the model is converted.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::gguf::Gguf;
use lode_formats::image::StoredCostModel;
use lode_kernel::model::Arch;
use lode_pack::gemma::build_gemma_image;
use lode_pack::head::{measure_head, requantize_head};
use lode_pack::model_id::fingerprint;
use lode_pack::output::Output;
use lode_pack::placement::PlacementKind;

use super::{ffn_summary, Layout, PackArgs};
use crate::progress::Progress;

/// What a Gemma pack refuses, checked before any work.
fn refuse_llama_options(a: &PackArgs) -> Result<(), String> {
    let why = |what: &str| {
        format!(
            "{}: a Gemma 3 model is packed dense (its FFN as the GGUF stores it), so {what}",
            a.model.display()
        )
    };
    if matches!(a.layout, Some(Layout::Bundled | Layout::Split)) {
        return Err(why(
            "--layout bundled and split are llama's (lode's sparse FFN path gates with SiLU)",
        ));
    }
    if a.placement != PlacementKind::Identity || a.trace.is_some() {
        return Err(why("it takes no --placement or --trace"));
    }
    if !a.drop_layers.is_empty() {
        return Err(why(
            "it takes no --drop-layers (renumbering layers would move Gemma's global ones)",
        ));
    }
    Ok(())
}

/// Packs `file`, a Gemma 3 GGUF, as `a` says, into `output`.
pub(super) fn pack_gemma(
    a: &PackArgs,
    file: &Gguf<'_>,
    output: Output,
    (cost, check_text): (Option<StoredCostModel>, Option<PathBuf>),
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    refuse_llama_options(a)?;
    let model = |e: &dyn std::fmt::Display| format!("{}: {e}", a.model.display());
    let params = file.check_gemma3().map_err(|e| model(&e))?;
    let (cfg, arch) = Arch::from_gemma3(&params).map_err(|e| model(&e))?;
    let Arch::Gemma3(g) = arch else {
        return Err(model(&"not a Gemma 3 model").into());
    };
    let head = match a.head {
        Some(h) => {
            let bytes = requantize_head(file, h.dtype()).map_err(|e| model(&e))?;
            if let Some(text) = &check_text {
                let q = measure_head(
                    file,
                    (&cfg, &arch),
                    (h.dtype(), &bytes),
                    text,
                    a.check_tokens,
                )
                .map_err(|e| {
                    format!("measuring the head's perplexity on {}: {e}", text.display())
                })?;
                writeln!(
                    out,
                    "head {}: perplexity over {} tokens of {}: tied q8_0 head {:.4}; {} head \
                     {:.4} ({:+.2}%, top-1 agreement {:.1}%), with its {} largest logits \
                     refined from the q8_0 rows as `lode run` does {:.4} ({:+.2}%, top-1 \
                     agreement {:.1}%)",
                    h.dtype().name(),
                    q.scored,
                    text.display(),
                    q.tied,
                    h.dtype().name(),
                    q.requantized,
                    q.change_percent(),
                    q.top1_agreement * 100.0,
                    lode_kernel::limits::REFINED_LOGITS,
                    q.refined,
                    q.refined_change_percent(),
                    q.refined_top1_agreement * 100.0
                )?;
            }
            Some((h.dtype(), bytes))
        }
        None => None,
    };
    let tensors = file.tensors().count() as u64;
    let mut progress = Progress::new("pack tensors", tensors, a.quiet);
    let (mut b, sum) = build_gemma_image(
        file,
        (&cfg, &g),
        fingerprint(file),
        (a.block_size, head),
        || progress.tick(1),
    )
    .map_err(|e| model(&e))?;
    progress.finish();
    b.cost_model(cost);
    let rate = super::read_rate(cost.as_ref());
    let coded = lode_pack::compress::compress(&mut b, a.compress, a.units(), rate)?;
    let len = output.write(|w| Ok(b.write_to(w)?))?;
    writeln!(
        out,
        "wrote {} ({len} bytes): Gemma 3, {} bytes of tensors, {} bytes of tokenizer; {}; \
         window {} on local layers, every {}th layer global",
        a.output.display(),
        sum.tensor_bytes,
        sum.tokenizer_bytes,
        ffn_summary(&sum, cfg.layers, cfg.ffn),
        g.window,
        g.swa_period,
    )?;
    super::coded_summary(&coded, out)?;
    if a.head.is_none() {
        writeln!(
            out,
            "perplexity: unchanged (every tensor is the GGUF's, byte for byte; Q and K rows \
             reordered for RoPE)"
        )?;
    }
    Ok(())
}
