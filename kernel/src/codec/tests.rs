//! The decoder alone, on units built by hand (the encoder lives in
//! `lode-pack`, whose tests round-trip through here): every header and
//! table check, the smallest streams of each kind, and arbitrary or
//! mutated bytes never panicking.

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

/// A unit of `blocks` blocks of GGML type `code` with `sections`.
fn unit(code: u8, blocks: u32, sections: &[Vec<u8>]) -> Vec<u8> {
    unit_of(VERSION, code, blocks, sections)
}

/// [`unit`] of format version `version`.
fn unit_of(version: u8, code: u8, blocks: u32, sections: &[Vec<u8>]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&MAGIC);
    u.extend_from_slice(&[version, code, sections.len() as u8, 0]);
    u.extend_from_slice(&blocks.to_le_bytes());
    u.extend_from_slice(&[0; 8]);
    for s in sections {
        u.extend_from_slice(s);
    }
    let len = u.len() as u32;
    u[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = unit_crc(&u);
    u[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    u
}

fn section(kind: u8, width: u8, nsym: u8, body: &[u8]) -> Vec<u8> {
    let mut s = vec![kind, width, 0, nsym];
    s.extend_from_slice(&(body.len() as u32).to_le_bytes());
    s.extend_from_slice(body);
    s
}

/// An rANS stream whose lanes start at their final state: zero-bit
/// symbols only (a one-symbol table).
fn empty_stream() -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..4 {
        b.extend_from_slice(&STATE_LOW.to_le_bytes());
    }
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Q4_1, 3 blocks: scales raw, minimums a one-value codebook (0xbc00),
/// values one byte symbol (0x21) of a 0x22-entry table.
fn q4_1_unit() -> (Vec<u8>, Vec<u8>) {
    let (sections, want) = q4_1_sections(2);
    (unit(3, 3, &sections), want)
}

/// [`q4_1_unit`]'s sections, the codebook of section kind `book_kind` (2
/// or 3: with one value, the same body), and the blocks they decode to.
fn q4_1_sections(book_kind: u8) -> (Vec<Vec<u8>>, Vec<u8>) {
    let scales = section(0, 2, 0, &[1, 2, 3, 4, 5, 6]);
    // One value, 0xbc00, whose frequency is implied (all of it): K, the
    // implied index, 2 bytes of value bits, no levels.
    let mut book = vec![1, 0, 0, 0, 2, 0, 0, 0, 0x00, 0xbc];
    book.extend_from_slice(&empty_stream());
    book.extend_from_slice(&0u32.to_le_bytes()); // no escaped values
    let mins = section(book_kind, 2, 0, &book);
    let mut table = vec![0u8; 2 * 0x22];
    table[2 * 0x21..].copy_from_slice(&(PROB_TOTAL as u16).to_le_bytes());
    table.extend_from_slice(&empty_stream());
    let values = section(1, 16, 0x22, &table);
    let mut want = Vec::new();
    for i in 0..3u8 {
        want.extend_from_slice(&[2 * i + 1, 2 * i + 2, 0x00, 0xbc]);
        want.extend_from_slice(&[0x21; 16]);
    }
    (vec![scales, mins, values], want)
}

#[test]
fn hand_built_units_decode() {
    let (u, want) = q4_1_unit();
    let mut out = vec![0u8; 70];
    assert_eq!(decode(&u, &mut out), Ok(60));
    assert_eq!(&out[..60], &want[..]);
    assert_eq!(out[60..], [0; 10]);
    // Padding after the unit is ignored.
    let mut padded = u.clone();
    padded.extend_from_slice(&[0xee; 13]);
    assert_eq!(decode(&padded, &mut out), Ok(60));
    let h = header(&u).unwrap();
    assert_eq!((h.blocks, h.output_len(), h.unit_len), (3, 60, u.len()));
    // The one-lookup codebook (kind 3) in a version 2 unit; a version 1
    // unit has kind 2 but not kind 3.
    let (direct, want) = q4_1_sections(3);
    assert_eq!(decode(&unit(3, 3, &direct), &mut out), Ok(60));
    assert_eq!(&out[..60], &want[..]);
    let (book, _) = q4_1_sections(2);
    assert_eq!(decode(&unit_of(VERSION_1, 3, 3, &book), &mut out), Ok(60));
    assert_eq!(
        decode(&unit_of(VERSION_1, 3, 3, &direct), &mut out),
        Err(DecodeError::UnsupportedKind(3))
    );
    assert_eq!(header(&unit_of(VERSION_1, 3, 3, &book)).unwrap().version, 1);
}

#[test]
fn every_header_check_has_its_error() {
    let (u, _) = q4_1_unit();
    let mut out = vec![0u8; 60];
    let at = |i: usize, v: u8| {
        let mut b = u.clone();
        b[i] = v;
        b
    };
    let e = |b: &[u8], out: &mut [u8]| decode(b, out).unwrap_err();
    assert_eq!(e(&u[..10], &mut out).kind(), ErrorKind::Truncated);
    assert_eq!(e(&u[..u.len() - 1], &mut out).kind(), ErrorKind::Truncated);
    assert_eq!(e(&at(0, b'X'), &mut out), DecodeError::BadMagic);
    assert_eq!(e(&at(4, 0), &mut out), DecodeError::UnsupportedVersion(0));
    assert_eq!(e(&at(4, 3), &mut out), DecodeError::UnsupportedVersion(3));
    assert_eq!(e(&at(5, 0), &mut out), DecodeError::UnsupportedType(0));
    assert_eq!(e(&at(5, 12), &mut out), DecodeError::UnsupportedType(12));
    assert_eq!(e(&at(6, 2), &mut out).kind(), ErrorKind::Corrupt);
    assert_eq!(e(&at(30, 0xff), &mut out).kind(), ErrorKind::Corrupt);
    assert!(matches!(
        e(&at(30, 0xff), &mut out),
        DecodeError::Checksum { .. }
    ));
    assert_eq!(e(&u, &mut out[..59]).kind(), ErrorKind::OutputTooSmall);
    // Past the CRC, the structure's own checks: a section kind, a width,
    // a frequency table that does not sum.
    let trusted = |b: &[u8]| {
        decode_with(&mut Scratch::default(), Verify::Trusted, b, &mut [0; 60]).unwrap_err()
    };
    assert_eq!(trusted(&at(20, 9)), DecodeError::UnsupportedKind(9));
    assert_eq!(trusted(&at(21, 3)).kind(), ErrorKind::Corrupt);
    let table_at = u.len() - 20 - 2 * 0x22 + 2 * 0x21;
    assert_eq!(trusted(&at(table_at, 1)).kind(), ErrorKind::Corrupt);
    let last_state = u.len() - 8;
    assert_eq!(trusted(&at(last_state, 1)).kind(), ErrorKind::Corrupt);
}

#[test]
fn scratch_is_the_size_the_docs_say() {
    let n = core::mem::size_of::<Scratch>();
    assert!((55 * 1024..57 * 1024).contains(&n), "{n}");
}

#[test]
fn errors_display() {
    extern crate alloc;
    use alloc::string::ToString;
    let e = DecodeError::Checksum {
        stored: 1,
        computed: 2,
    };
    assert!(e.to_string().contains("checksum"));
    assert_eq!(DecodeError::Corrupt("x").kind(), ErrorKind::Corrupt);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes, with a valid header or not: an error or the
    /// unit's length, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        code in prop::sample::select(vec![2u8, 3, 6, 7, 8]),
        blocks in 0u32..64,
        fix_header: bool,
    ) {
        let input = if fix_header { unit(code, blocks, &[body]) } else { body };
        let mut out = vec![0u8; 64 * 34];
        for v in [Verify::Crc, Verify::Trusted] {
            if let Ok(n) = decode_with(&mut Scratch::default(), v, &input, &mut out) {
                prop_assert_eq!(n, header(&input).unwrap().output_len());
            }
        }
    }

    /// A valid unit with bytes changed: trusted decoding errs or returns
    /// the unit's length, never panics; checked decoding always errs.
    #[test]
    fn mutated_units_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let (mut u, want) = q4_1_unit();
        let original = u.clone();
        for (i, v) in edits {
            let i = i % u.len();
            u[i] = v;
        }
        let mut out = vec![0u8; 60];
        let r = decode_with(&mut Scratch::default(), Verify::Trusted, &u, &mut out);
        if let Ok(n) = r {
            prop_assert_eq!(n, 60);
        }
        if u != original {
            prop_assert!(decode(&u, &mut out).is_err());
        } else {
            prop_assert_eq!(decode(&u, &mut out), Ok(60));
            prop_assert_eq!(&out[..], &want[..]);
        }
    }
}

/// A Q8_0 unit of `blocks` blocks, both fields raw, and its blocks.
fn q8_0_raw(blocks: usize, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let raw: Vec<u8> = (0..blocks * 34)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    let field = |at: usize, width: usize| -> Vec<u8> {
        raw.chunks_exact(34)
            .flat_map(|b| b[at..at + width].to_vec())
            .collect()
    };
    let sections = [
        section(0, 2, 0, &field(0, 2)),
        section(0, 32, 0, &field(2, 32)),
    ];
    (unit(8, blocks as u32, &sections), raw)
}

/// Units back to back decode, each into its own run, to the blocks they
/// hold, however many there are up to the limit.
#[test]
fn a_chain_decodes_to_its_units_blocks_in_order() {
    for n in [1, 2, 5, crate::limits::CODEC_MAX_PIECES] {
        let (mut coded, mut want) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (u, raw) = q8_0_raw(3 + i, 3 + i as u8);
            coded.extend(u);
            want.extend(raw);
        }
        let mut out = vec![0u8; want.len()];
        assert_eq!(split(&coded, &mut out).unwrap().len(), n);
        decode_chain(&mut Scratch::default(), Verify::Crc, &coded, &mut out).unwrap();
        assert_eq!(out, want, "{n} pieces");
    }
}

/// What does not make a chain of exactly its output is refused: no units,
/// a unit cut short, an output longer or shorter than the blocks, block
/// types that differ, too many units. Bytes after the last are padding.
#[test]
fn a_chain_that_does_not_fill_its_output_exactly_is_refused() {
    let (a, raw_a) = q8_0_raw(4, 5);
    let (b, raw_b) = q8_0_raw(2, 9);
    let ab = [a.clone(), b.clone()].concat();
    let len = raw_a.len() + raw_b.len();
    let mut out = vec![0u8; len];
    assert!(split(&[], &mut out).is_err());
    assert!(matches!(
        split(&ab[..ab.len() - 1], &mut out),
        Err(DecodeError::Truncated { .. })
    ));
    let padded = [ab.clone(), vec![0; 3]].concat();
    let pieces = split(&padded, &mut out).unwrap();
    assert_eq!(pieces.iter().map(Piece::coded_len).sum::<usize>(), ab.len());
    drop(pieces);
    assert!(split(&ab, &mut vec![0u8; len + 34]).is_err());
    assert!(matches!(
        split(&ab, &mut vec![0u8; len - 1]),
        Err(DecodeError::OutputTooSmall { .. })
    ));
    let (q4, q4_raw) = q4_1_unit();
    let mut mixed_out = vec![0u8; raw_a.len() + q4_raw.len()];
    assert!(split(&[a.clone(), q4].concat(), &mut mixed_out).is_err());
    let n = crate::limits::CODEC_MAX_PIECES + 1;
    let many = a.repeat(n);
    assert!(split(&many, &mut vec![0u8; raw_a.len() * n]).is_err());
    // A damaged unit inside a chain fails its own CRC.
    let mut bad = ab.clone();
    bad[a.len() + 30] ^= 4;
    assert!(matches!(
        decode_chain(&mut Scratch::default(), Verify::Crc, &bad, &mut out),
        Err(DecodeError::Checksum { .. })
    ));
}
