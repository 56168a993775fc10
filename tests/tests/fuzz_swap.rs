//! Fuzzing the KV swap area's decoders: [`Superblock::decode`],
//! [`Directory::parse`] and [`Record::parse`], and for what parses every
//! entry, chunk pointer and token.
//!
//! Inputs: a valid superblock (its whole block), directories (empty and
//! not) and records (with and without chunks), mutated by the shared
//! mutations; half of them with their CRC32C recomputed so the mutation
//! reaches the checks behind it; and random or spliced bytes.
//!
//! Asserted for every input: no panic; every error a [`SwapFormatError`]
//! with a message; each case within the harness's time limit; **no
//! allocation at all**.
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_swap -- --nocapture
//! ```

mod fuzz;

use std::sync::Arc;

use lode_formats::checksum::crc32c;
use lode_formats::swap::{
    AreaShape, ChunkRef, DirEntry, Directory, Extent, Record, Superblock, SwapFormatError,
    DIR_MAGIC, RECORD_MAGIC, SUPERBLOCK_MAGIC,
};
use lode_tests::CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const SHAPE: AreaShape = AreaShape {
    block: 512,
    len: 256 * 512,
};

fn superblock() -> Vec<u8> {
    let sb = Superblock {
        shape: SHAPE,
        slot: 1,
        sequence: 42,
        directory: Extent {
            offset: 3 * 512,
            len: 96,
            crc: 7,
        },
        fingerprint: [9; 32],
    };
    let mut block = vec![0u8; 512];
    sb.encode(&mut block).expect("superblock");
    block
}

fn directory(n: u64) -> Vec<u8> {
    let mut entries = Vec::new();
    for i in 0..n {
        let e = DirEntry {
            context_id: i * 3 + 1,
            generation: i + 1,
            record: Extent {
                offset: (10 + i) * 512,
                len: 200,
                crc: i as u32,
            },
        };
        entries.extend_from_slice(&e.encode());
    }
    let mut out = vec![0u8; 4096];
    let len = Directory::encode(&mut out, 5, &entries).expect("directory");
    out.truncate(len);
    out
}

fn record(chunks: u32, tokens: u32) -> Vec<u8> {
    let tokens: Vec<u32> = (0..tokens).map(|t| t * 31).collect();
    let refs = (0..chunks).map(|i| ChunkRef {
        index: i,
        payload: Extent {
            offset: u64::from(20 + 3 * i) * 512,
            len: 700 + i,
            crc: i,
        },
        level: 4,
        valid_tokens: 16,
    });
    let mut out = vec![0u8; 8192];
    let (len, _) = Record::encode(&mut out, 77, 3, &tokens, refs, &SHAPE).expect("record");
    out.truncate(len as usize);
    out
}

fn seeds() -> Arc<Vec<Vec<u8>>> {
    Arc::new(vec![
        superblock(),
        directory(0),
        directory(4),
        record(0, 5),
        record(3, 48),
    ])
}

/// Recomputes the checksum of whichever structure the bytes start with.
fn reseal(bytes: &mut [u8]) {
    if bytes.starts_with(&SUPERBLOCK_MAGIC) && bytes.len() >= 16 {
        let stated = usize::from(u16::from_le_bytes([bytes[14], bytes[15]]));
        if (16..=bytes.len()).contains(&stated) {
            let crc = crc32c(&bytes[12..stated]);
            bytes[8..12].copy_from_slice(&crc.to_le_bytes());
        }
    } else if (bytes.starts_with(&DIR_MAGIC) || bytes.starts_with(&RECORD_MAGIC))
        && bytes.len() >= 8
    {
        let crc = crc32c(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Every decoder on `bytes`; `true` when one accepted them.
fn read_all(bytes: &[u8]) -> Result<bool, SwapFormatError> {
    let mut accepted = false;
    if let Ok(sb) = Superblock::decode(bytes) {
        assert!(sb.slot < 2 && sb.sequence > 0);
        accepted = true;
    }
    if let Ok(dir) = Directory::parse(bytes, &SHAPE) {
        let n = dir.entries().count();
        assert_eq!(n, dir.len());
        accepted = true;
    }
    match Record::parse(bytes, &SHAPE) {
        Ok(r) => {
            assert_eq!(r.tokens().count(), r.token_count());
            for c in r.chunks() {
                assert_eq!(r.chunk(c.index), Some(c));
                assert!(c.check(r.token_count() as u32, &SHAPE).is_ok());
            }
            Ok(true)
        }
        Err(_) if accepted => Ok(true),
        Err(e) => Err(e),
    }
}

#[test]
fn fuzz_swap_decoders() {
    fuzz::run(
        "swap decoders",
        fuzz::inputs(seeds(), reseal, 1024),
        |input| {
            let bytes = &input.bytes;
            let result = fuzz::read_without_allocating(|| read_all(bytes))?;
            Ok(result.unwrap_or(false))
        },
    );
}
