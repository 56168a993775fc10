//! Fuzzing the activation-trace reader: [`TraceHeader::parse`],
//! [`Trace::parse`], and for a trace that parses every token's every
//! layer's active set (members, count, membership).
//!
//! Inputs: valid traces (several shapes, padding bits in the last byte,
//! none), mutated by bit flips, byte changes, truncation, insertion,
//! removal, copies and length and count fields set to extreme values; half
//! of them with the header's and every record's CRC32C recomputed, so the
//! mutation reaches the checks behind the checksums; and random or spliced
//! bytes.
//!
//! Asserted for every input: no panic; every error a [`TraceError`] with a
//! message; each case within the harness's time limit; **no allocation at
//! all** (the reader is `no_std` and zero-copy).
//!
//! A CI run gives this 10,000 cases. A longer run by hand, in release mode:
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_trace -- --nocapture
//! ```
//!
//! (`LODE_FUZZ_SEED=<n>` repeats the run a report line names.)

mod fuzz;

use std::sync::Arc;

use lode_formats::checksum::crc32c;
use lode_formats::trace::{
    set_bit, Trace, TraceError, TraceHeader, TraceWriter, FLAG_SYNTHETIC, HEADER_LEN,
};
use lode_tests::CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// A trace of `layers` x `neurons` over `tokens` tokens, neuron `n` of
/// layer `l` firing at token `t` when `(t + l + n) % 3 == 0`.
fn trace(layers: u32, neurons: u32, tokens: u32, flags: u32) -> Vec<u8> {
    let h = TraceHeader {
        layers,
        neurons,
        tokens,
        fingerprint: 0x5EED,
        flags,
    };
    let mut w = TraceWriter::new(Vec::new(), h).expect("trace writer");
    for t in 0..tokens {
        let layers: Vec<Vec<u8>> = (0..layers)
            .map(|l| {
                let mut bits = vec![0u8; h.bitset_len()];
                for n in (0..neurons).filter(|n| (t + l + n) % 3 == 0) {
                    set_bit(&mut bits, n);
                }
                bits
            })
            .collect();
        w.push(&layers).expect("record");
    }
    w.finish().expect("trace")
}

fn seeds() -> Arc<Vec<Vec<u8>>> {
    Arc::new(vec![
        trace(2, 13, 5, FLAG_SYNTHETIC),
        trace(1, 64, 3, 0),
        trace(3, 1, 2, 0),
        trace(4, 100, 0, FLAG_SYNTHETIC),
    ])
}

/// Little-endian `u32` at `at`.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Recomputes the header CRC and every whole record's CRC, for the record
/// length the (mutated) header states.
fn reseal(bytes: &mut [u8]) {
    let Some(record_len) = u32_at(bytes, 28).map(|r| r as usize).filter(|&r| r >= 4) else {
        return;
    };
    if let Some(records) = bytes.get_mut(HEADER_LEN..) {
        for rec in records.chunks_exact_mut(record_len) {
            let (body, crc) = rec.split_at_mut(record_len - 4);
            crc.copy_from_slice(&crc32c(body).to_le_bytes());
        }
    }
    if bytes.len() >= HEADER_LEN {
        let crc = crc32c(&bytes[..HEADER_LEN - 4]);
        bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Every active set of a parsed trace, read three ways.
fn walk(trace: &Trace<'_>) {
    let h = trace.header();
    for t in 0..h.tokens {
        for l in 0..h.layers {
            let set = trace.active(t, l).expect("token and layer in range");
            let members = set.iter().count() as u32;
            assert_eq!(members, set.count(), "token {t} layer {l}");
            if let Some(n) = set.iter().next() {
                assert!(set.contains(n) && n < h.neurons);
            }
        }
    }
    assert!(trace.active(h.tokens, 0).is_err());
    assert!(trace.active(0, h.layers).is_err());
}

/// Everything the reader does with `bytes`; `true` when it parsed.
fn read_all(bytes: &[u8]) -> Result<bool, TraceError> {
    TraceHeader::parse(bytes)?;
    let trace = Trace::parse(bytes)?;
    walk(&trace);
    Ok(true)
}

#[test]
fn fuzz_trace_reader() {
    fuzz::run(
        "trace reader",
        fuzz::inputs(seeds(), reseal, 1024),
        |input| {
            let bytes = &input.bytes;
            let result = fuzz::read_without_allocating(|| read_all(bytes))?;
            Ok(result.unwrap_or(false))
        },
    );
}
