//! `lode pack --compress`: which of an image's tensors are stored coded
//! by the weight codec, and how much of them.
//!
//! Only a dense layer's FFN matrices (`blk.{L}.ffn_gate`, `ffn_up`,
//! `ffn_down`) are coded: they are most of what a small budget streams
//! every token, and each streams as a unit of its own, which the runtime
//! decodes as the ring hands it out (or once, at load, when the layer stays
//! resident). Attention spans several tensors a unit and is left raw for
//! now; the token embedding and a separate head are read by rows (a row a
//! token, the refined head rows), which a coded unit cannot serve; the
//! norms are f32, which the codec does not take.

use std::time::Instant;

use lode_formats::image::{ImageBuilder, TensorCodec, WriteError};
use lode_formats::DType;
use lode_kernel::codec::{decode_chain, header, Scratch, Verify, VERSION, VERSION_1};

use crate::codec::{encode_chain, Coding};

/// How `--compress` writes a coded tensor's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// Units a tensor, back to back (a chain): that many threads decode it
    /// at once.
    pub pieces: usize,
    /// The codec version they are written in: [`VERSION`] (image format
    /// 1.6), or [`VERSION_1`] for readers of formats 1.4 and 1.5.
    pub version: u8,
}

impl Units {
    /// `pieces` units of the current codec version.
    pub fn new(pieces: usize) -> Units {
        Units {
            pieces,
            version: VERSION,
        }
    }
}

/// What `--compress` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Compress {
    /// Nothing: every tensor raw (the default).
    None,
    /// The f16 scales and minimums; the quantized values raw (the fast
    /// end: about 9% fewer bytes for SmolLM2's FFN, decoded at about 1.8
    /// GB/s a core).
    Floats,
    /// Every field that codes smaller (about 12% fewer, decoded at about
    /// 0.4 GB/s a core).
    All,
    /// Whichever of `all`, `floats` and nothing the device's read rate
    /// pays for, by the decode speeds measured while packing
    /// ([`choose`]).
    Auto,
}

/// The share of the device's read time `--compress auto` lets decoding
/// take (at one thread's decode speed): the rest is for the model's
/// compute, which a slow device leaves waiting and a fast one does not.
/// Measured on SmolLM2 at a third of the model (`scripts/bench-codec`,
/// two units a matrix; one thread decodes the FFN's floats at about 1.85
/// GB/s and every field at about 0.42, `lode bench codec`): on a 250 MB/s
/// eMMC model (`fake:emmc51,paced`), where `floats` decodes in about 15%
/// of the read time and `all` in about 70%, both win what they save in
/// bytes (1.044x and 1.061x); on this machine's ~1.3 GB/s disk (about 75%
/// and 350%) both lose (0.81x and 0.52x). Half sits below every share
/// measured to lose, erring towards raw (it gives up `all`'s extra 1.7%
/// on the eMMC): it picks `floats` for that eMMC.
pub const AUTO_DECODE_SHARE: f64 = 0.5;

/// What `--compress auto` decided and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoChoice {
    /// The coding chosen (`None`, `Floats` or `All`).
    pub chosen: Compress,
    /// The device read rate it was chosen for, bytes a second.
    pub read_bytes_per_sec: u64,
    /// Measured decode speed of each coding, bytes of output a second.
    pub floats_decode: f64,
    /// The same for `all`.
    pub all_decode: f64,
    /// Coded over raw bytes of the FFN matrices, `floats` and `all`.
    pub floats_ratio: f64,
    /// The same for `all`.
    pub all_ratio: f64,
}

/// `--compress auto`'s rule: the most compact coding whose decoding takes
/// at most [`AUTO_DECODE_SHARE`] of the time the device spends reading
/// it. Reading a coded matrix of `ratio` times its bytes takes `ratio /
/// read` seconds a decoded byte; decoding it takes `1 / decode`. The ring
/// decodes a unit while the device reads the next ones, so decoding that
/// fits in the processor's wait costs nothing and the bytes saved are time
/// saved; decoding that does not fit delays every token.
pub fn choose(read_bytes_per_sec: u64, speeds: [(Compress, f64, f64); 2]) -> Compress {
    let read = read_bytes_per_sec.max(1) as f64;
    speeds
        .into_iter()
        .filter(|&(_, decode, ratio)| {
            decode > 0.0 && 1.0 / decode <= AUTO_DECODE_SHARE * ratio / read
        })
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map_or(Compress::None, |(c, _, _)| c)
}

/// What coding an image's tensors did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coded {
    /// Tensors coded.
    pub tensors: usize,
    /// Their bytes raw.
    pub raw_bytes: u64,
    /// Their bytes coded.
    pub coded_bytes: u64,
    /// Whether a tensor was coded as several units (format 1.5).
    pub chained: bool,
    /// Whether the units are of the codec's version 2 (format 1.6).
    pub v2: bool,
}

impl Coded {
    /// Fraction of the coded tensors' raw bytes saved.
    pub fn saved(&self) -> f64 {
        1.0 - self.coded_bytes as f64 / self.raw_bytes.max(1) as f64
    }
}

/// Whether `--compress` codes tensor `name`: a dense layer's FFN matrix
/// (the caller packs dense layers only).
pub fn is_coded_tensor(name: &str) -> bool {
    name.starts_with("blk.")
        && [".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Codes the tensors of `b` that `how` selects, each as a chain of
/// `units.pieces` units (so that many threads decode it) of the codec's
/// `units.version` (format 1.6 for version 2; for version 1, 1.4 with one
/// unit a tensor, else 1.5); a tensor that would not shrink stays raw.
/// `read_bytes_per_sec` is the device's read rate, which only
/// [`Compress::Auto`] uses (and reports in the returned choice).
pub fn compress(
    b: &mut ImageBuilder<'_>,
    how: Compress,
    units: Units,
    read_bytes_per_sec: u64,
) -> Result<(Coded, Option<AutoChoice>), WriteError> {
    let (coding, auto) = match how {
        Compress::None => return Ok((Coded::default(), None)),
        Compress::Floats => (Coding::FloatsOnly, None),
        Compress::All => (Coding::Smallest, None),
        Compress::Auto => {
            let a = measure(b, units, read_bytes_per_sec)?;
            match a.chosen {
                Compress::Floats => (Coding::FloatsOnly, Some(a)),
                Compress::All => (Coding::Smallest, Some(a)),
                _ => return Ok((Coded::default(), Some(a))),
            }
        }
    };
    let (mut tensors, mut chained) = (0, false);
    let (raw_bytes, coded_bytes) = b.code_tensors(|name, dtype, data| {
        let e = code_one(name, dtype, data, coding, units)?;
        tensors += 1;
        chained |= header(&e).is_ok_and(|h| h.unit_len < e.len());
        Some(e)
    })?;
    let coded = Coded {
        tensors,
        raw_bytes,
        coded_bytes,
        chained,
        v2: tensors > 0 && units.version != VERSION_1,
    };
    Ok((coded, auto))
}

/// The units tensor `name` codes to under `coding` (a chain of
/// `units.pieces`, which that many threads decode at once), if it is one
/// `--compress` codes and coding shrinks it.
fn code_one(
    name: &str,
    dtype: DType,
    data: &[u8],
    coding: Coding,
    shape: Units,
) -> Option<Vec<u8>> {
    if !is_coded_tensor(name) || !TensorCodec::takes(dtype) {
        return None;
    }
    let units = encode_chain(dtype, data, coding, shape.pieces, shape.version).ok()?;
    (units.len() < data.len()).then_some(units)
}

/// Codes every FFN matrix of `b` both ways (leaving `b` as it is), times
/// one decode of each on this thread, and chooses by [`choose`].
fn measure(
    b: &mut ImageBuilder<'_>,
    units: Units,
    read_bytes_per_sec: u64,
) -> Result<AutoChoice, WriteError> {
    let mut scratch = Box::<Scratch>::default();
    let mut stats = [(0u64, 0u64, 0f64); 2]; // raw bytes, coded bytes, seconds
    b.code_tensors(|name, dtype, data| {
        for (k, coding) in [Coding::FloatsOnly, Coding::Smallest]
            .into_iter()
            .enumerate()
        {
            let Some(unit) = code_one(name, dtype, data, coding, units) else {
                continue;
            };
            let mut out = vec![0u8; data.len()];
            let t = Instant::now();
            let ok = decode_chain(&mut scratch, Verify::Trusted, &unit, &mut out).is_ok();
            let secs = t.elapsed().as_secs_f64();
            if ok {
                stats[k].0 += data.len() as u64;
                stats[k].1 += unit.len() as u64;
                stats[k].2 += secs;
            }
        }
        None
    })?;
    let speed = |(raw, _, secs): (u64, u64, f64)| if secs > 0.0 { raw as f64 / secs } else { 0.0 };
    let ratio = |(raw, coded, _): (u64, u64, f64)| coded as f64 / raw.max(1) as f64;
    let (floats_decode, all_decode) = (speed(stats[0]), speed(stats[1]));
    let (floats_ratio, all_ratio) = (ratio(stats[0]), ratio(stats[1]));
    let chosen = choose(
        read_bytes_per_sec,
        [
            (Compress::Floats, floats_decode, floats_ratio),
            (Compress::All, all_decode, all_ratio),
        ],
    );
    Ok(AutoChoice {
        chosen,
        read_bytes_per_sec,
        floats_decode,
        all_decode,
        floats_ratio,
        all_ratio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_formats::image::{ArchTag, Image, ModelGeometry};
    use lode_kernel::codec::decode;
    use lode_kernel::rng::SplitMix64;

    fn q4_1_blocks(blocks: usize, seed: u64) -> Vec<u8> {
        let mut r = SplitMix64::new(seed);
        let mut out = vec![0u8; blocks * 20];
        for b in out.chunks_exact_mut(20) {
            // Scales and minimums from a narrow range, as a model's are.
            let d = 0x2400u16 + (r.next_u64() % 40) as u16;
            let m = 0xA400u16 + (r.next_u64() % 30) as u16;
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&m.to_le_bytes());
            for v in &mut b[4..] {
                *v = r.next_u64() as u8;
            }
        }
        out
    }

    /// `--compress floats` codes an FFN matrix and leaves the embedding,
    /// a norm, attention and `--compress none` alone; the coded tensor decodes to the
    /// raw bytes.
    #[test]
    fn layer_matrices_are_coded_and_decode_back() {
        let (attn, embd) = (q4_1_blocks(64 * 8, 1), q4_1_blocks(64 * 8, 2));
        let build = |how| {
            let mut b = ImageBuilder::new(ModelGeometry {
                arch: ArchTag::new("llama").unwrap(),
                layers: 0,
                hidden: 2048,
                ffn: 4,
                heads: 1,
                kv_heads: 1,
                head_dim: 64,
                vocab: 8,
                context: 64,
                rope_base: 10_000.0,
                rms_eps: 1e-5,
                fingerprint: 1,
            });
            b.add_tensor("blk.0.ffn_up.weight", DType::Q4_1, &[2048, 8], attn.clone())
                .unwrap();
            b.add_tensor("token_embd.weight", DType::Q4_1, &[2048, 8], embd.clone())
                .unwrap();
            b.add_tensor("blk.0.attn_norm.weight", DType::F32, &[4], vec![0u8; 16])
                .unwrap();
            b.add_tensor("blk.0.attn_q.weight", DType::Q4_1, &[2048, 8], embd.clone())
                .unwrap();
            let (c, _) = compress(&mut b, how, Units::new(1), 1 << 30).unwrap();
            (b.to_bytes().unwrap(), c)
        };
        let (plain, none) = build(Compress::None);
        assert_eq!(none, Coded::default());
        assert_eq!(Image::parse(&plain).unwrap().header().minor, 0);
        let (bytes, c) = build(Compress::Floats);
        assert_eq!(c.tensors, 1);
        assert!(c.saved() > 0.05, "{c:?}");
        let img = Image::parse(&bytes).unwrap();
        for t in img.tensors() {
            let coded = t.name == "blk.0.ffn_up.weight";
            assert_eq!(t.codec == TensorCodec::ChainV2, coded, "{}", t.name);
        }
        let (_, t) = img.tensor_by_name("blk.0.ffn_up.weight").unwrap();
        assert_eq!(t.length, c.coded_bytes);
        let at = t.offset as usize;
        let mut out = vec![0u8; attn.len()];
        decode(&bytes[at..at + t.length as usize], &mut out).unwrap();
        assert_eq!(out, attn);
    }

    /// `auto` codes `all` on a slow device, `floats` on a middling one and
    /// nothing on a fast one, by the share of the read time decoding may
    /// take.
    #[test]
    fn auto_chooses_by_read_rate_and_decode_speed() {
        // Decode speeds and coded shares as measured on SmolLM2.
        let speeds = [
            (Compress::Floats, 1.5e9, 0.906),
            (Compress::All, 0.4e9, 0.878),
        ];
        // all: 1/0.4e9 <= 0.5 * 0.878 / read  <=>  read <= 175.6 MB/s.
        assert_eq!(choose(175_000_000, speeds), Compress::All);
        // floats: read <= 0.5 * 0.906 * 1.5e9 = 679.5 MB/s.
        assert_eq!(choose(250_000_000, speeds), Compress::Floats);
        assert_eq!(choose(679_000_000, speeds), Compress::Floats);
        assert_eq!(choose(680_000_000, speeds), Compress::None);
        assert_eq!(choose(1_280_000_000, speeds), Compress::None);
        // An unmeasured speed never chooses a coding.
        assert_eq!(choose(1, [(Compress::Floats, 0.0, 0.9); 2]), Compress::None);
    }
}
