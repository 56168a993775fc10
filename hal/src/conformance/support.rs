//! What every check needs: a scratch arena, the device's usable span,
//! draining with a guard against a stalled device, and comparisons that
//! explain themselves.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use lode_kernel::arena::{DramArena, Slot, SlotKind};
use lode_kernel::flash::{Completion, Error as _, FlashDevice, Geometry, ReadRequest};

use super::Failure;
use crate::slice_arena::SliceArena;

/// A [`Failure`] of `check`.
pub(crate) fn fail(check: &'static str, detail: String) -> Failure {
    Failure { check, detail }
}

/// `Err(fail(check, format!(..)))` unless `cond`.
macro_rules! ensure {
    ($check:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::conformance::support::fail($check, alloc::format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;

/// The part of a device the checks use, and its shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) g: Geometry,
    /// Block size in bytes.
    pub(crate) block: usize,
    /// Bytes from offset 0 that hold the medium: `min(capacity, medium)`
    /// rounded down to a block.
    pub(crate) span: u64,
    /// Blocks in the longest read the checks make: at most 8, at most
    /// `max_transfer`.
    pub(crate) max_blocks: u64,
}

impl Shape {
    /// Blocks in the span.
    pub(crate) fn blocks(&self) -> u64 {
        self.span / self.block as u64
    }
}

/// Check the geometry is usable at all and find the span the checks read.
pub(crate) fn shape<D: FlashDevice>(
    check: &'static str,
    dev: &D,
    medium: &[u8],
) -> Result<Shape, Failure> {
    let g = dev.geometry();
    ensure!(
        check,
        g.block_size.is_power_of_two(),
        "block_size {} is not a power of two",
        g.block_size
    );
    let block = g.block_size as usize;
    ensure!(
        check,
        g.max_transfer >= g.block_size && g.max_transfer.is_multiple_of(g.block_size),
        "max_transfer {} is not a non-zero multiple of block_size {}",
        g.max_transfer,
        g.block_size
    );
    ensure!(check, g.queue_depth > 0, "queue_depth is 0");
    ensure!(
        check,
        g.is_aligned(g.capacity),
        "capacity {} is not a whole number of blocks",
        g.capacity
    );
    let span = g.align_down(g.capacity.min(medium.len() as u64));
    ensure!(
        check,
        span >= 8 * block as u64,
        "the device holds {span} bytes of the medium; the suite needs 8 blocks ({})",
        8 * block
    );
    let max_blocks = (u64::from(g.max_transfer) / block as u64).min(8);
    Ok(Shape {
        g,
        block,
        span,
        max_blocks,
    })
}

/// Memory for an arena with room for `bytes` of block-aligned slots.
pub(crate) fn memory(bytes: usize, block: usize) -> Vec<u8> {
    vec![0u8; bytes + 4 * block]
}

/// A slot of `len` bytes at block alignment.
pub(crate) fn slot(
    check: &'static str,
    arena: &mut SliceArena<'_>,
    len: usize,
    block: usize,
) -> Result<Slot, Failure> {
    arena.alloc(len, block, SlotKind::IoBuffer).map_err(|e| {
        fail(
            check,
            format!("the suite's arena refused {len} bytes: {e:?}"),
        )
    })
}

/// Collect every completion in flight, `piece` at a time. A device that
/// reports reads in flight but completes none, or more than asked for, has
/// broken the `complete` contract.
pub(crate) fn drain<D: FlashDevice, A: DramArena>(
    check: &'static str,
    dev: &mut D,
    arena: &mut A,
    piece: usize,
) -> Result<Vec<Completion>, Failure> {
    let mut out = Vec::new();
    let mut buf = vec![Completion::EMPTY; piece.max(1)];
    let mut calls = dev.in_flight() + 1;
    while dev.in_flight() > 0 {
        let in_flight = dev.in_flight();
        ensure!(
            check,
            calls > 0,
            "complete kept returning with reads still in flight"
        );
        calls -= 1;
        let n = dev
            .complete(arena, &mut buf)
            .map_err(|e| fail(check, format!("complete failed: {e:?} ({})", e.kind())))?;
        ensure!(
            check,
            n > 0,
            "complete returned no completion with {in_flight} reads in flight"
        );
        ensure!(
            check,
            n <= buf.len(),
            "complete reported {n} completions into {}",
            buf.len()
        );
        out.extend_from_slice(&buf[..n]);
    }
    Ok(out)
}

/// Every completion succeeded and the tags are exactly `want` (as a
/// multiset: any order).
pub(crate) fn expect_tags(
    check: &'static str,
    done: &[Completion],
    want: &[u32],
) -> Result<(), Failure> {
    if let Some(c) = done.iter().find(|c| c.status.is_err()) {
        return Err(fail(
            check,
            format!("read tagged {} failed: {:?}", c.tag, c.status),
        ));
    }
    let mut got: Vec<u32> = done.iter().map(|c| c.tag).collect();
    let mut want = want.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    ensure!(
        check,
        got == want,
        "completions carried tags {got:?}, expected each of {want:?} once"
    );
    Ok(())
}

/// The destination of `r` holds the medium's bytes at `r.offset`.
pub(crate) fn expect_bytes<A: DramArena>(
    check: &'static str,
    arena: &A,
    r: &ReadRequest,
    medium: &[u8],
) -> Result<(), Failure> {
    let len = r.len as usize;
    let got = arena
        .bytes(r.dest)
        .ok()
        .and_then(|b| b.get(r.dest_offset..r.dest_offset + len));
    let want = medium.get(r.offset as usize..r.offset as usize + len);
    match (got, want) {
        (Some(got), Some(want)) if got == want => Ok(()),
        (Some(got), Some(want)) => {
            let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            Err(fail(
                check,
                format!(
                    "read tagged {} ({} bytes at {}) differs from the medium at byte {}: \
                     got {:#04x}, expected {:#04x}",
                    r.tag,
                    len,
                    r.offset,
                    r.offset + at as u64,
                    got[at],
                    want[at]
                ),
            ))
        }
        _ => Err(fail(check, format!("read {r:?} cannot be compared"))),
    }
}
