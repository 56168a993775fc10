//! `lode bench entropy`: how far a GGUF's quantized weights could be
//! losslessly shrunk, and how far general-purpose codecs get (issue 18's
//! "measure first"). For each tensor class: each stream's order-0 entropy
//! against its stored bits, the per-tensor scale codebook, the bound
//! order-0 coding of the separated streams gives, and the ratios zstd (on
//! the tensors as stored and on their streams apart) and LZ4 reach.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::gguf::Gguf;
use lode_formats::input::{read_file, Limit};
use lode_formats::DType;
use lode_pack::entropy::{count, separate, Class, Stream};
use serde::Serialize;

/// Arguments of `lode bench entropy`.
#[derive(clap::Args, Debug)]
pub struct EntropyArgs {
    /// The GGUF model.
    #[arg(short, long)]
    pub model: PathBuf,
    /// zstd's level for the codec columns (1 to 22).
    #[arg(long, default_value_t = 3)]
    pub zstd_level: i32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One stream of a class, as reported.
#[derive(Debug, Serialize)]
struct StreamRow {
    stream: Stream,
    stored_bits: u32,
    entropy_bits: f64,
    /// Bits a symbol costs with a per-tensor codebook (fixed-width
    /// indices and the table), for f16 streams.
    codebook_bits: Option<f64>,
}

/// One class, as reported.
#[derive(Debug, Serialize)]
struct ClassRow {
    class: String,
    dtype: String,
    tensors: usize,
    bytes: u64,
    streams: Vec<StreamRow>,
    /// Stored bytes over the order-0 entropy of its streams (1 for float
    /// tensors, which are not split into streams; `None` for quantized
    /// types this bench does not take apart, such as the K-quants).
    bound: Option<f64>,
    /// Stored bytes over zstd's output, tensors as stored.
    zstd: f64,
    /// The same with each stream compressed apart.
    zstd_streams: f64,
    /// Stored bytes over LZ4's output, tensors as stored.
    lz4: f64,
}

fn ratio(raw: usize, coded: usize) -> f64 {
    raw as f64 / coded.max(1) as f64
}

/// The codec columns of one class: its tensors' bytes as stored, then
/// each stream apart.
fn codecs(
    gguf: &Gguf<'_>,
    class: &str,
    dtype: DType,
    level: i32,
) -> Result<(f64, f64, f64), Box<dyn Error>> {
    let mut whole = Vec::new();
    for t in gguf
        .tensors()
        .filter(|t| lode_pack::entropy::class_of(t.name) == class)
    {
        whole.extend_from_slice(gguf.data(&t)?);
    }
    let z = zstd::bulk::compress(&whole, level)?.len();
    let l = lz4_flex::compress(&whole).len();
    let mut streams = 0usize;
    let mut any = false;
    for s in [Stream::Values, Stream::Scales, Stream::Mins] {
        let part = separate(dtype, &whole, s);
        if !part.is_empty() {
            any = true;
            streams += zstd::bulk::compress(&part, level)?.len();
        }
    }
    let zs = if any {
        ratio(whole.len(), streams)
    } else {
        ratio(whole.len(), z)
    };
    Ok((ratio(whole.len(), z), zs, ratio(whole.len(), l)))
}

fn rows(
    gguf: &Gguf<'_>,
    classes: &BTreeMap<String, Class>,
    level: i32,
) -> Result<Vec<ClassRow>, Box<dyn Error>> {
    let mut out = Vec::new();
    for (name, c) in classes {
        let dtype = c.dtype.unwrap_or(DType::F32);
        let (zstd, zstd_streams, lz4) = codecs(gguf, name, dtype, level)?;
        let streams = c
            .streams
            .iter()
            .map(|(&s, k)| StreamRow {
                stream: s,
                stored_bits: k.raw_bits,
                entropy_bits: k.entropy(),
                codebook_bits: (k.raw_bits == 16)
                    .then(|| k.codebook_bits / k.symbols().max(1) as f64),
            })
            .collect();
        out.push(ClassRow {
            class: name.clone(),
            dtype: format!("{dtype:?}"),
            tensors: c.tensors,
            bytes: c.bytes,
            streams,
            bound: match dtype {
                _ if !c.streams.is_empty() => Some(c.bound()),
                DType::F32 | DType::F16 => Some(1.0),
                _ => None,
            },
            zstd,
            zstd_streams,
            lz4,
        });
    }
    Ok(out)
}

/// Run the benchmark.
pub fn run(a: &EntropyArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    if !(1..=22).contains(&a.zstd_level) {
        return Err("--zstd-level: 1 to 22".into());
    }
    let bytes = read_file(&a.model, Limit::whole("GGUF model"))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let classes = count(&gguf)?;
    let rows = rows(&gguf, &classes, a.zstd_level)?;
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    let coded = |f: &dyn Fn(&ClassRow) -> f64| {
        total as f64 / rows.iter().map(|r| r.bytes as f64 / f(r)).sum::<f64>()
    };
    // The bound over the classes it was measured on.
    let known: Vec<&ClassRow> = rows.iter().filter(|r| r.bound.is_some()).collect();
    let known_bytes: u64 = known.iter().map(|r| r.bytes).sum();
    let bound = known_bytes as f64
        / known
            .iter()
            .map(|r| r.bytes as f64 / r.bound.unwrap_or(1.0))
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
    let summary = (
        bound,
        coded(&|r| r.zstd),
        coded(&|r| r.zstd_streams),
        coded(&|r| r.lz4),
    );
    if a.json {
        let v = serde_json::json!({
            "model": a.model,
            "zstd_level": a.zstd_level,
            "classes": rows,
            "total_bytes": total,
            "bound": summary.0, "bound_over_bytes": known_bytes, "zstd": summary.1, "zstd_streams": summary.2, "lz4": summary.3,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "lode bench entropy: {} ({:.1} MiB of tensors); bits a symbol: stored / order-0 entropy \
         [/ per-tensor codebook]; ratios are stored bytes over coded bytes",
        a.model.display(),
        total as f64 / 1048576.0
    )?;
    writeln!(
        out,
        "{:<22} {:>5} {:>8} {:>10} {:>22} {:>22} {:>7} {:>6} {:>8} {:>5}",
        "class", "type", "MiB", "values", "scales", "mins", "bound", "zstd", "zstd/str", "lz4"
    )?;
    for r in &rows {
        let cell = |s: Stream| {
            r.streams
                .iter()
                .find(|x| x.stream == s)
                .map_or(String::from("-"), |x| match x.codebook_bits {
                    Some(cb) => format!("{} / {:.2} / {:.2}", x.stored_bits, x.entropy_bits, cb),
                    None => format!("{} / {:.2}", x.stored_bits, x.entropy_bits),
                })
        };
        writeln!(
            out,
            "{:<22} {:>5} {:>8.2} {:>10} {:>22} {:>22} {:>7} {:>5.3}x {:>7.3}x {:>4.3}x",
            r.class,
            r.dtype,
            r.bytes as f64 / 1048576.0,
            cell(Stream::Values),
            cell(Stream::Scales),
            cell(Stream::Mins),
            r.bound.map_or("-".into(), |b| format!("{b:.3}x")),
            r.zstd,
            r.zstd_streams,
            r.lz4
        )?;
    }
    writeln!(
        out,
        "{:<22} {:>5} {:>8.2} {:>10} {:>22} {:>22} {:>6.3}x {:>5.3}x {:>7.3}x {:>4.3}x",
        "all",
        "",
        total as f64 / 1048576.0,
        "",
        "",
        "",
        summary.0,
        summary.1,
        summary.2,
        summary.3
    )?;
    if known_bytes < total {
        writeln!(
            out,
            "(bound over the {:.1} MiB of classes taken apart; \"-\": a type this bench does not \
             split into streams)",
            known_bytes as f64 / 1048576.0
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the real model (skipped without it): every stream codes in at
    /// most its stored bits, the 4-bit values carry nearly all of theirs,
    /// the f16 scales far fewer, and the JSON is whole.
    #[test]
    fn the_real_models_streams_and_bounds() {
        let Some(model) = crate::testutil::real_model() else {
            return;
        };
        let a = EntropyArgs {
            model,
            zstd_level: 1,
            json: true,
        };
        let mut out = Vec::new();
        run(&a, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let classes = v["classes"].as_array().unwrap();
        let ffn = classes
            .iter()
            .find(|c| c["class"] == "ffn_up.weight")
            .unwrap();
        for s in ffn["streams"].as_array().unwrap() {
            let (stored, h) = (
                s["stored_bits"].as_f64().unwrap(),
                s["entropy_bits"].as_f64().unwrap(),
            );
            assert!(h > 0.0 && h <= stored, "{s}");
            if s["stream"] == "values" {
                assert!(h > 3.5, "4-bit codes are nearly uniform: {s}");
            } else {
                assert!(h < 12.0, "f16 scales repeat: {s}");
            }
        }
        let bound = v["bound"].as_f64().unwrap();
        assert!((1.02..1.5).contains(&bound), "{bound}");
        assert!(v["lz4"].as_f64().unwrap() < bound);
        assert_eq!(classes.len(), 11, "SmolLM2's tensor classes");
        // A bad level is refused before any work.
        let bad = EntropyArgs { zstd_level: 0, ..a };
        assert!(run(&bad, &mut Vec::new()).is_err());
    }
}
