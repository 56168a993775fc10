//! Writes, for devices that implement [`FlashWrite`]: what is written and
//! synced reads back, neighbours stay, and bad writes are refused with the
//! kernel's kind and write nothing.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use lode_kernel::arena::DramArena;
use lode_kernel::flash::{Error as _, ErrorKind, FlashDevice, FlashWrite, ReadRequest};

use super::support::{drain, ensure, expect_tags, fail, memory, shape, slot, Shape};
use super::Failure;
use crate::slice_arena::SliceArena;

/// Read the first `blocks` blocks of the device back, a queue at a time.
fn read_front<D: FlashDevice>(
    check: &'static str,
    dev: &mut D,
    s: &Shape,
    blocks: u64,
) -> Result<Vec<u8>, Failure> {
    let len = blocks as usize * s.block;
    let mut mem = memory(len, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let dest = slot(check, &mut arena, len, s.block)?;
    let reads: Vec<ReadRequest> = (0..blocks)
        .map(|i| ReadRequest {
            tag: i as u32,
            offset: i * s.block as u64,
            len: s.block as u32,
            dest,
            dest_offset: i as usize * s.block,
        })
        .collect();
    for batch in reads.chunks(usize::from(s.g.queue_depth)) {
        dev.submit(&mut arena, batch)
            .map_err(|e| fail(check, format!("reading back was refused: {e:?}")))?;
        let done = drain(check, dev, &mut arena, 4)?;
        let tags: Vec<u32> = batch.iter().map(|r| r.tag).collect();
        expect_tags(check, &done, &tags)?;
    }
    arena
        .bytes(dest)
        .map(|b| b.to_vec())
        .map_err(|e| fail(check, format!("the suite's arena: {e:?}")))
}

/// Bytes written and synced read back, and the blocks around them keep the
/// medium's bytes; a write longer than `max_transfer` is taken whole (writes
/// are not bounded by it) where the span has room for one.
pub fn writes_round_trip<D: FlashWrite>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "writes_round_trip";
    let s = shape(CHECK, dev, medium)?;
    let b = s.block;
    let data: Vec<u8> = (0..2 * b).map(|i| (i % 251) as u8 ^ 0x5A).collect();
    dev.write(b as u64, &data).map_err(|e| {
        fail(
            CHECK,
            format!("writing 2 blocks at block 1 failed: {e:?} ({})", e.kind()),
        )
    })?;
    dev.sync()
        .map_err(|e| fail(CHECK, format!("sync failed: {e:?}")))?;
    let mut want = medium[..4 * b].to_vec();
    want[b..3 * b].copy_from_slice(&data);
    let got = read_front(CHECK, dev, &s, 4)?;
    ensure!(
        CHECK,
        got == want,
        "blocks 0..4 after writing blocks 1..3 differ from what was written"
    );

    let long = s.g.max_transfer as usize + b;
    if (long as u64) <= s.span {
        let data = vec![0xC3u8; long];
        dev.write(0, &data).map_err(|e| {
            fail(
                CHECK,
                format!("a write of max_transfer + 1 block failed: {e:?}"),
            )
        })?;
        dev.sync()
            .map_err(|e| fail(CHECK, format!("sync failed: {e:?}")))?;
        let blocks = (long / b) as u64;
        let got = read_front(CHECK, dev, &s, blocks)?;
        ensure!(
            CHECK,
            got == data,
            "a write longer than max_transfer did not read back whole"
        );
    }
    Ok(())
}

/// Bad writes are refused with the kernel's kind (empty, mid-block offset or
/// length: `Misaligned`; past the capacity or `u64::MAX`: `OutOfRange`) and
/// write nothing.
pub fn write_refusals<D: FlashWrite>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "write_refusals";
    let s = shape(CHECK, dev, medium)?;
    let b = s.block;
    let block = vec![0xA5u8; b];
    let two = vec![0xA5u8; 2 * b];
    let cap = s.g.capacity;
    let mut cases: Vec<(&str, u64, &[u8], ErrorKind)> = vec![
        ("an empty write", 0, &[], ErrorKind::Misaligned),
        (
            "a write at the capacity",
            cap,
            &block,
            ErrorKind::OutOfRange,
        ),
        (
            "a write past the capacity",
            cap - b as u64,
            &two,
            ErrorKind::OutOfRange,
        ),
        (
            "a write past u64::MAX",
            s.g.align_down(u64::MAX),
            &block,
            ErrorKind::OutOfRange,
        ),
    ];
    if b > 1 {
        cases.push((
            "a mid-block offset",
            b as u64 / 2,
            &block,
            ErrorKind::Misaligned,
        ));
        cases.push((
            "a part-block length",
            0,
            &block[..b / 2],
            ErrorKind::Misaligned,
        ));
    }
    for (what, offset, data, kind) in cases {
        let got = dev.write(offset, data).err().map(|e| e.kind());
        ensure!(
            CHECK,
            got == Some(kind),
            "{what} gave {got:?}, expected {kind:?}"
        );
    }
    dev.sync()
        .map_err(|e| fail(CHECK, format!("sync failed: {e:?}")))?;
    let got = read_front(CHECK, dev, &s, 2)?;
    ensure!(
        CHECK,
        got == medium[..2 * b],
        "a refused write changed the medium"
    );
    Ok(())
}
