//! The tokenizer section (kind 9, since format 1.1): the model's tokenizer
//! as a GGUF file of its own, so an image alone is enough to turn text into
//! token ids and back.
//!
//! The section's CRC already covers its bytes; this checks, when the image
//! is opened, that they are what the format promises, so code that builds a
//! tokenizer from [`Image::tokenizer_gguf`](super::Image::tokenizer_gguf)
//! never meets a section that only a CRC vouched for: a GGUF v3 file that
//! `Gguf::parse` accepts, with zero tensors, with `general.architecture`
//! (a string) and `tokenizer.ggml.tokens` (an array of strings), ending at its
//! data offset, its bytes after the last metadata entry zero.

use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::sections::all_zero;
use crate::gguf::{metadata_end, Gguf, ValueType, TOKENS_KEY};

const AT: Location = Location::Section(SectionKind::Tokenizer);

fn malformed(detail: &'static str) -> ImageError {
    err(ErrorKind::Malformed, AT, detail)
}

/// Check the bytes of a tokenizer section (see the module docs).
pub(crate) fn check_tokenizer(bytes: &[u8]) -> Result<(), ImageError> {
    let file = Gguf::parse(bytes).map_err(|_| malformed("not a GGUF file lode reads"))?;
    if file.version() != 3 {
        return Err(malformed("GGUF version is not 3"));
    }
    if file.tensor_count() != 0 {
        return Err(malformed("GGUF file holds tensors"));
    }
    if file.architecture().is_none() {
        return Err(malformed("GGUF file has no general.architecture string"));
    }
    let tokens = file
        .get(TOKENS_KEY)
        .and_then(|v| v.as_array())
        .filter(|a| a.elem_type() == ValueType::String);
    if tokens.is_none() {
        return Err(malformed(
            "GGUF file has no tokenizer.ggml.tokens string array",
        ));
    }
    if u64::try_from(bytes.len()).ok() != Some(file.data_offset()) {
        return Err(malformed("length is not the GGUF file's data offset"));
    }
    let end = metadata_end(&file).ok_or(malformed("GGUF metadata cannot be measured"))?;
    if !bytes.get(end..).is_some_and(all_zero) {
        return Err(err(
            ErrorKind::NonZeroPadding,
            AT,
            "padding after the GGUF metadata is not zero",
        ));
    }
    Ok(())
}
