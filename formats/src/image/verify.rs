//! Checking the data part of an image: single tensors and bundles as they
//! are read, or every byte of it in one sequential pass.
//!
//! The metadata prefix is fully checked by [`Image::parse`]; the data is too
//! large to check at open time on a device whose DRAM is smaller than the
//! model. So each tensor has a CRC32C in its table entry, each bundle has its
//! own CRC32C (a sparse read of a few bundles is checked without reading the
//! rest of the region), and everything between them is padding that must be
//! zero. [`DataVerifier`] walks all of it in file order with constant memory,
//! fed in chunks of any size.

use super::error::{err, ErrorKind, ImageError, Location};
use super::reader::Image;
use crate::checksum::{crc32c, crc32c_digest, Crc32cDigest};

fn check_len(have: usize, want: u64, at: Location) -> Result<(), ImageError> {
    let have = have as u64;
    if have < want {
        return Err(err(
            ErrorKind::Truncated,
            at,
            "fewer bytes than the table says",
        ));
    }
    if have > want {
        return Err(err(
            ErrorKind::Malformed,
            at,
            "more bytes than the table says",
        ));
    }
    Ok(())
}

impl<'a> Image<'a> {
    /// Check `data` as the content of tensor `index`: its length and CRC32C.
    pub fn verify_tensor(&self, index: usize, data: &[u8]) -> Result<(), ImageError> {
        let at = Location::Tensor(index);
        let rec =
            self.tensors
                .get(index)
                .ok_or(err(ErrorKind::OutOfRange, at, "no such tensor"))?;
        check_len(data.len(), rec.length.get(), at)?;
        if crc32c(data) != rec.crc.get() {
            return Err(err(
                ErrorKind::ChecksumMismatch,
                at,
                "tensor data CRC32C differs",
            ));
        }
        Ok(())
    }

    /// Check `bytes` as the content of the bundle at position `pos` of layer
    /// `layer` (its `bundle_size` bytes, without the stride padding).
    pub fn verify_bundle(&self, layer: usize, pos: u32, bytes: &[u8]) -> Result<(), ImageError> {
        let at = Location::Bundle { layer, pos };
        let (Some(region), Some(crc)) = (self.bundle_region(layer), self.bundle_crc(layer, pos))
        else {
            return Err(err(ErrorKind::OutOfRange, at, "no such bundle"));
        };
        check_len(bytes.len(), u64::from(region.bundle_size), at)?;
        if crc32c(bytes) != crc {
            return Err(err(
                ErrorKind::ChecksumMismatch,
                at,
                "bundle CRC32C differs",
            ));
        }
        Ok(())
    }

    /// A verifier for the data part: feed it the bytes from
    /// [`meta_len`](super::ImageHeader::meta_len) to
    /// [`file_len`](super::ImageHeader::file_len) in order.
    pub fn data_verifier(&self) -> DataVerifier<'a> {
        DataVerifier::new(*self)
    }

    /// Check the whole data part at once: `data` is the image's bytes from
    /// `meta_len` to `file_len`.
    pub fn verify_data(&self, data: &[u8]) -> Result<(), ImageError> {
        let mut v = self.data_verifier();
        v.update(data)?;
        v.finish()
    }
}

/// A checksummed extent of the data part: a tensor or one bundle's content.
#[derive(Debug, Clone, Copy)]
struct Extent {
    start: u64,
    len: u64,
    crc: u32,
    at: Location,
}

/// Which extent comes next, in file order (tensors, then each layer's
/// bundles by position).
#[derive(Debug, Clone, Copy)]
enum Next {
    Tensor(usize),
    Bundle { layer: usize, pos: u32 },
}

#[derive(Clone)]
enum Phase {
    /// Zero padding until `until`, then `next` (or the end of the image).
    Gap { until: u64, next: Option<Extent> },
    /// Inside `extent`, its CRC so far.
    Data {
        extent: Extent,
        digest: Crc32cDigest,
    },
    /// Past the end of the image.
    Done,
}

/// Streaming check of every data byte of an image, in constant memory.
///
/// Each tensor's and bundle's bytes are checked against their CRC32C and
/// every other byte (stride padding, block padding, the tail) must be zero.
/// Errors name the tensor, the bundle or the byte offset.
#[derive(Clone)]
pub struct DataVerifier<'a> {
    image: Image<'a>,
    next: Next,
    pos: u64,
    phase: Phase,
}

impl core::fmt::Debug for DataVerifier<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataVerifier")
            .field("pos", &self.pos)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<'a> DataVerifier<'a> {
    fn new(image: Image<'a>) -> Self {
        let mut v = DataVerifier {
            image,
            next: Next::Tensor(0),
            pos: image.header.meta_len,
            phase: Phase::Done,
        };
        v.phase = v.gap_to_next();
        v
    }

    /// Absolute offset of the next byte expected.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next checksummed extent in file order, advancing the cursor.
    fn next_extent(&mut self) -> Option<Extent> {
        loop {
            match self.next {
                Next::Tensor(i) => match self.image.tensors.get(i) {
                    Some(rec) => {
                        self.next = Next::Tensor(i + 1);
                        return Some(Extent {
                            start: rec.offset.get(),
                            len: rec.length.get(),
                            crc: rec.crc.get(),
                            at: Location::Tensor(i),
                        });
                    }
                    None => self.next = Next::Bundle { layer: 0, pos: 0 },
                },
                Next::Bundle { layer, pos } => {
                    let region = self.image.bundle_region(layer)?;
                    if pos >= region.count {
                        self.next = Next::Bundle {
                            layer: layer + 1,
                            pos: 0,
                        };
                        continue;
                    }
                    self.next = Next::Bundle {
                        layer,
                        pos: pos + 1,
                    };
                    return Some(Extent {
                        start: region.bundle_offset(pos)?,
                        len: u64::from(region.bundle_size),
                        crc: self.image.bundle_crc(layer, pos)?,
                        at: Location::Bundle { layer, pos },
                    });
                }
            }
        }
    }

    fn gap_to_next(&mut self) -> Phase {
        let next = self.next_extent();
        let until = next.map_or(self.image.header.file_len, |e| e.start);
        Phase::Gap { until, next }
    }

    /// Close every phase that ends at the current position.
    fn settle(&mut self) -> Result<(), ImageError> {
        loop {
            let phase = core::mem::replace(&mut self.phase, Phase::Done);
            self.phase = match phase {
                Phase::Gap { until, next } if until == self.pos => match next {
                    Some(extent) => Phase::Data {
                        extent,
                        digest: crc32c_digest(),
                    },
                    None => Phase::Done,
                },
                Phase::Data { extent, digest }
                    if extent.start.checked_add(extent.len) == Some(self.pos) =>
                {
                    if digest.finalize() != extent.crc {
                        return Err(err(
                            ErrorKind::ChecksumMismatch,
                            extent.at,
                            "data CRC32C differs",
                        ));
                    }
                    self.gap_to_next()
                }
                other => {
                    self.phase = other;
                    return Ok(());
                }
            };
        }
    }

    /// Check the next `chunk.len()` bytes of the data part.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        let mut rest = chunk;
        self.settle()?;
        while !rest.is_empty() {
            let here = Location::Offset(self.pos);
            let end = match &self.phase {
                Phase::Gap { until, .. } => *until,
                Phase::Data { extent, .. } => extent.start.saturating_add(extent.len),
                Phase::Done => {
                    return Err(err(
                        ErrorKind::OutOfRange,
                        here,
                        "more bytes than the image holds",
                    ))
                }
            };
            let room = end.checked_sub(self.pos).ok_or(err(
                ErrorKind::Malformed,
                here,
                "extents out of order",
            ))?;
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(rest.len());
            let (head, tail) = rest.split_at(n);
            match &mut self.phase {
                Phase::Gap { .. } => {
                    if let Some(k) = head.iter().position(|&b| b != 0) {
                        return Err(err(
                            ErrorKind::NonZeroPadding,
                            Location::Offset(self.pos.saturating_add(k as u64)),
                            "padding byte is not zero",
                        ));
                    }
                }
                Phase::Data { digest, .. } => digest.update(head),
                Phase::Done => {}
            }
            self.pos = self.pos.saturating_add(n as u64);
            rest = tail;
            self.settle()?;
        }
        Ok(())
    }

    /// Finish: every byte up to the image's end must have been checked.
    pub fn finish(mut self) -> Result<(), ImageError> {
        self.settle()?;
        match self.phase {
            Phase::Done => Ok(()),
            _ => Err(err(
                ErrorKind::Truncated,
                Location::Offset(self.pos),
                "data ends before the image's length",
            )),
        }
    }
}
