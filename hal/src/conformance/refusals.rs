//! Refusals: bad requests are refused whole, with the kernel's
//! [`ErrorKind`], and a freed slot is never written.

use alloc::format;
use alloc::vec::Vec;

use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::flash::{Error as _, ErrorKind, FlashDevice, ReadRequest};

use super::support::{drain, ensure, expect_bytes, expect_tags, fail, memory, shape, slot};
use super::Failure;
use crate::slice_arena::SliceArena;

/// A freed slot is never a destination: naming one at submit is
/// `BadDestination` and queues nothing; a slot freed (and its memory handed
/// out again) while its read is in flight is not written: the read
/// completes with `BadDestination` (or `Ok`, from a device that read during
/// `submit`, before the free) and the new owner's bytes stand.
pub fn freed_slot<D: FlashDevice>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "freed_slot";
    let s = shape(CHECK, dev, medium)?;
    let mut mem = memory(4 * s.block, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let stale = slot(CHECK, &mut arena, s.block, s.block)?;
    arena
        .free(stale)
        .map_err(|e| fail(CHECK, format!("the suite's arena: {e:?}")))?;
    let r = ReadRequest {
        tag: 9,
        offset: s.block as u64,
        len: s.block as u32,
        dest: stale,
        dest_offset: 0,
    };
    let got = dev.submit(&mut arena, &[r]).err().map(|e| e.kind());
    ensure!(
        CHECK,
        got == Some(ErrorKind::BadDestination),
        "a freed destination gave {got:?}"
    );
    ensure!(
        CHECK,
        dev.in_flight() == 0,
        "a refused read left {} in flight",
        dev.in_flight()
    );

    let live = slot(CHECK, &mut arena, s.block, s.block)?;
    let r = ReadRequest { dest: live, ..r };
    dev.submit(&mut arena, &[r])
        .map_err(|e| fail(CHECK, format!("a valid read was refused: {e:?}")))?;
    arena
        .free(live)
        .map_err(|e| fail(CHECK, format!("the suite's arena: {e:?}")))?;
    let other = arena
        .alloc(s.block, s.block, SlotKind::Scratch)
        .map_err(|e| fail(CHECK, format!("the suite's arena: {e:?}")))?;
    if let Ok(bytes) = arena.bytes_mut(other) {
        bytes.fill(0xEE);
    }
    let done = drain(CHECK, dev, &mut arena, 2)?;
    let status = done.first().map(|c| (c.tag, c.status));
    ensure!(
        CHECK,
        done.len() == 1
            && matches!(
                status,
                Some((9, Err(ErrorKind::BadDestination))) | Some((9, Ok(())))
            ),
        "a read whose slot was freed in flight completed as {done:?}"
    );
    let intact = arena
        .bytes(other)
        .is_ok_and(|b| b.iter().all(|&x| x == 0xEE));
    ensure!(
        CHECK,
        intact,
        "the device wrote through a freed slot into its new owner"
    );
    Ok(())
}

/// Every kind of bad read is refused with the kernel's kind wherever it sits
/// in the batch, and nothing of the batch is queued; afterwards the device
/// still reads.
pub fn refusals<D: FlashDevice>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "refusals";
    let s = shape(CHECK, dev, medium)?;
    let (b, bu) = (s.block, s.block as u64);
    let mut mem = memory(4 * b, b);
    let mut arena = SliceArena::new(&mut mem);
    let small = slot(CHECK, &mut arena, b, b)?;
    let big = slot(CHECK, &mut arena, 2 * b, b)?;
    let ok = ReadRequest {
        tag: 1,
        offset: 0,
        len: b as u32,
        dest: small,
        dest_offset: 0,
    };
    let bad = |r: ReadRequest| ReadRequest { tag: 2, ..r };
    let mut cases: Vec<(&str, ReadRequest, ErrorKind)> = Vec::new();
    cases.push((
        "an empty read",
        bad(ReadRequest { len: 0, ..ok }),
        ErrorKind::Misaligned,
    ));
    if b > 1 {
        let half = b / 2;
        cases.push((
            "a mid-block offset",
            bad(ReadRequest {
                offset: half as u64,
                ..ok
            }),
            ErrorKind::Misaligned,
        ));
        cases.push((
            "a part-block length",
            bad(ReadRequest {
                len: half as u32,
                ..ok
            }),
            ErrorKind::Misaligned,
        ));
        let shifted = ReadRequest {
            dest: big,
            dest_offset: half,
            ..ok
        };
        cases.push((
            "a mid-block destination address",
            bad(shifted),
            ErrorKind::Misaligned,
        ));
    }
    let cap = s.g.capacity;
    cases.push((
        "an offset at the capacity",
        bad(ReadRequest { offset: cap, ..ok }),
        ErrorKind::OutOfRange,
    ));
    if 2 * b <= s.g.max_transfer as usize {
        let last = cap - bu;
        cases.push((
            "an extent past the capacity",
            bad(ReadRequest {
                offset: last,
                len: 2 * b as u32,
                dest: big,
                ..ok
            }),
            ErrorKind::OutOfRange,
        ));
    }
    let wrap = s.g.align_down(u64::MAX);
    cases.push((
        "an extent past u64::MAX",
        bad(ReadRequest { offset: wrap, ..ok }),
        ErrorKind::OutOfRange,
    ));
    if let Some(long) = s.g.max_transfer.checked_add(b as u32) {
        cases.push((
            "a read past max_transfer",
            bad(ReadRequest { len: long, ..ok }),
            ErrorKind::TooLarge,
        ));
    }
    cases.push((
        "a destination without room",
        bad(ReadRequest {
            dest_offset: b,
            ..ok
        }),
        ErrorKind::BadDestination,
    ));
    cases.push((
        "a destination offset past usize::MAX",
        bad(ReadRequest {
            dest_offset: usize::MAX,
            ..ok
        }),
        ErrorKind::BadDestination,
    ));

    for (what, bad, kind) in cases {
        // With room for two, the bad read is refused before and after a
        // good one, and takes the good one down with it.
        let pairs = [[ok, bad], [bad, ok]];
        let batches: &[&[ReadRequest]] = if s.g.queue_depth >= 2 {
            &[&pairs[0], &pairs[1]]
        } else {
            &[&pairs[0][1..]]
        };
        for batch in batches {
            let got = dev.submit(&mut arena, batch).err().map(|e| e.kind());
            ensure!(
                CHECK,
                got == Some(kind),
                "{what} ({bad:?}) gave {got:?}, expected {kind:?}"
            );
            ensure!(
                CHECK,
                dev.in_flight() == 0,
                "refusing {what} left {} in flight",
                dev.in_flight()
            );
        }
    }
    dev.submit(&mut arena, &[ok]).map_err(|e| {
        fail(
            CHECK,
            format!("a valid read after the refusals was refused: {e:?}"),
        )
    })?;
    let done = drain(CHECK, dev, &mut arena, 1)?;
    expect_tags(CHECK, &done, &[1])?;
    expect_bytes(CHECK, &arena, &ok, medium)
}
