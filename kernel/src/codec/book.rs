//! f16 fields through a per-unit codebook: the distinct values, sorted,
//! and an rANS frequency for each, so a block's scale is one symbol of
//! about its order-0 entropy. A scale or minimum of a GGUF tensor derives
//! from bf16 weights and takes a few hundred to a thousand distinct values
//! in irregular steps, so neither a smooth model nor a split into high and
//! low bits gets near its entropy; a codebook does, for a table of about
//! 1.4 bytes a value (gamma-coded gaps, a one-byte frequency level).

use crate::limits::{
    CODEC_BOOK_COARSE_BITS, CODEC_BOOK_PROB_BITS, CODEC_MAX_BOOK, CODEC_PROB_BITS, CODEC_SLOTS,
};

use super::bits::{level_freq, Bits};
use super::error::DecodeError;
use super::rans::Table;
use super::reader::Reader;

const COARSE: usize = 1 << CODEC_BOOK_COARSE_BITS;
const COARSE_SHIFT: u32 = CODEC_BOOK_PROB_BITS - CODEC_BOOK_COARSE_BITS;

/// A decoded codebook: values, cumulative starts, and for each coarse
/// slot range the first index it can decode to. About 32 KiB.
#[derive(Clone)]
pub struct Book {
    values: [u16; CODEC_MAX_BOOK],
    start: [u32; CODEC_MAX_BOOK + 1],
    coarse: [u16; COARSE],
    len: usize,
    /// Whether the last entry is the escape (no value: the field's value
    /// is stored raw).
    escape: bool,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            values: [0; CODEC_MAX_BOOK],
            start: [0; CODEC_MAX_BOOK + 1],
            coarse: [0; COARSE],
            len: 0,
            escape: false,
        }
    }
}

impl core::fmt::Debug for Book {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Book {{ len: {} }}", self.len)
    }
}

impl Book {
    /// Reads a codebook at `r` (CODEC.md, kinds 2 and 3): its size K, the
    /// index whose frequency is implied, the values as a bit stream (the
    /// first in 16 bits, then Elias gamma gaps), and the other K - 1
    /// frequencies as one-byte levels ([`level_freq`]); the implied one is
    /// what brings the sum to `2^prob_bits` (16 for kind 2, 12 for kind
    /// 3). With `escape` the last of the K entries has no value: it stands
    /// for a value stored raw. The first-lookup table of [`lookup`](Self::lookup)
    /// is built for 16 bits only (kind 3 decodes through [`direct`](Self::direct)).
    pub(super) fn read(
        &mut self,
        r: &mut Reader<'_>,
        escape: bool,
        prob_bits: u32,
    ) -> Result<(), DecodeError> {
        let total = 1u32 << prob_bits;
        let k = usize::from(r.u16()?);
        let implied = usize::from(r.u16()?);
        if k == 0 || k > CODEC_MAX_BOOK || implied >= k {
            return Err(DecodeError::Corrupt("codebook size"));
        }
        let valued = k - usize::from(escape);
        let len = r.u32()? as usize;
        let mut bits = Bits::new(r.take(len)?);
        let mut v = if valued > 0 { bits.take(16)? } else { 0 };
        for (i, x) in self.values[..valued].iter_mut().enumerate() {
            if i > 0 {
                v += bits.gamma()?;
            }
            *x = u16::try_from(v).map_err(|_| DecodeError::Corrupt("codebook value past f16"))?;
        }
        if !bits.ends_clean() {
            return Err(DecodeError::Corrupt("codebook bits longer than its values"));
        }
        let levels = r.take(k - 1)?;
        let mut acc = 0u32;
        let mut q = levels.iter();
        for i in 0..k {
            self.start[i] = acc;
            if i == implied {
                continue;
            }
            acc += q.next().map_or(0, |&q| level_freq(q));
            if acc >= total {
                return Err(DecodeError::Corrupt("codebook frequencies reach the total"));
            }
        }
        // The implied frequency: every start from it on moves up by it.
        let f = total - acc;
        for st in &mut self.start[implied + 1..k] {
            *st += f;
        }
        self.start[k] = total;
        self.len = k;
        self.escape = escape;
        if prob_bits != CODEC_BOOK_PROB_BITS {
            return Ok(());
        }
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

    /// Fills `t` and `values` for a kind 3 decode, from a book read at
    /// `CODEC_PROB_BITS`: slot `i`'s table entry holds its frequency and
    /// offset as a byte table's do ([`Table::set`]), with symbol 1 for the
    /// escape and 0 otherwise, and `values[i]` its value; one lookup then
    /// decodes a symbol, and the value load is off the states' chain.
    pub(super) fn direct(&self, t: &mut Table, values: &mut [u16; CODEC_SLOTS]) {
        for s in 0..self.len.min(CODEC_MAX_BOOK) {
            let (lo, hi) = (self.start[s], self.start[s + 1]);
            let lo = lo.min(1 << CODEC_PROB_BITS);
            let hi = hi.clamp(lo, 1 << CODEC_PROB_BITS);
            let value = self.value(s);
            t.set(lo, hi, u8::from(value.is_none()));
            for v in values
                .get_mut(lo as usize..hi as usize)
                .into_iter()
                .flatten()
            {
                *v = value.unwrap_or(0);
            }
        }
    }

    /// The value of index `s` (below the book's size by `lookup`), or
    /// `None` for the escape.
    #[inline(always)]
    pub(super) fn value(&self, s: usize) -> Option<u16> {
        if self.escape && s + 1 == self.len {
            return None;
        }
        Some(self.values[s % CODEC_MAX_BOOK])
    }
}
