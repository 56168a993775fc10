//! An f16 field's codebook section (CODEC.md, kinds 2 and 3): the sorted
//! distinct values with one-byte frequency levels, the blocks' indices as
//! rANS, and values too rare to pay for a table entry stored raw behind an
//! escape entry. The escape threshold is chosen per field by estimated
//! size, at the precision of the kind's probabilities.

use std::collections::{BTreeMap, HashMap};

use lode_kernel::limits::CODEC_MAX_BOOK;

use super::freq::levels;
use super::rans;

/// Highest count a value may have and still be escaped (tried from 0).
const MAX_ESCAPE_COUNT: u64 = 8;

/// The body of a codebook section for the little-endian f16s `gathered`
/// with `prob_bits`-bit probabilities (16 for kind 2, 12 for kind 3), and
/// its flags byte (1: the last entry escapes); `None` when more than
/// `CODEC_MAX_BOOK`, or half of `2^prob_bits`, entries would be needed.
pub fn encode(gathered: &[u8], prob_bits: u32) -> Option<(u8, Vec<u8>)> {
    let v: Vec<u16> = gathered
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut m: BTreeMap<u16, u64> = BTreeMap::new();
    for &x in &v {
        *m.entry(x).or_insert(0) += 1;
    }
    let t = (0..=MAX_ESCAPE_COUNT)
        .filter_map(|t| estimate(&m, t, prob_bits).map(|bits| (t, bits)))
        .min_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    let kept: Vec<(u16, u64)> = m
        .iter()
        .filter(|e| *e.1 > t)
        .map(|(&k, &c)| (k, c))
        .collect();
    let escaped: u64 = m.values().filter(|&&c| c <= t).sum();
    let mut counts: Vec<u64> = kept.iter().map(|e| e.1).collect();
    if escaped > 0 {
        counts.push(escaped);
    }
    let (implied, q, freqs) = levels(&counts, prob_bits);
    let mut body = Vec::new();
    body.extend_from_slice(&(counts.len() as u16).to_le_bytes());
    body.extend_from_slice(&(implied as u16).to_le_bytes());
    let bits = value_bits(kept.iter().map(|e| e.0));
    body.extend_from_slice(&(bits.len() as u32).to_le_bytes());
    body.extend_from_slice(&bits);
    body.extend(
        q.iter()
            .enumerate()
            .filter(|&(i, _)| i != implied)
            .map(|(_, &q)| q),
    );
    let index: HashMap<u16, u16> = kept
        .iter()
        .enumerate()
        .map(|(i, e)| (e.0, i as u16))
        .collect();
    let esc = kept.len() as u16;
    let mut raw = Vec::new();
    let symbols: Vec<u16> = v
        .iter()
        .map(|x| match index.get(x) {
            Some(&i) => i,
            None => {
                raw.extend_from_slice(&x.to_le_bytes());
                esc
            }
        })
        .collect();
    rans::encode(&symbols, &freqs, prob_bits).write(&mut body);
    body.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    body.extend_from_slice(&raw);
    Some((u8::from(escaped > 0), body))
}

/// Estimated bits of the section when values seen at most `t` times are
/// escaped: the symbols' order-0 entropy (a value no likelier than the
/// smallest probability, `2^-prob_bits`, is charged that), the table
/// (gamma gaps and a level a value) and 16 bits an escaped value; `None`
/// over the bounds.
fn estimate(m: &BTreeMap<u16, u64>, t: u64, prob_bits: u32) -> Option<f64> {
    let n: u64 = m.values().sum();
    let escaped: u64 = m.values().filter(|&&c| c <= t).sum();
    let kept = m.values().filter(|&&c| c > t).count() + usize::from(escaped > 0);
    if n == 0 || kept > CODEC_MAX_BOOK || kept > 1 << (prob_bits - 1) {
        return None;
    }
    let floor = (-f64::from(prob_bits)).exp2();
    let h = |c: u64| {
        if c == 0 {
            0.0
        } else {
            -(c as f64) * (c as f64 / n as f64).max(floor).log2()
        }
    };
    let coded: f64 = m.values().filter(|&&c| c > t).map(|&c| h(c)).sum::<f64>() + h(escaped);
    let table = 8.0 * value_bits(m.iter().filter(|e| *e.1 > t).map(|e| *e.0)).len() as f64;
    Some(coded + table + 8.0 * kept as f64 + 16.0 * escaped as f64)
}

/// Sorted `values` as the codebook's bits: the first in 16 bits, then
/// each gap in Elias gamma.
fn value_bits(values: impl Iterator<Item = u16>) -> Vec<u8> {
    let mut bits = BitWriter::default();
    let mut prev = None;
    for v in values {
        match prev {
            None => bits.put(u32::from(v), 16),
            Some(p) => bits.gamma(u32::from(v - p)),
        }
        prev = Some(v);
    }
    bits.bytes
}

/// Bits written least significant first, as the kernel's reader takes
/// them.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    at: usize,
}

impl BitWriter {
    /// The low `n` bits of `v`.
    fn put(&mut self, v: u32, n: u32) {
        for k in 0..n {
            if self.at.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (v >> k) & 1 != 0 {
                *self.bytes.last_mut().expect("a byte") |= 1 << (self.at % 8);
            }
            self.at += 1;
        }
    }

    /// `v` (at least 1) in Elias gamma: as many zeros as bits below its
    /// leading one, the one, then those bits.
    fn gamma(&mut self, v: u32) {
        let z = 31 - v.leading_zeros();
        self.put(0, z);
        self.put(1, 1);
        self.put(v & ((1 << z) - 1), z);
    }
}
