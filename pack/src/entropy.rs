//! How far the quantized weights of a GGUF could be losslessly shrunk: the
//! order-0 entropy of each stream of each tensor class (the library half of
//! `lode bench entropy`, issue 18's "measure first").
//!
//! A block-quantized tensor interleaves streams that code very differently:
//! Q4_1 blocks are an f16 scale, an f16 minimum and 32 four-bit values;
//! Q8_0 blocks an f16 scale and 32 signed bytes. A general-purpose codec
//! sees them mixed; an entropy coder given each stream apart needs about
//! its order-0 entropy per symbol. So each stream's symbols are counted per
//! tensor class (the name without its `blk.N.` prefix: `ffn_down.weight`,
//! `token_embd.weight`) and the bound a class gives is its raw bytes over
//! the sum of its streams' entropies.
//!
//! Scales repeat within a tensor: a per-tensor codebook of the distinct
//! values with fixed-width indices is the cheapest table to decode, so its
//! size is counted too (indices of `ceil(log2 distinct)` bits plus 16 bits
//! per table entry).

use std::collections::{BTreeMap, HashMap, HashSet};

use lode_formats::gguf::Gguf;
use lode_formats::gguf::{Q4_1_BYTES, Q8_0_BYTES, QK};
use lode_formats::DType;
use serde::Serialize;

/// The streams of a block-quantized tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The quantized values (4-bit or 8-bit codes).
    Values,
    /// The per-block f16 scale.
    Scales,
    /// The per-block f16 minimum (Q4_1).
    Mins,
}

/// One stream's counts over a class.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Bits a symbol takes as stored.
    pub raw_bits: u32,
    /// Occurrences of each symbol.
    pub hist: HashMap<u32, u64>,
    /// Bits of per-tensor codebooks (indices and tables), summed.
    pub codebook_bits: f64,
}

impl Counts {
    /// Symbols counted.
    pub fn symbols(&self) -> u64 {
        self.hist.values().sum()
    }

    /// Order-0 entropy, bits per symbol.
    pub fn entropy(&self) -> f64 {
        let n = self.symbols() as f64;
        if n == 0.0 {
            return 0.0;
        }
        self.hist
            .values()
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.log2()
            })
            .sum()
    }
}

/// Every stream of one tensor class.
#[derive(Debug, Clone, Default)]
pub struct Class {
    /// The element type of its tensors (the first seen).
    pub dtype: Option<DType>,
    /// Tensors counted.
    pub tensors: usize,
    /// Bytes as stored.
    pub bytes: u64,
    /// The streams.
    pub streams: BTreeMap<Stream, Counts>,
}

impl Class {
    /// Bytes an order-0 entropy coder per stream needs at best.
    pub fn entropy_bytes(&self) -> f64 {
        self.streams
            .values()
            .map(|c| c.entropy() * c.symbols() as f64 / 8.0)
            .sum()
    }

    /// Stored bytes over [`entropy_bytes`](Self::entropy_bytes): the
    /// lossless bound of order-0 coding (1.0 for nothing counted).
    pub fn bound(&self) -> f64 {
        let e = self.entropy_bytes();
        if e > 0.0 {
            self.bytes as f64 / e
        } else {
            1.0
        }
    }
}

/// Counts every Q4_1 and Q8_0 tensor of `gguf` by class. Other types (the
/// f32 norms) are listed with their bytes but no streams.
pub fn count(gguf: &Gguf<'_>) -> Result<BTreeMap<String, Class>, String> {
    let mut classes: BTreeMap<String, Class> = BTreeMap::new();
    for t in gguf.tensors() {
        let data = gguf.data(&t).map_err(|e| e.to_string())?;
        let c = classes.entry(class_of(t.name)).or_default();
        c.dtype.get_or_insert(t.dtype);
        c.tensors += 1;
        c.bytes += data.len() as u64;
        match t.dtype {
            DType::Q4_1 => count_q4_1(c, data),
            DType::Q8_0 => count_q8_0(c, data),
            _ => {}
        }
    }
    Ok(classes)
}

/// `blk.12.ffn_up.weight` -> `ffn_up.weight`.
pub fn class_of(name: &str) -> String {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) if layer.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
        _ => name.to_string(),
    }
}

fn stream(c: &mut Class, s: Stream, raw_bits: u32) -> &mut Counts {
    let e = c.streams.entry(s).or_default();
    e.raw_bits = raw_bits;
    e
}

/// Adds one tensor's f16 values `v` to `s`, with its codebook's cost.
fn add_f16(c: &mut Class, s: Stream, v: &[u16]) {
    let e = stream(c, s, 16);
    let mut distinct: HashSet<u16> = HashSet::new();
    for &x in v {
        *e.hist.entry(u32::from(x)).or_default() += 1;
        distinct.insert(x);
    }
    let k = distinct.len().max(1) as f64;
    e.codebook_bits += v.len() as f64 * k.log2().ceil() + 16.0 * k;
}

fn f16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn count_q4_1(c: &mut Class, data: &[u8]) {
    let blocks = data.chunks_exact(Q4_1_BYTES);
    let d: Vec<u16> = blocks.clone().map(|b| f16_at(b, 0)).collect();
    let m: Vec<u16> = blocks.clone().map(|b| f16_at(b, 2)).collect();
    add_f16(c, Stream::Scales, &d);
    add_f16(c, Stream::Mins, &m);
    let v = stream(c, Stream::Values, 4);
    for b in blocks {
        for &q in &b[4..4 + QK / 2] {
            *v.hist.entry(u32::from(q & 0x0f)).or_default() += 1;
            *v.hist.entry(u32::from(q >> 4)).or_default() += 1;
        }
    }
}

fn count_q8_0(c: &mut Class, data: &[u8]) {
    let blocks = data.chunks_exact(Q8_0_BYTES);
    let d: Vec<u16> = blocks.clone().map(|b| f16_at(b, 0)).collect();
    add_f16(c, Stream::Scales, &d);
    let v = stream(c, Stream::Values, 8);
    for b in blocks {
        for &q in &b[2..2 + QK] {
            *v.hist.entry(u32::from(q)).or_default() += 1;
        }
    }
}

/// The bytes of stream `s` of a Q4_1 or Q8_0 tensor, separated (values
/// packed as stored, two 4-bit codes a byte), to try a codec on each alone.
pub fn separate(dtype: DType, data: &[u8], s: Stream) -> Vec<u8> {
    let (size, off, len) = match (dtype, s) {
        (DType::Q4_1, Stream::Scales) => (Q4_1_BYTES, 0, 2),
        (DType::Q4_1, Stream::Mins) => (Q4_1_BYTES, 2, 2),
        (DType::Q4_1, Stream::Values) => (Q4_1_BYTES, 4, QK / 2),
        (DType::Q8_0, Stream::Scales) => (Q8_0_BYTES, 0, 2),
        (DType::Q8_0, Stream::Values) => (Q8_0_BYTES, 2, QK),
        _ => return Vec::new(),
    };
    data.chunks_exact(size)
        .flat_map(|b| b[off..off + len].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_drop_the_layer_only() {
        assert_eq!(class_of("blk.12.ffn_up.weight"), "ffn_up.weight");
        assert_eq!(class_of("token_embd.weight"), "token_embd.weight");
        assert_eq!(class_of("blk.x.y"), "blk.x.y");
    }

    #[test]
    fn entropy_of_known_distributions() {
        let mut c = Counts::default();
        assert_eq!(c.entropy(), 0.0);
        for s in 0..16u32 {
            c.hist.insert(s, 10);
        }
        assert!((c.entropy() - 4.0).abs() < 1e-12);
        c.hist.clear();
        c.hist.insert(7, 99);
        assert_eq!(c.entropy(), 0.0);
        c.hist.insert(1, 99);
        assert!((c.entropy() - 1.0).abs() < 1e-12);
    }

    /// A Q4_1 tensor of `blocks` blocks: scale 1.0 or 2.0 alternating, a
    /// constant minimum, values 0..16 cycling.
    fn q4_1(blocks: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..blocks {
            let d: u16 = if i % 2 == 0 { 0x3c00 } else { 0x4000 };
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&0xbc00u16.to_le_bytes());
            for j in 0..16u8 {
                out.push((j % 16) | (((j + 1) % 16) << 4));
            }
        }
        out
    }

    #[test]
    fn q4_1_streams_are_counted_apart() {
        let data = q4_1(8);
        let mut c = Class::default();
        count_q4_1(&mut c, &data);
        let s = &c.streams;
        assert_eq!(s[&Stream::Values].symbols(), 8 * 32);
        assert!((s[&Stream::Values].entropy() - 4.0).abs() < 1e-9);
        assert!((s[&Stream::Scales].entropy() - 1.0).abs() < 1e-9);
        assert_eq!(s[&Stream::Mins].entropy(), 0.0);
        // Two distinct scales: 1-bit indices and a 2-entry table.
        assert_eq!(s[&Stream::Scales].codebook_bits, 8.0 + 32.0);
        c.bytes = data.len() as u64;
        // 8 blocks: 1024 value bits, 8 scale bits, 0 minimum bits.
        assert!((c.entropy_bytes() - (1024.0 + 8.0) / 8.0).abs() < 1e-9);
        assert!(c.bound() > 1.2);
        assert_eq!(separate(DType::Q4_1, &data, Stream::Mins).len(), 16);
        assert_eq!(separate(DType::Q4_1, &data, Stream::Values).len(), 8 * 16);
        assert!(separate(DType::F32, &data, Stream::Values).is_empty());
    }
}
