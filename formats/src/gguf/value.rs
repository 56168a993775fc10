//! Metadata values: the thirteen GGUF value types, decoded lazily.
//!
//! A [`Value`] borrows from the file. Arrays are an [`ArrayView`]: the element
//! type, the count and the byte span of the elements, decoded one at a time by
//! [`ArrayIter`], so a 49152-entry vocabulary is walked once, in order, with
//! no allocation and no per-element search.

use core::fmt;

/// A GGUF metadata value type (the `u32` code before each value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ValueType {
    /// Code 0: `u8`.
    U8,
    /// Code 1: `i8`.
    I8,
    /// Code 2: little-endian `u16`.
    U16,
    /// Code 3: little-endian `i16`.
    I16,
    /// Code 4: little-endian `u32`.
    U32,
    /// Code 5: little-endian `i32`.
    I32,
    /// Code 6: little-endian IEEE-754 binary32.
    F32,
    /// Code 7: one byte, 0 or 1.
    Bool,
    /// Code 8: `u64` byte length, then UTF-8 bytes (no terminator).
    String,
    /// Code 9: `u32` element type, `u64` count, then the elements.
    Array,
    /// Code 10: little-endian `u64`.
    U64,
    /// Code 11: little-endian `i64`.
    I64,
    /// Code 12: little-endian IEEE-754 binary64.
    F64,
}

impl ValueType {
    /// The type with GGUF code `code`.
    pub const fn from_code(code: u32) -> Option<ValueType> {
        Some(match code {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The GGUF code of this type.
    pub const fn code(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// Encoded size of one value, for the fixed-size types.
    pub const fn fixed_size(self) -> Option<usize> {
        Some(match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 => 8,
            ValueType::String | ValueType::Array => return None,
        })
    }

    /// Fewest bytes one value of this type can take: bounds how many elements
    /// an array can really hold, whatever count it claims.
    pub(crate) const fn min_size(self) -> usize {
        match self.fixed_size() {
            Some(n) => n,
            // A string is at least its length; an array its type and count.
            None => match self {
                ValueType::String => 8,
                _ => 12,
            },
        }
    }

    /// Lower-case name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A UTF-8 string.
    Str(&'a str),
    /// An array, decoded lazily.
    Array(ArrayView<'a>),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl<'a> Value<'a> {
    /// The stored type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value, widened to `i128` so every GGUF integer fits.
    fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer of any width that fits a `u64` without loss. Writers
    /// disagree on integer widths (`u32` vs `i32` vs `u64` for the same key),
    /// so the integer getters accept any width whose value fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_int().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer of any width that fits an `i64` without loss.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_int().and_then(|v| i64::try_from(v).ok())
    }

    /// An integer of any width that fits a `u32` without loss.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_int().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer of any width that fits an `i32` without loss.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_int().and_then(|v| i32::try_from(v).ok())
    }

    /// An `f32` value (no conversion from other types).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            _ => None,
        }
    }

    /// An `f32` or `f64` value, as `f64` (lossless).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

mod array;
mod read;

pub use array::{ArrayIter, ArrayView, Strings};
pub(crate) use read::{read_value, skip_value, value_type, Check};

#[cfg(test)]
mod tests;
