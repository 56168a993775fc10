//! Fuzzing the weight codec's decoder, [`lode_kernel::codec::decode_with`],
//! on units `lode_pack::codec::encode` wrote, and its chain decoder,
//! [`lode_kernel::codec::decode_chain`], on chains `encode_chain` wrote.
//!
//! Inputs: valid units of every block type (sections raw, byte rANS and
//! f16 codebooks of both kinds), mutated by the harness's bit flips, byte changes,
//! truncation, insertion, removal, copies and extreme length fields; half
//! of them with the unit's CRC32C recomputed, so the mutation reaches the
//! tables and streams behind the checksum; and random or spliced bytes.
//! Every input is decoded twice: with the CRC check and trusted (without).
//!
//! Asserted for every input: no panic; an error is a `DecodeError` with a
//! message; an accepted unit returns its header's output length; each case
//! within the harness's time limit; **no allocation at all**.
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_codec -- --nocapture
//! ```

mod fuzz;

use std::sync::{Arc, Mutex};

use lode_formats::DType;
use lode_kernel::codec::{
    decode_chain, decode_with, header, unit_crc, Scratch, SectionKind, Verify, CRC_AT, VERSION,
};
use lode_kernel::rng::SplitMix64;
use lode_pack::codec::{encode, encode_chain, encode_v1, Coding};
use lode_tests::CountingAlloc;
use proptest::prop_assert_eq;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// `blocks` blocks of `dtype` whose bytes repeat a few values (so every
/// section kind codes), with some noise.
fn blocks(dtype: DType, blocks: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    (0..blocks * dtype.block_bytes())
        .map(|_| match r.below(4) {
            0 => r.next_u64() as u8,
            k => (k as u8) * 17,
        })
        .collect()
}

fn seeds() -> Arc<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    for (i, dt) in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ]
    .into_iter()
    .enumerate()
    {
        v.push(encode(dt, &blocks(dt, 40, i as u64)).expect("encode").bytes);
    }
    v.push(encode(DType::Q4_1, &[]).expect("encode").bytes);
    v.push(
        encode(DType::Q8_0, &blocks(DType::Q8_0, 1, 9))
            .expect("encode")
            .bytes,
    );
    // Version 1 units, whose codebooks are the 16-bit kind (older
    // images hold them): scales of three values, so the codebook pays.
    for (i, dt) in [DType::Q4_1, DType::Q8_0].into_iter().enumerate() {
        let mut data = blocks(dt, 40, 20 + i as u64);
        for (j, b) in data.chunks_exact_mut(dt.block_bytes()).enumerate() {
            b[..2].copy_from_slice(&(0x3c00 + (j % 3) as u16).to_le_bytes());
        }
        let e = encode_v1(dt, &data, Coding::Smallest).expect("encode");
        assert_eq!(e.sections[0].kind, SectionKind::F16, "{dt:?}");
        v.push(e.bytes);
    }
    Arc::new(v)
}

/// Recomputes the CRC for the unit length the (mutated) header states.
fn reseal(bytes: &mut [u8]) {
    let Some(len) = bytes
        .get(12..16)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    else {
        return;
    };
    if len >= CRC_AT + 4 && len <= bytes.len() {
        let crc = unit_crc(&bytes[..len]);
        bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

#[test]
fn fuzz_codec_decoder() {
    // The decoder's scratch and output live outside the measured region:
    // a caller owns them (an arena slot), the decoder only borrows.
    let state = Arc::new(Mutex::new((Box::<Scratch>::default(), vec![0u8; 64 * 34])));
    fuzz::run(
        "codec decoder",
        fuzz::inputs(seeds(), reseal, 512),
        move |input| {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let (scratch, out) = &mut *st;
            let mut accepted = false;
            for v in [Verify::Crc, Verify::Trusted] {
                let r =
                    fuzz::read_without_allocating(|| decode_with(scratch, v, &input.bytes, out))?;
                if let Ok(n) = r {
                    prop_assert_eq!(Some(n), header(&input.bytes).ok().map(|h| h.output_len()));
                    accepted = true;
                }
            }
            Ok(accepted)
        },
    );
}

/// Chains of 2 to 5 units: mutated (the first unit's CRC recomputed for
/// half of them) and decoded into the output their blocks fill. Asserted:
/// no panic, no allocation, and an accepted chain filled the output.
#[test]
fn fuzz_chain_decoder() {
    let seeds = {
        let mut v = Vec::new();
        for (i, dt) in [DType::Q4_1, DType::Q5_0, DType::Q8_0]
            .into_iter()
            .enumerate()
        {
            let pieces = 2 + i + i / 2;
            let data = blocks(dt, 24, 40 + i as u64);
            v.push(encode_chain(dt, &data, Coding::Smallest, pieces, VERSION).expect("encode"));
        }
        Arc::new(v)
    };
    let state = Arc::new(Mutex::new((Box::<Scratch>::default(), vec![0u8; 24 * 34])));
    fuzz::run(
        "codec chain decoder",
        fuzz::inputs(seeds, reseal, 512),
        move |input| {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let (scratch, out) = &mut *st;
            let want = header(&input.bytes).map_or(0, |h| h.dtype.block_bytes() * 24);
            let Some(out) = out.get_mut(..want) else {
                return Ok(false);
            };
            let mut accepted = false;
            for v in [Verify::Crc, Verify::Trusted] {
                let r =
                    fuzz::read_without_allocating(|| decode_chain(scratch, v, &input.bytes, out))?;
                accepted |= r.is_ok();
            }
            Ok(accepted)
        },
    );
}
