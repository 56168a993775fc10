//! One field's section: the field's bytes gathered from every block, coded
//! the cheapest way the format allows (raw, byte rANS, or an f16 codebook:
//! at 12-bit probabilities, which decode in one lookup, unless the field
//! has more distinct values than such a table holds), with the bytes it
//! took for the bench's per-stream report.

use lode_kernel::codec::{Field, SectionKind, PROB_TOTAL, SECTION_HEADER_LEN};
use lode_kernel::limits::{CODEC_BOOK_PROB_BITS, CODEC_PROB_BITS};

use super::freq::normalize;
use super::{book, rans};

/// A coded section and what it is.
pub struct Section {
    /// How it is coded.
    pub kind: SectionKind,
    /// Its bytes, header included.
    pub bytes: Vec<u8>,
}

/// Codes field `f` of every `block`-byte block of `data`, or stores it raw
/// when `code` is false; `direct` allows the one-lookup codebook (a
/// version 2 unit's).
pub fn encode(f: &Field, block: usize, data: &[u8], code: bool, direct: bool) -> Section {
    let gathered: Vec<u8> = data
        .chunks_exact(block)
        .flat_map(|b| b[f.offset..f.offset + f.width].iter().copied())
        .collect();
    if !code {
        return frame(SectionKind::Raw, f, 0, 0, gathered);
    }
    let raw = frame(SectionKind::Raw, f, 0, 0, gathered.clone());
    let coded = if f.f16 {
        let one_lookup = direct
            .then(|| book::encode(&gathered, CODEC_PROB_BITS))
            .flatten();
        one_lookup
            .map(|(escape, body)| frame(SectionKind::F16Direct, f, escape, 0, body))
            .or_else(|| {
                book::encode(&gathered, CODEC_BOOK_PROB_BITS)
                    .map(|(escape, body)| frame(SectionKind::F16, f, escape, 0, body))
            })
    } else {
        Some(byte_rans(f, &gathered))
    };
    match coded {
        Some(c) if c.bytes.len() < raw.bytes.len() => c,
        _ => raw,
    }
}

/// A section header and `body`.
fn frame(kind: SectionKind, f: &Field, flags: u8, nsym: usize, body: Vec<u8>) -> Section {
    let mut bytes = Vec::with_capacity(SECTION_HEADER_LEN + body.len());
    bytes.extend_from_slice(&[kind as u8, f.width as u8, flags, (nsym % 256) as u8]);
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
    frame(SectionKind::Bytes, f, 0, nsym, body)
}
