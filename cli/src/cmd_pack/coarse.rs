//! `lode pack --coarse-scales`: the model's FFN matrices re-quantized
//! with coarser f16 scales ([`lode_pack::requant`]) before the image is
//! built, and the perplexity that costs, measured against the GGUF.

use std::error::Error;
use std::io::Write;
use std::path::Path;

use lode_formats::gguf::Gguf;
use lode_kernel::model::LlamaConfig;
use lode_pack::compress::is_coded_tensor;
use lode_pack::requant::coarsen;

/// A copy of the GGUF `bytes` (parsed as `file`) with every FFN matrix's
/// scales rounded to `drop` fewer mantissa bits; how many matrices changed.
pub(super) fn coarsened(
    file: &Gguf<'_>,
    bytes: &[u8],
    drop: u32,
) -> Result<(Vec<u8>, usize), Box<dyn Error>> {
    let mut out = bytes.to_vec();
    let mut changed = 0;
    for t in file.tensors().filter(|t| is_coded_tensor(t.name)) {
        let at = usize::try_from(t.offset)?;
        let len = usize::try_from(t.len_bytes)?;
        let data = out
            .get_mut(at..at + len)
            .ok_or_else(|| format!("tensor {} lies outside the file", t.name))?;
        changed += usize::from(coarsen(t.dtype, data, drop));
    }
    Ok((out, changed))
}

/// A fingerprint for the re-quantized model: another model's (its KV
/// caches and traces are not this one's), derived from the source's.
pub(super) fn fingerprint(source: u64, drop: u32) -> u64 {
    let mut r = lode_kernel::rng::SplitMix64::new(source ^ 0xC0A5_5CA1_E500_0000 ^ u64::from(drop));
    r.next_u64()
}

/// Prints the perplexity change of the re-quantized model on `text`.
pub(super) fn report(
    (file, changed): (&Gguf<'_>, &Gguf<'_>),
    cfg: &LlamaConfig,
    (text, tokens): (&Path, usize),
    (drop, matrices): (u32, usize),
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let q = lode_pack::quality::measure_changed(file, changed, cfg, text, tokens)
        .map_err(|e| format!("measuring --coarse-scales on {}: {e}", text.display()))?;
    writeln!(
        out,
        "perplexity over {} tokens of {}: GGUF {:.4}, {matrices} FFN matrices with {drop} \
         mantissa bits fewer in their scales {:.4} ({:+.2}%)",
        q.scored,
        text.display(),
        q.dense,
        q.bundles,
        q.change_percent()
    )?;
    Ok(())
}
