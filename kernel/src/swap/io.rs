//! The swap area's own reads and writes: an arena over its borrowed I/O
//! buffer (reads land in arena slots, see `flash`), reads split into
//! transfers the device takes and retried by the one retry rule, and
//! writes padded to whole blocks.

use crate::arena::{self, DramArena, Slot, SlotKind, SlotTable, Slots};
use crate::flash::retry::{with_retries, Attempt};
use crate::flash::{FlashDevice, FlashWrite, ReadError, ReadRequest};

/// One slot over a borrowed buffer: where superblocks, directories and
/// records are read to be checked.
pub(super) struct IoArena<'m> {
    table: SlotTable<1>,
    mem: &'m mut [u8],
    slot: Slot,
}

impl DramArena for IoArena<'_> {
    type Error = arena::ErrorKind;

    fn parts(&self) -> (&dyn Slots, &[u8]) {
        (&self.table, self.mem)
    }

    fn parts_mut(&mut self) -> (&mut dyn Slots, &mut [u8]) {
        (&mut self.table, self.mem)
    }
}

impl<'m> IoArena<'m> {
    /// An arena over `mem` with one slot of `len` bytes aligned to `block`
    /// (`mem` needs `len + block` bytes for the alignment).
    pub(super) fn new(mem: &'m mut [u8], len: usize, block: usize) -> Option<Self> {
        let mut table = SlotTable::new();
        let base = mem.as_ptr() as usize;
        let slot = table
            .alloc(base, mem.len(), len, block, SlotKind::IoBuffer)
            .ok()?;
        Some(IoArena { table, mem, slot })
    }

    /// The first `len` bytes of the slot.
    pub(super) fn bytes(&self, len: usize) -> &[u8] {
        self.parts()
            .1
            .get(self.slot.range())
            .and_then(|b| b.get(..len))
            .unwrap_or_default()
    }

    /// Read `len` bytes at `offset` into the slot, and check them with
    /// `ok`; a read error or a failed check is tried again (see
    /// [`with_retries`]). `Ok(false)` when every attempt read bytes that
    /// failed the check.
    pub(super) fn read_checked<D: FlashDevice>(
        &mut self,
        dev: &mut D,
        block: u64,
        offset: u64,
        len: usize,
        ok: impl Fn(&[u8]) -> bool,
    ) -> Result<bool, ReadError<D::Error>> {
        let slot = self.slot;
        let rounded = (len as u64).div_ceil(block) * block;
        if rounded > slot.len() as u64 {
            return Ok(false);
        }
        let outcome = with_retries(
            |_| match read_into(dev, self, slot, block, offset, rounded) {
                Err(e) => Attempt::Again(Some(e)),
                Ok(()) if ok(self.bytes(len)) => Attempt::Done(()),
                Ok(()) => Attempt::Again(None),
            },
        );
        match outcome {
            Ok(_) => Ok(true),
            Err(None) => Ok(false),
            Err(Some(e)) => Err(e),
        }
    }
}

/// Read `len` bytes (whole blocks) at `offset` into `dest` of `arena`, in
/// transfers of at most the device's `max_transfer`.
pub(super) fn read_into<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    dest: Slot,
    block: u64,
    offset: u64,
    len: u64,
) -> Result<(), ReadError<D::Error>> {
    let g = dev.geometry();
    let piece = (u64::from(g.max_transfer) / block * block).max(block);
    let mut done = 0u64;
    while done < len {
        let n = piece.min(len - done);
        let read = ReadRequest {
            tag: 0,
            offset: offset + done,
            len: n as u32,
            dest,
            dest_offset: done as usize,
        };
        dev.read_blocking(arena, &[read])?;
        done += n;
    }
    Ok(())
}

/// Write `data` at `offset`, padded with zeros to whole blocks: the
/// aligned part straight from `data`, the tail through `scratch` (at least
/// one block).
pub(super) fn write_padded<D: FlashWrite>(
    dev: &mut D,
    scratch: &mut [u8],
    block: usize,
    offset: u64,
    data: &[u8],
) -> Result<(), D::Error> {
    let whole = data.len() / block * block;
    if whole > 0 {
        dev.write(offset, &data[..whole])?;
    }
    let tail = &data[whole..];
    if !tail.is_empty() {
        let Some(pad) = scratch.get_mut(..block) else {
            // The memory split guarantees a block; a zero-length write is
            // refused by the device rather than panicking here.
            return dev.write(offset + whole as u64, &[]);
        };
        pad[..tail.len()].copy_from_slice(tail);
        pad[tail.len()..].fill(0);
        dev.write(offset + whole as u64, pad)?;
    }
    Ok(())
}
