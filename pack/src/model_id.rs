//! Identity of a model file, shared by every command that ties an output
//! (an image, an activation trace) to the model it came from.

use lode_formats::gguf::Gguf;

/// A model fingerprint: the CRC-32C of the GGUF's metadata and tensor
/// table, so an image or trace can be matched to the file it came from.
/// The tensor data is left out: hashing ~100 MB on every command would cost
/// more than it protects, and the table already pins every tensor's name,
/// shape, type and offset.
pub fn fingerprint(file: &Gguf<'_>) -> u64 {
    let end = usize::try_from(file.data_offset()).unwrap_or(usize::MAX);
    let bytes = file.bytes();
    u64::from(lode_formats::image::crc32c(
        bytes.get(..end.min(bytes.len())).unwrap_or(bytes),
    ))
}
