//! A bounds-checked little-endian reader over a byte slice.
//!
//! Every read either returns the bytes it asked for or a
//! [`GgufError::Truncated`] naming the offset where it failed; nothing here
//! can index out of bounds or overflow, whatever lengths the file claims.

use super::error::{GgufError, Item};

/// A position in a byte slice that only moves forward.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos` (which may be past the end; the first read then fails).
    pub(crate) fn at(bytes: &'a [u8], pos: usize) -> Cursor<'a> {
        Cursor { bytes, pos }
    }

    /// Current offset from the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the current position.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn short(&self) -> GgufError {
        GgufError::Truncated {
            offset: self.pos as u64,
            item: Item::Unknown,
        }
    }

    /// Take the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], GgufError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.short())?;
        let out = self.bytes.get(self.pos..end).ok_or_else(|| self.short())?;
        self.pos = end;
        Ok(out)
    }

    /// Take `count` items of `size` bytes each, checking the product first so
    /// a lying count can neither overflow nor loop.
    pub(crate) fn take_n(&mut self, count: u64, size: usize) -> Result<&'a [u8], GgufError> {
        let total = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(size))
            .ok_or_else(|| self.short())?;
        self.take(total)
    }

    /// Take exactly `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let at = self.short();
        self.take(N)?.try_into().map_err(|_| at)
    }

    /// Read a `u8`.
    pub(crate) fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    /// Read a little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Read a little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Read a GGUF string: a `u64` byte length, then that many UTF-8 bytes.
    pub(crate) fn string(&mut self) -> Result<&'a str, GgufError> {
        let len = self.u64()?;
        let start = self.pos;
        let bytes = self.take_n(len, 1)?;
        core::str::from_utf8(bytes).map_err(|_| GgufError::BadUtf8 {
            offset: start as u64,
            item: Item::Unknown,
        })
    }

    /// Skip a GGUF string without decoding it (used for data validated once).
    pub(crate) fn skip_string(&mut self) -> Result<(), GgufError> {
        let len = self.u64()?;
        self.take_n(len, 1).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::ErrorKind;

    #[test]
    fn reads_little_endian_and_stops_at_the_end() {
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(c.u32().unwrap(), 1);
        assert_eq!(c.u64().unwrap(), 2);
        assert_eq!(c.remaining(), 1);
        let err = c.u32().unwrap_err();
        assert_eq!(
            err,
            GgufError::Truncated {
                offset: 12,
                item: Item::Unknown
            }
        );
        // A failed read does not move the cursor.
        assert_eq!(c.pos(), 12);
        assert_eq!(c.u8().unwrap(), 9);
    }

    #[test]
    fn lying_lengths_are_truncation_not_overflow() {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(c.string().unwrap_err().kind(), ErrorKind::Truncated);
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(
            c.take_n(u64::MAX, 8).unwrap_err().kind(),
            ErrorKind::Truncated
        );
        let mut c = Cursor::at(&bytes, usize::MAX);
        assert_eq!(c.take(1).unwrap_err().kind(), ErrorKind::Truncated);
        assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn strings_are_checked_for_utf8() {
        let mut bytes = [0u8; 10];
        bytes[0] = 2;
        bytes[8] = 0xff;
        bytes[9] = 0xfe;
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(
            c.string().unwrap_err(),
            GgufError::BadUtf8 {
                offset: 8,
                item: Item::Unknown
            }
        );
        let mut c = Cursor::at(&bytes, 0);
        c.skip_string().unwrap();
        assert_eq!(c.pos(), 10);
    }
}
