use super::*;
use crate::test_support::{pattern, TempFile};
use crate::LockedArena;
use lode_kernel::arena::{Slot, SlotKind};
use lode_kernel::flash::{Error as _, ReadError};
use proptest::prelude::*;

const BLOCK: usize = 4096;

/// A temp file of `len` pattern bytes and a device over it.
fn setup(
    tag: &str,
    seed: u64,
    len: usize,
    opts: FileFlashOptions,
) -> (TempFile, Vec<u8>, FileFlash) {
    let bytes = pattern(seed, len);
    let file = TempFile::with_bytes(tag, &bytes).unwrap();
    let flash = FileFlash::open(file.path(), opts).unwrap();
    (file, bytes, flash)
}

fn io_buffer(arena: &mut LockedArena, len: usize) -> Slot {
    arena.alloc(len, BLOCK, SlotKind::IoBuffer).unwrap()
}

fn request(tag: u32, offset: u64, len: usize, dest: Slot) -> ReadRequest {
    ReadRequest {
        tag,
        offset,
        len: len as u32,
        dest,
        dest_offset: 0,
    }
}

/// Collect every in-flight completion.
fn drain(flash: &mut FileFlash, arena: &mut LockedArena) -> Vec<Completion> {
    let mut out = Vec::new();
    let mut done = [Completion::EMPTY; 3];
    while flash.in_flight() > 0 {
        let n = flash.complete(arena, &mut done).unwrap();
        assert!(n > 0, "complete made no progress");
        out.extend_from_slice(&done[..n]);
    }
    out
}

#[test]
fn geometry_reports_options_and_tail() {
    let opts = FileFlashOptions {
        queue_depth: 7,
        ..FileFlashOptions::default()
    };
    let (_f, _bytes, flash) = setup("geom", 1, 3 * BLOCK + 123, opts);
    let g = flash.geometry();
    assert_eq!(g.block_size, 4096);
    assert_eq!(g.capacity, 3 * BLOCK as u64);
    assert_eq!(g.max_transfer, 1 << 20);
    assert_eq!(g.queue_depth, 7);
    assert_eq!(flash.tail_bytes(), 123);
    assert_eq!(flash.window(), Window::new(0, 3 * BLOCK as u64 + 123));
    assert_eq!(flash.cost_model(), DEV_MACHINE_DISK);
    assert_eq!(flash.in_flight(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random batches of aligned extents come back as the file's bytes, with
    /// every tag completed once and the counters matching.
    #[test]
    fn reads_return_the_files_bytes(
        seed: u64,
        blocks in 1usize..200,
        tail in 0usize..BLOCK,
        extents in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..9),
    ) {
        let (_f, bytes, mut flash) = setup("prop", seed, blocks * BLOCK + tail, FileFlashOptions::default());
        let mut arena = LockedArena::new(2 << 20).unwrap();
        let mut reads = Vec::new();
        for (i, (start, len)) in extents.iter().enumerate() {
            let first = *start as usize % blocks;
            let count = 1 + *len as usize % (blocks - first).min(32);
            let slot = io_buffer(&mut arena, count * BLOCK);
            reads.push(request(i as u32, (first * BLOCK) as u64, count * BLOCK, slot));
        }
        flash.submit(&mut arena, &reads).unwrap();
        prop_assert_eq!(flash.in_flight(), reads.len());
        let done = drain(&mut flash, &mut arena);
        prop_assert_eq!(done.len(), reads.len());
        let mut tags: Vec<u32> = done.iter().map(|c| c.tag).collect();
        tags.sort_unstable();
        prop_assert_eq!(tags, (0..reads.len() as u32).collect::<Vec<_>>());
        for c in &done {
            prop_assert_eq!(c.status, Ok(()));
        }
        let mut total = 0u64;
        for r in &reads {
            let start = r.offset as usize;
            let got = arena.bytes(r.dest).unwrap();
            prop_assert_eq!(got, &bytes[start..start + r.len as usize]);
            total += u64::from(r.len);
        }
        let stats = flash.stats();
        prop_assert_eq!(stats.commands, reads.len() as u64);
        prop_assert_eq!(stats.bytes_read, total);
        prop_assert_eq!(stats.failed_reads, 0);
    }

    /// A window (start unaligned, length ragged) reads as its own bytes: device
    /// offset 0 is the window's first byte and the capacity stops at the last
    /// whole block.
    #[test]
    fn windows_read_their_own_bytes(seed: u64, file_blocks in 2usize..40, start in 0usize..10_000, len in 0usize..100_000) {
        let file_len = file_blocks * BLOCK;
        let start = start % (file_len - BLOCK);
        let len = BLOCK + len % (file_len - start - BLOCK + 1);
        let bytes = pattern(seed, file_len);
        let tmp = TempFile::with_bytes("window", &bytes).unwrap();
        let window = Window::new(start as u64, len as u64);
        let mut flash = FileFlash::open_window(tmp.path(), window, FileFlashOptions::default()).unwrap();
        let capacity = len / BLOCK * BLOCK;
        prop_assert_eq!(flash.geometry().capacity, capacity as u64);
        prop_assert_eq!(flash.tail_bytes(), (len % BLOCK) as u64);
        let mut arena = LockedArena::new(capacity + BLOCK).unwrap();
        let slot = io_buffer(&mut arena, capacity);
        flash.read_blocking(&mut arena, &[request(9, 0, capacity, slot)]).unwrap();
        prop_assert_eq!(arena.bytes(slot).unwrap(), &bytes[start..start + capacity]);
        // One block further is outside the device, tail or not.
        let past = io_buffer(&mut arena, BLOCK);
        let err = flash.submit(&mut arena, &[request(1, capacity as u64, BLOCK, past)]).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::OutOfRange);
    }
}

#[test]
fn bad_requests_are_refused_whole_and_nothing_is_queued() {
    let opts = FileFlashOptions {
        max_transfer: 64 << 10,
        queue_depth: 4,
        ..FileFlashOptions::default()
    };
    let (_f, _bytes, mut flash) = setup("refuse", 2, 64 * BLOCK, opts);
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let big = io_buffer(&mut arena, 128 << 10);
    let small = io_buffer(&mut arena, BLOCK);
    let freed = io_buffer(&mut arena, BLOCK);
    arena.free(freed).unwrap();
    let good = request(0, 0, BLOCK, small);
    let end = 64 * BLOCK as u64;
    let cases: Vec<(&str, ReadRequest, ErrorKind)> = vec![
        ("offset", request(1, 512, BLOCK, big), ErrorKind::Misaligned),
        (
            "length",
            request(1, 0, BLOCK + 1, big),
            ErrorKind::Misaligned,
        ),
        ("empty", request(1, 0, 0, big), ErrorKind::Misaligned),
        (
            "dest address",
            ReadRequest {
                dest_offset: 512,
                ..request(1, 0, BLOCK, big)
            },
            ErrorKind::Misaligned,
        ),
        (
            "past end",
            request(1, end, BLOCK, big),
            ErrorKind::OutOfRange,
        ),
        (
            "straddles end",
            request(1, end - BLOCK as u64, 2 * BLOCK, big),
            ErrorKind::OutOfRange,
        ),
        (
            "u64 wrap",
            request(1, u64::MAX - 4095, BLOCK, big),
            ErrorKind::OutOfRange,
        ),
        (
            "too large",
            request(1, 0, 128 << 10, big),
            ErrorKind::TooLarge,
        ),
        (
            "slot too small",
            request(1, 0, 2 * BLOCK, small),
            ErrorKind::BadDestination,
        ),
        (
            "stale slot",
            request(1, 0, BLOCK, freed),
            ErrorKind::BadDestination,
        ),
    ];
    for (name, bad, kind) in cases {
        // The good request comes first: it must not be queued either.
        let err = flash.submit(&mut arena, &[good, bad]).unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert_eq!(err.reason(), Reason::Refused(kind));
        assert_eq!(flash.in_flight(), 0, "{name}");
    }
    // Batch longer than the queue, then a queue that fills up.
    let five = [good; 5];
    assert_eq!(
        flash.submit(&mut arena, &five).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert_eq!(flash.in_flight(), 0);
    flash.submit(&mut arena, &[good; 3]).unwrap();
    assert_eq!(
        flash.submit(&mut arena, &[good; 2]).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert_eq!(flash.in_flight(), 3);
    flash.submit(&mut arena, &[good]).unwrap();
    assert_eq!(drain(&mut flash, &mut arena).len(), 4);
    assert_eq!(flash.stats().commands, 4);
}

#[test]
fn completions_are_collected_in_pieces() {
    let (_f, bytes, mut flash) = setup("pieces", 3, 16 * BLOCK, FileFlashOptions::default());
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let reads: Vec<ReadRequest> = (0..5)
        .map(|i| {
            request(
                100 + i,
                u64::from(i) * BLOCK as u64,
                BLOCK,
                io_buffer(&mut arena, BLOCK),
            )
        })
        .collect();
    flash.submit(&mut arena, &reads).unwrap();
    assert_eq!(flash.complete(&mut arena, &mut []).unwrap(), 0);
    assert_eq!(flash.in_flight(), 5);
    let mut one = [Completion::EMPTY; 1];
    assert_eq!(flash.complete(&mut arena, &mut one).unwrap(), 1);
    assert_eq!(one[0].status, Ok(()));
    assert_eq!(flash.in_flight(), 4);
    let mut many = [Completion::EMPTY; 10];
    assert_eq!(flash.complete(&mut arena, &mut many).unwrap(), 4);
    assert_eq!(flash.complete(&mut arena, &mut many).unwrap(), 0);
    for r in &reads {
        let at = r.offset as usize;
        assert_eq!(arena.bytes(r.dest).unwrap(), &bytes[at..at + BLOCK]);
    }
}

#[test]
fn slot_freed_before_completion_is_a_bad_destination() {
    let (_f, _bytes, mut flash) = setup("freed", 4, 4 * BLOCK, FileFlashOptions::default());
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let slot = io_buffer(&mut arena, BLOCK);
    flash
        .submit(&mut arena, &[request(7, 0, BLOCK, slot)])
        .unwrap();
    arena.free(slot).unwrap();
    let done = drain(&mut flash, &mut arena);
    assert_eq!(
        done,
        vec![Completion {
            tag: 7,
            status: Err(ErrorKind::BadDestination)
        }]
    );
    // Nothing was read on its behalf.
    assert_eq!(flash.stats().commands, 0);
}

#[test]
fn file_truncated_after_open_gives_io_completions() {
    let (f, _bytes, mut flash) = setup("trunc", 5, 32 * BLOCK, FileFlashOptions::default());
    std::fs::OpenOptions::new()
        .write(true)
        .open(f.path())
        .unwrap()
        .set_len(10 * BLOCK as u64 + 5)
        .unwrap();
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let inside = io_buffer(&mut arena, BLOCK);
    let straddle = io_buffer(&mut arena, 2 * BLOCK);
    let gone = io_buffer(&mut arena, BLOCK);
    let reads = [
        request(1, 0, BLOCK, inside),
        request(2, 10 * BLOCK as u64, 2 * BLOCK, straddle),
        request(3, 20 * BLOCK as u64, BLOCK, gone),
    ];
    flash.submit(&mut arena, &reads).unwrap();
    let mut done = drain(&mut flash, &mut arena);
    done.sort_by_key(|c| c.tag);
    let statuses: Vec<_> = done.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![Ok(()), Err(ErrorKind::Io), Err(ErrorKind::Io)]
    );
    assert_eq!(flash.stats().failed_reads, 2);
    match flash.read_blocking(&mut arena, &[request(4, 20 * BLOCK as u64, BLOCK, gone)]) {
        Err(ReadError::Failed {
            tag: 4,
            kind: ErrorKind::Io,
        }) => {}
        other => panic!("expected an Io failure, got {other:?}"),
    }
}

#[test]
fn write_sync_read_round_trip() {
    let opts = FileFlashOptions {
        writable: true,
        ..FileFlashOptions::default()
    };
    let (f, mut bytes, mut flash) = setup("write", 6, 8 * BLOCK + 77, opts);
    let data = pattern(99, 2 * BLOCK);
    flash.write(3 * BLOCK as u64, &data).unwrap();
    flash.sync().unwrap();
    bytes[3 * BLOCK..5 * BLOCK].copy_from_slice(&data);
    assert_eq!(std::fs::read(f.path()).unwrap(), bytes);
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let slot = io_buffer(&mut arena, 4 * BLOCK);
    flash
        .read_blocking(&mut arena, &[request(0, 2 * BLOCK as u64, 4 * BLOCK, slot)])
        .unwrap();
    assert_eq!(arena.bytes(slot).unwrap(), &bytes[2 * BLOCK..6 * BLOCK]);
    let stats = flash.stats();
    assert_eq!(
        (stats.writes, stats.bytes_written, stats.syncs),
        (1, 2 * BLOCK as u64, 1)
    );
    // Writes are checked like reads: aligned and inside the device (the
    // 77-byte tail is not part of it).
    let kind = |r: Result<(), FileFlashError>| r.unwrap_err().kind();
    assert_eq!(kind(flash.write(100, &data)), ErrorKind::Misaligned);
    assert_eq!(kind(flash.write(0, &data[..100])), ErrorKind::Misaligned);
    assert_eq!(
        kind(flash.write(7 * BLOCK as u64, &data)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(flash.write(u64::MAX - 4095, &data)),
        ErrorKind::OutOfRange
    );
    // An empty write is refused like an empty read (the kernel's one rule).
    assert_eq!(kind(flash.write(0, &[])), ErrorKind::Misaligned);
    assert_eq!(std::fs::read(f.path()).unwrap(), bytes);
}

#[test]
fn writes_stay_inside_the_window() {
    let bytes = pattern(7, 6 * BLOCK);
    let tmp = TempFile::with_bytes("winwrite", &bytes).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp.path())
        .unwrap();
    let mut flash = FileFlash::from_file(
        file,
        Some(Window::new(1000, 4 * BLOCK as u64)),
        FileFlashOptions::default(),
    )
    .unwrap();
    flash.write(BLOCK as u64, &[0xEE; BLOCK]).unwrap();
    let mut expect = bytes.clone();
    expect[1000 + BLOCK..1000 + 2 * BLOCK].fill(0xEE);
    assert_eq!(std::fs::read(tmp.path()).unwrap(), expect);
}

#[test]
fn writing_a_read_only_file_is_unsupported() {
    let (f, bytes, mut flash) = setup("ro", 8, 4 * BLOCK, FileFlashOptions::default());
    let err = flash.write(0, &[1; BLOCK]).unwrap_err();
    assert_eq!(err.reason(), Reason::ReadOnly, "{err}");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(std::fs::read(f.path()).unwrap(), bytes);
}

#[test]
fn opening_problems_are_clear_errors() {
    let missing =
        std::env::temp_dir().join(format!("lode-hal-linux-missing-{}", std::process::id()));
    let err = FileFlash::open(&missing, FileFlashOptions::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::Open);
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(err.path(), Some(missing.as_path()));
    assert!(
        err.to_string().contains(&*missing.to_string_lossy()),
        "{err}"
    );

    let tmp = TempFile::with_bytes("open", &pattern(9, 3 * BLOCK)).unwrap();
    let past = Window::new(BLOCK as u64, 3 * BLOCK as u64);
    let err = FileFlash::open_window(tmp.path(), past, FileFlashOptions::default()).unwrap_err();
    assert_eq!(
        err.reason(),
        Reason::WindowPastEnd {
            window: past,
            file_len: 3 * BLOCK as u64
        }
    );
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    assert!(err.to_string().contains("reaches past the end"), "{err}");
    let wrap = Window::new(u64::MAX, 2);
    assert_eq!(
        FileFlash::open_window(tmp.path(), wrap, FileFlashOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::OutOfRange
    );
    let small = Window::new(10, BLOCK as u64 - 1);
    let err = FileFlash::open_window(tmp.path(), small, FileFlashOptions::default()).unwrap_err();
    assert!(matches!(
        err.reason(),
        Reason::WindowTooSmall {
            len: 4095,
            block_size: 4096
        }
    ));

    let empty = TempFile::with_bytes("empty", &[]).unwrap();
    let err = FileFlash::open(empty.path(), FileFlashOptions::default()).unwrap_err();
    assert!(
        matches!(err.reason(), Reason::WindowTooSmall { len: 0, .. }),
        "{err}"
    );

    let err = FileFlash::open(std::env::temp_dir(), FileFlashOptions::default()).unwrap_err();
    assert_eq!(err.reason(), Reason::NotAFile, "{err}");
    assert!(err.to_string().contains("neither a regular file"), "{err}");

    let bad = FileFlashOptions {
        block_size: 1000,
        ..FileFlashOptions::default()
    };
    let err = FileFlash::open(tmp.path(), bad).unwrap_err();
    assert!(matches!(err.reason(), Reason::InvalidOptions(_)), "{err}");
}

#[test]
fn smaller_blocks_allow_finer_reads() {
    let opts = FileFlashOptions {
        block_size: 512,
        max_transfer: 4096,
        ..FileFlashOptions::default()
    };
    let (_f, bytes, mut flash) = setup("512", 10, 3000, opts);
    assert_eq!(flash.geometry().capacity, 2560);
    assert_eq!(flash.tail_bytes(), 440);
    let mut arena = LockedArena::new(1 << 16).unwrap();
    let slot = arena.alloc(1024, 512, SlotKind::IoBuffer).unwrap();
    flash
        .read_blocking(&mut arena, &[request(0, 1536, 1024, slot)])
        .unwrap();
    assert_eq!(arena.bytes(slot).unwrap(), &bytes[1536..2560]);
}

/// The shared flash contract (`lode_hal::conformance`): the whole file,
/// writable; a window starting mid-block with a ragged tail; a small-block
/// device with a one-deep queue.
#[test]
fn file_flash_keeps_the_flash_contract() {
    use lode_hal::conformance::{check_writable, Config};
    let cfg = Config::default();
    let writable = FileFlashOptions {
        writable: true,
        ..FileFlashOptions::default()
    };
    // The temp file is unlinked when the factory returns; the open file
    // keeps its bytes for the device.
    check_writable(&cfg, |medium| {
        let file = TempFile::with_bytes("contract", medium).unwrap();
        FileFlash::open(file.path(), writable).unwrap()
    })
    .unwrap();
    check_writable(&cfg, |medium| {
        let mut bytes = pattern(1, 10);
        bytes.extend_from_slice(medium);
        bytes.extend_from_slice(&pattern(2, 123));
        let file = TempFile::with_bytes("contract-window", &bytes).unwrap();
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(file.path())
            .unwrap();
        let window = Window::new(10, medium.len() as u64 + 100);
        FileFlash::from_file(rw, Some(window), FileFlashOptions::default()).unwrap()
    })
    .unwrap();
    let tiny = FileFlashOptions {
        block_size: 512,
        max_transfer: 512,
        queue_depth: 1,
        ..writable
    };
    check_writable(&cfg, |medium| {
        let file = TempFile::with_bytes("contract-tiny", medium).unwrap();
        FileFlash::open(file.path(), tiny).unwrap()
    })
    .unwrap();
}
