//! One field's section: the field's bytes gathered from every block, coded
//! the cheapest way the format allows (raw, byte rANS, or an f16 split),
//! with the bytes it took for the bench's per-stream report.

use std::collections::BTreeMap;

use lode_kernel::codec::{Field, SectionKind, SECTION_HEADER_LEN};
use lode_kernel::limits::CODEC_SYMBOLS;

use super::freq::{coded_bits, normalize};
use super::rans;

/// A coded section and what it is.
pub struct Section {
    /// How it is coded.
    pub kind: SectionKind,
    /// Low bits an f16 split stores raw.
    pub shift: u8,
    /// Its bytes, header included.
    pub bytes: Vec<u8>,
}

/// Codes field `f` of every `block`-byte block of `data`.
pub fn encode(f: &Field, block: usize, data: &[u8]) -> Section {
    let gathered: Vec<u8> = data
        .chunks_exact(block)
        .flat_map(|b| b[f.offset..f.offset + f.width].iter().copied())
        .collect();
    let raw = frame(SectionKind::Raw, f, 0, 0, gathered.clone());
    let coded = if f.f16 {
        f16_split(f, &gathered)
    } else {
        Some(byte_rans(f, &gathered))
    };
    match coded {
        Some(c) if c.bytes.len() < raw.bytes.len() => c,
        _ => raw,
    }
}

/// A section header and `body`.
fn frame(kind: SectionKind, f: &Field, shift: u8, nsym: usize, body: Vec<u8>) -> Section {
    let mut bytes = Vec::with_capacity(SECTION_HEADER_LEN + body.len());
    bytes.extend_from_slice(&[kind as u8, f.width as u8, shift, (nsym % 256) as u8]);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    Section { kind, shift, bytes }
}

fn table_bytes(freqs: &[u16], out: &mut Vec<u8>) {
    for f in freqs {
        out.extend_from_slice(&f.to_le_bytes());
    }
}

/// Every byte a symbol, the table trimmed after the highest byte seen.
fn byte_rans(f: &Field, v: &[u8]) -> Section {
    let mut counts = [0u64; 256];
    for &b in v {
        counts[usize::from(b)] += 1;
    }
    let nsym = counts.iter().rposition(|&c| c > 0).map_or(1, |i| i + 1);
    if v.is_empty() {
        counts[0] = 1;
    }
    let freqs = normalize(&counts[..nsym]);
    let mut body = Vec::new();
    table_bytes(&freqs, &mut body);
    rans::encode(v, &freqs).write(&mut body);
    frame(SectionKind::Bytes, f, 0, nsym, body)
}

/// The f16 values' high parts above `shift` bits and their counts.
fn high_counts(v: &[u16], shift: u32) -> BTreeMap<u16, u64> {
    let mut m = BTreeMap::new();
    for &x in v {
        *m.entry(x >> shift).or_insert(0u64) += 1;
    }
    m
}

/// The shift whose split codes smallest (estimated from the tables), with
/// at most `CODEC_SYMBOLS` distinct high parts; `None` if no shift has so
/// few.
fn best_shift(v: &[u16]) -> Option<u32> {
    (0..16u32)
        .filter_map(|s| {
            let m = high_counts(v, s);
            if m.len() > CODEC_SYMBOLS {
                return None;
            }
            let counts: Vec<u64> = m.values().copied().collect();
            let bits = coded_bits(&counts, &normalize(&counts))
                + (v.len() as f64) * f64::from(s)
                + 32.0 * m.len() as f64;
            Some((s, bits))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}

/// Each f16 as a rANS-coded index into the map of high parts plus raw low
/// bits.
fn f16_split(f: &Field, gathered: &[u8]) -> Option<Section> {
    let v: Vec<u16> = gathered
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    if v.is_empty() {
        return None;
    }
    let shift = best_shift(&v)?;
    let m = high_counts(&v, shift);
    let index: BTreeMap<u16, u8> = m.keys().enumerate().map(|(i, &h)| (h, i as u8)).collect();
    let counts: Vec<u64> = m.values().copied().collect();
    let freqs = normalize(&counts);
    let symbols: Vec<u8> = v.iter().map(|x| index[&(x >> shift)]).collect();
    let mut body = Vec::new();
    for h in m.keys() {
        body.extend_from_slice(&h.to_le_bytes());
    }
    table_bytes(&freqs, &mut body);
    rans::encode(&symbols, &freqs).write(&mut body);
    let bits = low_bits(&v, shift);
    body.extend_from_slice(&(bits.len() as u32).to_le_bytes());
    body.extend_from_slice(&bits);
    Some(frame(SectionKind::F16, f, shift as u8, m.len(), body))
}

/// The low `shift` bits of each value, packed least significant first.
fn low_bits(v: &[u16], shift: u32) -> Vec<u8> {
    let mut out = vec![0u8; (v.len() * shift as usize).div_ceil(8)];
    let mut at = 0usize;
    for &x in v {
        for k in 0..shift as usize {
            if (x >> k) & 1 != 0 {
                out[(at + k) / 8] |= 1 << ((at + k) % 8);
            }
        }
        at += shift as usize;
    }
    out
}
