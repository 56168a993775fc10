//! Refusing non-finite weights while a model is packed.
//!
//! One NaN or infinity in a weight spreads to every activation it touches,
//! so an image holding one generates garbage (and `lode pack`'s perplexity
//! check prints `NaN`). Nothing downstream can repair that, so the packer
//! dequantizes every tensor it puts in an image, as it converts it, and
//! refuses the model naming the first tensor and element that is not
//! finite, before anything is written.

use std::fmt;
use std::format;
use std::string::String;
use std::vec;

use lode_formats::gguf::{dequantize_row, Gguf, TensorInfo};

/// A tensor value that is NaN or infinite, where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// The tensor's name.
    pub tensor: String,
    /// Row (the `row`-th run of `dims[0]` elements).
    pub row: u64,
    /// Element within the row.
    pub element: u64,
    /// The value found (NaN, `inf` or `-inf`).
    pub value: f32,
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tensor `{}` holds {} at row {}, element {}: lode packs only finite weights",
            self.tensor, self.value, self.row, self.element
        )
    }
}

impl std::error::Error for NonFinite {}

/// Why a tensor could not be checked: its data is not in the file or not
/// whole rows of its type (the parser should have refused such a file).
fn unreadable(t: &TensorInfo<'_>, e: impl fmt::Display) -> String {
    format!("tensor `{}` cannot be read to check it: {e}", t.name)
}

/// Checks that every value of tensor `t` of `file` is finite, one row at a
/// time (memory: one row of `f32`). The error names the tensor and the
/// first non-finite element.
pub fn check_tensor(file: &Gguf<'_>, t: &TensorInfo<'_>) -> Result<(), String> {
    let data = file.data(t).map_err(|e| unreadable(t, e))?;
    let row_len = usize::try_from(t.dims.row_len()).map_err(|e| unreadable(t, e))?;
    let row_bytes = usize::try_from(t.row_bytes()).map_err(|e| unreadable(t, e))?;
    if row_len == 0 || row_bytes == 0 {
        return Ok(());
    }
    let mut row = vec![0.0f32; row_len];
    for (r, bytes) in (0u64..).zip(data.chunks(row_bytes)) {
        dequantize_row(t.dtype, bytes, &mut row).map_err(|e| unreadable(t, e))?;
        if let Some((element, &value)) = (0u64..).zip(&row).find(|(_, v)| !v.is_finite()) {
            return Err(NonFinite {
                tensor: t.name.into(),
                row: r,
                element,
                value,
            }
            .to_string());
        }
    }
    Ok(())
}

/// [`check_tensor`] on the tensor called `name`; an error names a tensor
/// the model lacks.
pub fn check_named(file: &Gguf<'_>, name: &str) -> Result<(), String> {
    let t = file
        .tensor(name)
        .ok_or_else(|| format!("the model has no {name}"))?;
    check_tensor(file, &t)
}
