//! `lode bench codec`: what the kernel's weight codec achieves on a GGUF
//! (issue 18's lossless numbers, side by side in one run). Every quantized
//! tensor is coded as one unit and decoded back (checked byte for byte);
//! for each tensor class and stream the achieved bits a symbol (sections'
//! bytes, tables and headers included) against the stream's order-0
//! entropy from `lode bench entropy`; the whole model's tensor bytes raw
//! and coded (float tensors count as stored); and single-thread decode
//! speed in MB/s of output, the best of `--reps` passes over every unit;
//! then the same with only the f16 fields coded (`Coding::FloatsOnly`),
//! the fast end of the trade a speed-adaptive packer chooses from; and
//! that last decode on the FFN matrices alone, in the units one thread
//! decodes at run time, with the codec's version 2 units beside the
//! version 1 units older images hold.

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::gguf::Gguf;
use lode_formats::input::{read_file, Limit};
use lode_formats::DType;
use lode_kernel::codec::{decode_with, Role, Scratch, Verify};
use lode_kernel::limits::CODEC_PIECES;
use lode_pack::codec::{encode_with, Coding, Encoded};
use lode_pack::entropy::{class_of, count, separate, Stream};
use serde::Serialize;

mod speed;

use speed::{code_floats, ffn_pieces, speed, Unit};

/// Arguments of `lode bench codec`.
#[derive(clap::Args, Debug)]
pub struct CodecArgs {
    /// The GGUF model.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Timed decode passes over every unit (the best is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One stream of one class, as reported.
#[derive(Debug, Serialize)]
struct StreamRow {
    stream: Stream,
    symbols: u64,
    stored_bits: u32,
    /// The class's order-0 entropy, bits a symbol (the bound).
    entropy_bits: f64,
    /// Each tensor's own order-0 entropy, averaged over the class's
    /// symbols: what a unit of one tensor could reach with free tables.
    tensor_entropy_bits: f64,
    /// Coded bits a symbol, tables and section headers included.
    coded_bits: f64,
    /// `coded_bits / entropy_bits - 1` (0.02 is the 2%).
    over_bound: f64,
}

/// One class, as reported.
#[derive(Debug, Serialize)]
struct ClassRow {
    class: String,
    dtype: String,
    bytes: u64,
    coded_bytes: u64,
    ratio: f64,
    /// Stored bytes over the order-0 entropy of its streams.
    bound: f64,
    streams: Vec<StreamRow>,
}

fn stream_of(r: Role) -> Option<Stream> {
    match r {
        Role::Scale => Some(Stream::Scales),
        Role::Min => Some(Stream::Mins),
        Role::Values => Some(Stream::Values),
        _ => None,
    }
}

/// Per class: coded bytes in all, and per stream the coded bytes and the
/// sum over its tensors of each tensor's own order-0 entropy, in bits.
type Coded = BTreeMap<String, (u64, BTreeMap<Stream, (u64, f64)>)>;

/// Bits the order-0 entropy of one tensor's stream `s` gives: its symbols
/// are 4-bit values (Q4 types), bytes (Q8_0) or the f16 values.
fn tensor_entropy_bits(dtype: DType, data: &[u8], s: Stream) -> f64 {
    let bytes = separate(dtype, data, s);
    let mut hist: HashMap<u32, u64> = HashMap::new();
    match (s, dtype) {
        (Stream::Values, DType::Q8_0) => bytes
            .iter()
            .for_each(|&b| *hist.entry(u32::from(b)).or_default() += 1),
        (Stream::Values, _) => bytes.iter().for_each(|&b| {
            *hist.entry(u32::from(b & 15)).or_default() += 1;
            *hist.entry(u32::from(b >> 4)).or_default() += 1;
        }),
        _ => bytes.chunks_exact(2).for_each(|b| {
            *hist
                .entry(u32::from(u16::from_le_bytes([b[0], b[1]])))
                .or_default() += 1
        }),
    }
    let n: u64 = hist.values().sum();
    hist.values()
        .map(|&c| -(c as f64) * (c as f64 / n as f64).log2())
        .sum()
}

/// Codes one tensor as `coding` says, checking that it decodes back to its
/// bytes; `None` for a type the codec does not take.
pub(super) fn code_one(
    name: &str,
    dtype: DType,
    data: &[u8],
    coding: Coding,
) -> Result<Option<Encoded>, Box<dyn Error>> {
    let Ok(e) = encode_with(dtype, data, coding) else {
        return Ok(None);
    };
    let mut out = vec![0u8; data.len()];
    decode_with(&mut Scratch::default(), Verify::Crc, &e.bytes, &mut out)?;
    if out != data {
        return Err(format!("{name}: decoded bytes differ").into());
    }
    Ok(Some(e))
}

/// Codes every tensor the smallest way: the units, each class's coded
/// bytes per stream and in all.
fn code_all(gguf: &Gguf<'_>) -> Result<(Vec<Unit>, Coded), Box<dyn Error>> {
    let mut units = Vec::new();
    let mut classes = Coded::new();
    for t in gguf.tensors() {
        let data = gguf.data(&t)?;
        let c = classes.entry(class_of(t.name)).or_default();
        let Some(e) = code_one(t.name, t.dtype, data, Coding::Smallest)? else {
            c.0 += data.len() as u64;
            continue;
        };
        c.0 += e.bytes.len() as u64;
        for s in &e.sections {
            if let Some(st) = stream_of(s.role) {
                let e = c.1.entry(st).or_default();
                e.0 += s.coded_bytes as u64;
                e.1 += tensor_entropy_bits(t.dtype, data, st);
            }
        }
        units.push(Unit {
            coded: e.bytes,
            len: data.len(),
        });
    }
    Ok((units, classes))
}

fn rows(gguf: &Gguf<'_>, coded: &Coded) -> Result<Vec<ClassRow>, Box<dyn Error>> {
    let classes = count(gguf)?;
    let mut out = Vec::new();
    for (name, c) in &classes {
        let (cb, per) = coded.get(name).cloned().unwrap_or_default();
        let streams = c
            .streams
            .iter()
            .map(|(&s, k)| {
                let (bytes, tensor_bits) = per.get(&s).copied().unwrap_or_default();
                let bits = bytes as f64 * 8.0 / k.symbols().max(1) as f64;
                StreamRow {
                    stream: s,
                    symbols: k.symbols(),
                    stored_bits: k.raw_bits,
                    entropy_bits: k.entropy(),
                    tensor_entropy_bits: tensor_bits / k.symbols().max(1) as f64,
                    coded_bits: bits,
                    over_bound: bits / k.entropy().max(f64::MIN_POSITIVE) - 1.0,
                }
            })
            .collect();
        out.push(ClassRow {
            class: name.clone(),
            dtype: c.dtype.map_or("?".into(), |d| d.name().to_string()),
            bytes: c.bytes,
            coded_bytes: cb,
            ratio: c.bytes as f64 / cb.max(1) as f64,
            bound: c.bound(),
            streams,
        });
    }
    Ok(out)
}

/// Run the benchmark.
pub fn run(a: &CodecArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let bytes = read_file(&a.model, Limit::whole("GGUF model"))?;
    let gguf = Gguf::parse(&bytes).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let (units, coded) = code_all(&gguf)?;
    let rows = rows(&gguf, &coded)?;
    let raw: u64 = rows.iter().map(|r| r.bytes).sum();
    let cod: u64 = rows.iter().map(|r| r.coded_bytes).sum();
    let (crc, crc_cpu) = speed(&units, a.reps, Verify::Crc)?;
    let (trusted, trusted_cpu) = speed(&units, a.reps, Verify::Trusted)?;
    let shrink = 1.0 - cod as f64 / raw.max(1) as f64;
    let (floats, fcod) = code_floats(&gguf)?;
    let (fast, fast_cpu) = speed(&floats, a.reps, Verify::Trusted)?;
    let fast_shrink = 1.0 - fcod as f64 / raw.max(1) as f64;
    let (ffn_v2, ffn_v1) = ffn_pieces(&gguf)?;
    let (v2, v2_cpu) = speed(&ffn_v2, a.reps, Verify::Trusted)?;
    let (v1, v1_cpu) = speed(&ffn_v1, a.reps, Verify::Trusted)?;
    if a.json {
        let v = serde_json::json!({
            "model": a.model, "classes": rows, "raw_bytes": raw, "coded_bytes": cod,
            "ratio": raw as f64 / cod.max(1) as f64, "shrink": shrink, "reps": a.reps,
            "decode_mb_s": crc, "decode_trusted_mb_s": trusted,
            "decode_cpu_mb_s": crc_cpu, "decode_trusted_cpu_mb_s": trusted_cpu,
            "floats_only": {
                "coded_bytes": fcod, "ratio": raw as f64 / fcod.max(1) as f64,
                "shrink": fast_shrink, "decode_trusted_mb_s": fast,
                "decode_trusted_cpu_mb_s": fast_cpu,
            },
            "ffn_floats_pieces": {
                "units": ffn_v2.len(), "pieces_a_matrix": CODEC_PIECES,
                "v2_decode_trusted_mb_s": v2, "v2_decode_trusted_cpu_mb_s": v2_cpu,
                "v1_decode_trusted_mb_s": v1, "v1_decode_trusted_cpu_mb_s": v1_cpu,
            },
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    table(out, a, &rows)?;
    writeln!(
        out,
        "all tensors: {raw} bytes -> {cod} coded ({:.4}x, {:.2}% fewer bytes to stream)",
        raw as f64 / cod.max(1) as f64,
        100.0 * shrink
    )?;
    let per_cpu = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    writeln!(
        out,
        "decode, one thread, best of {} passes over every unit, MB/s of output: {crc:.0} wall \
         ({} per CPU-second) with the CRC32C check, {trusted:.0} wall ({} per CPU-second) trusted \
         (no CRC)",
        a.reps.max(1),
        per_cpu(crc_cpu),
        per_cpu(trusted_cpu)
    )?;
    writeln!(
        out,
        "scales and minimums only (values raw): {fcod} coded ({:.4}x, {:.2}% fewer), decode \
         {fast:.0} MB/s wall ({} per CPU-second) trusted",
        raw as f64 / fcod.max(1) as f64,
        100.0 * fast_shrink,
        per_cpu(fast_cpu)
    )?;
    writeln!(
        out,
        "FFN matrices, scales and minimums only, in {CODEC_PIECES} units a matrix (one thread's \
         share): decode {v2:.0} MB/s wall ({} per CPU-second) with version 2 units (one-lookup \
         codebooks), {v1:.0} MB/s ({} per CPU-second) with version 1 units (16-bit codebooks), \
         trusted: {:.2}x",
        per_cpu(v2_cpu),
        per_cpu(v1_cpu),
        v2 / v1.max(f64::MIN_POSITIVE)
    )?;
    Ok(())
}

fn table(out: &mut dyn Write, a: &CodecArgs, rows: &[ClassRow]) -> Result<(), Box<dyn Error>> {
    writeln!(
        out,
        "lode bench codec: {}; per stream, bits a symbol: coded / the class's order-0 entropy (the \
         bound) / its tensors' own (+% coded over the bound); \
         ratios are stored over coded bytes",
        a.model.display()
    )?;
    writeln!(
        out,
        "{:<22} {:>5} {:>8} {:>29} {:>29} {:>29} {:>7} {:>7}",
        "class", "type", "MiB", "values", "scales", "mins", "ratio", "bound"
    )?;
    for r in rows {
        let cell = |s: Stream| {
            r.streams
                .iter()
                .find(|x| x.stream == s)
                .map_or("-".into(), |x| {
                    format!(
                        "{:.2} / {:.2} / {:.2} ({:+.1}%)",
                        x.coded_bits,
                        x.entropy_bits,
                        x.tensor_entropy_bits,
                        100.0 * x.over_bound
                    )
                })
        };
        writeln!(
            out,
            "{:<22} {:>5} {:>8.2} {:>29} {:>29} {:>29} {:>6.3}x {:>6.3}x",
            r.class,
            r.dtype,
            r.bytes as f64 / 1048576.0,
            cell(Stream::Values),
            cell(Stream::Scales),
            cell(Stream::Mins),
            r.ratio,
            r.bound
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the real model (skipped without it): every tensor round-trips
    /// (`run` checks), the model shrinks by the 10%, the value
    /// streams code within 2% of their order-0 bound, and the JSON is whole.
    #[test]
    fn the_real_models_codec_numbers() {
        let Some(model) = crate::testutil::real_model() else {
            return;
        };
        let a = CodecArgs {
            model,
            reps: 1,
            json: true,
        };
        let mut out = Vec::new();
        run(&a, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["shrink"].as_f64().unwrap() >= 0.10, "{}", v["shrink"]);
        assert!(v["decode_mb_s"].as_f64().unwrap() > 0.0);
        // Coding the f16 fields alone keeps most of the gain (7.0%).
        let floats = v["floats_only"]["shrink"].as_f64().unwrap();
        assert!(
            (0.06..v["shrink"].as_f64().unwrap()).contains(&floats),
            "{floats}"
        );
        for c in v["classes"].as_array().unwrap() {
            for s in c["streams"].as_array().unwrap() {
                let over = s["over_bound"].as_f64().unwrap();
                if s["stream"] == "values" {
                    assert!(over < 0.02, "{} {s}", c["class"]);
                }
                assert!(over < 0.5, "{} {s}", c["class"]);
            }
        }
    }
}
