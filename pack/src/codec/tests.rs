//! Round trips through the kernel's decoder: random blocks of every type,
//! skewed ones like real weights, and the edges (no blocks, one block, a
//! single symbol, every table full).

use lode_formats::DType;
use lode_kernel::codec::{
    decode, decode_with, header, DecodeError, Scratch, SectionKind, Verify, VERSION, VERSION_1,
};
use lode_kernel::limits::{CODEC_MAX_BOOK, CODEC_SLOTS};
use lode_kernel::rng::SplitMix64;
use proptest::prelude::*;

use super::*;

const TYPES: [DType; 5] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
];

fn roundtrip(dtype: DType, data: &[u8]) -> Encoded {
    let e = encode(dtype, data).unwrap();
    let mut out = vec![0xA5u8; data.len() + 7];
    assert_eq!(decode(&e.bytes, &mut out), Ok(data.len()), "{dtype:?}");
    assert_eq!(&out[..data.len()], data, "{dtype:?}");
    assert!(out[data.len()..].iter().all(|&b| b == 0xA5), "wrote past");
    let mut s = Scratch::default();
    let mut again = vec![0u8; data.len()];
    decode_with(&mut s, Verify::Trusted, &e.bytes, &mut again).unwrap();
    assert_eq!(again, data);
    e
}

/// Blocks whose f16 fields look like a tensor's scales (a narrow smooth
/// range) and whose values are skewed towards the middle.
fn weightlike(dtype: DType, blocks: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut out = vec![0u8; blocks * dtype.block_bytes()];
    for b in out.chunks_exact_mut(dtype.block_bytes()) {
        for f in fields(dtype).unwrap() {
            let x = &mut b[f.offset..f.offset + f.width];
            if f.f16 {
                let v = 0x2000u16 + (r.next_u64() % 700) as u16 + (r.next_u64() % 700) as u16;
                x.copy_from_slice(&v.to_le_bytes());
            } else {
                for v in x.iter_mut() {
                    let mut nibble = || (r.next_u64() % 8) as u8 + (r.next_u64() % 8) as u8;
                    *v = nibble() | nibble() << 4;
                }
            }
        }
    }
    out
}

#[test]
fn weightlike_blocks_roundtrip_and_shrink() {
    for dt in TYPES {
        let data = weightlike(dt, 3000, 7);
        let e = roundtrip(dt, &data);
        assert!(
            e.bytes.len() < data.len(),
            "{dt:?}: {} >= {}",
            e.bytes.len(),
            data.len()
        );
        for s in &e.sections {
            assert_ne!(s.kind, SectionKind::Raw, "{dt:?} {s:?}");
            assert!(s.coded_bytes < s.raw_bytes, "{dt:?} {s:?}");
        }
        assert_eq!(header(&e.bytes).unwrap().blocks, 3000);
    }
}

#[test]
fn edges_roundtrip() {
    for dt in TYPES {
        roundtrip(dt, &[]);
        // One block, random: coding cannot pay for tables, so raw.
        let one = weightlike(dt, 1, 3);
        let e = roundtrip(dt, &one);
        assert!(e.sections.iter().all(|s| s.kind == SectionKind::Raw));
        // Every byte equal: one symbol, no words at all.
        let same = vec![0x3cu8; 500 * dt.block_bytes()];
        let e = roundtrip(dt, &same);
        assert!(e.bytes.len() < 450, "{dt:?}: {}", e.bytes.len());
        // Every byte value in every field: the full 256-symbol tables.
        let all: Vec<u8> = (0..2000 * dt.block_bytes())
            .map(|i| (i * 7 % 256) as u8)
            .collect();
        roundtrip(dt, &all);
    }
}

/// Version 1 units (what images before 1.6 hold) still decode, with the
/// 16-bit codebook for every f16 field, and cost about what version 2's
/// one-lookup codebook does (its 12-bit probabilities lose under 1% of a
/// field's bits on weight-like scales).
#[test]
fn version_1_units_still_decode() {
    for dt in TYPES {
        let data = weightlike(dt, 3000, 5);
        let old = encode_v1(dt, &data, Coding::Smallest).unwrap();
        assert_eq!(header(&old.bytes).unwrap().version, VERSION_1);
        let mut out = vec![0u8; data.len()];
        assert_eq!(decode(&old.bytes, &mut out), Ok(data.len()), "{dt:?}");
        assert_eq!(out, data, "{dt:?}");
        let new = roundtrip(dt, &data);
        for (o, n) in old.sections.iter().zip(&new.sections) {
            if o.role == Role::Scale || o.role == Role::Min {
                assert_eq!((o.kind, n.kind), (SectionKind::F16, SectionKind::F16Direct));
                assert!(
                    n.coded_bytes < o.coded_bytes + o.coded_bytes / 100,
                    "{dt:?} {o:?} {n:?}"
                );
            } else {
                assert_eq!(o, n, "{dt:?}");
            }
        }
    }
}

#[test]
fn f16_codebooks_up_to_their_bound() {
    // As many distinct scales as a one-lookup codebook holds (half its
    // 2^12 slots), one more (the 16-bit codebook), as many as that holds,
    // then one more (raw).
    for (distinct, kind) in [
        (CODEC_SLOTS / 2, SectionKind::F16Direct),
        (CODEC_SLOTS / 2 + 1, SectionKind::F16),
        (CODEC_MAX_BOOK, SectionKind::F16),
        (CODEC_MAX_BOOK + 1, SectionKind::Raw),
    ] {
        let data: Vec<u8> = (0..16 * distinct)
            .flat_map(|i| {
                let mut b = vec![0u8; 34];
                let v = (0x1000 + (i % distinct) * 3) as u16;
                b[..2].copy_from_slice(&v.to_le_bytes());
                b[2 + (i % 32)] = 1;
                b
            })
            .collect();
        let e = roundtrip(DType::Q8_0, &data);
        assert_eq!(e.sections[0].kind, kind, "{distinct}");
    }
    // A codebook of one value, and of the extremes of u16.
    let mut data = vec![0u8; 20 * 300];
    for (i, b) in data.chunks_exact_mut(20).enumerate() {
        b[2..4].copy_from_slice(&[0u16, 0xffff][i % 2].to_le_bytes());
    }
    let e = roundtrip(DType::Q4_1, &data);
    assert_eq!(e.sections[0].kind, SectionKind::F16Direct);
    assert_eq!(e.sections[1].kind, SectionKind::F16Direct);
}

#[test]
fn rare_scales_escape_to_raw() {
    // 2000 blocks: scales mostly from four values, every tenth one unique.
    let data: Vec<u8> = (0..2000u32)
        .flat_map(|i| {
            let mut b = vec![0u8; 18];
            let v = if i % 10 == 0 {
                0x2000 + i
            } else {
                0x3c00 + i % 4
            };
            b[..2].copy_from_slice(&(v as u16).to_le_bytes());
            b
        })
        .collect();
    let e = roundtrip(DType::Q4_0, &data);
    assert_eq!(e.sections[0].kind, SectionKind::F16Direct);
    assert_eq!(
        e.bytes[lode_kernel::codec::HEADER_LEN + 2],
        1,
        "the escape flag"
    );
    // 200 raw values with 3.3 bits of escape each, 2.15 bits for each
    // frequent one (p = 0.225), and tables of a few bytes.
    assert!(
        e.sections[0].coded_bytes < 400 + 83 + 484 + 60,
        "{:?}",
        e.sections[0]
    );
}

#[test]
fn refuses_what_it_cannot_code() {
    assert_eq!(
        encode(DType::F32, &[0; 4]).unwrap_err(),
        EncodeError::UnsupportedType(DType::F32)
    );
    assert!(matches!(
        encode(DType::Q4_1, &[0; 21]),
        Err(EncodeError::PartialBlock { len: 21, block: 20 })
    ));
}

#[test]
fn checks_catch_damage_and_short_output() {
    let data = weightlike(DType::Q4_1, 400, 11);
    let e = encode(DType::Q4_1, &data).unwrap();
    let mut out = vec![0u8; data.len()];
    assert!(matches!(
        decode(&e.bytes, &mut out[..data.len() - 1]),
        Err(DecodeError::OutputTooSmall { .. })
    ));
    assert!(matches!(
        decode(&e.bytes[..e.bytes.len() - 1], &mut out),
        Err(DecodeError::Truncated { .. })
    ));
    // Every single-bit flip is caught by the CRC (a CRC32 detects them all).
    for i in (0..e.bytes.len()).step_by(7) {
        let mut b = e.bytes.clone();
        b[i] ^= 1 << (i % 8);
        assert!(decode(&b, &mut out).is_err(), "flip at {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_blocks_roundtrip(t in 0usize..5, blocks in 0usize..300, seed: u64, skew in 0u8..4) {
        let dt = TYPES[t];
        let mut r = SplitMix64::new(seed);
        let data: Vec<u8> = (0..blocks * dt.block_bytes())
            .map(|_| (r.next_u64() as u8) >> skew)
            .collect();
        roundtrip(dt, &data);
    }

    /// Without the CRC a flipped payload bit is often caught by the rANS
    /// streams' end checks, and whatever happens nothing panics and the
    /// output's length is the unit's.
    #[test]
    fn trusted_decode_of_damage_never_panics(seed: u64, at in 0usize..100_000, bit in 0u8..8) {
        let data = weightlike(DType::Q4_1, 200, seed);
        let e = encode(DType::Q4_1, &data).unwrap();
        let mut b = e.bytes.clone();
        let at = at % b.len();
        b[at] ^= 1 << bit;
        let mut out = vec![0u8; data.len()];
        if let Ok(n) = decode_with(&mut Scratch::default(), Verify::Trusted, &b, &mut out) {
            prop_assert_eq!(n, data.len());
        }
    }
}

/// `Coding::FloatsOnly` stores every byte field raw and codes the f16
/// fields, and still decodes to the same bytes (a block count that is not
/// a whole number of lane groups included).
#[test]
fn floats_only_codes_the_f16_fields_alone() {
    for dt in TYPES {
        for blocks in [0, 1, 7, 3001] {
            let data = weightlike(dt, blocks, 11);
            let e = encode_with(dt, &data, Coding::FloatsOnly).unwrap();
            let mut out = vec![0u8; data.len()];
            assert_eq!(decode(&e.bytes, &mut out), Ok(data.len()), "{dt:?}");
            assert_eq!(out, data, "{dt:?} {blocks}");
            for s in &e.sections {
                let f16 = s.role == Role::Scale || s.role == Role::Min;
                if !f16 {
                    assert_eq!(s.kind, SectionKind::Raw, "{dt:?} {s:?}");
                } else if blocks == 3001 {
                    assert_eq!(s.kind, SectionKind::F16Direct, "{dt:?} {s:?}");
                }
            }
        }
    }
}

/// A chain decodes to the blocks it was made of whatever the number of
/// pieces asked, splits into that many units (at most a reader's limit),
/// and refuses partial blocks.
#[test]
fn chains_round_trip_in_any_number_of_pieces() {
    for dtype in TYPES {
        let data = weightlike(dtype, 37, 11);
        for (pieces, units) in [(0, 1), (1, 1), (2, 2), (4, 4), (16, 16), (50, 16)] {
            let chain = encode_chain(dtype, &data, Coding::Smallest, pieces, VERSION).unwrap();
            let mut out = vec![0u8; data.len()];
            assert_eq!(
                lode_kernel::codec::split(&chain, &mut out).unwrap().len(),
                units
            );
            lode_kernel::codec::decode_chain(
                &mut Scratch::default(),
                Verify::Crc,
                &chain,
                &mut out,
            )
            .unwrap();
            assert_eq!(out, data, "{dtype:?} in {pieces}");
        }
        let partial = &data[..data.len() - 1];
        assert!(matches!(
            encode_chain(dtype, partial, Coding::FloatsOnly, 2, VERSION),
            Err(EncodeError::PartialBlock { .. })
        ));
    }
}

/// Fewer blocks than pieces: one unit a block.
#[test]
fn a_chain_of_few_blocks_has_one_unit_a_block() {
    let data = weightlike(DType::Q4_1, 3, 5);
    let chain = encode_chain(DType::Q4_1, &data, Coding::Smallest, 8, VERSION).unwrap();
    let mut out = vec![0u8; data.len()];
    assert_eq!(
        lode_kernel::codec::split(&chain, &mut out).unwrap().len(),
        3
    );
}
