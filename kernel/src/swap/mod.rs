//! The KV swap area: contexts' KV chunks and token lists on flash,
//! committed atomically and recovered after a power loss.
//!
//! # Crash consistency: copy-on-write and two superblock slots
//!
//! A commit never overwrites anything the committed state references: new
//! payloads, the new context record and the new directory go to free
//! blocks, the device is synced, and only then is a superblock naming the
//! new directory written, into the slot that does *not* hold the current
//! superblock, and synced. The superblock write is the commit point: until
//! it is durable the old superblock and everything it references are
//! untouched; after it, the new one is the newest valid superblock. Open
//! reads both slots and takes the valid one with the larger sequence whose
//! whole state (directory, every record) passes its checks, else the other.
//! A journal would write every payload twice (60-720 KiB per chunk); this
//! writes each once, plus one record, one directory and one block.
//!
//! Blocks freed by a commit are reusable by the next one: the state two
//! commits old is never needed again, because its superblock slot is the
//! one the next commit overwrites.
//!
//! # Memory
//!
//! Nothing is allocated. The caller lends [`memory_bytes`] bytes holding
//! the directory (`MAX_CONTEXTS` entries), two free-space bit sets (see
//! `space`), a buffer records and directories are built in and an I/O
//! buffer they are read into and checked. Chunk pointers are not kept in
//! memory: a chunk read reads its context's record (at most
//! [`MAX_SWAP_RECORD`] bytes) and checks its CRC32C first.
//!
//! The area is the whole device `D`; lend a [`Window`](crate::flash::Window)
//! to put it in a region of a larger one.

mod commit;
mod error;
mod io;
mod open;
mod read;
mod space;
#[cfg(test)]
mod tests;

pub use error::{
    CommitError, DeleteError, DeviceError, ErrorKind, FormatError, OpenError, ReadChunkError,
    ReadContextError,
};

use crate::flash::{FlashWrite, Geometry};
use crate::formats::swap::{
    AreaShape, DirEntry, Extent, DIR_ENTRY_LEN, MAX_BLOCK, MIN_AREA_BLOCKS, MIN_BLOCK,
};
use crate::limits::{MAX_CONTEXTS, MAX_SWAP_RECORD};

use io::IoArena;
use space::{bitmap_bytes, Space};

/// One chunk a commit writes anew.
#[derive(Debug, Clone, Copy)]
pub struct ChunkWrite<'a> {
    /// Chunk number in the context (positions `16 * index ..`).
    pub index: u32,
    /// The caller's compression level, stored and returned as is.
    pub level: u8,
    /// Positions of the chunk holding tokens, 1 to 16.
    pub valid_tokens: u8,
    /// The payload (not empty).
    pub payload: &'a [u8],
}

/// One context's commit: its whole token list, which committed chunks to
/// keep and which to write; chunks in neither list are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The context's id.
    pub context: u64,
    /// The whole token list (recompute needs the text).
    pub tokens: &'a [u32],
    /// Indexes of committed chunks to keep as they are, increasing.
    pub keep: &'a [u32],
    /// Chunks to write, by increasing index, none also in `keep`.
    pub write: &'a [ChunkWrite<'a>],
}

/// A committed context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextInfo {
    /// The context's id.
    pub id: u64,
    /// How many times it has been committed.
    pub generation: u64,
}

/// What a committed chunk is, as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkInfo {
    /// Chunk number in the context.
    pub index: u32,
    /// Payload length in bytes.
    pub len: u32,
    /// The caller's compression level.
    pub level: u8,
    /// Positions holding tokens.
    pub valid_tokens: u8,
}

/// What [`SwapArea::read_context`] filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextView {
    /// How many times the context has been committed.
    pub generation: u64,
    /// Token ids written to the caller's buffer.
    pub tokens: usize,
    /// Chunks written to the caller's buffer.
    pub chunks: usize,
}

/// The area's block size on a device of `geometry`: the device's block,
/// at least 512 bytes (a superblock fits in one). `None` if the device's
/// block is not a power of two or above 1 MiB.
pub fn block_for(geometry: &Geometry) -> Option<u32> {
    let b = geometry.block_size.max(MIN_BLOCK);
    let fits = geometry.block_size != 0 && b.is_multiple_of(geometry.block_size);
    (b.is_power_of_two() && b <= MAX_BLOCK && fits).then_some(b)
}

/// Bytes of memory a swap area of `area_len` bytes in blocks of `block`
/// bytes borrows (see the module documentation).
pub const fn memory_bytes(area_len: u64, block: u32) -> usize {
    let block = if block < MIN_BLOCK { MIN_BLOCK } else { block } as usize;
    let buffer = MAX_SWAP_RECORD.div_ceil(block) * block;
    let bits = bitmap_bytes(area_len / block as u64);
    MAX_CONTEXTS * DIR_ENTRY_LEN + 2 * bits + (buffer + block) + (buffer + block)
}

/// A swap area over the device `D`, using memory borrowed for `'m`.
pub struct SwapArea<'m, D: FlashWrite> {
    dev: D,
    shape: AreaShape,
    fingerprint: [u8; 32],
    /// The committed superblock's sequence and slot, and its directory.
    sequence: u64,
    slot: u32,
    directory: Extent,
    /// Whether open passed over a newer superblock whose state failed.
    fell_back: bool,
    /// Set when a commit failed while writing its superblock.
    unsettled: bool,
    /// The committed directory's entries, `count` of them, sorted by id.
    entries: &'m mut [u8],
    count: usize,
    space: Space<'m>,
    /// Records and directories are built here; its last block pads tails.
    build: &'m mut [u8],
    io: IoArena<'m>,
}

impl<'m, D: FlashWrite> SwapArea<'m, D> {
    /// An area with nothing committed over `dev` and `mem`, the memory
    /// split into its parts; refused when the device cannot hold an area
    /// or `mem` is shorter than [`memory_bytes`].
    fn empty(dev: D, fingerprint: &[u8; 32], mem: &'m mut [u8]) -> Result<Self, Setup> {
        let g = dev.geometry();
        let block = block_for(&g).ok_or(Setup::Geometry)?;
        let shape = AreaShape {
            block,
            len: g.capacity / u64::from(block) * u64::from(block),
        };
        if shape.len / u64::from(block) < MIN_AREA_BLOCKS {
            return Err(Setup::Geometry);
        }
        if mem.len() < memory_bytes(shape.len, block) {
            return Err(Setup::Memory);
        }
        let b = block as usize;
        let buffer = MAX_SWAP_RECORD.div_ceil(b) * b;
        let bits = bitmap_bytes(shape.len / u64::from(block));
        let (entries, rest) = mem.split_at_mut(MAX_CONTEXTS * DIR_ENTRY_LEN);
        let (used, rest) = rest.split_at_mut(bits);
        let (fresh, rest) = rest.split_at_mut(bits);
        let (build, rest) = rest.split_at_mut(buffer + b);
        let io = IoArena::new(rest, buffer, b).ok_or(Setup::Memory)?;
        Ok(SwapArea {
            dev,
            shape,
            fingerprint: *fingerprint,
            sequence: 0,
            slot: 0,
            directory: Extent::default(),
            fell_back: false,
            unsettled: false,
            entries,
            count: 0,
            space: Space::new(used, fresh, shape.len / u64::from(block), u64::from(block)),
            build,
            io,
        })
    }

    /// The committed contexts, by increasing id.
    pub fn contexts(&self) -> impl Iterator<Item = ContextInfo> + '_ {
        (0..self.count).filter_map(|i| {
            self.entry(i).map(|e| ContextInfo {
                id: e.context_id,
                generation: e.generation,
            })
        })
    }

    /// Number of committed contexts.
    pub fn len(&self) -> usize {
        self.count
    }

    /// `true` when no context is committed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes not referenced by the committed state.
    pub fn free_bytes(&self) -> u64 {
        self.space.free_bytes()
    }

    /// Bytes of the area, and its block size.
    pub fn shape(&self) -> AreaShape {
        self.shape
    }

    /// The committed superblock's sequence number (1 after `format`).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// `true` when open found a newer superblock whose state failed its
    /// checks and recovered the older committed state instead.
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The device, lent.
    pub fn device(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Give the device back.
    pub fn into_device(self) -> D {
        self.dev
    }

    fn entry(&self, i: usize) -> Option<DirEntry> {
        let at = i.checked_mul(DIR_ENTRY_LEN)?;
        DirEntry::decode(self.entries.get(at..at + DIR_ENTRY_LEN)?)
    }

    /// Index of context `id` in the directory, or where it would go.
    fn find(&self, id: u64) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry(mid).map(|e| e.context_id.cmp(&id)) {
                Some(core::cmp::Ordering::Less) => lo = mid + 1,
                Some(core::cmp::Ordering::Equal) => return Ok(mid),
                _ => hi = mid,
            }
        }
        Err(lo)
    }

    fn set_entry(&mut self, i: usize, e: &DirEntry) {
        let at = i * DIR_ENTRY_LEN;
        if let Some(dst) = self.entries.get_mut(at..at + DIR_ENTRY_LEN) {
            dst.copy_from_slice(&e.encode());
        }
    }

    /// Insert at `i`; the caller checked there is room.
    fn insert_entry(&mut self, i: usize, e: &DirEntry) {
        let end = self.count * DIR_ENTRY_LEN;
        let at = i * DIR_ENTRY_LEN;
        if end + DIR_ENTRY_LEN <= self.entries.len() && at <= end {
            self.entries.copy_within(at..end, at + DIR_ENTRY_LEN);
            self.count += 1;
            self.set_entry(i, e);
        }
    }

    fn remove_entry(&mut self, i: usize) {
        let end = self.count * DIR_ENTRY_LEN;
        let at = i * DIR_ENTRY_LEN;
        if i < self.count {
            self.entries.copy_within(at + DIR_ENTRY_LEN..end, at);
            self.count -= 1;
        }
    }
}

/// Why an area could not be set up over a device and memory.
enum Setup {
    Geometry,
    Memory,
}
