//! `BlockChecks`: a CRC32C of every block of a device span, so every read
//! of that span is checked before its bytes are used.
//!
//! An image's stored checksums cover whole tensors and whole bundles, which
//! is what a load pass reads; a streamed run reads other shapes (a layer's
//! attention span, one embedding row, a piece of the output head, a merged
//! run of down columns). So the load pass, while it checks the stored
//! checksums, also records the CRC of every block it read
//! ([`BlockChecks::record`]); from then on any block-aligned read of the
//! span is compared block by block against what was verified
//! ([`BlockChecks::verify`]). A difference means the medium or the path
//! to it changed the data after load: the reader retries, and stops with
//! an error if the difference stays. Nothing unverified is computed on or
//! cached.
//!
//! The table lives in an arena slot (4 bytes a block, 0.1% of the span at
//! 4 KiB blocks), so the memory plan counts it like any other slot. The
//! CRC function is the caller's: a hardware CRC32C where the CPU has one,
//! the portable table-driven one otherwise.

use crate::arena::{self, DramArena, Slot, SlotKind};
use crate::compute::Compute;
use crate::limits::{CHECK_PIECES, CHECK_PIECE_MIN};

use super::crc_shift::CrcShift;

/// Why a check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CheckError {
    /// A block's bytes differ from what was recorded.
    Mismatch {
        /// Device offset of the first block that differs.
        offset: u64,
    },
    /// The bytes are not whole blocks of the checked span (a caller bug).
    Outside {
        /// Device offset of the bytes.
        offset: u64,
    },
    /// The arena refused the table's slot.
    Arena(arena::ErrorKind),
}

/// CRC32C of every `block` bytes of device bytes `start..end`.
#[derive(Debug, Clone, Copy)]
pub struct BlockChecks {
    table: Slot,
    start: u64,
    blocks: usize,
    block: usize,
    crc: fn(&[u8]) -> u32,
    /// Joins the CRCs of consecutive blocks into the CRC of a read.
    shift: CrcShift,
}

impl BlockChecks {
    /// Bytes of the table's slot for `span` bytes in blocks of `block`
    /// (at least one entry, so an empty span still has a slot).
    pub const fn table_bytes(span: u64, block: usize) -> usize {
        let b = if block == 0 { 1 } else { block as u64 };
        let n = span.div_ceil(b) as usize;
        (if n == 0 { 1 } else { n }).saturating_mul(4)
    }

    /// An all-zero table for `start..end` (`start` a multiple of `block`, a
    /// power of two) in a new [`SlotKind::Resident`] slot of `arena`.
    /// Fill it with [`record`](Self::record) before verifying anything.
    pub fn new<A: DramArena>(
        arena: &mut A,
        start: u64,
        end: u64,
        block: usize,
        crc: fn(&[u8]) -> u32,
    ) -> Result<BlockChecks, CheckError> {
        if !block.is_power_of_two() || !start.is_multiple_of(block as u64) || end < start {
            return Err(CheckError::Outside { offset: start });
        }
        let bytes = Self::table_bytes(end - start, block);
        let table = arena
            .alloc(bytes, 64, SlotKind::Resident)
            .map_err(|e| CheckError::Arena(arena::Error::kind(&e)))?;
        Ok(BlockChecks {
            table,
            start,
            blocks: bytes / 4,
            block,
            crc,
            shift: CrcShift::new(block as u64),
        })
    }

    /// Bytes each checksum covers.
    pub fn block(&self) -> usize {
        self.block
    }

    /// The table's slot (to give it back to the arena).
    pub fn slot(&self) -> Slot {
        self.table
    }

    /// The table entries of the whole blocks `data` covers at device
    /// `offset`: the first index, or `Outside`.
    fn first_block(&self, offset: u64, len: usize) -> Result<usize, CheckError> {
        let outside = CheckError::Outside { offset };
        let rel = offset.checked_sub(self.start).ok_or(outside)?;
        let b = self.block as u64;
        if !rel.is_multiple_of(b) || !len.is_multiple_of(self.block) {
            return Err(outside);
        }
        let first = usize::try_from(rel / b).map_err(|_| outside)?;
        match first.checked_add(len / self.block) {
            Some(end) if end <= self.blocks => Ok(first),
            _ => Err(outside),
        }
    }

    /// Records the CRC of every block of the `len` bytes of `slot`, read
    /// at device `offset` and already verified by the caller (whole blocks
    /// of the span; blocks past the span's end are ignored).
    pub fn record<A: DramArena>(
        &self,
        arena: &mut A,
        offset: u64,
        slot: Slot,
        len: usize,
    ) -> Result<(), CheckError> {
        let arena_err = |e: A::Error| CheckError::Arena(arena::Error::kind(&e));
        let outside = CheckError::Outside { offset };
        let span_end = self.start + (self.blocks * self.block) as u64;
        let keep = usize::try_from(span_end.saturating_sub(offset)).map_or(len, |k| k.min(len));
        let first = self.first_block(offset, keep)?;
        for i in 0..keep / self.block {
            let at = i * self.block;
            let data = arena.bytes(slot).map_err(arena_err)?;
            let crc = (self.crc)(data.get(at..at + self.block).ok_or(outside)?);
            let entry = (first + i) * 4;
            arena
                .bytes_mut(self.table)
                .map_err(arena_err)?
                .get_mut(entry..entry + 4)
                .ok_or(outside)?
                .copy_from_slice(&crc.to_le_bytes());
        }
        Ok(())
    }

    /// Checks `data`, read at device `offset` (whole blocks of the span),
    /// against the table: `Mismatch` names the first block that differs.
    /// One CRC over the whole read, compared with its blocks' CRCs joined;
    /// block by block only when that differs, to find the bad block.
    pub fn verify<A: DramArena>(
        &self,
        arena: &A,
        offset: u64,
        data: &[u8],
    ) -> Result<(), CheckError> {
        let whole = (data.len() / self.block).max(1);
        self.verify_pieces(arena, offset, data, whole, |d, piece, crcs| {
            for (c, p) in crcs.iter_mut().zip(d.chunks(piece)) {
                *c = (self.crc)(p);
            }
        })
    }

    /// [`verify`](Self::verify) with the read cut into up to
    /// [`CHECK_PIECES`] pieces of at least [`CHECK_PIECE_MIN`] bytes, whose
    /// CRCs `compute` computes (on its threads, where it has them). Each
    /// piece is compared with its own blocks' CRCs joined, so the pieces'
    /// CRCs never need joining. A backend that refuses leaves the work to
    /// this thread.
    pub fn verify_on<A: DramArena, C: Compute>(
        &self,
        arena: &A,
        offset: u64,
        data: &[u8],
        compute: &mut C,
    ) -> Result<(), CheckError> {
        let n = data.len() / self.block;
        let per = n
            .div_ceil(CHECK_PIECES)
            .max(CHECK_PIECE_MIN / self.block)
            .max(1);
        self.verify_pieces(arena, offset, data, per, |d, piece, crcs| {
            if compute.checksums(d, piece, self.crc, crcs).is_err() {
                for (c, p) in crcs.iter_mut().zip(d.chunks(piece)) {
                    *c = (self.crc)(p);
                }
            }
        })
    }

    /// The check of `data` in pieces of `per` blocks (at most
    /// [`CHECK_PIECES`] of them), whose CRCs `crcs_of(data, piece bytes,
    /// out)` fills in.
    fn verify_pieces<A: DramArena>(
        &self,
        arena: &A,
        offset: u64,
        data: &[u8],
        per: usize,
        crcs_of: impl FnOnce(&[u8], usize, &mut [u32]),
    ) -> Result<(), CheckError> {
        let first = self.first_block(offset, data.len())?;
        let table = arena
            .bytes(self.table)
            .map_err(|e| CheckError::Arena(arena::Error::kind(&e)))?;
        let n = data.len() / self.block;
        let pieces = n.div_ceil(per);
        let mut buf = [0u32; CHECK_PIECES];
        let crcs = buf
            .get_mut(..pieces)
            .ok_or(CheckError::Outside { offset })?;
        crcs_of(data, per * self.block, crcs);
        for (i, &got) in crcs.iter().enumerate() {
            let (b0, b1) = (i * per, ((i + 1) * per).min(n));
            let entries = table
                .get((first + b0) * 4..(first + b1) * 4)
                .ok_or(CheckError::Outside { offset })?;
            let joined = entries
                .chunks_exact(4)
                .map(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]))
                .reduce(|acc, c| self.shift.join(acc, c));
            if joined.is_some_and(|want| got != want) {
                let at = offset + (b0 * self.block) as u64;
                let bytes = data.get(b0 * self.block..b1 * self.block);
                return Err(self.first_bad(entries, at, bytes.unwrap_or(&[])));
            }
        }
        Ok(())
    }

    /// The `Mismatch` of the first block of `data` (read at `offset`)
    /// whose CRC differs from its entry in `entries`.
    fn first_bad(&self, entries: &[u8], offset: u64, data: &[u8]) -> CheckError {
        let bad = data
            .chunks_exact(self.block)
            .zip(entries.chunks_exact(4))
            .position(|(b, want)| (self.crc)(b).to_le_bytes() != want)
            .unwrap_or(0);
        CheckError::Mismatch {
            offset: offset + (bad * self.block) as u64,
        }
    }

    /// [`verify`](Self::verify) of `len` bytes at `at` in `slot`.
    pub fn verify_slot<A: DramArena>(
        &self,
        arena: &A,
        offset: u64,
        slot: Slot,
        at: usize,
        len: usize,
    ) -> Result<(), CheckError> {
        let data = arena
            .bytes(slot)
            .map_err(|e| CheckError::Arena(arena::Error::kind(&e)))?
            .get(at..at.saturating_add(len))
            .ok_or(CheckError::Outside { offset })?;
        self.verify(arena, offset, data)
    }

    /// [`verify_on`](Self::verify_on) of the first `len` bytes of `slot`.
    pub fn verify_slot_on<A: DramArena, C: Compute>(
        &self,
        arena: &A,
        offset: u64,
        slot: Slot,
        len: usize,
        compute: &mut C,
    ) -> Result<(), CheckError> {
        let data = arena
            .bytes(slot)
            .map_err(|e| CheckError::Arena(arena::Error::kind(&e)))?
            .get(..len)
            .ok_or(CheckError::Outside { offset })?;
        self.verify_on(arena, offset, data, compute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::testing::VecArena;

    fn sum(b: &[u8]) -> u32 {
        lode_formats::image::crc32c(b)
    }

    /// Records `data` as read at `offset`, through a slot.
    fn record(arena: &mut VecArena, checks: &BlockChecks, offset: u64, data: &[u8]) {
        let slot = arena.alloc(data.len(), 64, SlotKind::IoBuffer).unwrap();
        arena.bytes_mut(slot).unwrap().copy_from_slice(data);
        checks.record(arena, offset, slot, data.len()).unwrap();
        arena.free(slot).unwrap();
    }

    #[test]
    fn a_recorded_span_verifies_and_a_changed_byte_is_named_by_its_block() {
        let mut arena = VecArena::new(1 << 16);
        let checks = BlockChecks::new(&mut arena, 1024, 1024 + 4 * 512, 512, sum).unwrap();
        let mut data: [u8; 2048] = core::array::from_fn(|i| (i * 7 % 251) as u8);
        record(&mut arena, &checks, 1024, &data);
        assert_eq!(checks.verify(&arena, 1024, &data), Ok(()));
        assert_eq!(checks.verify(&arena, 1536, &data[512..1536]), Ok(()));
        data[1100] ^= 0x10;
        assert_eq!(
            checks.verify(&arena, 1024, &data),
            Err(CheckError::Mismatch {
                offset: 1024 + 1024
            })
        );
        // The same bytes claimed for another block do not match.
        assert!(matches!(
            checks.verify(&arena, 1536, &data[..512]),
            Err(CheckError::Mismatch { offset: 1536 })
        ));
    }

    #[test]
    fn reads_that_are_not_whole_blocks_of_the_span_are_refused() {
        let mut arena = VecArena::new(1 << 16);
        let checks = BlockChecks::new(&mut arena, 1024, 2048, 512, sum).unwrap();
        let data = [0u8; 1024];
        record(&mut arena, &checks, 1024, &data);
        for (offset, len) in [
            (512, 512),
            (1024, 100),
            (1100, 512),
            (1536, 1024),
            (2048, 512),
        ] {
            assert_eq!(
                checks.verify(&arena, offset, &data[..len]),
                Err(CheckError::Outside { offset }),
                "{offset}+{len}"
            );
        }
        assert!(BlockChecks::new(&mut arena, 1000, 2048, 512, sum).is_err());
        assert!(BlockChecks::new(&mut arena, 0, 2048, 500, sum).is_err());
    }

    /// A large read is checked in pieces (here through the provided
    /// `Compute::checksums`): every piece is compared, so a change in any
    /// piece, including the short last one, is found and named by its
    /// block, and a good read passes.
    #[test]
    fn a_read_checked_in_pieces_finds_a_change_in_any_piece() {
        use crate::model::tests::naive::Naive;
        const BLOCK: usize = 4096;
        // 33 blocks in pieces of CHECK_PIECE_MIN: 16, 16 and 1 blocks.
        let n = 33;
        let len = n * BLOCK;
        let mut arena = VecArena::new(len * 3);
        let checks = BlockChecks::new(&mut arena, 0, len as u64, BLOCK, sum).unwrap();
        let clean: std::vec::Vec<u8> = (0..len).map(|i| (i * 31 / 7) as u8).collect();
        record(&mut arena, &checks, 0, &clean);
        assert_eq!(checks.verify_on(&arena, 0, &clean, &mut Naive), Ok(()));
        let per = CHECK_PIECE_MIN / BLOCK;
        assert!(
            n.div_ceil(per) > 1 && n % per != 0,
            "several pieces, a short last one"
        );
        for bad_block in [0, per - 1, per, n / 2, n - 1] {
            let mut data = clean.clone();
            data[bad_block * BLOCK + 17] ^= 4;
            assert_eq!(
                checks.verify_on(&arena, 0, &data, &mut Naive),
                Err(CheckError::Mismatch {
                    offset: (bad_block * BLOCK) as u64
                }),
                "block {bad_block}"
            );
            assert_eq!(
                checks.verify(&arena, 0, &data),
                Err(CheckError::Mismatch {
                    offset: (bad_block * BLOCK) as u64
                })
            );
        }
        // A part of the span, starting mid-span, in pieces too.
        let (a, b) = (3 * BLOCK, 30 * BLOCK);
        assert_eq!(
            checks.verify_on(&arena, a as u64, &clean[a..b], &mut Naive),
            Ok(())
        );
    }

    #[test]
    fn recording_past_the_span_keeps_only_its_blocks() {
        let mut arena = VecArena::new(1 << 16);
        let checks = BlockChecks::new(&mut arena, 0, 1024, 512, sum).unwrap();
        let data = [3u8; 2048];
        record(&mut arena, &checks, 0, &data);
        assert_eq!(checks.verify(&arena, 512, &data[..512]), Ok(()));
        assert_eq!(BlockChecks::table_bytes(1025, 512), 12);
    }
}
