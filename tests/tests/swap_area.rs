//! The KV swap area's refusals and damage handling: a damaged payload is
//! `Corrupt` for that chunk alone, a damaged newest superblock or
//! directory falls back to the older committed state, another model's or
//! another version's area is refused, a full area fails a commit cleanly;
//! and the basic sequence on the Linux file binding.

mod swap;

use lode_formats::checksum::crc32c;
use lode_hal::fake::FaultPlan;
use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::{FileFlash, FileFlashOptions};
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::flash::FlashWrite;
use lode_kernel::swap::{ChunkWrite, Commit, ErrorKind, SwapArea};
use lode_tests::TempFile;

use swap::{
    apply, device, memory, read_state, run, script, states, Op, State, AREA, BLOCK, FINGERPRINT,
};

/// The whole script on `dev`, from format; returns the states after each
/// step.
fn scripted<D: FlashWrite>(dev: D) -> Vec<State> {
    let ops = script();
    let states = states(&ops);
    let mut mem = memory();
    let mut area = SwapArea::format(dev, &FINGERPRINT, &mut mem).unwrap();
    for (n, op) in ops.iter().enumerate() {
        run(&mut area, op, &states[n + 1]).unwrap();
    }
    assert_eq!(area.sequence(), ops.len() as u64 + 1);
    states
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are on the medium")
}

#[test]
fn a_damaged_payload_is_corrupt_for_that_chunk_only() {
    let mut dev = device(FaultPlan::none());
    let states = scripted(&mut dev);
    let last = states.last().unwrap();
    let damaged = &last[&0xA].chunks[&1].0;
    let at = find(dev.storage(), damaged) + damaged.len() / 2;
    dev.storage_mut()[at] ^= 0x08;
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    let mut dram = vec![0u8; 8192];
    let mut arena = SliceArena::new(&mut dram);
    let slot = arena
        .alloc(4096, BLOCK as usize, SlotKind::KvChunk)
        .unwrap();
    for (id, ctx) in last {
        for (&index, (payload, _, _)) in &ctx.chunks {
            let got = area.read_chunk(*id, index, &mut arena, slot);
            if (*id, index) == (0xA, 1) {
                assert_eq!(got.unwrap_err().kind(), ErrorKind::Corrupt);
            } else {
                let info = got.unwrap();
                assert_eq!(
                    &arena.bytes(slot).unwrap()[..info.len as usize],
                    &payload[..]
                );
            }
        }
    }
    // Unknown contexts and chunks are their own kind.
    let unknown = area.read_chunk(0xB, 0, &mut arena, slot).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Unknown);
    let unknown = area.read_chunk(0xA, 9, &mut arena, slot).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Unknown);
    // A destination too small is refused before anything is read.
    let small = arena.alloc(512, BLOCK as usize, SlotKind::KvChunk).unwrap();
    let refused = area.read_chunk(0xA, 0, &mut arena, small).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn a_damaged_newest_superblock_or_directory_falls_back_to_the_older_state() {
    let mut clean = device(FaultPlan::none());
    let states = scripted(&mut clean);
    let sequence = states.len() as u64;
    let newest_slot = ((sequence - 1) % 2) as usize;
    let previous = &states[states.len() - 2];

    // A damaged superblock is not a candidate at all.
    let mut dev = device(FaultPlan::none());
    dev.storage_mut().copy_from_slice(clean.storage());
    dev.storage_mut()[newest_slot * BLOCK as usize + 40] ^= 1;
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    assert_eq!(area.sequence(), sequence - 1);
    assert_eq!(&read_state(&mut area), previous);

    // An intact superblock whose directory is damaged: its state fails
    // its checks and the older one is taken.
    let mut dev = device(FaultPlan::none());
    dev.storage_mut().copy_from_slice(clean.storage());
    let sb = &clean.storage()[newest_slot * BLOCK as usize..];
    let dir = u64::from_le_bytes(sb[40..48].try_into().unwrap()) as usize;
    dev.storage_mut()[dir + 20] ^= 1;
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    assert!(area.fell_back());
    assert_eq!(&read_state(&mut area), previous);
    // Committing from there overwrites the damaged state's slot.
    let op = Op::Delete(0xC);
    let expect = apply(previous, &op, 0);
    run(&mut area, &op, &expect).unwrap();
    drop(area);
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    assert!(!area.fell_back());
    assert_eq!(read_state(&mut area), expect);
}

#[test]
fn another_model_or_version_or_no_format_is_refused() {
    let mut dev = device(FaultPlan::none());
    let mut mem = memory();
    let err = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NoSuperblock);

    scripted(&mut dev);
    let err = SwapArea::open(&mut dev, &[0x11; 32], &mut mem)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::WrongFingerprint);

    // Version 2 in a superblock with a valid checksum: a newer writer.
    let slot = &mut dev.storage_mut()[..BLOCK as usize];
    slot[12] = 2;
    let crc = crc32c(&slot[12..96]);
    slot[8..12].copy_from_slice(&crc.to_le_bytes());
    let err = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion);

    let mut short = vec![0u8; 1000];
    let err = SwapArea::open(&mut dev, &FINGERPRINT, &mut short)
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::MemoryTooSmall);
}

#[test]
fn a_full_area_fails_the_commit_and_keeps_the_committed_state() {
    let mut dev = device(FaultPlan::none());
    let states = scripted(&mut dev);
    let last = states.last().unwrap().clone();
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    let free = area.free_bytes();
    let big = vec![0xEE; AREA / 2];
    let tokens: Vec<u32> = (0..64).collect();
    let writes: Vec<ChunkWrite<'_>> = (0..4)
        .map(|index| ChunkWrite {
            index,
            level: 8,
            valid_tokens: 16,
            payload: &big,
        })
        .collect();
    let c = Commit {
        context: 0xE,
        tokens: &tokens,
        keep: &[],
        write: &writes,
    };
    assert_eq!(area.commit(&c).unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(
        area.free_bytes(),
        free,
        "what the failed commit took is free"
    );
    assert_eq!(read_state(&mut area), last);
    // Requests that make no sense are refused before anything is written.
    let c = Commit { keep: &[0], ..c };
    assert_eq!(
        area.commit(&c).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(area.delete(0xE).unwrap_err().kind(), ErrorKind::Unknown);
    drop(area);
    let mut mem = memory();
    let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
    assert_eq!(read_state(&mut area), last);
    assert_eq!(area.free_bytes(), free);
}

#[test]
fn the_sequence_runs_on_a_file() {
    let file = TempFile::with_bytes(&vec![0u8; AREA]);
    let opts = FileFlashOptions {
        block_size: BLOCK,
        max_transfer: 4 * BLOCK,
        writable: true,
        ..FileFlashOptions::default()
    };
    let states = scripted(FileFlash::open(file.path(), opts).unwrap());
    let mut mem = memory();
    let dev = FileFlash::open(file.path(), opts).unwrap();
    let mut area = SwapArea::open(dev, &FINGERPRINT, &mut mem).unwrap();
    assert_eq!(&read_state(&mut area), states.last().unwrap());
}

/// Torn writes (the device stays up, the write fails with part of it
/// persisted): a failed operation is retried on the same area, which must
/// have rolled back cleanly; when the failure hit the superblock the area
/// refuses changes until it is opened again, and the reopened state is the
/// one before or after. Every committed state reads back exactly.
#[test]
fn torn_writes_roll_back_or_leave_the_area_to_reopen() {
    let ops = script();
    let states = states(&ops);
    let (mut reopened, mut failed) = (0, 0);
    for seed in 0..24 {
        let plan = FaultPlan {
            seed,
            torn_write_ppm: 150_000,
            ..FaultPlan::none()
        };
        let mut dev = device(plan);
        let mut mem = memory();
        while SwapArea::format(&mut dev, &FINGERPRINT, &mut mem).is_err() {}
        let mut done = 0;
        let mut opens = 0;
        while done < ops.len() {
            opens += 1;
            assert!(opens < 100, "seed {seed}: no progress");
            let mut mem = memory();
            let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
            let got = read_state(&mut area);
            if got == states[done + 1] {
                done += 1;
            } else {
                assert_eq!(got, states[done], "seed {seed}: before or after op {done}");
            }
            let mut failures = 0;
            while done < ops.len() && failures < 20 {
                match run(&mut area, &ops[done], &states[done + 1]) {
                    Ok(()) => {
                        done += 1;
                        failures = 0;
                        assert_eq!(read_state(&mut area), states[done]);
                    }
                    Err(kind) => {
                        assert_eq!(kind, ErrorKind::Device);
                        failures += 1;
                        failed += 1;
                    }
                }
            }
            reopened += 1;
        }
        let mut mem = memory();
        let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
        assert_eq!(&read_state(&mut area), states.last().unwrap());
    }
    assert!(
        reopened > 24,
        "some runs had to reopen after an unsettled commit"
    );
    assert!(
        failed > reopened - 24,
        "most failures were rolled back in place"
    );
    eprintln!("torn writes: {failed} failed operations, {reopened} opens");
}
