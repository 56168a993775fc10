//! Formatting an area, and opening one: recovering the newest committed
//! state that passes every check and rebuilding free space from it.

use super::commit::Fail;
use super::error::{DeviceError, FormatError, OpenError};
use super::io::write_padded;
use super::{Setup, SwapArea};
use crate::flash::FlashWrite;
use crate::formats::checksum::crc32c;
use crate::formats::swap::{
    Directory, ErrorKind as FormatKind, Extent, Record, Superblock, SwapFormatError, SLOTS,
};
use crate::limits::{MAX_CHUNKS, MAX_CONTEXT, MAX_CONTEXTS};

/// A committed state that failed a check, or a device that failed.
enum LoadFail<E> {
    Corrupt(SwapFormatError),
    Device(DeviceError<E>),
}

fn corrupt<E>(what: &'static str) -> LoadFail<E> {
    LoadFail::Corrupt(SwapFormatError::new(FormatKind::Malformed, what))
}

impl<'m, D: FlashWrite> SwapArea<'m, D> {
    /// Make `dev` an empty swap area for the model `fingerprint`, using
    /// `mem` (at least [`memory_bytes`](super::memory_bytes) bytes).
    ///
    /// Both superblock slots are zeroed and synced first, so a format cut
    /// short leaves no valid superblock (open says
    /// [`NoSuperblock`](OpenError::NoSuperblock)) rather than a mix of the
    /// old area and the new.
    pub fn format(
        dev: D,
        fingerprint: &[u8; 32],
        mem: &'m mut [u8],
    ) -> Result<Self, FormatError<D::Error>> {
        let mut area = Self::empty(dev, fingerprint, mem).map_err(|e| match e {
            Setup::Geometry => FormatError::BadGeometry,
            Setup::Memory => FormatError::MemoryTooSmall,
        })?;
        let block = u64::from(area.shape.block);
        let w = DeviceError::Write;
        let pad_at = area.build.len() - block as usize;
        area.build[pad_at..].fill(0);
        for slot in 0..SLOTS {
            area.dev
                .write(slot * block, &area.build[pad_at..])
                .map_err(w)?;
        }
        area.dev.sync().map_err(w)?;
        area.space.claim(0, SLOTS * block);
        area.sequence = 0;
        // The first state: sequence 1 in slot 0 (publish writes the slot
        // other than `slot`).
        area.slot = 1;
        area.publish().map_err(|f| match f {
            Fail::Device(e) => FormatError::Device(e),
            _ => FormatError::BadGeometry,
        })?;
        Ok(area)
    }

    /// Open the swap area on `dev` for the model `fingerprint`: read both
    /// superblock slots, take the newest valid one whose directory and
    /// records pass every check (else the older), and rebuild free space
    /// from what that state references.
    pub fn open(
        dev: D,
        fingerprint: &[u8; 32],
        mem: &'m mut [u8],
    ) -> Result<Self, OpenError<D::Error>> {
        let mut area = Self::empty(dev, fingerprint, mem).map_err(|e| match e {
            Setup::Geometry => OpenError::BadGeometry,
            Setup::Memory => OpenError::MemoryTooSmall,
        })?;
        let block = u64::from(area.shape.block);
        let mut found: [Option<Superblock>; 2] = [None, None];
        for (slot, out) in found.iter_mut().enumerate() {
            let at = slot as u64 * block;
            let len = block as usize;
            let good = area
                .io
                .read_checked(&mut area.dev, block, at, len, |b| {
                    Superblock::decode(b).is_ok()
                })
                .map_err(|e| OpenError::Device(DeviceError::Read(e)))?;
            match Superblock::decode(area.io.bytes(len)) {
                Ok(sb) if good && sb.slot as usize == slot => *out = Some(sb),
                Err(e) if e.kind() == FormatKind::UnsupportedVersion => {
                    return Err(OpenError::UnsupportedVersion);
                }
                _ => {}
            }
        }
        // Newest first.
        if let [Some(a), Some(b)] = &found {
            if b.sequence > a.sequence {
                found.swap(0, 1);
            }
        }
        let mut first_failure = None;
        let mut passed_over = false;
        for sb in found.iter().flatten() {
            if sb.shape != area.shape {
                return Err(OpenError::BadGeometry);
            }
            if sb.fingerprint != area.fingerprint {
                return Err(OpenError::WrongFingerprint);
            }
            match area.load(sb) {
                Ok(()) => {
                    area.fell_back = passed_over;
                    return Ok(area);
                }
                Err(LoadFail::Device(e)) => return Err(OpenError::Device(e)),
                Err(LoadFail::Corrupt(e)) => {
                    first_failure.get_or_insert(e);
                    passed_over = true;
                }
            }
        }
        Err(first_failure.map_or(OpenError::NoSuperblock, OpenError::Corrupt))
    }

    /// Make `sb`'s state the committed one: read and check its directory
    /// and every record, and claim every block they reference (two claims
    /// of one block are an overlap: corrupt).
    fn load(&mut self, sb: &Superblock) -> Result<(), LoadFail<D::Error>> {
        let block = u64::from(self.shape.block);
        self.space.clear();
        self.count = 0;
        self.space.claim(0, SLOTS * block);
        let dir = sb.directory;
        let ok = self.read_extent(dir).map_err(LoadFail::Device)?;
        if !ok {
            return Err(LoadFail::Corrupt(SwapFormatError::new(
                FormatKind::ChecksumMismatch,
                "directory checksum",
            )));
        }
        let shape = self.shape;
        let parsed =
            Directory::parse(self.io.bytes(dir.len as usize), &shape).map_err(LoadFail::Corrupt)?;
        if parsed.sequence() != sb.sequence || parsed.len() > MAX_CONTEXTS {
            return Err(corrupt("directory of another commit, or too many contexts"));
        }
        if !self.space.claim(dir.offset, u64::from(dir.len)) {
            return Err(corrupt("directory overlaps a superblock slot"));
        }
        let bytes = parsed.entry_bytes();
        self.entries
            .get_mut(..bytes.len())
            .ok_or(corrupt("too many contexts"))?
            .copy_from_slice(bytes);
        self.count = parsed.len();
        for i in 0..self.count {
            let Some(e) = self.entry(i) else {
                return Err(corrupt("directory entry"));
            };
            if !self.read_extent(e.record).map_err(LoadFail::Device)? {
                return Err(LoadFail::Corrupt(SwapFormatError::new(
                    FormatKind::ChecksumMismatch,
                    "record checksum",
                )));
            }
            let r = Record::parse(self.io.bytes(e.record.len as usize), &shape)
                .map_err(LoadFail::Corrupt)?;
            if r.context_id() != e.context_id
                || r.generation() != e.generation
                || r.token_count() > MAX_CONTEXT
                || r.chunk_count() > MAX_CHUNKS
            {
                return Err(corrupt("record disagrees with its directory entry"));
            }
            if !self.space.claim(e.record.offset, u64::from(e.record.len)) {
                return Err(corrupt("a record overlaps another structure"));
            }
            for c in r.chunks() {
                if !self.space.claim(c.payload.offset, u64::from(c.payload.len)) {
                    return Err(corrupt("a chunk payload overlaps another structure"));
                }
            }
        }
        self.sequence = sb.sequence;
        self.slot = sb.slot;
        self.directory = dir;
        Ok(())
    }

    /// Read `e` into the I/O buffer and check its CRC32C (with retries).
    pub(super) fn read_extent(&mut self, e: Extent) -> Result<bool, DeviceError<D::Error>> {
        let block = u64::from(self.shape.block);
        self.io
            .read_checked(&mut self.dev, block, e.offset, e.len as usize, |b| {
                crc32c(b) == e.crc
            })
            .map_err(DeviceError::Read)
    }

    /// Write the directory in memory and a superblock naming it: the
    /// commit point of every change. See the module documentation.
    pub(super) fn publish(&mut self) -> Result<(), Fail<D::Error>> {
        let block = self.shape.block as usize;
        let w = |e| Fail::Device(DeviceError::Write(e));
        let sequence = self.sequence + 1;
        let pad_at = self.build.len() - block;
        let (body, pad) = self.build.split_at_mut(pad_at);
        let entries = &self.entries[..self.count * super::DIR_ENTRY_LEN];
        let len = Directory::encode(body, sequence, entries)
            .map_err(|_| Fail::Invalid("directory does not fit"))?;
        let offset = self.space.take(len as u64).ok_or(Fail::Full)?;
        write_padded(&mut self.dev, pad, block, offset, &body[..len]).map_err(w)?;
        self.dev.sync().map_err(w)?;
        let directory = Extent {
            offset,
            len: len as u32,
            crc: crc32c(&body[..len]),
        };
        let slot = 1 - self.slot.min(1);
        let sb = Superblock {
            shape: self.shape,
            slot,
            sequence,
            directory,
            fingerprint: self.fingerprint,
        };
        pad.fill(0);
        sb.encode(pad).map_err(|_| Fail::Invalid("superblock"))?;
        // From here the outcome is unknown until the sync returns.
        self.unsettled = true;
        self.dev
            .write(u64::from(slot) * block as u64, pad)
            .map_err(w)?;
        self.dev.sync().map_err(w)?;
        self.unsettled = false;
        let old = self.directory;
        self.sequence = sequence;
        self.slot = slot;
        self.directory = directory;
        self.space.settle();
        if old.len > 0 {
            self.space.release(old.offset, u64::from(old.len));
        }
        Ok(())
    }
}
