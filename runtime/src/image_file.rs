//! A lode image's metadata prefix, read once with one size cap.
//!
//! Every front end that opens an image (`lode run`, `inspect`,
//! `calibrate`, the C ABI) reads the same way: the 64-byte header says how
//! long the metadata prefix is, the prefix is read whole and parsed
//! (validated before anything is trusted), and the data stays on flash for
//! the device to read. [`MAX_PREFIX`] bounds what a corrupt header can make
//! the reader allocate.

use std::fmt;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use lode_formats::image::layout::MAGIC;
use lode_formats::image::{read_file_prefix, Image, ImageError, PrefixError};
use lode_formats::input::{Input, InputError};

pub use lode_formats::image::MAX_PREFIX;

/// Why an image could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageFileError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The path was refused before reading (not a regular file or a block
    /// device), or could not be opened.
    Input(InputError),
    /// The header or the metadata is not a valid lode image.
    Format(ImageError),
    /// The header declares a metadata prefix larger than [`MAX_PREFIX`].
    PrefixTooLarge {
        /// Bytes the header declares.
        declared: u64,
    },
}

impl fmt::Display for ImageFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageFileError::Io(e) => write!(f, "cannot read: {e}"),
            // The input error names the path; the caller names it too.
            ImageFileError::Input(e) => write!(f, "{}", e.reason()),
            ImageFileError::Format(e) => write!(f, "{e}"),
            ImageFileError::PrefixTooLarge { declared } => write!(
                f,
                "the header declares a {declared}-byte metadata prefix; at most {MAX_PREFIX} \
                 are accepted"
            ),
        }
    }
}

impl std::error::Error for ImageFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageFileError::Io(e) => Some(e),
            ImageFileError::Input(e) => Some(e),
            _ => None,
        }
    }
}

/// An image's path and its parsed metadata prefix.
#[derive(Debug, Clone)]
pub struct ImageFile {
    path: PathBuf,
    prefix: Vec<u8>,
}

impl ImageFile {
    /// Reads and validates the metadata prefix of the image at `path`
    /// (opened as [`Input`] opens inputs: a FIFO, a directory or a
    /// character device is refused by name, unread), and checks the file's
    /// length is the image's (a regular file that is longer or shorter is
    /// refused, as `lode inspect` refuses it).
    pub fn open(path: &Path) -> Result<ImageFile, ImageFileError> {
        ImageFile::from_input(&Input::open(path).map_err(ImageFileError::Input)?)
    }

    /// Reads and validates the metadata prefix of the opened `input`.
    pub fn from_input(input: &Input) -> Result<ImageFile, ImageFileError> {
        let mut file = input.file();
        file.seek(SeekFrom::Start(0)).map_err(ImageFileError::Io)?;
        let prefix = read_file_prefix(input.file()).map_err(|e| match e {
            PrefixError::Io(e) => ImageFileError::Io(e),
            PrefixError::Format(e) => ImageFileError::Format(e),
            PrefixError::TooLarge { declared } => ImageFileError::PrefixTooLarge { declared },
            e => ImageFileError::Io(std::io::Error::other(e.to_string())),
        })?;
        Ok(ImageFile {
            path: input.path().to_path_buf(),
            prefix,
        })
    }

    /// The parsed image (validated when opened).
    pub fn image(&self) -> Image<'_> {
        // `open` parsed these exact bytes; parsing is deterministic.
        Image::parse(&self.prefix).expect("validated in ImageFile::open")
    }

    /// Where the image is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw metadata prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Bytes of weights: every tensor and bundle region.
    pub fn weight_bytes(&self) -> u64 {
        let img = self.image();
        img.tensors().map(|t| t.length).sum::<u64>() + img.layers().map(|r| r.length).sum::<u64>()
    }
}

/// Whether `path` is a file (or block device) that starts with a lode
/// image's magic; `false` for anything [`Input`] refuses.
pub fn is_image(path: &Path) -> bool {
    Input::open(path).is_ok_and(|i| starts_as_image(&i))
}

/// How many of the first 8 bytes differ from a lode image's magic, when
/// they are close to it (at most 2 differ) but not equal: a damaged image,
/// which should not be reported as "not a GGUF file".
pub fn damaged_image_magic(input: &Input) -> Option<usize> {
    let mut magic = [0u8; 8];
    let n = input.read_head(&mut magic).ok()?;
    let differ = magic
        .iter()
        .zip(MAGIC.iter())
        .filter(|(a, b)| a != b)
        .count();
    (n == magic.len() && (1..=2).contains(&differ)).then_some(differ)
}

/// Whether the opened `input` starts with a lode image's magic.
pub fn starts_as_image(input: &Input) -> bool {
    let mut magic = [0u8; 8];
    input
        .read_head(&mut magic)
        .is_ok_and(|n| n == magic.len() && magic == MAGIC)
}
