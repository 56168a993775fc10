//! Where the data part's extents may lie: in file order, each at the
//! first block boundary after the previous one, the file ending at the
//! last one rounded up to a block. The reader places every tensor and
//! bundle region through one cursor when an image is opened.

use super::error::{err, ErrorKind, ImageError, Location};
use super::header::align_up;

/// Walks the data part in file order and checks that each extent starts at
/// the first block boundary after the previous one: data is block-aligned,
/// never overlaps, and every gap is padding shorter than a block.
pub(crate) struct DataCursor {
    next: u64,
    file_len: u64,
    block: u64,
}

impl DataCursor {
    pub fn new(meta_len: u64, file_len: u64, block_size: u32) -> Self {
        DataCursor {
            next: meta_len,
            file_len,
            block: u64::from(block_size),
        }
    }

    /// Place the next extent of the file.
    pub fn place(&mut self, offset: u64, len: u64, at: Location) -> Result<(), ImageError> {
        if !offset.is_multiple_of(self.block) {
            return Err(err(
                ErrorKind::Misaligned,
                at,
                "data offset is not block-aligned",
            ));
        }
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= self.file_len)
            .ok_or(err(
                ErrorKind::OutOfRange,
                at,
                "data reaches past the end of the image",
            ))?;
        if offset != self.next {
            return Err(err(
                ErrorKind::Malformed,
                at,
                "data does not start at the first block after the previous data",
            ));
        }
        self.next = align_up(end, self.block).ok_or(err(
            ErrorKind::OutOfRange,
            at,
            "data end overflows",
        ))?;
        Ok(())
    }

    /// Check that the image ends right after the last extent.
    pub fn finish(&self) -> Result<(), ImageError> {
        if self.next != self.file_len {
            return Err(err(
                ErrorKind::Malformed,
                Location::Offset(self.next),
                "file length is not the end of the data rounded up to a block",
            ));
        }
        Ok(())
    }
}
