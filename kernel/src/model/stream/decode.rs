//! Coded units on their way from a read slot to where they are used: one
//! place that runs the weight codec's decoder between two arena slots, for
//! the ring (a streamed unit decoded as it is taken) and the loader (a
//! resident one decoded once, into its slot).

use crate::arena::{DramArena, Slot};
use crate::codec::{first_error, split as split_chain, Piece, Scratch, Verify};
use crate::compute::{self, Compute, Error as _};
use crate::model::view::split;

/// Why a coded unit did not decode: the arena refused a slot, the
/// unit's bytes are not units of the expected length (an image whose
/// writer got it wrong, or, when nothing checked the read, a flipped bit
/// a unit's own CRC caught), or the backend handed its pieces failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DecodeFail {
    Arena(crate::arena::ErrorKind),
    Corrupt,
    Compute(compute::ErrorKind),
}

/// A coded unit's bytes: `len` of them at `at` in slot `slot`.
#[derive(Debug, Clone, Copy)]
pub(super) struct CodedIn {
    pub(super) slot: Slot,
    pub(super) at: usize,
    pub(super) len: usize,
}

/// Decodes `src` (a chain of one or more units) into slot `dst` from
/// byte `at`, which must come to exactly `decoded` bytes. `checked`: the
/// bytes passed the image's block checks, so the units' own CRCs are not
/// computed again. `pieces` decodes the chain's pieces: the ring hands
/// them to `Compute::decode_pieces` (several threads), the loader runs
/// [`one_by_one`].
pub(super) fn decode_unit<A: DramArena>(
    arena: &mut A,
    src: CodedIn,
    dst: (Slot, usize, usize),
    checked: bool,
    pieces: impl FnOnce(&mut [Piece<'_>], Verify) -> Result<(), DecodeFail>,
) -> Result<(), DecodeFail> {
    with_both(arena, src, dst, |coded, out| {
        let mut split = split_chain(coded, out).map_err(|_| DecodeFail::Corrupt)?;
        pieces(&mut split, verify(checked))?;
        first_error(&split).map_err(|_| DecodeFail::Corrupt)
    })
}

/// Decodes `pieces` on this thread with `scratch`.
pub(super) fn one_by_one(
    scratch: &mut Scratch,
) -> impl FnOnce(&mut [Piece<'_>], Verify) -> Result<(), DecodeFail> + '_ {
    move |pieces, verify| {
        for p in pieces {
            p.decode(scratch, verify);
        }
        Ok(())
    }
}

/// Hands `pieces` to `compute`, which may decode them on several threads.
pub(super) fn on_compute<'c, C: Compute>(
    compute: &'c mut C,
    scratch: &'c mut Scratch,
) -> impl FnOnce(&mut [Piece<'_>], Verify) -> Result<(), DecodeFail> + 'c {
    move |pieces, verify| {
        compute
            .decode_pieces(pieces, verify, scratch)
            .map_err(|e| DecodeFail::Compute(e.kind()))
    }
}

fn verify(checked: bool) -> Verify {
    if checked {
        Verify::Trusted
    } else {
        Verify::Crc
    }
}

/// Copies raw bytes `src` (`src.len` of them) into slot `dst` from byte
/// `at`; `len` must be the same.
pub(super) fn copy_within<A: DramArena>(
    arena: &mut A,
    src: CodedIn,
    dst: (Slot, usize, usize),
) -> Result<(), DecodeFail> {
    if dst.2 != src.len {
        return Err(DecodeFail::Corrupt);
    }
    with_both(arena, src, dst, |from, to| {
        to.copy_from_slice(from);
        Ok(())
    })
}

/// Runs `f` on the bytes `src` and on `len` bytes of slot `dst` from
/// `at`, one read and one written.
fn with_both<A: DramArena>(
    arena: &mut A,
    src: CodedIn,
    (dst, at, len): (Slot, usize, usize),
    f: impl FnOnce(&[u8], &mut [u8]) -> Result<(), DecodeFail>,
) -> Result<(), DecodeFail> {
    let (table, mem) = arena.parts_mut();
    let ([out], shared) = split(table, mem, [dst]).map_err(DecodeFail::Arena)?;
    let from = shared
        .get(src.slot)
        .map_err(DecodeFail::Arena)?
        .get(src.at..src.at.saturating_add(src.len))
        .ok_or(DecodeFail::Corrupt)?;
    let to = out
        .get_mut(at..at.saturating_add(len))
        .ok_or(DecodeFail::Corrupt)?;
    f(from, to)
}
