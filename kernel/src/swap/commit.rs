//! Committing a context and deleting one: each one atomic step (the
//! superblock write in [`publish`](SwapArea::publish)).

use super::error::{CommitError, DeleteError, DeviceError};
use super::io::write_padded;
use super::{ChunkWrite, Commit, SwapArea};
use crate::flash::FlashWrite;
use crate::formats::checksum::crc32c;
use crate::formats::swap::{ChunkRef, DirEntry, Extent, Record, CHUNK_TOKENS};
use crate::limits::{MAX_CHUNKS, MAX_CONTEXT, MAX_CONTEXTS};

/// Why a change was not committed (nothing of it is referenced).
pub(super) enum Fail<E> {
    Full,
    Invalid(&'static str),
    Device(DeviceError<E>),
}

impl<E> From<Fail<E>> for CommitError<E> {
    fn from(f: Fail<E>) -> Self {
        match f {
            Fail::Full => CommitError::Full,
            Fail::Invalid(what) => CommitError::InvalidArgument(what),
            Fail::Device(e) => CommitError::Device(e),
        }
    }
}

/// `true` when `index` with `valid` tokens lies inside `tokens` tokens.
fn inside(index: u32, valid: u8, tokens: usize) -> bool {
    let first = index as usize * CHUNK_TOKENS as usize;
    (1..=CHUNK_TOKENS as u8).contains(&valid) && first + usize::from(valid) <= tokens
}

/// The checks of a commit that need no flash.
fn check(c: &Commit<'_>) -> Result<(), &'static str> {
    if c.tokens.len() > MAX_CONTEXT {
        return Err("more tokens than MAX_CONTEXT");
    }
    if c.keep.len() + c.write.len() > MAX_CHUNKS {
        return Err("more chunks than MAX_CHUNKS");
    }
    if c.keep.windows(2).any(|w| w[0] >= w[1]) {
        return Err("kept chunk indexes not strictly increasing");
    }
    if c.write.windows(2).any(|w| w[0].index >= w[1].index) {
        return Err("written chunk indexes not strictly increasing");
    }
    for w in c.write {
        if w.payload.is_empty() || u32::try_from(w.payload.len()).is_err() {
            return Err("a payload is empty or longer than 4 GiB");
        }
        if !inside(w.index, w.valid_tokens, c.tokens.len()) {
            return Err("a written chunk lies past the tokens");
        }
        if c.keep.binary_search(&w.index).is_ok() {
            return Err("a chunk is both kept and written");
        }
    }
    Ok(())
}

impl<D: FlashWrite> SwapArea<'_, D> {
    fn settled<E>(&self) -> Result<(), DeviceError<E>> {
        if self.unsettled {
            Err(DeviceError::Unsettled)
        } else {
            Ok(())
        }
    }

    /// Commit one context as one atomic step: `c.write`'s payloads are
    /// written anew, `c.keep`'s chunks are kept from its committed record,
    /// every other chunk of it is dropped, and the token list becomes
    /// `c.tokens`. After an error the previously committed state is
    /// intact (after a [`DeviceError::Unsettled`] open the area again).
    pub fn commit(&mut self, c: &Commit<'_>) -> Result<(), CommitError<D::Error>> {
        self.settled()?;
        check(c).map_err(CommitError::InvalidArgument)?;
        let at = self.find(c.context);
        let old = at.ok().and_then(|i| self.entry(i));
        // Whether the I/O buffer holds the old record, checked.
        let mut old_loaded = false;
        if let Some(e) = old {
            old_loaded = self.read_extent(e.record)? && self.old_record(e.record).is_some();
        } else if !c.keep.is_empty() {
            return Err(CommitError::InvalidArgument(
                "keeps chunks of a new context",
            ));
        } else if self.count >= MAX_CONTEXTS {
            return Err(CommitError::TooManyContexts);
        }
        if !c.keep.is_empty() {
            let record = old.and_then(|e| old_loaded.then_some(e.record));
            let Some(r) = record.and_then(|r| self.old_record(r)) else {
                return Err(CommitError::Corrupt(
                    crate::formats::swap::SwapFormatError::new(
                        crate::formats::swap::ErrorKind::ChecksumMismatch,
                        "the committed record of the chunks to keep",
                    ),
                ));
            };
            for &k in c.keep {
                match r.chunk(k) {
                    Some(ch) if inside(k, ch.valid_tokens, c.tokens.len()) => {}
                    Some(_) => {
                        return Err(CommitError::InvalidArgument(
                            "a kept chunk lies past the tokens",
                        ))
                    }
                    None => {
                        return Err(CommitError::InvalidArgument(
                            "a kept chunk is not committed",
                        ))
                    }
                }
            }
        }
        let generation = old.map_or(1, |e| e.generation + 1);
        let staged = self.stage(c, generation, old.filter(|_| old_loaded).map(|e| e.record));
        let record = match staged {
            Ok(r) => r,
            Err(f) => {
                self.space.abandon();
                return Err(f.into());
            }
        };
        let entry = DirEntry {
            context_id: c.context,
            generation,
            record,
        };
        match at {
            Ok(i) => self.set_entry(i, &entry),
            Err(i) => self.insert_entry(i, &entry),
        }
        if let Err(f) = self.publish() {
            match (at, old) {
                (Ok(i), Some(e)) => self.set_entry(i, &e),
                _ => self.remove_entry(at.unwrap_or_else(|i| i)),
            }
            self.space.abandon();
            return Err(f.into());
        }
        if let Some(e) = old {
            self.release_record(e.record, old_loaded, c.keep);
        }
        Ok(())
    }

    /// Delete context `id` as one atomic step.
    pub fn delete(&mut self, id: u64) -> Result<(), DeleteError<D::Error>> {
        self.settled()?;
        let i = self.find(id).map_err(|_| DeleteError::UnknownContext)?;
        let Some(e) = self.entry(i) else {
            return Err(DeleteError::UnknownContext);
        };
        let loaded = self.read_extent(e.record)?;
        self.remove_entry(i);
        if let Err(f) = self.publish() {
            self.insert_entry(i, &e);
            self.space.abandon();
            return Err(match f {
                Fail::Device(e) => DeleteError::Device(e),
                _ => DeleteError::Full,
            });
        }
        self.release_record(e.record, loaded, &[]);
        Ok(())
    }

    /// The old record in the I/O buffer, parsed.
    fn old_record(&self, e: Extent) -> Option<Record<'_>> {
        Record::parse(self.io.bytes(e.len as usize), &self.shape).ok()
    }

    /// A committed record is no longer referenced: release it and its
    /// chunks but `keep`. If it could not be read its chunks stay claimed
    /// until the next open rebuilds free space (a leak, never a reuse of
    /// something still referenced).
    fn release_record(&mut self, e: Extent, loaded: bool, keep: &[u32]) {
        if loaded {
            let shape = self.shape;
            if let Ok(r) = Record::parse(self.io.bytes(e.len as usize), &shape) {
                for ch in r
                    .chunks()
                    .filter(|ch| keep.binary_search(&ch.index).is_err())
                {
                    self.space
                        .release(ch.payload.offset, u64::from(ch.payload.len));
                }
            }
        }
        self.space.release(e.offset, u64::from(e.len));
    }

    /// Write the new payloads and the new record (not yet synced); returns
    /// the record's extent. `old` is the committed record, in the I/O
    /// buffer, when the context has one.
    fn stage(
        &mut self,
        c: &Commit<'_>,
        generation: u64,
        old: Option<Extent>,
    ) -> Result<Extent, Fail<D::Error>> {
        let block = self.shape.block as usize;
        let shape = self.shape;
        let pad_at = self.build.len() - block;
        let (body, pad) = self.build.split_at_mut(pad_at);
        let old = old.and_then(|e| Record::parse(self.io.bytes(e.len as usize), &shape).ok());
        let (dev, space) = (&mut self.dev, &mut self.space);
        let mut failure = None;
        let (mut k, mut w) = (0, 0);
        // Merge the kept and the written chunks by index; the first failure
        // ends the merge and is reported after the encoder returns.
        let chunks = core::iter::from_fn(|| {
            if failure.is_some() {
                return None;
            }
            let next = match (c.keep.get(k).copied(), c.write.get(w)) {
                (Some(i), wr) if wr.is_none_or(|wr| i < wr.index) => {
                    k += 1;
                    // Checked to be there before anything was written.
                    old.and_then(|r| r.chunk(i))
                        .ok_or(Fail::Invalid("a kept chunk is not committed"))
                }
                (_, Some(wr)) => {
                    w += 1;
                    write_chunk(dev, space, pad, block, wr)
                }
                _ => return None,
            };
            next.map_err(|f| failure = Some(f)).ok()
        });
        let encoded = Record::encode(body, c.context, generation, c.tokens, chunks, &shape);
        if let Some(f) = failure {
            return Err(f);
        }
        let (len, _) = encoded.map_err(|_| Fail::Invalid("the record cannot be encoded"))?;
        let offset = self.space.take(u64::from(len)).ok_or(Fail::Full)?;
        let data = &body[..len as usize];
        write_padded(&mut self.dev, pad, block, offset, data)
            .map_err(|e| Fail::Device(DeviceError::Write(e)))?;
        // The directory's pointer checks the whole record (its own CRC
        // leaves out the magic and itself), as the superblock's does the
        // directory.
        Ok(Extent {
            offset,
            len,
            crc: crc32c(data),
        })
    }
}

/// Take room for one new payload and write it.
fn write_chunk<D: FlashWrite>(
    dev: &mut D,
    space: &mut super::space::Space<'_>,
    pad: &mut [u8],
    block: usize,
    w: &ChunkWrite<'_>,
) -> Result<ChunkRef, Fail<D::Error>> {
    let len = w.payload.len() as u64;
    let offset = space.take(len).ok_or(Fail::Full)?;
    write_padded(dev, pad, block, offset, w.payload)
        .map_err(|e| Fail::Device(DeviceError::Write(e)))?;
    Ok(ChunkRef {
        index: w.index,
        payload: Extent {
            offset,
            len: len as u32,
            crc: crc32c(w.payload),
        },
        level: w.level,
        valid_tokens: w.valid_tokens,
    })
}
