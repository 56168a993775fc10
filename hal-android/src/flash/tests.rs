use super::*;
use lode_hal_linux::block_flash::{DirectStatus, EngineStatus, FallbackWhy, Reason};
use lode_hal_linux::LockedArena;
use lode_kernel::arena::SlotKind;
use lode_kernel::flash::{Error as _, ErrorKind};
use lode_kernel::rng::SplitMix64;
use std::path::PathBuf;

const BLOCK: usize = 4096;

/// A temp file deleted on drop; its bytes are seeded noise.
pub(crate) struct Temp {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

impl Temp {
    pub(crate) fn new(tag: &str, len: usize) -> Temp {
        let mut rng = SplitMix64::new(len as u64 ^ 0xA5);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "lode-hal-android-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::write(&path, &bytes).unwrap();
        Temp { path, bytes }
    }

    pub(crate) fn fd(&self) -> OwnedFd {
        OwnedFd::from(File::open(&self.path).unwrap())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read(flash: &mut AndroidFlash, offset: u64, len: usize) -> Vec<u8> {
    let mut arena = LockedArena::new(len + BLOCK).unwrap();
    let dest = arena.alloc(len, BLOCK, SlotKind::IoBuffer).unwrap();
    let r = ReadRequest {
        tag: 0,
        offset,
        len: len as u32,
        dest,
        dest_offset: 0,
    };
    flash.read_blocking(&mut arena, &[r]).unwrap();
    arena.bytes(dest).unwrap().to_vec()
}

#[test]
fn one_io_thread_buffered_by_default() {
    let file = Temp::new("defaults", 8 * BLOCK);
    let flash = AndroidFlash::from_fd(file.fd(), None, AndroidOptions::default()).unwrap();
    let r = flash.report();
    assert_eq!(
        r.engine,
        EngineStatus::Threads {
            threads: 1,
            pinned_cpu: None,
            why: FallbackWhy::Forced
        }
    );
    assert!(!r.direct.is_direct());
    assert_eq!(flash.cost_model(), UFS31_UNCALIBRATED);
    assert_eq!(flash.geometry().queue_depth, 32);
    assert_eq!(r.bounce_bytes, 4 << 20);
}

#[test]
fn the_default_model_is_the_fake_ufs31_profile() {
    assert_eq!(UFS31_UNCALIBRATED, lode_hal::fake::Profile::UFS31.cost);
}

#[test]
fn asset_window_reads_its_bytes_on_a_pinned_thread() {
    // An asset at a 4-byte-aligned (zip-aligned, not block-aligned)
    // offset inside a larger "APK".
    let apk = Temp::new("asset", 20 * BLOCK);
    let (offset, len) = (1028u64, 9 * BLOCK as u64 + 300);
    let opts = AndroidOptions {
        io_cpu: Some(0),
        ..AndroidOptions::default()
    };
    let mut flash = AndroidFlash::from_asset(apk.fd(), offset, len, opts).unwrap();
    assert!(matches!(
        flash.report().engine,
        EngineStatus::Threads {
            pinned_cpu: Some(0),
            ..
        }
    ));
    assert_eq!(flash.window(), Window::new(offset, len));
    assert_eq!(flash.geometry().capacity, 9 * BLOCK as u64);
    assert_eq!(flash.tail_bytes(), 300);
    let got = read(&mut flash, 2 * BLOCK as u64, 3 * BLOCK);
    let start = offset as usize + 2 * BLOCK;
    assert_eq!(got, &apk.bytes[start..start + 3 * BLOCK]);
    assert_eq!(flash.stats().reads, 1);
    assert_eq!(flash.stats().bytes_read, 3 * BLOCK as u64);
}

#[test]
fn direct_io_can_be_asked_for_and_falls_back_on_an_unaligned_asset() {
    let apk = Temp::new("direct", 20 * BLOCK);
    let opts = AndroidOptions {
        direct: DirectIo::Auto,
        ..AndroidOptions::default()
    };
    let flash = AndroidFlash::from_asset(apk.fd(), 1028, 8 * BLOCK as u64, opts).unwrap();
    assert!(matches!(
        flash.report().direct,
        DirectStatus::Buffered { .. }
    ));
    let mut aligned =
        AndroidFlash::from_asset(apk.fd(), 4 * BLOCK as u64, 8 * BLOCK as u64, opts).unwrap();
    // Direct where the temp directory's file system allows it.
    let got = read(&mut aligned, 0, BLOCK);
    assert_eq!(got, &apk.bytes[4 * BLOCK..5 * BLOCK]);
}

#[test]
fn whole_descriptor_by_default() {
    let file = Temp::new("whole", 5 * BLOCK);
    let mut flash = AndroidFlash::from_fd(file.fd(), None, AndroidOptions::default()).unwrap();
    assert_eq!(flash.geometry().capacity, 5 * BLOCK as u64);
    assert_eq!(read(&mut flash, 0, 5 * BLOCK), file.bytes);
}

#[test]
fn bad_windows_cpus_and_writes_are_refused() {
    let file = Temp::new("bad", 4 * BLOCK);
    let err = AndroidFlash::from_asset(file.fd(), 100, 4 * BLOCK as u64, AndroidOptions::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    assert!(
        matches!(err.reason(), Reason::WindowPastEnd { .. }),
        "{err}"
    );
    let bad_cpu = AndroidOptions {
        io_cpu: Some(1 << 20),
        ..AndroidOptions::default()
    };
    let err = AndroidFlash::from_fd(file.fd(), None, bad_cpu).unwrap_err();
    assert_eq!(err.reason(), Reason::Pin { cpu: 1 << 20 });
    // A read-only descriptor cannot be written.
    let mut flash = AndroidFlash::from_fd(file.fd(), None, AndroidOptions::default()).unwrap();
    assert_eq!(
        flash.write(0, &[0; BLOCK]).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    // Requests are checked by the shared rules.
    let mut arena = LockedArena::new(1 << 16).unwrap();
    let dest = arena.alloc(BLOCK, BLOCK, SlotKind::IoBuffer).unwrap();
    let r = ReadRequest {
        tag: 1,
        offset: 100,
        len: BLOCK as u32,
        dest,
        dest_offset: 0,
    };
    assert_eq!(
        flash.submit(&mut arena, &[r]).unwrap_err().kind(),
        ErrorKind::Misaligned
    );
    assert_eq!(flash.in_flight(), 0);
}

#[test]
fn writable_descriptor_round_trips() {
    let file = Temp::new("rw", 4 * BLOCK);
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file.path)
        .unwrap();
    let mut flash = AndroidFlash::from_fd(
        OwnedFd::from(rw),
        Some((BLOCK as u64, 2 * BLOCK as u64)),
        AndroidOptions::default(),
    )
    .unwrap();
    flash.write(BLOCK as u64, &[0x5A; BLOCK]).unwrap();
    flash.sync().unwrap();
    assert_eq!(read(&mut flash, BLOCK as u64, BLOCK), vec![0x5A; BLOCK]);
    let on_disk = std::fs::read(&file.path).unwrap();
    assert_eq!(&on_disk[2 * BLOCK..3 * BLOCK], &[0x5A; BLOCK][..]);
    assert_eq!(&on_disk[..2 * BLOCK], &file.bytes[..2 * BLOCK]);
}

#[test]
fn reads_overlap_the_caller() {
    // submit returns before the thread has read anything; complete
    // collects it later.
    let file = Temp::new("overlap", 64 * BLOCK);
    let mut flash = AndroidFlash::from_fd(file.fd(), None, AndroidOptions::default()).unwrap();
    let mut arena = LockedArena::new(1 << 20).unwrap();
    let reads: Vec<ReadRequest> = (0..8)
        .map(|i| ReadRequest {
            tag: i,
            offset: u64::from(i) * 8 * BLOCK as u64,
            len: 8 * BLOCK as u32,
            dest: arena.alloc(8 * BLOCK, BLOCK, SlotKind::IoBuffer).unwrap(),
            dest_offset: 0,
        })
        .collect();
    flash.submit(&mut arena, &reads).unwrap();
    assert_eq!(flash.in_flight(), 8);
    let mut done = [Completion::EMPTY; 8];
    let mut n = 0;
    while flash.in_flight() > 0 {
        n += flash.complete(&mut arena, &mut done[n..]).unwrap();
    }
    assert_eq!(n, 8);
    for r in &reads {
        let at = r.offset as usize;
        assert_eq!(
            arena.bytes(r.dest).unwrap(),
            &file.bytes[at..at + 8 * BLOCK]
        );
    }
}
