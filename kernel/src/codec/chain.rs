//! A coded tensor in pieces: coded units back to back, each decoding the
//! next run of the tensor's blocks (`CODEC.md`, "Chains").
//!
//! One unit decodes on one thread, start to end: its rANS streams have no
//! entry points. A tensor coded as a few units instead decodes on as many
//! threads, each unit into its own part of the output, for a few hundred
//! bytes of tables a unit. [`split`] cuts a chain and its output into
//! [`Piece`]s, checking that the units cover the input and the output
//! exactly; [`Piece::decode`] decodes one, on whichever thread a backend
//! hands it to ([`Compute::decode_pieces`](crate::compute::Compute::decode_pieces)).

use heapless::Vec as HVec;

use crate::limits::CODEC_MAX_PIECES;

use super::decode::{decode_with, header, Scratch, Verify};
use super::error::DecodeError;

/// One unit of a chain and the part of the output it decodes into.
#[derive(Debug)]
pub struct Piece<'a> {
    coded: &'a [u8],
    out: &'a mut [u8],
    /// What decoding it gave; `None` until it ran.
    result: Option<Result<(), DecodeError>>,
}

impl Piece<'_> {
    /// Decodes the unit into its output with `scratch`, recording whether
    /// it gave exactly the output's bytes.
    pub fn decode(&mut self, scratch: &mut Scratch, verify: Verify) {
        let r = decode_with(scratch, verify, self.coded, self.out);
        self.result = Some(match r {
            Ok(n) if n == self.out.len() => Ok(()),
            Ok(_) => Err(DecodeError::Corrupt("a piece decodes to another length")),
            Err(e) => Err(e),
        });
    }

    /// The unit's format version (checked by [`split`]).
    pub fn version(&self) -> u8 {
        header(self.coded).map_or(0, |h| h.version)
    }

    /// Bytes of the unit.
    pub fn coded_len(&self) -> usize {
        self.coded.len()
    }

    /// The decode's outcome; a piece never decoded is an error.
    pub fn result(&self) -> Result<(), DecodeError> {
        self.result
            .unwrap_or(Err(DecodeError::Corrupt("a piece was never decoded")))
    }
}

/// The pieces of one chain.
pub type Pieces<'a> = HVec<Piece<'a>, CODEC_MAX_PIECES>;

/// Cuts `coded` (units back to back) and `out` into pieces, unit `i`
/// decoding into the `i`-th run of `out`. The units must decode to the
/// same block type and their blocks must fill `out` exactly; at most
/// [`CODEC_MAX_PIECES`] of them. Bytes after the unit that fills `out`
/// are ignored, as after a single unit (an I/O slot's padding: a caller
/// that knows the stored length checks the pieces' [`Piece::coded_len`]).
/// Only headers are read here; each unit's CRC and streams are checked as
/// it decodes.
pub fn split<'a>(coded: &'a [u8], mut out: &'a mut [u8]) -> Result<Pieces<'a>, DecodeError> {
    let mut pieces = Pieces::new();
    let mut rest = coded;
    let mut dtype = None;
    while pieces.is_empty() || !out.is_empty() {
        let h = header(rest)?;
        if *dtype.get_or_insert(h.dtype) != h.dtype {
            return Err(DecodeError::Corrupt(
                "pieces of one chain differ in block type",
            ));
        }
        let Some((unit, after)) = rest.split_at_checked(h.unit_len) else {
            return Err(DecodeError::Truncated {
                need: h.unit_len,
                have: rest.len(),
            });
        };
        let (need, have) = (h.output_len(), out.len());
        let Some((part, more)) = core::mem::take(&mut out).split_at_mut_checked(need) else {
            return Err(DecodeError::OutputTooSmall { need, have });
        };
        let piece = Piece {
            coded: unit,
            out: part,
            result: None,
        };
        if pieces.push(piece).is_err() {
            return Err(DecodeError::Corrupt("more pieces than a chain may have"));
        }
        (rest, out) = (after, more);
    }
    Ok(pieces)
}

/// Decodes a whole chain on this thread with `scratch`: what a caller
/// without threads (or a load that runs once) does.
pub fn decode_chain(
    scratch: &mut Scratch,
    verify: Verify,
    coded: &[u8],
    out: &mut [u8],
) -> Result<(), DecodeError> {
    let mut pieces = split(coded, out)?;
    for p in &mut pieces {
        p.decode(scratch, verify);
        p.result()?;
    }
    Ok(())
}

/// The first error of decoded pieces, if any.
pub fn first_error(pieces: &[Piece<'_>]) -> Result<(), DecodeError> {
    pieces.iter().try_for_each(Piece::result)
}
