//! Reading an image's metadata prefix from a file: the one reader, with
//! the one size cap, that every program opening an image uses (`lode run`
//! through the runtime, `lode inspect`, storing a calibration).
//!
//! The 64-byte header says how long the prefix is; a corrupt header could
//! claim anything, so a prefix longer than [`MAX_PREFIX`] is refused before
//! anything is allocated. The prefix is parsed (validated whole) before it
//! is returned.

use std::io::{self, Read};
use std::vec;
use std::vec::Vec;

use super::{ErrorKind, Image, ImageError, ImageHeader, Location};

/// Largest metadata prefix a reader accepts: the tensor and bundle tables
/// and the tokenizer, which real images hold in a few MiB.
pub const MAX_PREFIX: u64 = 256 << 20;

/// Why a prefix could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum PrefixError {
    /// The file could not be read.
    Io(io::Error),
    /// The header or the metadata is not a valid image (a file that ends
    /// inside its prefix is `Truncated`).
    Format(ImageError),
    /// The header declares a prefix longer than [`MAX_PREFIX`].
    TooLarge {
        /// Bytes the header declares.
        declared: u64,
    },
}

impl core::fmt::Display for PrefixError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrefixError::Io(e) => write!(f, "cannot read: {e}"),
            PrefixError::Format(e) => write!(f, "{e}"),
            PrefixError::TooLarge { declared } => write!(
                f,
                "the header declares a {declared}-byte metadata prefix; at most {MAX_PREFIX} \
                 are accepted"
            ),
        }
    }
}

impl std::error::Error for PrefixError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PrefixError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads the metadata prefix from `r` (positioned at the image's start)
/// and checks it parses.
pub fn read_prefix(r: &mut impl Read) -> Result<Vec<u8>, PrefixError> {
    // What the file has of the header: a short foreign file is named by
    // its magic, not by its length.
    let mut head = [0u8; 64];
    let got = read_up_to(r, &mut head)?;
    let declared = ImageHeader::parse(&head[..got])
        .map_err(PrefixError::Format)?
        .meta_len;
    let len = usize::try_from(declared)
        .ok()
        .filter(|_| declared <= MAX_PREFIX)
        .ok_or(PrefixError::TooLarge { declared })?;
    let mut prefix = vec![0u8; len];
    prefix[..64].copy_from_slice(&head);
    read_or_truncated(r, &mut prefix[64..], 64)?;
    Image::parse(&prefix).map_err(PrefixError::Format)?;
    Ok(prefix)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, PrefixError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PrefixError::Io(e)),
        }
    }
    Ok(done)
}

/// Fills `buf`; a file that ends first is a truncated image at `at` plus
/// what was read, not an I/O error.
fn read_or_truncated(r: &mut impl Read, buf: &mut [u8], at: u64) -> Result<(), PrefixError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => {
                return Err(PrefixError::Format(ImageError::new(
                    ErrorKind::Truncated,
                    Location::Offset(at + done as u64),
                    "file ends inside the metadata prefix",
                )))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PrefixError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(bytes: &[u8]) -> Option<ErrorKind> {
        match read_prefix(&mut &bytes[..]) {
            Err(PrefixError::Format(e)) => Some(e.kind()),
            _ => None,
        }
    }

    #[test]
    fn a_foreign_or_truncated_file_is_named_by_what_it_lacks() {
        assert_eq!(
            kind(b"GGUF\x03\0\0\0 not a lode image"),
            Some(ErrorKind::BadMagic)
        );
        assert_eq!(kind(&[0u8; 64]), Some(ErrorKind::BadMagic));
        let magic = [0x8A, b'L', b'O', b'D', b'E', 0x0D, 0x0A, 0x1A];
        assert_eq!(kind(&magic), Some(ErrorKind::Truncated));
    }
}
