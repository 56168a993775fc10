use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;

fn header(layers: u32, neurons: u32, tokens: u32) -> TraceHeader {
    TraceHeader {
        layers,
        neurons,
        tokens,
        fingerprint: 0xFEED,
        flags: FLAG_SYNTHETIC,
    }
}

/// A trace with bit pattern `f(token, layer, neuron)`.
fn build(h: TraceHeader, f: impl Fn(u32, u32, u32) -> bool) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), h).unwrap();
    for t in 0..h.tokens {
        let layers: Vec<Vec<u8>> = (0..h.layers)
            .map(|l| {
                let mut bits = vec![0u8; h.bitset_len()];
                for n in (0..h.neurons).filter(|&n| f(t, l, n)) {
                    set_bit(&mut bits, n);
                }
                bits
            })
            .collect();
        w.push(&layers).unwrap();
    }
    w.finish().unwrap()
}

proptest! {
    #[test]
    fn round_trip(layers in 1u32..4, neurons in 1u32..100, tokens in 0u32..6, seed in any::<u64>()) {
        let pat = move |t: u32, l: u32, n: u32| (seed ^ u64::from(t * 7919 + l * 104_729 + n * 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0;
        let bytes = build(header(layers, neurons, tokens), pat);
        let trace = Trace::parse(&bytes).unwrap();
        prop_assert_eq!(trace.header(), header(layers, neurons, tokens));
        for t in 0..tokens {
            for l in 0..layers {
                let set = trace.active(t, l).unwrap();
                let got: Vec<u32> = set.iter().collect();
                let want: Vec<u32> = (0..neurons).filter(|&n| pat(t, l, n)).collect();
                prop_assert_eq!(set.count() as usize, want.len());
                prop_assert_eq!(got, want);
            }
        }
    }
}

/// Flags and reserved bytes a reader does not know are refused, with a
/// correct header CRC (so the check itself, not the CRC, catches them).
#[test]
fn unknown_flags_and_reserved_bytes_are_refused() {
    let bytes = build(header(2, 13, 1), |_, _, _| true);
    let resealed = |edit: &dyn Fn(&mut [u8])| {
        let mut b = bytes.clone();
        edit(&mut b);
        let crc = crc32c(&b[..HEADER_LEN - 4]);
        b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        Trace::parse(&b)
            .map(|t| t.header().flags)
            .map_err(|e| e.kind())
    };
    assert_eq!(resealed(&|_| {}), Ok(FLAG_SYNTHETIC));
    assert_eq!(resealed(&|b| b[40] = 0), Ok(0));
    for bit in 1..32 {
        let flags = FLAG_SYNTHETIC | 1 << bit;
        assert_eq!(
            resealed(&|b| b[40..44].copy_from_slice(&flags.to_le_bytes())),
            Err(ErrorKind::Malformed),
            "flag bit {bit}"
        );
    }
    for at in 44..60 {
        assert_eq!(
            resealed(&|b| b[at] = 1),
            Err(ErrorKind::Malformed),
            "reserved byte {at}"
        );
    }
    let unknown = TraceHeader {
        flags: 2,
        ..header(1, 8, 0)
    };
    assert_eq!(
        unknown.to_bytes().map_err(|e| e.kind()),
        Err(ErrorKind::Malformed)
    );
}

#[test]
fn every_single_byte_corruption_is_rejected() {
    let bytes = build(header(2, 13, 3), |t, l, n| (t + l + n) % 3 == 0);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            assert!(
                Trace::parse(&bad).is_err(),
                "byte {i} xor {flip:#x} accepted"
            );
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = build(header(2, 13, 3), |_, _, n| n % 2 == 0);
    for len in 0..bytes.len() {
        let err = Trace::parse(&bytes[..len]).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Truncated | ErrorKind::BadMagic),
            "len {len}: {err}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Trace::parse(&longer).unwrap_err().kind(),
        ErrorKind::Malformed
    );
}

#[test]
fn wrong_version_is_named() {
    let mut h = header(1, 8, 1).to_bytes().unwrap();
    h[8] = 2; // major 2
    let crc = crate::checksum::crc32c(&h[..HEADER_LEN - 4]);
    h[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        TraceHeader::parse(&h).unwrap_err().kind(),
        ErrorKind::UnsupportedVersion
    );
}

#[test]
fn writer_refuses_misuse() {
    let h = header(2, 10, 1);
    let mut w = TraceWriter::new(Vec::new(), h).unwrap();
    assert_eq!(
        w.push(&[vec![0u8; 2]]).unwrap_err().kind(),
        ErrorKind::Write
    );
    assert_eq!(
        w.push(&[vec![0u8; 2], vec![0u8; 3]]).unwrap_err().kind(),
        ErrorKind::Write
    );
    // Neuron 10 does not exist: bit 2 of byte 1.
    assert_eq!(
        w.push(&[vec![0u8, 4], vec![0u8; 2]]).unwrap_err().kind(),
        ErrorKind::Write
    );
    w.push(&[vec![0u8; 2], vec![0u8; 2]]).unwrap();
    assert!(w.push(&[vec![0u8; 2], vec![0u8; 2]]).is_err());
    let w = TraceWriter::new(Vec::new(), header(1, 8, 2)).unwrap();
    assert!(w.finish().is_err());
    assert!(TraceHeader { layers: 0, ..h }.to_bytes().is_err());
}

#[test]
fn out_of_range_lookups_are_errors() {
    let bytes = build(header(2, 9, 2), |_, _, _| true);
    let t = Trace::parse(&bytes).unwrap();
    assert_eq!(t.active(2, 0).unwrap_err().kind(), ErrorKind::OutOfRange);
    assert_eq!(t.active(0, 2).unwrap_err().kind(), ErrorKind::OutOfRange);
    assert_eq!(t.active(1, 1).unwrap().count(), 9);
    assert!(!t.active(1, 1).unwrap().contains(9));
}

#[test]
fn traces_over_the_size_limit_are_neither_written_nor_read() {
    // 32 layers of 2^24 neurons: 64 MiB a token, so 16 tokens fit in 1 GiB
    // (with the header and CRCs just over it) and 15 do not overflow it.
    let h = header(32, 1 << 24, 16);
    assert!(h.file_len().unwrap() as u64 > MAX_FILE_LEN);
    let e = h.to_bytes().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(TraceWriter::new(Vec::new(), h).is_err());
    assert!(header(32, 1 << 24, 15).to_bytes().is_ok());
    // A header that claims such a file is refused when read, before the
    // length of what follows it matters.
    let mut bytes = header(32, 1 << 24, 15).to_bytes().unwrap();
    bytes[24..28].copy_from_slice(&16u32.to_le_bytes());
    let crc = crate::checksum::crc32c(&bytes[..HEADER_LEN - 4]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        TraceHeader::parse(&bytes).unwrap_err().kind(),
        ErrorKind::Malformed
    );
}
