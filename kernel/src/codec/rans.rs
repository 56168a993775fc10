//! Static interleaved rANS decoding: the table a frequency list builds and
//! the lanes that walk a word stream with it.
//!
//! Each stream has [`CODEC_LANES`] 32-bit states sharing one stream of
//! 16-bit words; symbol `i` of a stream is decoded by lane `i % LANES`.
//! A state stays in `[STATE_LOW, 2^32)`: decoding a symbol leaves it at
//! least 1 (`STATE_LOW >> PROB_BITS` times a frequency of at least 1, for
//! either precision), so one word read brings it back, and the renormalisation is a single
//! branch, never a loop. The encoder starts every lane at `STATE_LOW`, so
//! a stream decoded to its end must leave every lane there with every
//! word read: a check that catches most corruption on its own.

use crate::limits::{
    CODEC_BOOK_PROB_BITS, CODEC_LANES, CODEC_PROB_BITS, CODEC_SLOTS, CODEC_SYMBOLS,
};

use super::book::Book;
use super::reader::Reader;

use super::error::DecodeError;
use super::layout::{PROB_TOTAL, STATE_LOW};

const MASK: u32 = PROB_TOTAL - 1;
const BOOK_TOTAL: u32 = 1 << CODEC_BOOK_PROB_BITS;

/// A decode table: for each of the `2^PROB_BITS` slots, the symbol it
/// decodes to, that symbol's frequency minus one and the slot's offset
/// from the symbol's cumulative start, packed as
/// `symbol | (freq - 1) << 8 | (slot - start) << (8 + PROB_BITS)`, so a
/// decode step is one multiply and one add.
/// 16 KiB: keep one per decoding thread (it is rebuilt per section).
#[derive(Clone)]
pub struct Table {
    slots: [u32; CODEC_SLOTS],
}

impl Default for Table {
    fn default() -> Self {
        Table {
            slots: [0; CODEC_SLOTS],
        }
    }
}

impl core::fmt::Debug for Table {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Table { .. }")
    }
}

impl Table {
    /// Fills the table from `freqs` (little-endian u16 each, one per
    /// symbol). They must sum to exactly `PROB_TOTAL`, with at most
    /// [`CODEC_SYMBOLS`] symbols; zero frequencies are symbols absent.
    pub fn build(&mut self, freqs: &[u8]) -> Result<(), DecodeError> {
        let n = freqs.len() / 2;
        if n == 0 || n > CODEC_SYMBOLS || !freqs.len().is_multiple_of(2) {
            return Err(DecodeError::Corrupt("frequency table size"));
        }
        let mut start: u32 = 0;
        for (sym, f) in freqs.chunks_exact(2).enumerate() {
            let f = u32::from(u16::from_le_bytes([f[0], f[1]]));
            if f == 0 {
                continue;
            }
            if f > PROB_TOTAL - start {
                return Err(DecodeError::Corrupt("frequencies sum past the total"));
            }
            self.set(start, start + f, sym as u8);
            start += f;
        }
        if start != PROB_TOTAL {
            return Err(DecodeError::Corrupt("frequencies do not sum to the total"));
        }
        Ok(())
    }

    /// Points slots `lo..hi` (a nonempty range below `PROB_TOTAL`) at
    /// symbol `sym` of frequency `hi - lo` starting at `lo`.
    pub(super) fn set(&mut self, lo: u32, hi: u32, sym: u8) {
        let entry = u32::from(sym) | hi.wrapping_sub(lo).wrapping_sub(1) << 8;
        let slots = self.slots.get_mut(lo as usize..hi as usize).into_iter();
        for (bias, s) in slots.flatten().enumerate() {
            *s = entry | (bias as u32) << (8 + CODEC_PROB_BITS);
        }
    }
}

/// The lanes of one stream being decoded.
pub(super) struct Lanes<'a> {
    x: [u32; CODEC_LANES],
    words: &'a [u8],
    pos: usize,
}

impl<'a> Lanes<'a> {
    /// Lanes starting from the stored `states` (4 little-endian bytes
    /// each), reading `words` (little-endian u16s).
    pub(super) fn new(states: &[u8], words: &'a [u8]) -> Result<Self, DecodeError> {
        if states.len() != 4 * CODEC_LANES || !words.len().is_multiple_of(2) {
            return Err(DecodeError::Corrupt("rANS stream size"));
        }
        let mut x = [0u32; CODEC_LANES];
        for (x, b) in x.iter_mut().zip(states.chunks_exact(4)) {
            *x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if *x < STATE_LOW {
                return Err(DecodeError::Corrupt("rANS state below its range"));
            }
        }
        Ok(Lanes { x, words, pos: 0 })
    }

    /// Decodes one byte symbol with lane `lane` (taken modulo the lanes).
    #[inline(always)]
    pub(super) fn next(&mut self, lane: usize, t: &Table) -> Result<u8, DecodeError> {
        let lane = lane % CODEC_LANES;
        let x = self.x[lane];
        let slot = x & MASK;
        let e = t.slots[slot as usize];
        let freq = ((e >> 8) & MASK) + 1;
        // No overflow: (x >> 12) < 2^20, freq <= 2^12 and the offset is
        // below freq.
        let x = (freq * (x >> CODEC_PROB_BITS)) + (e >> (8 + CODEC_PROB_BITS));
        self.x[lane] = self.renorm(x)?;
        Ok(e as u8)
    }

    /// Decodes a byte field of `width` bytes (whole groups of the lanes)
    /// at `offset` of every `block`-byte block of `out`, lane `j % LANES`
    /// for the field's byte `j`: the hot loop. The states live in locals
    /// for the whole field; while eight bytes of words remain (the most one
    /// group can read) a group renormalises without a branch or a bounds
    /// check a lane, and near the end it takes the checked path.
    pub(super) fn fill(
        &mut self,
        t: &Table,
        out: &mut [u8],
        block: usize,
        offset: usize,
        width: usize,
    ) -> Result<(), DecodeError> {
        let (mut x, mut pos, words) = (self.x, self.pos, self.words);
        for b in out.chunks_exact_mut(block) {
            let Some(dst) = b.get_mut(offset..offset + width) else {
                return Err(DecodeError::Corrupt("field outside its block"));
            };
            for q in dst.as_chunks_mut::<CODEC_LANES>().0 {
                let Some(w) = words.get(pos..).and_then(|w| w.first_chunk::<8>()) else {
                    (self.x, self.pos) = (x, pos);
                    for (lane, v) in q.iter_mut().enumerate() {
                        *v = self.next(lane, t)?;
                    }
                    (x, pos) = (self.x, self.pos);
                    continue;
                };
                let buf = u64::from_le_bytes(*w);
                let mut k = 0u32;
                for (x, v) in x.iter_mut().zip(q.iter_mut()) {
                    let e = t.slots[(*x & MASK) as usize];
                    let freq = ((e >> 8) & MASK) + 1;
                    let y = freq * (*x >> CODEC_PROB_BITS) + (e >> (8 + CODEC_PROB_BITS));
                    let need = y < STATE_LOW;
                    let word = (buf >> (16 * k)) as u32 & 0xffff;
                    *x = if need { y << 16 | word } else { y };
                    k += u32::from(need);
                    *v = e as u8;
                }
                pos += 2 * k as usize;
            }
        }
        (self.x, self.pos) = (x, pos);
        Ok(())
    }

    /// Decodes an f16 field through codebook `b` into `offset` of every
    /// `block`-byte block of `out`, block `i` by lane `i % LANES`, the
    /// escape index taking the next value of `raw`. The states live in
    /// locals for the whole field, as in [`fill`](Self::fill).
    pub(super) fn fill_book(
        &mut self,
        b: &Book,
        raw: &mut Reader<'_>,
        out: &mut [u8],
        block: usize,
        offset: usize,
    ) -> Result<(), DecodeError> {
        let (mut x, mut pos, words) = (self.x, self.pos, self.words);
        let mut step = |lane: &mut u32, dst: &mut [u8]| -> Result<(), DecodeError> {
            let slot = *lane & (BOOK_TOTAL - 1);
            let (s, freq, start) = b.lookup(slot);
            // (x >> 16) < 2^16 and freq <= 2^16: the product and the
            // offset within freq stay below 2^32.
            let mut y = freq
                .wrapping_mul(*lane >> CODEC_BOOK_PROB_BITS)
                .wrapping_add(slot.wrapping_sub(start));
            if y < STATE_LOW {
                let Some(w) = words.get(pos..pos + 2) else {
                    return Err(DecodeError::Corrupt("rANS stream ends early"));
                };
                y = y << 16 | u32::from(u16::from_le_bytes([w[0], w[1]]));
                pos += 2;
            }
            *lane = y;
            let v = match b.value(s) {
                Some(v) => v,
                None => raw.u16()?,
            };
            if let Some(d) = dst.get_mut(offset..offset + 2) {
                d.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        };
        // Whole groups of a block a lane, the lanes' chains side by side,
        // then the blocks left over (lane `i % LANES` either way).
        let mut groups = out.chunks_exact_mut(block * CODEC_LANES);
        for g in &mut groups {
            for (lane, dst) in x.iter_mut().zip(g.chunks_exact_mut(block)) {
                step(lane, dst)?;
            }
        }
        let rest = groups.into_remainder();
        for (lane, dst) in x.iter_mut().zip(rest.chunks_exact_mut(block)) {
            step(lane, dst)?;
        }
        (self.x, self.pos) = (x, pos);
        Ok(())
    }

    /// Decodes an f16 field of kind 3 into `offset` of every
    /// `block`-byte block of `out`, block `i` by lane `i % LANES`: `t`'s
    /// entry for a lane's slot updates its state as in [`fill`](Self::fill)
    /// and `values` holds the slot's value, or the escape (entry symbol 1)
    /// takes the next value of `raw`. Four blocks a group, renormalised
    /// without a branch while eight bytes of words remain; the blocks left
    /// over and the stream's end take the checked path.
    pub(super) fn fill_direct(
        &mut self,
        t: &Table,
        values: &[u16; CODEC_SLOTS],
        raw: &mut Reader<'_>,
        out: &mut [u8],
        block: usize,
        offset: usize,
    ) -> Result<(), DecodeError> {
        if offset + 2 > block {
            return Err(DecodeError::Corrupt("field outside its block"));
        }
        let (mut x, mut pos, words) = (self.x, self.pos, self.words);
        let mut groups = out.chunks_exact_mut(block * CODEC_LANES);
        for g in &mut groups {
            let Some(w) = words.get(pos..).and_then(|w| w.first_chunk::<8>()) else {
                (self.x, self.pos) = (x, pos);
                for (lane, dst) in g.chunks_exact_mut(block).enumerate() {
                    self.direct_checked(lane, t, values, raw, dst, offset)?;
                }
                (x, pos) = (self.x, self.pos);
                continue;
            };
            let buf = u64::from_le_bytes(*w);
            let mut k = 0u32;
            let mut at = offset;
            for x in x.iter_mut() {
                let slot = (*x & MASK) as usize;
                let e = t.slots[slot];
                let freq = ((e >> 8) & MASK) + 1;
                let y = freq * (*x >> CODEC_PROB_BITS) + (e >> (8 + CODEC_PROB_BITS));
                let need = y < STATE_LOW;
                let word = (buf >> (16 * k)) as u32 & 0xffff;
                *x = if need { y << 16 | word } else { y };
                k += u32::from(need);
                let v = if e & 1 == 0 { values[slot] } else { raw.u16()? };
                if let Some(d) = g.get_mut(at..).and_then(|d| d.first_chunk_mut::<2>()) {
                    *d = v.to_le_bytes();
                }
                at += block;
            }
            pos += 2 * k as usize;
        }
        (self.x, self.pos) = (x, pos);
        let rest = groups.into_remainder();
        for (lane, dst) in rest.chunks_exact_mut(block).enumerate() {
            self.direct_checked(lane, t, values, raw, dst, offset)?;
        }
        Ok(())
    }

    /// One kind 3 symbol by lane `lane`, words read with their checks.
    fn direct_checked(
        &mut self,
        lane: usize,
        t: &Table,
        values: &[u16; CODEC_SLOTS],
        raw: &mut Reader<'_>,
        dst: &mut [u8],
        offset: usize,
    ) -> Result<(), DecodeError> {
        let slot = (self.x[lane % CODEC_LANES] & MASK) as usize;
        let v = match self.next(lane, t)? {
            0 => values[slot],
            _ => raw.u16()?,
        };
        if let Some(d) = dst.get_mut(offset..offset + 2) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// Brings a decoded state back to at least `STATE_LOW` with one word
    /// (a decode leaves it at least 1, so one is always enough).
    #[inline(always)]
    fn renorm(&mut self, x: u32) -> Result<u32, DecodeError> {
        if x >= STATE_LOW {
            return Ok(x);
        }
        let Some(w) = self.words.get(self.pos..self.pos + 2) else {
            return Err(DecodeError::Corrupt("rANS stream ends early"));
        };
        self.pos += 2;
        Ok(x << 16 | u32::from(u16::from_le_bytes([w[0], w[1]])))
    }

    /// Checks the stream ended where its encoder began.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.words.len() {
            return Err(DecodeError::Corrupt("rANS stream has words left over"));
        }
        if self.x.iter().any(|&x| x != STATE_LOW) {
            return Err(DecodeError::Corrupt("rANS state does not end at its start"));
        }
        Ok(())
    }
}
