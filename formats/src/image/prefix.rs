//! Reading an image's metadata prefix from a file: the one reader, with
//! the one size cap and the one length rule, that every program opening an
//! image uses (`lode run` through the runtime, `lode inspect`, storing a
//! calibration), so none accepts an image another refuses.
//!
//! The 64-byte header says how long the prefix is; a corrupt header could
//! claim anything, so a prefix longer than [`MAX_PREFIX`] is refused before
//! anything is allocated. The prefix is parsed (validated whole) before it
//! is returned, and [`read_file_prefix`] also checks the file's length
//! against the image's ([`ImageHeader::check_container_len`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::vec::Vec;

use super::{Container, ErrorKind, Image, ImageError, ImageHeader, Location};

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
///
/// Memory follows what `r` really holds, not what the header claims: the
/// buffer starts small and grows as bytes arrive, so a short file whose
/// header declares a long prefix costs its own length (at most about four
/// times it), not the declared one, before it is found `Truncated`.
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
    let mut prefix = Vec::with_capacity(len.min(FIRST_READ));
    prefix.extend_from_slice(&head);
    read_rest(r, &mut prefix, len)?;
    Image::parse(&prefix).map_err(PrefixError::Format)?;
    Ok(prefix)
}

/// Bytes of prefix buffer allocated before any of them is read; more
/// grows as the file delivers them.
const FIRST_READ: usize = 64 << 10;

/// Appends to `prefix` until it holds `len` bytes; a file that ends first
/// is a truncated image at the offset where it ends, not an I/O error.
fn read_rest(r: &mut impl Read, prefix: &mut Vec<u8>, len: usize) -> Result<(), PrefixError> {
    let want = len.saturating_sub(prefix.len()) as u64;
    // `read_to_end` retries interrupted reads and grows the buffer by what
    // arrives, so memory stays proportional to the bytes read.
    r.take(want).read_to_end(prefix).map_err(PrefixError::Io)?;
    if prefix.len() < len {
        return Err(PrefixError::Format(ImageError::new(
            ErrorKind::Truncated,
            Location::Offset(prefix.len() as u64),
            "file ends inside the metadata prefix",
        )));
    }
    Ok(())
}

/// Reads the metadata prefix of the image in `file` (positioned at its
/// start, as a freshly opened file is) and checks it parses and that the
/// file's length is the image's: a regular file must end exactly at
/// `file_len`, a block device may be longer
/// ([`ImageHeader::check_container_len`]). Other kinds of file, whose
/// length is unknown, are only read.
pub fn read_file_prefix(file: &File) -> Result<Vec<u8>, PrefixError> {
    let stored = container_len(file).map_err(PrefixError::Io)?;
    let prefix = read_prefix(&mut &*file)?;
    if let Some((len, container)) = stored {
        let header = ImageHeader::parse(&prefix).map_err(PrefixError::Format)?;
        header
            .check_container_len(len, container)
            .map_err(PrefixError::Format)?;
    }
    Ok(prefix)
}

/// The length of `file` and what kind of container it is: a regular
/// file's length from its metadata; a device's by seeking to its end (its
/// metadata says 0), then back to the start. `None` for what cannot seek
/// (a pipe): its length is unknown until it is read.
fn container_len(file: &File) -> io::Result<Option<(u64, Container)>> {
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok(Some((meta.len(), Container::File)));
    }
    let mut f = file;
    let Ok(len) = f.seek(SeekFrom::End(0)) else {
        return Ok(None);
    };
    f.seek(SeekFrom::Start(0))?;
    Ok(Some((len, Container::Device)))
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

    /// A scratch file holding `bytes`, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str, bytes: &[u8]) -> Scratch {
            let path = std::env::temp_dir().join(std::format!(
                "lode-prefix-{}-{name}.lode",
                std::process::id()
            ));
            std::fs::write(&path, bytes).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn one_block_image() -> Vec<u8> {
        let geometry = crate::image::ModelGeometry {
            arch: crate::image::ArchTag::new("llama").unwrap(),
            layers: 0,
            hidden: 32,
            ffn: 0,
            heads: 1,
            kv_heads: 1,
            head_dim: 32,
            vocab: 1,
            context: 1,
            rope_base: 1.0,
            rms_eps: 1e-5,
            fingerprint: 1,
        };
        let mut b = crate::image::ImageBuilder::new(geometry);
        b.block_size(512);
        b.add_tensor("t", crate::DType::F32, &[8], std::vec![1u8; 32])
            .unwrap();
        b.to_bytes().unwrap()
    }

    /// Found while stating the fuzz tests' allocation bound: a 64-byte
    /// header declaring a 255 MiB prefix made `read_prefix` allocate all of
    /// it before finding the file ends. Now memory follows the bytes read.
    #[test]
    fn a_short_file_declaring_a_huge_prefix_is_truncated_without_its_memory() {
        let mut bytes = one_block_image();
        let huge: u64 = 255 << 20;
        bytes[16..24].copy_from_slice(&huge.to_le_bytes());
        bytes[24..32].copy_from_slice(&huge.to_le_bytes());
        crate::image::reseal_checksums(&mut bytes).unwrap();
        let header = ImageHeader::parse(&bytes).unwrap();
        assert_eq!((header.meta_len, header.file_len), (huge, huge));
        match read_prefix(&mut &bytes[..]) {
            Err(PrefixError::Format(e)) => {
                assert_eq!(e.kind(), ErrorKind::Truncated);
                assert_eq!(e.location(), Location::Offset(bytes.len() as u64));
            }
            other => panic!("{other:?}"),
        }
        // How much it allocates is measured by the image fuzz test
        // (tests/tests/fuzz_image.rs), which counts every allocation.
    }

    #[test]
    fn a_file_must_end_where_the_image_does() {
        let bytes = one_block_image();
        let file_kind = |name: &str, bytes: &[u8]| {
            let f = Scratch::new(name, bytes);
            match read_file_prefix(&File::open(&f.0).unwrap()) {
                Ok(prefix) => Ok(prefix.len()),
                Err(PrefixError::Format(e)) => Err(Some((e.kind(), e.location()))),
                Err(_) => Err(None),
            }
        };
        assert_eq!(file_kind("exact", &bytes), Ok(512));
        let len = bytes.len() as u64;
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            file_kind("long", &long),
            Err(Some((ErrorKind::OutOfRange, Location::Offset(len + 1))))
        );
        assert_eq!(
            file_kind("short", &bytes[..bytes.len() - 1]),
            Err(Some((ErrorKind::Truncated, Location::Offset(len - 1))))
        );
        // Shorter than its prefix: named where the file ends inside it.
        assert_eq!(
            file_kind("no-data", &bytes[..100]).map_err(|e| e.map(|(k, _)| k)),
            Err(Some(ErrorKind::Truncated))
        );
    }
}
