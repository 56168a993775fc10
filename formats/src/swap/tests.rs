//! Round trips and refusals of the swap-area structures.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::checksum::crc32c;

const SHAPE: AreaShape = AreaShape {
    block: 512,
    len: 64 * 512,
};

fn superblock() -> Superblock {
    Superblock {
        shape: SHAPE,
        slot: 1,
        sequence: 7,
        directory: Extent {
            offset: 4 * 512,
            len: 96,
            crc: 0xABCD,
        },
        fingerprint: [3; 32],
    }
}

fn chunk(index: u32, block: u64, len: u32) -> ChunkRef {
    ChunkRef {
        index,
        payload: Extent {
            offset: block * 512,
            len,
            crc: index,
        },
        level: 4,
        valid_tokens: 16,
    }
}

fn record() -> Vec<u8> {
    let tokens: Vec<u32> = (0..40).collect();
    let chunks = [chunk(0, 10, 700), chunk(2, 12, 512)];
    let mut out = vec![0u8; 1024];
    let ok = chunks.iter().all(|c| c.check(40, &SHAPE).is_ok());
    assert!(!ok, "chunk 2 holds tokens 32..48 but only 40 exist");
    let chunks = [
        chunk(0, 10, 700),
        ChunkRef {
            valid_tokens: 8,
            ..chunk(2, 12, 512)
        },
    ];
    let (len, crc) = Record::encode(&mut out, 9, 2, &tokens, chunks, &SHAPE).unwrap();
    out.truncate(len as usize);
    assert_eq!(crc32c(&out[8..]), crc);
    out
}

#[test]
fn superblock_round_trips_and_every_flipped_byte_is_refused() {
    let mut block = vec![0u8; 512];
    superblock().encode(&mut block).unwrap();
    assert_eq!(Superblock::decode(&block), Ok(superblock()));
    for i in 0..SUPERBLOCK_LEN {
        let mut bad = block.clone();
        bad[i] ^= 0x10;
        assert!(Superblock::decode(&bad).is_err(), "byte {i}");
    }
    // Bytes past the superblock are not part of it.
    block[SUPERBLOCK_LEN] = 1;
    assert!(Superblock::decode(&block).is_ok());
}

#[test]
fn an_intact_superblock_of_another_version_is_a_version_error() {
    let mut block = vec![0u8; 512];
    superblock().encode(&mut block).unwrap();
    block[12] = 2;
    let crc = crc32c(&block[12..SUPERBLOCK_LEN]);
    block[8..12].copy_from_slice(&crc.to_le_bytes());
    let err = Superblock::decode(&block).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);
}

#[test]
fn superblock_fields_are_validated() {
    let bad = [
        Superblock {
            slot: 2,
            ..superblock()
        },
        Superblock {
            sequence: 0,
            ..superblock()
        },
        Superblock {
            shape: AreaShape {
                block: 500,
                ..SHAPE
            },
            ..superblock()
        },
        Superblock {
            directory: Extent {
                offset: 512,
                ..superblock().directory
            },
            ..superblock()
        },
        Superblock {
            directory: Extent {
                offset: 63 * 512,
                len: 600,
                crc: 0,
            },
            ..superblock()
        },
    ];
    for sb in bad {
        let mut block = vec![0u8; 512];
        sb.encode(&mut block).unwrap();
        assert!(Superblock::decode(&block).is_err(), "{sb:?}");
    }
}

#[test]
fn directory_round_trips_and_refuses_disorder() {
    let e = |id: u64, block: u64| DirEntry {
        context_id: id,
        generation: 1,
        record: Extent {
            offset: block * 512,
            len: 100,
            crc: 5,
        },
    };
    let mut entries = Vec::new();
    entries.extend_from_slice(&e(1, 8).encode());
    entries.extend_from_slice(&e(5, 9).encode());
    let mut out = vec![0u8; 512];
    let len = Directory::encode(&mut out, 3, &entries).unwrap();
    let dir = Directory::parse(&out[..len], &SHAPE).unwrap();
    assert_eq!(dir.sequence(), 3);
    assert_eq!(dir.entries().collect::<Vec<_>>(), vec![e(1, 8), e(5, 9)]);
    for i in 0..len {
        let mut bad = out[..len].to_vec();
        bad[i] ^= 1;
        assert!(Directory::parse(&bad, &SHAPE).is_err(), "byte {i}");
    }
    let mut swapped = Vec::new();
    swapped.extend_from_slice(&e(5, 9).encode());
    swapped.extend_from_slice(&e(1, 8).encode());
    let len = Directory::encode(&mut out, 3, &swapped).unwrap();
    let err = Directory::parse(&out[..len], &SHAPE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
}

#[test]
fn record_round_trips_and_every_flipped_byte_is_refused() {
    let bytes = record();
    let r = Record::parse(&bytes, &SHAPE).unwrap();
    assert_eq!((r.context_id(), r.generation()), (9, 2));
    assert_eq!(r.tokens().collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    assert_eq!(r.chunk(0), Some(chunk(0, 10, 700)));
    assert_eq!(r.chunk(1), None);
    assert_eq!(r.chunk(2).map(|c| c.valid_tokens), Some(8));
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(Record::parse(&bad, &SHAPE).is_err(), "byte {i}");
    }
}

#[test]
fn records_refuse_overlapping_or_out_of_order_chunks() {
    let tokens = [0u32; 48];
    let mut out = vec![0u8; 1024];
    // Payloads of 700 bytes take two blocks: 10..12 and 11.. overlap.
    let encoded = Record::encode(
        &mut out,
        1,
        1,
        &tokens,
        [chunk(0, 10, 700), chunk(1, 11, 10)],
        &SHAPE,
    )
    .unwrap();
    let err = Record::parse(&out[..encoded.0 as usize], &SHAPE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    let refused = Record::encode(
        &mut out,
        1,
        1,
        &tokens,
        [chunk(1, 10, 10), chunk(0, 12, 10)],
        &SHAPE,
    );
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Encode);
    let past_the_area = Record::encode(&mut out, 1, 1, &tokens, [chunk(0, 64, 10)], &SHAPE);
    assert_eq!(past_the_area.unwrap_err().kind(), ErrorKind::Encode);
}
