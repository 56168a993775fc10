//! GGUF reading (versions 2 and 3), from a byte slice, without allocation.
//!
//! GGUF is llama.cpp's model file: a header, typed metadata key-values, a
//! table of tensor infos, then the tensor data, aligned. lode reads it to
//! pack a model into its own image and to test against the real model. The
//! byte layout, what is checked and why, and the block encodings are written
//! down in `formats/GGUF.md`.
//!
//! [`Gguf::parse`] walks and validates the whole header once; after that,
//! metadata, arrays and tensors are decoded lazily from the borrowed bytes
//! and cannot fail. A truncated, misaligned or lying file is a typed
//! [`GgufError`], never a panic or an out-of-bounds read.
//!
//! One writer lives here too (feature `std`): `tokenizer_only` copies a
//! model's tokenizer metadata into a GGUF file of its own, which `lode pack`
//! stores in the image so the image alone can encode and decode text.
//!
//! ```
//! use lode_formats::gguf::{dequantize_row, Gguf, GgufError};
//!
//! fn first_embedding_row(bytes: &[u8], out: &mut [f32]) -> Result<usize, GgufError> {
//!     let file = Gguf::parse(bytes)?;
//!     let params = file.check_llama()?;
//!     let vocab = file.get_array("tokenizer.ggml.tokens")?;
//!     for token in vocab.strings().into_iter().flatten().take(3) {
//!         let _ = token; // a tokenizer would index these
//!     }
//!     let embd = file.require_tensor("token_embd.weight")?;
//!     let row0 = file.row_data(&embd, 0)?;
//!     let n = params.shape.hidden;
//!     dequantize_row(embd.dtype, row0, out.get_mut(..n).unwrap_or(&mut []))?;
//!     Ok(n)
//! }
//! // Not a GGUF file: a typed error, not a panic.
//! let err = first_embedding_row(b"GGML\x03\0\0\0", &mut [0.0; 576]).unwrap_err();
//! assert_eq!(err.kind(), lode_formats::gguf::ErrorKind::BadMagic);
//! ```

mod blocks;
mod cursor;
mod error;
mod file;
mod gemma3;
pub mod kquants;
mod llama;
mod tensor;
mod tokenizer_only;
mod value;

#[cfg(test)]
mod builder;
#[cfg(test)]
mod real_model;
#[cfg(test)]
mod tests;

pub use blocks::{
    dequantize_q4_0, dequantize_q4_1, dequantize_q5_1, dequantize_q8_0, dequantize_row, Q4_0_BYTES,
    Q4_1_BYTES, Q5_1_BYTES, Q8_0_BYTES, QK,
};
pub use error::{ggml_type_name, ErrorKind, GgufError, Item, Name, NAME_CAPACITY};
pub use file::{Gguf, Metadata, Tensors};
pub use gemma3::{Gemma3Params, GEMMA3_ARCH, GEMMA3_LOCAL_ROPE_BASE, GEMMA3_SWA_PERIOD};
pub use llama::{layer_tensor_name, LlamaParams, NameBuf, MAX_LAYERS};
pub use tensor::{Dims, TensorInfo};
pub(crate) use tokenizer_only::metadata_end;
#[cfg(feature = "std")]
pub use tokenizer_only::tokenizer_only;
pub use tokenizer_only::{is_tokenizer_entry, TOKENIZER_KEY_PREFIX, TOKENS_KEY};
pub use value::{ArrayIter, ArrayView, Strings, Value, ValueType};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// The metadata key that overrides the alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The metadata key naming the model architecture.
pub const ARCHITECTURE_KEY: &str = "general.architecture";

/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Most levels of arrays nested in one metadata value. GGUF writers use one
/// level; the bound keeps the validating walk's recursion shallow and fixed.
pub const MAX_ARRAY_DEPTH: usize = 8;
