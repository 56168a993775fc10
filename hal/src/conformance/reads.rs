//! Reads: the medium's bytes come back, empty calls do nothing, the queue
//! holds exactly its depth, and completions may come in any order.

use alloc::format;
use alloc::vec::Vec;

use lode_kernel::arena::{DramArena, Slot};
use lode_kernel::flash::{Completion, Error as _, ErrorKind, FlashDevice, ReadRequest};
use lode_kernel::rng::SplitMix64;

use super::support::{drain, ensure, expect_bytes, expect_tags, fail, memory, shape, slot, Shape};
use super::Failure;
use crate::slice_arena::SliceArena;

/// One read of `blocks` blocks at block `at` into `dest` at `dest_offset`.
fn read(s: &Shape, tag: u32, at: u64, blocks: u64, dest: Slot, dest_offset: usize) -> ReadRequest {
    ReadRequest {
        tag,
        offset: at * s.block as u64,
        len: (blocks * s.block as u64) as u32,
        dest,
        dest_offset,
    }
}

/// Submit `reads` a queue at a time, drain each batch, and check tags and
/// bytes.
fn read_all<D: FlashDevice, A: DramArena>(
    check: &'static str,
    dev: &mut D,
    arena: &mut A,
    reads: &[ReadRequest],
    medium: &[u8],
) -> Result<(), Failure> {
    let qd = usize::from(dev.geometry().queue_depth);
    for batch in reads.chunks(qd) {
        dev.submit(arena, batch).map_err(|e| {
            fail(
                check,
                format!(
                    "a valid batch of {} reads was refused: {e:?} ({})",
                    batch.len(),
                    e.kind()
                ),
            )
        })?;
        let done = drain(check, dev, arena, 4)?;
        let tags: Vec<u32> = batch.iter().map(|r| r.tag).collect();
        expect_tags(check, &done, &tags)?;
    }
    reads
        .iter()
        .try_for_each(|r| expect_bytes(check, arena, r, medium))
}

/// The device returns the medium's bytes: the whole span read front to back
/// in the longest reads the checks use, then seeded extents of 1 to 8 blocks
/// anywhere in it.
pub fn reads_return_the_medium<D: FlashDevice>(
    dev: &mut D,
    medium: &[u8],
    seed: u64,
) -> Result<(), Failure> {
    const CHECK: &str = "reads_return_the_medium";
    let s = shape(CHECK, dev, medium)?;
    let mut mem = memory(s.span as usize + 64 * 8 * s.block, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let whole = slot(CHECK, &mut arena, s.span as usize, s.block)?;
    let reads: Vec<ReadRequest> = (0..s.blocks())
        .step_by(s.max_blocks as usize)
        .enumerate()
        .map(|(i, at)| {
            let blocks = s.max_blocks.min(s.blocks() - at);
            read(&s, i as u32, at, blocks, whole, at as usize * s.block)
        })
        .collect();
    read_all(CHECK, dev, &mut arena, &reads, medium)?;

    let scattered = slot(
        CHECK,
        &mut arena,
        64 * s.max_blocks as usize * s.block,
        s.block,
    )?;
    let mut rng = SplitMix64::new(seed);
    let reads: Vec<ReadRequest> = (0..64u32)
        .map(|i| {
            let blocks = 1 + rng.below(s.max_blocks);
            let at = rng.below(s.blocks() - blocks + 1);
            let place = i as usize * s.max_blocks as usize * s.block;
            read(&s, i, at, blocks, scattered, place)
        })
        .collect();
    read_all(CHECK, dev, &mut arena, &reads, medium)?;
    ensure!(
        CHECK,
        dev.in_flight() == 0,
        "{} reads still in flight",
        dev.in_flight()
    );
    Ok(())
}

/// An empty batch is accepted and queues nothing; `complete` with nothing
/// in flight returns 0 at once; `complete` into an empty buffer returns 0 and
/// loses nothing.
pub fn empty_calls<D: FlashDevice>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "empty_calls";
    let s = shape(CHECK, dev, medium)?;
    let mut mem = memory(2 * s.block, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let dest = slot(CHECK, &mut arena, 2 * s.block, s.block)?;
    let empty = dev.submit(&mut arena, &[]);
    ensure!(
        CHECK,
        empty.is_ok(),
        "an empty batch was refused: {empty:?}"
    );
    ensure!(
        CHECK,
        dev.in_flight() == 0,
        "an empty batch left {} in flight",
        dev.in_flight()
    );
    let idle = dev.complete(&mut arena, &mut [Completion::EMPTY; 4]);
    ensure!(
        CHECK,
        matches!(idle, Ok(0)),
        "complete with nothing in flight gave {idle:?}"
    );
    let n = usize::from(s.g.queue_depth).min(2);
    let reads: Vec<ReadRequest> = (0..n)
        .map(|i| read(&s, 40 + i as u32, 2 * i as u64, 1, dest, i * s.block))
        .collect();
    dev.submit(&mut arena, &reads)
        .map_err(|e| fail(CHECK, format!("a valid batch was refused: {e:?}")))?;
    let none = dev.complete(&mut arena, &mut []);
    ensure!(
        CHECK,
        matches!(none, Ok(0)),
        "complete into an empty buffer gave {none:?}"
    );
    ensure!(
        CHECK,
        dev.in_flight() == n,
        "{} in flight after an empty complete, expected {n}",
        dev.in_flight()
    );
    let done = drain(CHECK, dev, &mut arena, 1)?;
    let tags: Vec<u32> = reads.iter().map(|r| r.tag).collect();
    expect_tags(CHECK, &done, &tags)?;
    reads
        .iter()
        .try_for_each(|r| expect_bytes(CHECK, &arena, r, medium))
}

/// The queue holds exactly `queue_depth` reads: one batch longer than that
/// is refused whole; batches add up to it; one more is refused and queues
/// nothing; a collected completion makes room for exactly one more; and
/// every accepted read completes once with its bytes (nothing is lost).
pub fn full_queue<D: FlashDevice>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "full_queue";
    let s = shape(CHECK, dev, medium)?;
    let qd = usize::from(s.g.queue_depth);
    let mut mem = memory((qd + 1) * s.block, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let dest = slot(CHECK, &mut arena, (qd + 1) * s.block, s.block)?;
    let reads: Vec<ReadRequest> = (0..=qd)
        .map(|i| read(&s, i as u32, i as u64 % s.blocks(), 1, dest, i * s.block))
        .collect();
    let refused = |r: Result<(), D::Error>| r.err().map(|e| e.kind());

    let over = refused(dev.submit(&mut arena, &reads));
    ensure!(
        CHECK,
        over == Some(ErrorKind::QueueFull),
        "{} reads at once gave {over:?}, expected QueueFull",
        qd + 1
    );
    ensure!(
        CHECK,
        dev.in_flight() == 0,
        "a refused batch left {} in flight",
        dev.in_flight()
    );
    // Fill the queue in two batches: room is counted across batches.
    for part in [&reads[..qd - 1], &reads[qd - 1..qd]] {
        dev.submit(&mut arena, part)
            .map_err(|e| fail(CHECK, format!("filling the queue was refused: {e:?}")))?;
    }
    ensure!(
        CHECK,
        dev.in_flight() == qd,
        "{} in flight after filling the queue of {qd}",
        dev.in_flight()
    );
    let one_more = refused(dev.submit(&mut arena, &reads[qd..]));
    ensure!(
        CHECK,
        one_more == Some(ErrorKind::QueueFull),
        "a read past a full queue gave {one_more:?}"
    );
    ensure!(
        CHECK,
        dev.in_flight() == qd,
        "a refused read changed in_flight to {}",
        dev.in_flight()
    );

    let mut first = [Completion::EMPTY; 1];
    let n = dev
        .complete(&mut arena, &mut first)
        .map_err(|e| fail(CHECK, format!("complete failed: {e:?}")))?;
    ensure!(
        CHECK,
        n == 1,
        "complete into one place gave {n} with a full queue"
    );
    dev.submit(&mut arena, &reads[qd..]).map_err(|e| {
        fail(
            CHECK,
            format!("the room a completion freed was refused: {e:?}"),
        )
    })?;
    let mut done = drain(CHECK, dev, &mut arena, 3)?;
    done.push(first[0]);
    let tags: Vec<u32> = reads.iter().map(|r| r.tag).collect();
    expect_tags(CHECK, &done, &tags)?;
    reads
        .iter()
        .try_for_each(|r| expect_bytes(CHECK, &arena, r, medium))
}

/// Completions may come in any order and carry the caller's tags, whatever
/// they are (large, zero, repeated): a second batch submitted while the
/// first is still being collected mixes with it, and each read lands in its
/// own destination.
pub fn out_of_order_completion<D: FlashDevice>(dev: &mut D, medium: &[u8]) -> Result<(), Failure> {
    const CHECK: &str = "out_of_order_completion";
    let s = shape(CHECK, dev, medium)?;
    let qd = usize::from(s.g.queue_depth);
    let odd_tags = [u32::MAX - 1, 0, 7, 7, 1 << 31, 12_345, 3, 999_999];
    let per_read = s.max_blocks as usize * s.block;
    let mut mem = memory(2 * odd_tags.len() * per_read, s.block);
    let mut arena = SliceArena::new(&mut mem);
    let dest = slot(CHECK, &mut arena, 2 * odd_tags.len() * per_read, s.block)?;
    let first: Vec<ReadRequest> = odd_tags
        .iter()
        .take(qd.min(odd_tags.len()))
        .enumerate()
        .map(|(i, &tag)| {
            let blocks = 1 + i as u64 % s.max_blocks;
            let at = (3 * i as u64) % (s.blocks() - blocks + 1);
            read(&s, tag, at, blocks, dest, i * per_read)
        })
        .collect();
    dev.submit(&mut arena, &first)
        .map_err(|e| fail(CHECK, format!("the first batch was refused: {e:?}")))?;
    let mut one = [Completion::EMPTY; 1];
    let n = dev
        .complete(&mut arena, &mut one)
        .map_err(|e| fail(CHECK, format!("complete failed: {e:?}")))?;
    ensure!(CHECK, n == 1, "complete into one place gave {n}");
    let room = qd.saturating_sub(dev.in_flight());
    let second: Vec<ReadRequest> = (0..room.min(odd_tags.len()))
        .map(|i| {
            let at = s.blocks() - 1 - (5 * i as u64) % s.blocks();
            let place = (odd_tags.len() + i) * per_read;
            read(&s, 100 + i as u32, at, 1, dest, place)
        })
        .collect();
    dev.submit(&mut arena, &second).map_err(|e| {
        fail(
            CHECK,
            format!("a batch into the room left was refused: {e:?}"),
        )
    })?;
    let mut done = drain(CHECK, dev, &mut arena, 2)?;
    done.push(one[0]);
    let tags: Vec<u32> = first.iter().chain(&second).map(|r| r.tag).collect();
    expect_tags(CHECK, &done, &tags)?;
    first
        .iter()
        .chain(&second)
        .try_for_each(|r| expect_bytes(CHECK, &arena, r, medium))
}
