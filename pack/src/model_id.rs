//! Identity of a model file, shared by every command that ties an output
//! (an image, an activation trace) to the model it came from.

use lode_formats::gguf::Gguf;

/// A model fingerprint: [`Gguf::fingerprint`], the CRC-32C of the GGUF's
/// metadata and tensor table, so an image or trace can be matched to the
/// file it came from.
pub fn fingerprint(file: &Gguf<'_>) -> u64 {
    file.fingerprint()
}
