//! `lode prune -m PRUNED --base MODEL`: how far a pruned image (one `lode
//! pack --drop-layers` or `lode prune --output-dir` wrote) is from the
//! model it was pruned from, on held-out text.
//!
//! The pruned image's lineage names its base by fingerprint; a base of
//! another model (or a `-m` that is not a pruned image) is refused before
//! either model is loaded. The base then computes its next-token
//! distributions over the held-out windows and is dropped, and the pruned
//! model is scored against them: perplexity, KL divergence and top-1
//! agreement, the numbers `lode prune`'s search reports for a mask.

use std::error::Error;
use std::io::Write;
use std::path::Path;

use lode_runtime::prune::{layers_of, Reference, Score};
use lode_runtime::{ModelFile, PrunedFrom};

use super::{check_window, held_windows, session, PruneArgs};

/// What the pruned model is: refuses a `-m` without a lineage and a
/// `--base` that is not the model it names.
pub(super) fn check_lineage(
    pruned: &ModelFile,
    base: &ModelFile,
    base_path: &Path,
) -> Result<PrunedFrom, Box<dyn Error>> {
    let Some(from) = pruned.pruned_from() else {
        return Err(format!(
            "-m {}: not a pruned image (it has no lineage section); --base scores an image \
             that `lode pack --drop-layers` or `lode prune --output-dir` wrote",
            pruned.path().display()
        )
        .into());
    };
    if from.base_fingerprint != base.fingerprint() || from.base_layers != base.config().layers {
        return Err(format!(
            "--base {}: -m {} was pruned from another model (fingerprint {:016x}, {} layers), \
             not this one (fingerprint {:016x}, {} layers)",
            base_path.display(),
            pruned.path().display(),
            from.base_fingerprint,
            from.base_layers,
            base.fingerprint(),
            base.config().layers
        )
        .into());
    }
    Ok(from)
}

/// The mask of the base's layers that `from` dropped.
fn dropped_mask(from: &PrunedFrom) -> u128 {
    (0..from.base_layers.min(128))
        .filter(|l| !from.kept.contains(l))
        .fold(0u128, |m, l| m | 1 << l)
}

/// Run `lode prune -m PRUNED --base BASE`.
pub(super) fn run(
    a: &PruneArgs,
    base_path: &Path,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let pruned = ModelFile::open(&a.model)?;
    let base = ModelFile::open(base_path)?;
    let from = check_lineage(&pruned, &base, base_path)?;
    check_window(a, &base)?;
    let held = held_windows(a, &base)?;
    let n = held.len();
    let mut base_session = session(base, a)?;
    let reference = Reference::new(&mut base_session, held)?;
    let unpruned = reference.score(&mut base_session, 0, n)?;
    drop(base_session);
    let mut pruned_session = session(pruned, a)?;
    let score = reference.score(&mut pruned_session, 0, n)?;
    print(a, base_path, &from, (&unpruned, &score), out)
}

fn print(
    a: &PruneArgs,
    base_path: &Path,
    from: &PrunedFrom,
    (unpruned, score): (&Score, &Score),
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let dropped = layers_of(dropped_mask(from));
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "base": base_path.display().to_string(),
            "base_layers": from.base_layers,
            "kept": from.kept,
            "dropped": dropped,
            "unpruned_held_out": unpruned,
            "held_out": score,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} of {} layers of {}, layers {dropped:?} dropped",
        a.model.display(),
        from.kept.len(),
        from.base_layers,
        base_path.display()
    )?;
    writeln!(
        out,
        "held-out, {} positions: unpruned perplexity {:.3}; pruned perplexity {:.3}, KL {:.4}, \
         top-1 agreement {:.1}%",
        score.positions, unpruned.perplexity, score.perplexity, score.kl, score.top1_agreement_pct
    )?;
    Ok(())
}
