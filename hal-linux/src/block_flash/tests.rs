//! The `BlockFlash` suite. Every test runs against a regular file under the
//! temporary directory; tests that take a [`Target`] list also run against a
//! block device when `LODE_TEST_BLOCK_DEVICE` names one (`.ci/run` attaches a
//! loop device with `losetup --direct-io=on` and sets it). Such a device is
//! overwritten from offset 0.

use super::open::{block_size, start_engine};
use super::*;
use crate::test_support::{pattern, TempFile};
use crate::LockedArena;
use lode_hal::fake::{FakeFlash, FaultPlan};
use lode_kernel::arena::SlotKind;
use lode_kernel::flash::{Error as _, ReadError};
use proptest::prelude::*;
use std::sync::{Mutex, MutexGuard};

mod contract;

/// Environment variable naming a block device the suite may overwrite.
const DEVICE_ENV: &str = "LODE_TEST_BLOCK_DEVICE";

/// Serialises the tests that share the one block device.
static DEVICE_LOCK: Mutex<()> = Mutex::new(());

/// Somewhere to read: a temp file, or the shared block device holding the
/// same bytes at its start.
struct Target {
    path: PathBuf,
    bytes: Vec<u8>,
    block_device: bool,
    _file: Option<TempFile>,
    _guard: Option<MutexGuard<'static, ()>>,
}

impl Target {
    fn file(tag: &str, seed: u64, len: usize) -> Target {
        let bytes = pattern(seed, len);
        let file = TempFile::with_bytes(tag, &bytes).unwrap();
        Target {
            path: file.path().to_path_buf(),
            bytes,
            block_device: false,
            _file: Some(file),
            _guard: None,
        }
    }

    fn device(seed: u64, len: usize) -> Option<Target> {
        let path = PathBuf::from(std::env::var_os(DEVICE_ENV)?);
        let guard = DEVICE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = pattern(seed, len);
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{DEVICE_ENV}={}: {e}", path.display()));
        dev.write_all_at(&bytes, 0).unwrap();
        dev.sync_all().unwrap();
        Some(Target {
            path,
            bytes,
            block_device: true,
            _file: None,
            _guard: Some(guard),
        })
    }

    /// The regular file, then the block device if one is configured.
    fn all(tag: &str, seed: u64, len: usize) -> Vec<Target> {
        let mut v = vec![Target::file(tag, seed, len)];
        v.extend(Target::device(seed, len));
        v
    }
}

fn opts(engine: Engine) -> BlockFlashOptions {
    BlockFlashOptions {
        engine,
        threads: 4,
        bounce_bytes: 4 << 20,
        ..BlockFlashOptions::default()
    }
}

/// The engines this machine can run: io_uring when available, and always
/// the forced pread pool.
fn engines() -> Vec<Engine> {
    let mut v = vec![Engine::Threads];
    let probe = TempFile::with_bytes("engines", &[0; 4096]).unwrap();
    if BlockFlash::open(probe.path(), opts(Engine::IoUring)).is_ok() {
        v.push(Engine::IoUring);
    }
    v
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

/// Collect every in-flight completion, a few at a time.
fn drain(flash: &mut BlockFlash, arena: &mut LockedArena) -> Vec<Completion> {
    let mut out = Vec::new();
    let mut done = [Completion::EMPTY; 3];
    while flash.in_flight() > 0 {
        let n = flash.complete(arena, &mut done).unwrap();
        assert!(n > 0, "complete made no progress");
        out.extend_from_slice(&done[..n]);
    }
    out
}

/// Read `extents` through any device; the bytes in extent order, or the
/// first refusal's kind.
fn read_extents<F: FlashDevice>(dev: &mut F, extents: &[(u64, u32)]) -> Result<Vec<u8>, ErrorKind> {
    let g = dev.geometry();
    let total: usize = extents.iter().map(|e| e.1 as usize).sum();
    let mut arena = LockedArena::new(total + extents.len() * 4096 + 4096).unwrap();
    let reads: Vec<ReadRequest> = extents
        .iter()
        .enumerate()
        .map(|(i, &(offset, len))| {
            let slot = arena
                .alloc(
                    len.max(1) as usize,
                    g.block_size as usize,
                    SlotKind::IoBuffer,
                )
                .unwrap();
            request(i as u32, offset, len as usize, slot)
        })
        .collect();
    for chunk in reads.chunks(usize::from(g.queue_depth)) {
        dev.read_blocking(&mut arena, chunk).map_err(|e| e.kind())?;
    }
    let mut out = Vec::with_capacity(total);
    for r in &reads {
        out.extend_from_slice(&arena.bytes(r.dest).unwrap()[..r.len as usize]);
    }
    Ok(out)
}

#[test]
fn a_regular_file_is_read_directly_with_the_reported_alignment() {
    let t = Target::file("report", 1, 64 * 4096 + 300);
    let flash = BlockFlash::open(&t.path, opts(Engine::Auto)).unwrap();
    let r = *flash.report();
    assert_eq!(r.file, FileKind::Regular);
    assert_eq!(r.bounce_bytes, 4 << 20);
    let g = flash.geometry();
    match r.direct {
        DirectStatus::Direct { offset_align, .. } => {
            assert_eq!(g.block_size, offset_align.max(512));
        }
        // A temp dir on a file system without O_DIRECT: reported, 4 KiB blocks.
        DirectStatus::Buffered { why } => {
            assert!(!matches!(why, BufferedWhy::Requested));
            assert_eq!(g.block_size, 4096);
        }
    }
    if let EngineStatus::Threads { why, .. } = r.engine {
        assert!(matches!(why, FallbackWhy::Unavailable { .. }), "{r}");
    }
    let b = u64::from(g.block_size);
    assert_eq!(g.capacity, (64 * 4096 + 300) / b * b);
    assert_eq!(flash.tail_bytes(), (64 * 4096 + 300) % b);
    assert_eq!(g.queue_depth, 32);
    assert_eq!(g.max_transfer, 1 << 20);
    assert_eq!(flash.cost_model(), crate::file_flash::DEV_MACHINE_DISK);
    assert_eq!(flash.in_flight(), 0);
    assert!(!r.to_string().is_empty());
}

#[test]
fn engines_can_be_forced_and_are_reported() {
    let t = Target::file("forced", 2, 16 * 4096);
    let flash = BlockFlash::open(&t.path, opts(Engine::Threads)).unwrap();
    assert_eq!(
        flash.report().engine,
        EngineStatus::Threads {
            threads: 4,
            pinned_cpu: None,
            why: FallbackWhy::Forced
        }
    );
    if engines().contains(&Engine::IoUring) {
        let flash = BlockFlash::open(&t.path, opts(Engine::IoUring)).unwrap();
        match flash.report().engine {
            EngineStatus::IoUring { entries, .. } => assert!(entries >= 32),
            other => panic!("forced io_uring ran {other}"),
        }
    }
}

#[test]
fn the_pool_can_be_pinned_and_a_bad_cpu_is_an_error() {
    let t = Target::file("pin", 3, 8 * 4096);
    let o = BlockFlashOptions {
        threads: 1,
        pin_cpu: Some(0),
        ..opts(Engine::Threads)
    };
    let mut flash = BlockFlash::open(&t.path, o).unwrap();
    assert!(matches!(
        flash.report().engine,
        EngineStatus::Threads {
            threads: 1,
            pinned_cpu: Some(0),
            ..
        }
    ));
    let got = read_extents(&mut flash, &[(4096, 8192)]).unwrap();
    assert_eq!(got, &t.bytes[4096..3 * 4096]);
    let bad = BlockFlashOptions {
        pin_cpu: Some(1 << 20),
        ..o
    };
    let err = BlockFlash::open(&t.path, bad).unwrap_err();
    assert_eq!(err.reason(), Reason::Pin { cpu: 1 << 20 }, "{err}");
    assert_eq!(
        err.io_error().and_then(io::Error::raw_os_error),
        Some(libc::EINVAL)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random aligned extents read through io_uring, through the forced
    /// pread pool and through `FakeFlash` over the same bytes are the same
    /// bytes; misaligned ones are refused with `Misaligned` by all of them,
    /// and nothing is left queued.
    #[test]
    fn every_engine_and_the_fake_agree(
        seed: u64,
        blocks in 8usize..300,
        extents in proptest::collection::vec((any::<u32>(), 1u32..64), 1..40),
        skew in 1u64..4096,
    ) {
        for t in Target::all("agree", seed, blocks * 4096) {
            let mut devices: Vec<BlockFlash> = engines()
                .into_iter()
                .map(|e| BlockFlash::open(&t.path, opts(e)).unwrap())
                .collect();
            let g = devices[0].geometry();
            let b = u64::from(g.block_size);
            let len = t.bytes.len() as u64;
            let fake_geometry = Geometry { capacity: len / b * b, ..g };
            let mut fake = FakeFlash::with_model(t.bytes.clone(), fake_geometry, g_cost(), FaultPlan::none());
            let blocks_total = len / b;
            let ext: Vec<(u64, u32)> = extents
                .iter()
                .map(|&(start, n)| {
                    let first = u64::from(start) % blocks_total;
                    let n = u64::from(n).min(blocks_total - first).min(u64::from(g.max_transfer) / b);
                    (first * b, (n * b) as u32)
                })
                .collect();
            let expect: Vec<u8> = ext
                .iter()
                .flat_map(|&(o, n)| t.bytes[o as usize..o as usize + n as usize].iter().copied())
                .collect();
            prop_assert_eq!(read_extents(&mut fake, &ext).unwrap(), expect.clone());
            for dev in devices.iter_mut() {
                prop_assert_eq!(read_extents(dev, &ext).unwrap(), expect.clone(), "{}", dev.report());
                let stats = dev.stats();
                prop_assert_eq!(stats.reads, ext.len() as u64);
                prop_assert_eq!(stats.failed_reads, 0);
                prop_assert_eq!(stats.bytes_read, expect.len() as u64);
            }
            // Misaligned offset (skew is never a multiple of the block).
            let skew = skew % b;
            if skew != 0 {
                let bad = [(ext[0].0 + skew, ext[0].1)];
                prop_assert_eq!(read_extents(&mut fake, &bad), Err(ErrorKind::Misaligned));
                for dev in devices.iter_mut() {
                    prop_assert_eq!(read_extents(dev, &bad), Err(ErrorKind::Misaligned));
                    prop_assert_eq!(dev.in_flight(), 0);
                }
            }
        }
    }
}

fn g_cost() -> CostModel {
    crate::file_flash::DEV_MACHINE_DISK
}

#[test]
fn refusals_queue_nothing() {
    for t in Target::all("refuse", 4, 64 * 4096) {
        for engine in engines() {
            let o = BlockFlashOptions {
                max_transfer: 64 << 10,
                queue_depth: 4,
                ..opts(engine)
            };
            let mut flash = BlockFlash::open(&t.path, o).unwrap();
            let g = flash.geometry();
            let b = g.block_size as usize;
            let cap = g.capacity;
            let mut arena = LockedArena::new(1 << 20).unwrap();
            let big = arena.alloc(128 << 10, 4096, SlotKind::IoBuffer).unwrap();
            let small = arena.alloc(b, 4096, SlotKind::IoBuffer).unwrap();
            let freed = arena.alloc(b, 4096, SlotKind::IoBuffer).unwrap();
            arena.free(freed).unwrap();
            let good = request(0, 0, b, small);
            let cases = [
                (request(1, b as u64 / 2, b, big), ErrorKind::Misaligned),
                (request(1, 0, b + 1, big), ErrorKind::Misaligned),
                (request(1, 0, 0, big), ErrorKind::Misaligned),
                (
                    ReadRequest {
                        dest_offset: b / 2,
                        ..request(1, 0, b, big)
                    },
                    ErrorKind::Misaligned,
                ),
                (request(1, cap, b, big), ErrorKind::OutOfRange),
                (
                    request(1, u64::MAX - b as u64 + 1, b, big),
                    ErrorKind::OutOfRange,
                ),
                (request(1, 0, 128 << 10, big), ErrorKind::TooLarge),
                (request(1, 0, 2 * b, small), ErrorKind::BadDestination),
                (request(1, 0, b, freed), ErrorKind::BadDestination),
            ];
            for (bad, kind) in cases {
                let err = flash.submit(&mut arena, &[good, bad]).unwrap_err();
                assert_eq!(err.kind(), kind, "{bad:?}: {err}");
                assert_eq!(err.reason(), Reason::Refused(kind));
                assert_eq!(flash.in_flight(), 0);
            }
            assert_eq!(
                flash.submit(&mut arena, &[good; 5]).unwrap_err().kind(),
                ErrorKind::QueueFull
            );
            flash.submit(&mut arena, &[good; 3]).unwrap();
            assert_eq!(
                flash.submit(&mut arena, &[good; 2]).unwrap_err().kind(),
                ErrorKind::QueueFull
            );
            flash.submit(&mut arena, &[good]).unwrap();
            let done = drain(&mut flash, &mut arena);
            assert_eq!(done.len(), 4);
            assert!(done.iter().all(|c| c.status.is_ok()));
            assert_eq!(flash.stats().reads, 4);
        }
    }
}

#[test]
fn a_small_bounce_pool_makes_reads_wait_not_fail() {
    for t in Target::all("backlog", 5, 256 * 4096) {
        for engine in engines() {
            let o = BlockFlashOptions {
                max_transfer: 64 << 10,
                bounce_bytes: 128 << 10,
                ..opts(engine)
            };
            let mut flash = BlockFlash::open(&t.path, o).unwrap();
            let ext: Vec<(u64, u32)> = (0..16).map(|i| (i * (64 << 10), 64 << 10)).collect();
            let got = read_extents(&mut flash, &ext).unwrap();
            assert_eq!(got, &t.bytes[..16 * (64 << 10)]);
            let s = flash.stats();
            assert!(s.backlogged >= 14, "{s:?}");
            assert_eq!(s.reads, 16);
            assert!(s.copy_ns > 0);
        }
    }
}

#[test]
fn completions_are_collected_in_pieces_and_empty_calls_return_nothing() {
    for t in Target::all("pieces", 6, 32 * 4096) {
        for engine in engines() {
            let mut flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
            let mut arena = LockedArena::new(1 << 20).unwrap();
            let reads: Vec<ReadRequest> = (0..5)
                .map(|i| {
                    let s = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
                    request(100 + i, u64::from(i) * 4096, 4096, s)
                })
                .collect();
            assert_eq!(
                flash
                    .complete(&mut arena, &mut [Completion::EMPTY; 4])
                    .unwrap(),
                0
            );
            flash.submit(&mut arena, &reads).unwrap();
            assert_eq!(flash.complete(&mut arena, &mut []).unwrap(), 0);
            assert_eq!(flash.in_flight(), 5);
            let mut one = [Completion::EMPTY; 1];
            assert_eq!(flash.complete(&mut arena, &mut one).unwrap(), 1);
            assert_eq!(flash.in_flight(), 4);
            let mut tags = vec![one[0].tag];
            tags.extend(drain(&mut flash, &mut arena).iter().map(|c| c.tag));
            tags.sort_unstable();
            assert_eq!(tags, vec![100, 101, 102, 103, 104]);
            for r in &reads {
                let at = r.offset as usize;
                assert_eq!(arena.bytes(r.dest).unwrap(), &t.bytes[at..at + 4096]);
            }
        }
    }
}

#[test]
fn a_slot_freed_in_flight_is_a_bad_destination_and_the_arena_is_untouched() {
    for engine in engines() {
        let t = Target::file("freed", 7, 16 * 4096);
        let mut flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
        let mut arena = LockedArena::new(1 << 20).unwrap();
        let slot = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        flash
            .submit(&mut arena, &[request(7, 0, 4096, slot)])
            .unwrap();
        arena.free(slot).unwrap();
        // The memory is handed out again and written while the read is in flight.
        let other = arena.alloc(4096, 4096, SlotKind::Scratch).unwrap();
        arena.bytes_mut(other).unwrap().fill(0xEE);
        let done = drain(&mut flash, &mut arena);
        assert_eq!(
            done,
            vec![Completion {
                tag: 7,
                status: Err(ErrorKind::BadDestination)
            }]
        );
        // The device never wrote into the arena: the new owner's bytes stand.
        assert!(arena.bytes(other).unwrap().iter().all(|&b| b == 0xEE));
        assert_eq!(flash.stats().failed_reads, 1);
    }
}

#[test]
fn a_file_truncated_after_open_gives_io_completions() {
    for engine in engines() {
        let t = Target::file("trunc", 8, 32 * 4096);
        let mut flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&t.path)
            .unwrap()
            .set_len(10 * 4096)
            .unwrap();
        let mut arena = LockedArena::new(1 << 20).unwrap();
        let inside = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        let straddle = arena.alloc(8192, 4096, SlotKind::IoBuffer).unwrap();
        let gone = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        let reads = [
            request(1, 0, 4096, inside),
            request(2, 9 * 4096, 8192, straddle),
            request(3, 20 * 4096, 4096, gone),
        ];
        flash.submit(&mut arena, &reads).unwrap();
        let mut done = drain(&mut flash, &mut arena);
        done.sort_by_key(|c| c.tag);
        let statuses: Vec<_> = done.iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            vec![Ok(()), Err(ErrorKind::Io), Err(ErrorKind::Io)],
            "{}",
            flash.report()
        );
        // The straddling read got its first block, then EOF: one resubmission.
        assert!(flash.stats().resubmits >= 1);
        match flash.read_blocking(&mut arena, &[request(4, 20 * 4096, 4096, gone)]) {
            Err(ReadError::Failed {
                tag: 4,
                kind: ErrorKind::Io,
            }) => {}
            other => panic!("expected an Io failure, got {other:?}"),
        }
    }
}

#[test]
fn writes_round_trip_in_every_mode() {
    for direct in [DirectIo::Auto, DirectIo::Off] {
        for write_mode in [WriteMode::SyncOnDemand, WriteMode::Dsync] {
            for t in Target::all("write", 9, 64 * 4096) {
                let o = BlockFlashOptions {
                    writable: true,
                    direct,
                    write_mode,
                    max_transfer: 8192,
                    ..opts(Engine::Auto)
                };
                let mut flash = BlockFlash::open(&t.path, o).unwrap();
                let b = flash.geometry().block_size as usize;
                // Longer than max_transfer: the staging buffer is reused.
                let data = pattern(99, 5 * 4096);
                flash.write(3 * 4096, &data).unwrap();
                flash.sync().unwrap();
                let mut expect = t.bytes.clone();
                expect[3 * 4096..8 * 4096].copy_from_slice(&data);
                let on_disk = {
                    let mut v = vec![0u8; expect.len()];
                    File::open(&t.path)
                        .unwrap()
                        .read_exact_at(&mut v, 0)
                        .unwrap();
                    v
                };
                assert_eq!(on_disk, expect, "{} {write_mode:?}", flash.report());
                let got = read_extents(&mut flash, &[(2 * 4096, 8192), (6 * 4096, 8192)]).unwrap();
                assert_eq!(&got[..8192], &expect[2 * 4096..4 * 4096]);
                assert_eq!(&got[8192..], &expect[6 * 4096..8 * 4096]);
                let s = flash.stats();
                assert_eq!((s.writes, s.bytes_written, s.syncs), (1, 5 * 4096, 1));
                let kind = |r: Result<(), BlockFlashError>| r.unwrap_err().kind();
                assert_eq!(
                    kind(flash.write(b as u64 / 2, &data)),
                    ErrorKind::Misaligned
                );
                assert_eq!(kind(flash.write(0, &data[..b / 2])), ErrorKind::Misaligned);
                let cap = flash.geometry().capacity;
                assert_eq!(kind(flash.write(cap - 4096, &data)), ErrorKind::OutOfRange);
                assert_eq!(kind(flash.write(0, &[])), ErrorKind::Misaligned);
            }
        }
    }
}

#[test]
fn a_read_only_device_refuses_writes() {
    let t = Target::file("ro", 10, 8 * 4096);
    let mut flash = BlockFlash::open(&t.path, opts(Engine::Auto)).unwrap();
    let err = flash.write(0, &[1; 4096]).unwrap_err();
    assert_eq!(err.reason(), Reason::ReadOnly, "{err}");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(std::fs::read(&t.path).unwrap(), t.bytes);
}

#[test]
fn buffered_io_and_windows() {
    let t = Target::file("window", 11, 40 * 4096);
    // Buffered on request: 4 KiB blocks, any window start.
    let o = BlockFlashOptions {
        direct: DirectIo::Off,
        ..opts(Engine::Auto)
    };
    let w = Window::new(1028, 9 * 4096 + 300);
    let mut flash = BlockFlash::open_window(&t.path, w, o).unwrap();
    assert_eq!(
        flash.report().direct,
        DirectStatus::Buffered {
            why: BufferedWhy::Requested
        }
    );
    assert_eq!(flash.geometry().block_size, 4096);
    assert_eq!(flash.geometry().capacity, 9 * 4096);
    assert_eq!(flash.tail_bytes(), 300);
    let got = read_extents(&mut flash, &[(2 * 4096, 3 * 4096)]).unwrap();
    assert_eq!(got, &t.bytes[1028 + 2 * 4096..1028 + 5 * 4096]);

    let auto = BlockFlash::open_window(&t.path, w, opts(Engine::Auto)).unwrap();
    if let DirectStatus::Buffered { why } = auto.report().direct {
        // Either this file system has no O_DIRECT, or the window is the reason.
        assert!(!matches!(why, BufferedWhy::Requested));
    } else {
        panic!("an unaligned window cannot be read directly");
    }
    let require = BlockFlashOptions {
        direct: DirectIo::Require,
        ..opts(Engine::Auto)
    };
    let aligned = Window::new(8 * 4096, 16 * 4096);
    match BlockFlash::open_window(&t.path, aligned, require) {
        Ok(mut f) => {
            assert!(f.report().direct.is_direct());
            let got = read_extents(&mut f, &[(0, 4096)]).unwrap();
            assert_eq!(got, &t.bytes[8 * 4096..9 * 4096]);
            let err = BlockFlash::open_window(&t.path, w, require).unwrap_err();
            assert!(
                matches!(err.reason(), Reason::WindowUnaligned { offset: 1028, .. }),
                "{err}"
            );
            assert_eq!(err.kind(), ErrorKind::Misaligned);
        }
        Err(e) => assert_eq!(e.reason(), Reason::DirectRefused, "{e}"),
    }
}

#[test]
fn tmpfs_opens_and_reads_whatever_it_supports() {
    let dir = Path::new("/dev/shm");
    if !dir.is_dir() {
        return;
    }
    let path = dir.join(format!("lode-block-tmpfs-{}", std::process::id()));
    let bytes = pattern(12, 32 * 4096);
    std::fs::write(&path, &bytes).unwrap();
    let result = BlockFlash::open(&path, opts(Engine::Auto));
    let mut flash = result.unwrap();
    // statx gives no DIOALIGN on tmpfs: a probe answered, or O_DIRECT was
    // refused and that is reported.
    match flash.report().direct {
        DirectStatus::Direct { source, .. } => assert_eq!(source, AlignSource::Probe),
        DirectStatus::Buffered { why } => {
            assert!(matches!(
                why,
                BufferedWhy::Refused { .. } | BufferedWhy::ProbeFailed
            ))
        }
    }
    let got = read_extents(&mut flash, &[(4096, 8192)]).unwrap();
    assert_eq!(got, &bytes[4096..3 * 4096]);
    drop(flash);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn descriptors_can_be_handed_in() {
    let t = Target::file("fd", 13, 16 * 4096);
    for engine in engines() {
        let file = File::open(&t.path).unwrap();
        let mut flash =
            BlockFlash::from_file(file, Some(Window::new(4096, 8 * 4096)), opts(engine)).unwrap();
        let got = read_extents(&mut flash, &[(4096, 4096)]).unwrap();
        assert_eq!(got, &t.bytes[2 * 4096..3 * 4096]);
        assert!(flash.path.is_none());
    }
}

#[test]
fn dropping_with_reads_in_flight_waits_for_them() {
    let t = Target::file("dropped", 14, 512 * 4096);
    for engine in engines() {
        let mut arena = LockedArena::new(4 << 20).unwrap();
        for _ in 0..20 {
            let mut flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
            let reads: Vec<ReadRequest> = (0..32)
                .map(|i| {
                    let s = arena.alloc(64 << 10, 4096, SlotKind::IoBuffer).unwrap();
                    request(i, u64::from(i) * (64 << 10), 64 << 10, s)
                })
                .collect();
            flash.submit(&mut arena, &reads).unwrap();
            drop(flash);
            // Nothing was delivered: data lands only when collected.
            for r in &reads {
                assert!(arena.bytes(r.dest).unwrap().iter().all(|&b| b == 0));
            }
            arena.reset();
        }
    }
}

#[test]
fn opening_problems_are_clear_errors() {
    let missing = std::env::temp_dir().join(format!("lode-block-missing-{}", std::process::id()));
    let err = BlockFlash::open(&missing, opts(Engine::Auto)).unwrap_err();
    assert_eq!(err.reason(), Reason::Open);
    assert_eq!(err.path(), Some(missing.as_path()));
    assert_eq!(err.kind(), ErrorKind::Io);

    let err = BlockFlash::open(std::env::temp_dir(), opts(Engine::Auto)).unwrap_err();
    assert!(
        matches!(err.reason(), Reason::NotAFile | Reason::Open),
        "{err}"
    );

    let empty = TempFile::with_bytes("empty", &[]).unwrap();
    let err = BlockFlash::open(empty.path(), opts(Engine::Auto)).unwrap_err();
    assert!(
        matches!(err.reason(), Reason::WindowTooSmall { len: 0, .. }),
        "{err}"
    );

    let t = Target::file("past", 15, 4 * 4096);
    let err = BlockFlash::open_window(&t.path, Window::new(4096, 4 * 4096), opts(Engine::Auto))
        .unwrap_err();
    assert!(
        matches!(err.reason(), Reason::WindowPastEnd { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::OutOfRange);

    let bad = BlockFlashOptions {
        queue_depth: 0,
        ..opts(Engine::Auto)
    };
    let err = BlockFlash::open(&t.path, bad).unwrap_err();
    assert!(matches!(err.reason(), Reason::InvalidOptions(_)), "{err}");

    // A coarser block size than the device needs is fine; a finer one (only
    // possible below 512 bytes here, which `validate` refuses) is not.
    let coarse = BlockFlashOptions {
        block_size: Some(8192),
        ..opts(Engine::Auto)
    };
    let flash = BlockFlash::open(&t.path, coarse).unwrap();
    assert_eq!(flash.geometry().block_size, 8192);
}

#[test]
fn block_size_follows_the_device_or_a_coarser_request() {
    let direct = |a: u32| DirectStatus::Direct {
        offset_align: a,
        mem_align: a,
        source: AlignSource::BlockDeviceIoctl,
    };
    assert_eq!(block_size(None, direct(512)).unwrap(), (512, 512));
    assert_eq!(block_size(Some(4096), direct(512)).unwrap(), (4096, 512));
    let err = block_size(Some(512), direct(4096)).unwrap_err();
    assert_eq!(
        err.reason(),
        Reason::BlockSizeTooSmall {
            requested: 512,
            device: 4096
        }
    );
    let buffered = DirectStatus::Buffered {
        why: BufferedWhy::Requested,
    };
    assert_eq!(block_size(None, buffered).unwrap(), (4096, 1));
    assert_eq!(block_size(Some(512), buffered).unwrap(), (512, 1));
}

#[test]
fn the_cost_model_can_be_replaced_but_not_with_nonsense() {
    let t = Target::file("cost", 16, 4 * 4096);
    let mut flash = BlockFlash::open(&t.path, opts(Engine::Auto)).unwrap();
    let m = CostModel {
        command_ns: 20_000,
        bytes_per_sec: 2_000_000_000,
        queue_depth: 6,
    };
    flash.set_cost_model(m).unwrap();
    assert_eq!(flash.cost_model(), m);
    let bad = CostModel {
        bytes_per_sec: 0,
        ..m
    };
    assert!(flash.set_cost_model(bad).is_err());
    assert_eq!(flash.cost_model(), m);
}

#[test]
fn a_block_device_reports_its_sector_size_and_length() {
    let Some(t) = Target::device(17, 16 * 4096) else {
        eprintln!("{DEVICE_ENV} not set: block-device checks skipped");
        return;
    };
    let flash = BlockFlash::open(&t.path, opts(Engine::Auto)).unwrap();
    let r = flash.report();
    assert!(t.block_device);
    assert_eq!(r.file, FileKind::BlockDevice);
    match r.direct {
        DirectStatus::Direct {
            offset_align,
            source,
            ..
        } => {
            assert_eq!(source, AlignSource::BlockDeviceIoctl);
            assert_eq!(flash.geometry().block_size, offset_align);
        }
        other => panic!("a loop device with --direct-io=on read as {other}"),
    }
    let mut f = File::open(&t.path).unwrap();
    let len = io::Seek::seek(&mut f, io::SeekFrom::End(0)).unwrap();
    assert_eq!(flash.geometry().capacity, len / 512 * 512);
}

#[test]
fn a_device_can_move_between_threads() {
    let t = Target::file("threads", 18, 64 * 4096);
    for engine in engines() {
        let mut flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
        assert_eq!(
            read_extents(&mut flash, &[(0, 4096)]).unwrap(),
            &t.bytes[..4096]
        );
        // Idle: it works on another thread (a bound ring is rebuilt there).
        let bytes = t.bytes.clone();
        let mut flash = std::thread::spawn(move || {
            let got = read_extents(&mut flash, &[(4096, 8192)]).unwrap();
            assert_eq!(got, &bytes[4096..3 * 4096]);
            flash
        })
        .join()
        .unwrap();
        // Back home, idle again: fine.
        assert_eq!(
            read_extents(&mut flash, &[(0, 4096)]).unwrap(),
            &t.bytes[..4096]
        );
        // Reads in flight, collected on another thread: a bound ring refuses
        // with an engine error (nothing lost), any other engine just works.
        let mut arena = LockedArena::new(1 << 20).unwrap();
        let slot = arena.alloc(4096, 4096, SlotKind::IoBuffer).unwrap();
        flash
            .submit(&mut arena, &[request(5, 8192, 4096, slot)])
            .unwrap();
        let bound = matches!(
            flash.report().engine,
            EngineStatus::IoUring { deferred: true, .. }
        );
        let (mut flash, mut arena, result) = std::thread::spawn(move || {
            let mut done = [Completion::EMPTY; 1];
            let r = flash.complete(&mut arena, &mut done).map(|n| (n, done[0]));
            (flash, arena, r)
        })
        .join()
        .unwrap();
        match result {
            Err(e) => {
                assert!(bound, "{e}");
                assert_eq!(e.reason(), Reason::Engine);
                assert_eq!(flash.in_flight(), 1);
                // The owning thread collects it.
                let done = drain(&mut flash, &mut arena);
                assert_eq!(done[0].status, Ok(()));
            }
            Ok((n, c)) => {
                assert!(!bound);
                assert_eq!((n, c.tag, c.status), (1, 5, Ok(())));
            }
        }
        assert_eq!(arena.bytes(slot).unwrap(), &t.bytes[8192..3 * 4096]);
    }
}

#[test]
fn a_refused_ring_falls_back_to_the_pool_and_says_why() {
    let t = Target::file("refused", 19, 8 * 4096);
    let file = Arc::new(File::open(&t.path).unwrap());
    let refuse = |errno| {
        move || -> io::Result<uring::UringEngine> { Err(io::Error::from_raw_os_error(errno)) }
    };
    // What a seccomp filter (EPERM) or an old kernel (ENOSYS) looks like.
    for errno in [libc::EPERM, libc::ENOSYS] {
        let (runner, status) = start_engine(&file, &opts(Engine::Auto), refuse(errno)).unwrap();
        assert!(matches!(runner, Runner::Threads(_)));
        match status {
            EngineStatus::Threads {
                threads: 4,
                why: FallbackWhy::Unavailable { errno: e, .. },
                ..
            } => assert_eq!(e, errno),
            other => panic!("{other}"),
        }
    }
    // Required io_uring turns the refusal into an error.
    let err = start_engine(&file, &opts(Engine::IoUring), refuse(libc::EPERM))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.reason(), Reason::IoUringUnavailable);
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    // Forced threads never try the ring.
    let (_, status) = start_engine(
        &file,
        &opts(Engine::Threads),
        || -> io::Result<uring::UringEngine> { panic!("the ring must not be tried") },
    )
    .unwrap();
    assert!(matches!(
        status,
        EngineStatus::Threads {
            why: FallbackWhy::Forced,
            ..
        }
    ));
}
