//! `BlockFlash` against the shared flash contract (`lode_hal::conformance`)
//! on every engine, on a regular file and on the block device CI names; and
//! faults injected into its reads by the kernel's `FaultInjector`.

use super::*;
use lode_hal::conformance::{check_writable, Config};
use lode_kernel::flash::{FaultInjector, Faults};

/// A writable device over `medium`: a temp file (unlinked once open; the
/// descriptor keeps it), or the block device with `medium` written at its
/// start.
fn open_over(medium: &[u8], device: Option<&Path>, o: BlockFlashOptions) -> BlockFlash {
    let o = BlockFlashOptions {
        writable: true,
        ..o
    };
    match device {
        Some(path) => {
            let dev = OpenOptions::new().write(true).open(path).unwrap();
            dev.write_all_at(medium, 0).unwrap();
            dev.sync_all().unwrap();
            BlockFlash::open(path, o).unwrap()
        }
        None => {
            let file = TempFile::with_bytes("contract", medium).unwrap();
            BlockFlash::open(file.path(), o).unwrap()
        }
    }
}

#[test]
fn block_flash_keeps_the_flash_contract() {
    let cfg = Config::default();
    for t in Target::all("contract", 21, 4096) {
        let device = t.block_device.then_some(t.path.as_path());
        for engine in engines() {
            for direct in [DirectIo::Auto, DirectIo::Off] {
                let o = BlockFlashOptions {
                    direct,
                    max_transfer: 64 << 10,
                    ..opts(engine)
                };
                check_writable(&cfg, |m| open_over(m, device, o)).unwrap_or_else(|f| {
                    panic!("{engine:?} {direct:?} on {}: {f}", t.path.display())
                });
            }
        }
        // A small bounce pool: reads wait inside the device, the contract
        // holds all the same.
        let small = BlockFlashOptions {
            bounce_bytes: 64 << 10,
            max_transfer: 16 << 10,
            queue_depth: 8,
            ..opts(Engine::Auto)
        };
        check_writable(&cfg, |m| open_over(m, device, small)).unwrap();
    }
}

/// A window of a file starting mid-block (buffered, as for an APK asset).
#[test]
fn a_block_flash_window_keeps_the_flash_contract() {
    let o = BlockFlashOptions {
        direct: DirectIo::Off,
        writable: true,
        ..opts(Engine::Threads)
    };
    check_writable(&Config::default(), |m| {
        let mut bytes = pattern(3, 1028);
        bytes.extend_from_slice(m);
        let file = TempFile::with_bytes("contract-window", &bytes).unwrap();
        let window = Window::new(1028, m.len() as u64);
        BlockFlash::open_window(file.path(), window, o).unwrap()
    })
    .unwrap();
}

/// Faults on real storage: a bad extent fails the reads over it with `Io`
/// and leaves their destinations alone; a certain bit flip changes exactly
/// one bit of each delivered copy, which a comparison with the file finds;
/// the device underneath is unharmed and reads correctly afterwards.
#[test]
fn injected_read_errors_and_bit_flips_surface_through_block_flash() {
    for t in Target::all("faults", 22, 64 * 4096) {
        for engine in engines() {
            let flash = BlockFlash::open(&t.path, opts(engine)).unwrap();
            let mut f: FaultInjector<_> = FaultInjector::new(flash, Faults::none());
            assert!(f.fail_reads(8 * 4096, 4096));
            let mut arena = LockedArena::new(1 << 20).unwrap();
            let reads: Vec<ReadRequest> = (0..4u64)
                .map(|i| {
                    let s = arena.alloc(4 * 4096, 4096, SlotKind::IoBuffer).unwrap();
                    arena.bytes_mut(s).unwrap().fill(0xEE);
                    request(i as u32, i * 4 * 4096, 4 * 4096, s)
                })
                .collect();
            f.submit(&mut arena, &reads).unwrap();
            let mut done = Vec::new();
            let mut buf = [Completion::EMPTY; 4];
            while f.in_flight() > 0 {
                let n = f.complete(&mut arena, &mut buf).unwrap();
                done.extend_from_slice(&buf[..n]);
            }
            done.sort_by_key(|c| c.tag);
            let statuses: Vec<_> = done.iter().map(|c| c.status).collect();
            // Read 2 covers blocks 8..12, the bad extent.
            assert_eq!(statuses, [Ok(()), Ok(()), Err(ErrorKind::Io), Ok(())]);
            assert!(arena
                .bytes(reads[2].dest)
                .unwrap()
                .iter()
                .all(|&b| b == 0xEE));
            assert_eq!(f.counts().read_errors, 1);

            f.heal();
            f.set_faults(Faults {
                seed: 5,
                bit_flip_ppm: 1_000_000,
                ..Faults::none()
            });
            f.read_blocking(&mut arena, &reads).unwrap();
            for r in &reads {
                let at = r.offset as usize;
                let got = arena.bytes(r.dest).unwrap();
                let flipped: u32 = got
                    .iter()
                    .zip(&t.bytes[at..at + r.len as usize])
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
                assert_eq!(flipped, 1, "read {} on {}", r.tag, f.inner().report());
            }
            assert_eq!(f.counts().bit_flips, 4);

            let mut flash = f.into_inner();
            assert_eq!(
                flash.stats().reads,
                7,
                "the failed read never reached the device"
            );
            let got = read_extents(&mut flash, &[(0, 16 * 4096)]).unwrap();
            assert_eq!(got, &t.bytes[..16 * 4096]);
        }
    }
}

/// Errors from `BlockFlash` keep their detail through the injector.
#[test]
fn the_devices_own_errors_pass_through_the_injector() {
    let t = Target::file("faults-err", 23, 8 * 4096);
    let flash = BlockFlash::open(&t.path, opts(Engine::Auto)).unwrap();
    let mut f: FaultInjector<_> = FaultInjector::new(flash, Faults::none());
    // Read-only: the device refuses the write with its own reason.
    match f.write(0, &[0; 4096]) {
        Err(lode_kernel::flash::AdapterError::Device(e)) => {
            assert_eq!(e.reason(), Reason::ReadOnly);
        }
        other => panic!("expected the device's error, got {other:?}"),
    }
}
