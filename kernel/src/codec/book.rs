//! f16 fields through a per-unit codebook: the distinct values, sorted,
//! and an rANS frequency for each, so a block's scale is one symbol of
//! about its order-0 entropy. A scale or minimum of a GGUF tensor derives
//! from bf16 weights and takes a few hundred to a thousand distinct values
//! in irregular steps, so neither a smooth model nor a split into high and
//! low bits gets near its entropy; a codebook does, for a table of one to
//! three bytes a value (deltas and frequencies as LEB128).

use crate::limits::{CODEC_BOOK_COARSE_BITS, CODEC_BOOK_PROB_BITS, CODEC_MAX_BOOK};

use super::error::DecodeError;
use super::reader::Reader;

const TOTAL: u32 = 1 << CODEC_BOOK_PROB_BITS;
const COARSE: usize = 1 << CODEC_BOOK_COARSE_BITS;
const COARSE_SHIFT: u32 = CODEC_BOOK_PROB_BITS - CODEC_BOOK_COARSE_BITS;

/// A decoded codebook: values, cumulative starts, and for each coarse
/// slot range the first index it can decode to. About 26 KiB.
#[derive(Clone)]
pub struct Book {
    values: [u16; CODEC_MAX_BOOK],
    start: [u32; CODEC_MAX_BOOK + 1],
    coarse: [u16; COARSE],
    len: usize,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            values: [0; CODEC_MAX_BOOK],
            start: [0; CODEC_MAX_BOOK + 1],
            coarse: [0; COARSE],
            len: 0,
        }
    }
}

impl core::fmt::Debug for Book {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Book {{ len: {} }}", self.len)
    }
}

impl Book {
    /// Reads a codebook at `r`: its size (u16), its first value and the
    /// gaps to the next ones (LEB128, each at least 1), then each value's
    /// frequency minus one (LEB128), summing to `2^CODEC_BOOK_PROB_BITS`.
    pub(super) fn read(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let k = usize::from(r.u16()?);
        if k == 0 || k > CODEC_MAX_BOOK {
            return Err(DecodeError::Corrupt("codebook size"));
        }
        let mut v = 0u32;
        for (i, x) in self.values[..k].iter_mut().enumerate() {
            let d = r.leb128()?;
            if i > 0 && d == 0 {
                return Err(DecodeError::Corrupt("codebook values not increasing"));
            }
            v += d;
            *x = u16::try_from(v).map_err(|_| DecodeError::Corrupt("codebook value past f16"))?;
        }
        let mut acc = 0u32;
        for i in 0..k {
            self.start[i] = acc;
            let f = r.leb128()? + 1;
            if f > TOTAL - acc {
                return Err(DecodeError::Corrupt(
                    "codebook frequencies sum past the total",
                ));
            }
            acc += f;
        }
        if acc != TOTAL {
            return Err(DecodeError::Corrupt(
                "codebook frequencies do not sum to the total",
            ));
        }
        self.start[k] = TOTAL;
        self.len = k;
        let mut s = 0usize;
        for (c, first) in self.coarse.iter_mut().enumerate() {
            // start[k] = TOTAL exceeds every slot, so s stays below k.
            while s + 1 < k && self.start[s + 1] <= (c as u32) << COARSE_SHIFT {
                s += 1;
            }
            *first = s as u16;
        }
        Ok(())
    }

    /// The index slot `slot` decodes to, its frequency and start. The scan
    /// from the coarse guess is bounded by the book's size.
    #[inline(always)]
    pub(super) fn lookup(&self, slot: u32) -> (usize, u32, u32) {
        let mut s = usize::from(self.coarse[(slot >> COARSE_SHIFT) as usize % COARSE]);
        while s + 1 < self.len && self.start[s + 1] <= slot {
            s += 1;
        }
        let s = s % CODEC_MAX_BOOK;
        let (lo, hi) = (self.start[s], self.start[s + 1]);
        (s, hi.wrapping_sub(lo), lo)
    }

    /// The value of index `s` (below the book's size by `lookup`).
    #[inline(always)]
    pub(super) fn value(&self, s: usize) -> u16 {
        self.values[s % CODEC_MAX_BOOK]
    }
}
