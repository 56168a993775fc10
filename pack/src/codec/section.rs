//! One field's section: the field's bytes gathered from every block, coded
//! the cheapest way the format allows (raw, byte rANS, or an f16 codebook),
//! with the bytes it took for the bench's per-stream report.

use std::collections::{BTreeMap, HashMap};

use lode_kernel::codec::{Field, SectionKind, PROB_TOTAL, SECTION_HEADER_LEN};
use lode_kernel::limits::{CODEC_BOOK_PROB_BITS, CODEC_MAX_BOOK, CODEC_PROB_BITS};

use super::freq::{levels, normalize};
use super::rans;

/// A coded section and what it is.
pub struct Section {
    /// How it is coded.
    pub kind: SectionKind,
    /// Its bytes, header included.
    pub bytes: Vec<u8>,
}

/// Codes field `f` of every `block`-byte block of `data`.
pub fn encode(f: &Field, block: usize, data: &[u8]) -> Section {
    let gathered: Vec<u8> = data
        .chunks_exact(block)
        .flat_map(|b| b[f.offset..f.offset + f.width].iter().copied())
        .collect();
    let raw = frame(SectionKind::Raw, f, 0, gathered.clone());
    let coded = if f.f16 {
        f16_book(f, &gathered)
    } else {
        Some(byte_rans(f, &gathered))
    };
    match coded {
        Some(c) if c.bytes.len() < raw.bytes.len() => c,
        _ => raw,
    }
}

/// A section header and `body`.
fn frame(kind: SectionKind, f: &Field, nsym: usize, body: Vec<u8>) -> Section {
    let mut bytes = Vec::with_capacity(SECTION_HEADER_LEN + body.len());
    bytes.extend_from_slice(&[kind as u8, f.width as u8, 0, (nsym % 256) as u8]);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    Section { kind, bytes }
}

fn table_bytes(freqs: &[u32], out: &mut Vec<u8>) {
    for &f in freqs {
        // A byte table's frequencies are at most PROB_TOTAL = 2^12.
        out.extend_from_slice(&(f as u16).to_le_bytes());
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
    let freqs = normalize(&counts[..nsym], PROB_TOTAL);
    let mut body = Vec::new();
    table_bytes(&freqs, &mut body);
    rans::encode(v, &freqs, CODEC_PROB_BITS).write(&mut body);
    frame(SectionKind::Bytes, f, nsym, body)
}

/// Each f16 an rANS-coded index into the sorted codebook of the field's
/// distinct values; `None` when there are more than `CODEC_MAX_BOOK`.
fn f16_book(f: &Field, gathered: &[u8]) -> Option<Section> {
    let mut m: BTreeMap<u16, u64> = BTreeMap::new();
    for b in gathered.chunks_exact(2) {
        *m.entry(u16::from_le_bytes([b[0], b[1]])).or_insert(0) += 1;
    }
    if m.is_empty() || m.len() > CODEC_MAX_BOOK {
        return None;
    }
    let index: HashMap<u16, u16> = m.keys().enumerate().map(|(i, &v)| (v, i as u16)).collect();
    let counts: Vec<u64> = m.values().copied().collect();
    let (implied, q, freqs) = levels(&counts);
    let mut body = Vec::new();
    body.extend_from_slice(&(m.len() as u16).to_le_bytes());
    body.extend_from_slice(&(implied as u16).to_le_bytes());
    let mut bits = BitWriter::default();
    let mut prev = None;
    for &v in m.keys() {
        match prev {
            None => bits.put(u32::from(v), 16),
            Some(p) => bits.gamma(u32::from(v - p)),
        }
        prev = Some(v);
    }
    body.extend_from_slice(&(bits.bytes.len() as u32).to_le_bytes());
    body.extend_from_slice(&bits.bytes);
    body.extend(
        q.iter()
            .enumerate()
            .filter(|&(i, _)| i != implied)
            .map(|(_, &q)| q),
    );
    let symbols: Vec<u16> = gathered
        .chunks_exact(2)
        .map(|b| index[&u16::from_le_bytes([b[0], b[1]])])
        .collect();
    rans::encode(&symbols, &freqs, CODEC_BOOK_PROB_BITS).write(&mut body);
    Some(frame(SectionKind::F16, f, 0, body))
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
