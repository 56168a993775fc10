//! A bounds-checked cursor over a borrowed byte slice: every read the
//! decoder makes of its input goes through here, so a truncated or lying
//! length is an error, never an out-of-bounds index.

use super::error::DecodeError;

/// A cursor over `bytes`.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at `at` of `bytes`.
    pub(super) fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader { bytes, at }
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n);
        match end.and_then(|e| self.bytes.get(self.at..e)) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            // The unit's length was checked against the input before any
            // cursor runs, so running past one is a lying length inside.
            None => Err(DecodeError::Corrupt(
                "a length runs past its unit or section",
            )),
        }
    }

    /// The next little-endian u32.
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next little-endian u16.
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Whether every byte was read.
    pub(super) fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }
}
