use std::vec::Vec;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::SlotKind;
use crate::flash::testing::RamFlash;
use crate::flash::Error as _;

const B: u64 = 512;

fn device() -> RamFlash {
    let data: Vec<u8> = (0..64 * B as usize).map(|i| (i / 7) as u8).collect();
    let geo = Geometry {
        block_size: B as u32,
        capacity: 64 * B,
        max_transfer: 8 * B as u32,
        queue_depth: 16,
    };
    RamFlash::new(data, geo)
}

fn read(tag: u32, offset: u64, len: u64, arena: &mut VecArena) -> ReadRequest {
    let dest = arena
        .alloc(len as usize, B as usize, SlotKind::IoBuffer)
        .unwrap();
    ReadRequest {
        tag,
        offset,
        len: len as u32,
        dest,
        dest_offset: 0,
    }
}

#[test]
fn reads_land_from_the_windows_start() {
    let mut dev = device();
    let want = dev.data.clone();
    let mut w: Window<_> = Window::new(&mut dev, 8 * B, 16 * B).unwrap();
    let g = w.geometry();
    assert_eq!((g.capacity, g.block_size, g.queue_depth), (16 * B, 512, 16));
    let mut arena = VecArena::new(1 << 16);
    let reads = [
        read(1, 0, B, &mut arena),
        read(2, 15 * B, B, &mut arena),
        read(3, 4 * B, 8 * B, &mut arena),
    ];
    w.read_blocking(&mut arena, &reads).unwrap();
    for r in &reads {
        let at = (8 * B + r.offset) as usize;
        assert_eq!(arena.bytes(r.dest).unwrap(), &want[at..at + r.len as usize]);
    }
    // The device was lent, not taken.
    assert_eq!(dev.commands, 3);
}

#[test]
fn new_checks_the_window_once() {
    let mut dev = device();
    let cases = [
        (B / 2, B, ErrorKind::Misaligned),
        (0, B / 2, ErrorKind::Misaligned),
        (0, 0, ErrorKind::Misaligned),
        (60 * B, 8 * B, ErrorKind::OutOfRange),
        (u64::MAX - B + 1, B, ErrorKind::OutOfRange),
    ];
    for (start, len, kind) in cases {
        let w = Window::<_>::new(&mut dev, start, len);
        assert_eq!(w.map(|_| ()), Err(kind), "{start} {len}");
    }
    assert!(Window::<_>::new(&mut dev, 0, 64 * B).is_ok());
}

#[test]
fn requests_are_bounded_by_the_window_not_the_device() {
    let mut dev = device();
    let mut w: Window<_, 4> = Window::new(&mut dev, 8 * B, 16 * B).unwrap();
    assert_eq!(w.geometry().queue_depth, 4);
    let mut arena = VecArena::new(1 << 16);
    let past = read(0, 16 * B, B, &mut arena);
    let err = w.submit(&mut arena, &[past]).unwrap_err();
    assert_eq!(err, AdapterError::Adapter(ErrorKind::OutOfRange));
    let ok = read(0, 0, B, &mut arena);
    assert_eq!(
        w.submit(&mut arena, &[ok; 5]).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    w.submit(&mut arena, &[ok; 3]).unwrap();
    assert_eq!(
        w.submit(&mut arena, &[ok; 2]).unwrap_err().kind(),
        ErrorKind::QueueFull
    );
    assert_eq!(w.in_flight(), 3);
    let mut done = [Completion::EMPTY; 8];
    assert_eq!(w.complete(&mut arena, &mut done).unwrap(), 3);
    assert_eq!(w.in_flight(), 0);
}

#[test]
fn writes_are_shifted_and_bounded() {
    let mut dev = device();
    let before = dev.data.clone();
    {
        let mut w: Window<_> = Window::new(&mut dev, 4 * B, 4 * B).unwrap();
        w.write(B, &[0xAB; 2 * B as usize]).unwrap();
        w.sync().unwrap();
        assert_eq!(
            w.write(3 * B, &[0; 2 * B as usize]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            w.write(1, &[0; 512]).unwrap_err().kind(),
            ErrorKind::Misaligned
        );
        assert_eq!(w.write(0, &[]).unwrap_err().kind(), ErrorKind::Misaligned);
    }
    let mut want = before;
    want[5 * B as usize..7 * B as usize].fill(0xAB);
    assert_eq!(dev.data, want);
    assert_eq!(dev.syncs, 1);
}

#[test]
fn the_device_s_errors_pass_through() {
    let mut dev = device();
    dev.fail_at = Some(9 * B);
    let mut w: Window<_> = Window::new(dev, 8 * B, 8 * B).unwrap();
    let mut arena = VecArena::new(1 << 16);
    let r = read(5, B, B, &mut arena);
    let err = w.read_blocking(&mut arena, &[r]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(w.start(), 8 * B);
    assert_eq!(w.inner().commands, 1);
    assert_eq!(w.into_inner().fail_at, Some(9 * B));
}
