//! Reading committed contexts: a chunk's payload (checked against its
//! CRC32C, never returned bad) and a context's tokens and chunk list.

use super::error::{DeviceError, ReadChunkError, ReadContextError};
use super::io::read_into;
use super::{ChunkInfo, ContextView, SwapArea};
use crate::arena::{DramArena, Slot};
use crate::flash::retry::{with_retries, Attempt};
use crate::flash::FlashWrite;
use crate::formats::checksum::crc32c;
use crate::formats::swap::Record;

impl<D: FlashWrite> SwapArea<'_, D> {
    /// Read chunk `index` of context `id` into the start of `dest`, a slot
    /// of `arena` holding at least the payload rounded up to whole blocks,
    /// and check it against its CRC32C; a read error or a mismatch is read
    /// again (the retry rule), and a lasting mismatch is
    /// [`Corrupt`](ReadChunkError::Corrupt): the caller recomputes that
    /// chunk from the text. The payload is `dest[..info.len]`.
    pub fn read_chunk<A: DramArena>(
        &mut self,
        id: u64,
        index: u32,
        arena: &mut A,
        dest: Slot,
    ) -> Result<ChunkInfo, ReadChunkError<D::Error>> {
        let i = self.find(id).map_err(|_| ReadChunkError::UnknownContext)?;
        let e = self.entry(i).ok_or(ReadChunkError::UnknownContext)?;
        if !self.read_extent(e.record)? {
            return Err(ReadChunkError::Corrupt);
        }
        let shape = self.shape;
        let r = Record::parse(self.io.bytes(e.record.len as usize), &shape)
            .map_err(|_| ReadChunkError::Corrupt)?;
        let c = r.chunk(index).ok_or(ReadChunkError::UnknownChunk)?;
        let block = u64::from(shape.block);
        let len = c.payload.len as usize;
        let rounded = (len as u64).div_ceil(block) * block;
        let room = arena.bytes(dest).map(<[u8]>::len).unwrap_or(0);
        if (room as u64) < rounded {
            return Err(ReadChunkError::BadDestination(rounded as usize));
        }
        let dev = &mut self.dev;
        let outcome =
            with_retries(
                |_| match read_into(dev, arena, dest, block, c.payload.offset, rounded) {
                    Err(e) => Attempt::Again(Some(e)),
                    Ok(()) => {
                        let ok = arena
                            .bytes(dest)
                            .ok()
                            .and_then(|b| b.get(..len))
                            .is_some_and(|b| crc32c(b) == c.payload.crc);
                        if ok {
                            Attempt::Done(())
                        } else {
                            Attempt::Again(None)
                        }
                    }
                },
            );
        match outcome {
            Ok(_) => Ok(ChunkInfo {
                index,
                len: c.payload.len,
                level: c.level,
                valid_tokens: c.valid_tokens,
            }),
            Err(None) => Err(ReadChunkError::Corrupt),
            Err(Some(e)) => Err(ReadChunkError::Device(DeviceError::Read(e))),
        }
    }

    /// Context `id`'s token ids into `tokens` and its chunks, by index,
    /// into `chunks`; says how many of each.
    pub fn read_context(
        &mut self,
        id: u64,
        tokens: &mut [u32],
        chunks: &mut [ChunkInfo],
    ) -> Result<ContextView, ReadContextError<D::Error>> {
        let i = self
            .find(id)
            .map_err(|_| ReadContextError::UnknownContext)?;
        let e = self.entry(i).ok_or(ReadContextError::UnknownContext)?;
        if !self.read_extent(e.record)? {
            return Err(ReadContextError::Corrupt);
        }
        let shape = self.shape;
        let r = Record::parse(self.io.bytes(e.record.len as usize), &shape)
            .map_err(|_| ReadContextError::Corrupt)?;
        if tokens.len() < r.token_count() || chunks.len() < r.chunk_count() {
            return Err(ReadContextError::BufferTooSmall);
        }
        for (dst, t) in tokens.iter_mut().zip(r.tokens()) {
            *dst = t;
        }
        for (dst, c) in chunks.iter_mut().zip(r.chunks()) {
            *dst = ChunkInfo {
                index: c.index,
                len: c.payload.len,
                level: c.level,
                valid_tokens: c.valid_tokens,
            };
        }
        Ok(ContextView {
            generation: e.generation,
            tokens: r.token_count(),
            chunks: r.chunk_count(),
        })
    }
}
