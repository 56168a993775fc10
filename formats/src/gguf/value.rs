//! Metadata values: the thirteen GGUF value types, decoded lazily.
//!
//! A [`Value`] borrows from the file. Arrays are an [`ArrayView`]: the element
//! type, the count and the byte span of the elements, decoded one at a time by
//! [`ArrayIter`], so a 49152-entry vocabulary is walked once, in order, with
//! no allocation and no per-element search.

use core::fmt;

use super::cursor::Cursor;
use super::error::{GgufError, Item};
use super::MAX_ARRAY_DEPTH;

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

/// A metadata array: element type, count and the bytes of its elements.
#[derive(Clone, Copy, PartialEq)]
pub struct ArrayView<'a> {
    elem: ValueType,
    len: u64,
    bytes: &'a [u8],
    /// Arrays enclosing the elements (1 for a top-level array).
    depth: u8,
}

impl fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayView")
            .field("elem", &self.elem)
            .field("len", &self.len)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<'a> ArrayView<'a> {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements, back to back, as stored in the file.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The elements in order. Linear in the array's bytes overall.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cursor: Cursor::at(self.bytes, 0),
            elem: self.elem,
            remaining: self.len,
            depth: self.depth,
        }
    }

    /// The elements of a string array, or `None` for another element type.
    pub fn strings(&self) -> Option<Strings<'a>> {
        (self.elem == ValueType::String).then(|| Strings { inner: self.iter() })
    }

    /// Element `index`: constant time for fixed-size elements, a walk from
    /// the start for strings and arrays.
    pub fn get(&self, index: u64) -> Option<Value<'a>> {
        if index >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(size) => {
                let start = usize::try_from(index).ok()?.checked_mul(size)?;
                let mut c = Cursor::at(self.bytes, start);
                read_value(&mut c, self.elem, self.depth, Check::Lengths).ok()
            }
            None => self.iter().nth(usize::try_from(index).ok()?),
        }
    }
}

impl<'a> IntoIterator for ArrayView<'a> {
    type Item = Value<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over an array's elements.
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    cursor: Cursor<'a>,
    elem: ValueType,
    remaining: u64,
    depth: u8,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The array was validated when the file was parsed, so this read
        // cannot fail; if it somehow did, the iteration ends rather than
        // yielding garbage.
        match read_value(&mut self.cursor, self.elem, self.depth, Check::Lengths) {
            Ok(v) => {
                self.remaining -= 1;
                Some(v)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Iterator over the strings of a string array.
#[derive(Debug, Clone)]
pub struct Strings<'a> {
    inner: ArrayIter<'a>,
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.inner.next().and_then(|v| v.as_str())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// How much to check when walking values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Everything: type codes, lengths, UTF-8, booleans, depth. Used once, by
    /// [`Gguf::parse`](super::Gguf::parse).
    Full,
    /// Lengths only, when skipping over data `Full` has already accepted (the
    /// strings a caller actually receives are still decoded as UTF-8).
    Lengths,
}

/// Read one value of type `ty`. `depth` is the number of arrays enclosing it.
pub(crate) fn read_value<'a>(
    c: &mut Cursor<'a>,
    ty: ValueType,
    depth: u8,
    check: Check,
) -> Result<Value<'a>, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array()?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array()?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array()?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array()?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array()?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array()?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array()?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array()?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array()?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array()?)),
        ValueType::Bool => {
            let at = c.pos();
            match c.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => {
                    return Err(GgufError::BadBool {
                        offset: at as u64,
                        byte,
                        item: Item::Unknown,
                    })
                }
            }
        }
        ValueType::String => Value::Str(c.string()?),
        ValueType::Array => {
            let (elem, len) = array_header(c, depth)?;
            // Walk a copy to find where the elements end, then take exactly
            // that span; the view never needs to search again.
            let mut probe = *c;
            skip_elements(&mut probe, elem, len, depth + 1, check)?;
            let span = probe.pos() - c.pos();
            Value::Array(ArrayView {
                elem,
                len,
                bytes: c.take(span)?,
                depth: depth + 1,
            })
        }
    })
}

/// Skip one value of type `ty`, validating it as `check` says.
pub(crate) fn skip_value(
    c: &mut Cursor<'_>,
    ty: ValueType,
    depth: u8,
    check: Check,
) -> Result<(), GgufError> {
    match ty {
        ValueType::Array => {
            let (elem, len) = array_header(c, depth)?;
            skip_elements(c, elem, len, depth + 1, check)
        }
        _ => skip_elements(c, ty, 1, depth, check),
    }
}

/// Read an array's element type and count, refusing nesting past the limit.
fn array_header(c: &mut Cursor<'_>, depth: u8) -> Result<(ValueType, u64), GgufError> {
    let at = c.pos();
    if usize::from(depth) >= MAX_ARRAY_DEPTH {
        return Err(GgufError::TooDeep {
            offset: at as u64,
            item: Item::Unknown,
        });
    }
    let elem = value_type(c)?;
    let len = c.u64()?;
    Ok((elem, len))
}

/// Read a value type code.
pub(crate) fn value_type(c: &mut Cursor<'_>) -> Result<ValueType, GgufError> {
    let at = c.pos();
    let code = c.u32()?;
    ValueType::from_code(code).ok_or(GgufError::BadValueType {
        offset: at as u64,
        code,
        item: Item::Unknown,
    })
}

/// Skip `len` elements of type `elem`, each enclosed by `depth` arrays.
/// Work is linear in the bytes consumed: fixed-size runs are skipped in one
/// step, and every variable-size element consumes at least 8 bytes, so a
/// lying count fails at the end of the file instead of looping.
fn skip_elements(
    c: &mut Cursor<'_>,
    elem: ValueType,
    len: u64,
    depth: u8,
    check: Check,
) -> Result<(), GgufError> {
    // Refuse at once a count that cannot fit in what remains: the array
    // would need bytes past the end of the file.
    let min = elem.min_size() as u64;
    if len > (c.remaining() as u64) / min {
        return Err(GgufError::Truncated {
            offset: (c.pos() as u64).saturating_add(c.remaining() as u64),
            item: Item::Unknown,
        });
    }
    match elem {
        ValueType::Bool if check == Check::Full => {
            let start = c.pos();
            let bytes = c.take_n(len, 1)?;
            if let Some((i, &byte)) = bytes.iter().enumerate().find(|(_, &b)| b > 1) {
                return Err(GgufError::BadBool {
                    offset: (start + i) as u64,
                    byte,
                    item: Item::Unknown,
                });
            }
        }
        ValueType::String => {
            for _ in 0..len {
                match check {
                    Check::Full => c.string().map(|_| ())?,
                    Check::Lengths => c.skip_string()?,
                }
            }
        }
        ValueType::Array => {
            for _ in 0..len {
                skip_value(c, ValueType::Array, depth, check)?;
            }
        }
        fixed => {
            // Every remaining type has a fixed size; `min_size` is it.
            c.take_n(len, fixed.min_size())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::gguf::ErrorKind;

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn array(elem: ValueType, len: u64, body: &[u8]) -> Vec<u8> {
        let mut v = elem.code().to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..13 {
            let t = ValueType::from_code(code).unwrap();
            assert_eq!(t.code(), code);
        }
        assert_eq!(ValueType::from_code(13), None);
        assert_eq!(ValueType::from_code(u32::MAX), None);
    }

    #[test]
    fn reads_every_scalar_type() {
        let cases: [(ValueType, &[u8], Value<'_>); 12] = [
            (ValueType::U8, &[200], Value::U8(200)),
            (ValueType::I8, &[0xff], Value::I8(-1)),
            (ValueType::U16, &[1, 2], Value::U16(0x0201)),
            (ValueType::I16, &[0xfe, 0xff], Value::I16(-2)),
            (ValueType::U32, &[1, 0, 0, 1], Value::U32(0x0100_0001)),
            (ValueType::I32, &[0xfd, 0xff, 0xff, 0xff], Value::I32(-3)),
            (ValueType::F32, &1.5f32.to_le_bytes(), Value::F32(1.5)),
            (ValueType::Bool, &[1], Value::Bool(true)),
            (
                ValueType::U64,
                &[0, 0, 0, 0, 0, 0, 0, 0x80],
                Value::U64(1 << 63),
            ),
            (ValueType::I64, &(-5i64).to_le_bytes(), Value::I64(-5)),
            (ValueType::F64, &0.25f64.to_le_bytes(), Value::F64(0.25)),
            (ValueType::Bool, &[0], Value::Bool(false)),
        ];
        for (ty, bytes, want) in cases {
            let mut c = Cursor::at(bytes, 0);
            assert_eq!(read_value(&mut c, ty, 0, Check::Full).unwrap(), want);
            assert_eq!(c.remaining(), 0, "{ty} consumed all of its bytes");
        }
    }

    #[test]
    fn bad_bool_is_an_error() {
        let mut c = Cursor::at(&[2], 0);
        assert_eq!(
            read_value(&mut c, ValueType::Bool, 0, Check::Full).unwrap_err(),
            GgufError::BadBool {
                offset: 0,
                byte: 2,
                item: Item::Unknown
            }
        );
        let bytes = array(ValueType::Bool, 3, &[0, 1, 7]);
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(
            read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err(),
            GgufError::BadBool {
                offset: 14,
                byte: 7,
                item: Item::Unknown
            }
        );
    }

    #[test]
    fn string_arrays_iterate_in_order() {
        let mut body = Vec::new();
        for s in ["a", "", "héllo", "Ġt"] {
            body.extend(string(s));
        }
        let bytes = array(ValueType::String, 4, &body);
        let mut c = Cursor::at(&bytes, 0);
        let arr = read_value(&mut c, ValueType::Array, 0, Check::Full)
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(arr.len(), 4);
        let got: Vec<&str> = arr.strings().unwrap().collect();
        assert_eq!(got, ["a", "", "héllo", "Ġt"]);
        assert_eq!(arr.get(2), Some(Value::Str("héllo")));
        assert_eq!(arr.get(4), None);
        assert_eq!(arr.iter().size_hint(), (4, Some(4)));
    }

    #[test]
    fn fixed_arrays_index_directly() {
        let mut body = Vec::new();
        for v in [-1i32, 7, 1 << 20] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let bytes = array(ValueType::I32, 3, &body);
        let mut c = Cursor::at(&bytes, 0);
        let arr = read_value(&mut c, ValueType::Array, 0, Check::Full)
            .unwrap()
            .as_array()
            .unwrap();
        assert!(arr.strings().is_none());
        assert_eq!(arr.get(1), Some(Value::I32(7)));
        assert_eq!(arr.get(2).and_then(|v| v.as_u32()), Some(1 << 20));
        assert_eq!(arr.get(0).and_then(|v| v.as_u32()), None);
        assert_eq!(arr.raw_bytes().len(), 12);
    }

    #[test]
    fn nested_arrays_are_bounded() {
        // An array of arrays of u8: fine.
        let inner = array(ValueType::U8, 2, &[1, 2]);
        let mut body = inner.clone();
        body.extend(inner);
        let bytes = array(ValueType::Array, 2, &body);
        let mut c = Cursor::at(&bytes, 0);
        let outer = read_value(&mut c, ValueType::Array, 0, Check::Full)
            .unwrap()
            .as_array()
            .unwrap();
        let sums: Vec<u32> = outer
            .iter()
            .map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|x| x.as_u32())
                    .sum()
            })
            .collect();
        assert_eq!(sums, [3, 3]);

        // Nest one level past the limit.
        let mut bytes = array(ValueType::U8, 0, &[]);
        for _ in 0..MAX_ARRAY_DEPTH {
            bytes = array(ValueType::Array, 1, &bytes);
        }
        let mut c = Cursor::at(&bytes, 0);
        let err = read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooDeep);
        // Exactly at the limit is accepted.
        let mut bytes = array(ValueType::U8, 0, &[]);
        for _ in 1..MAX_ARRAY_DEPTH {
            bytes = array(ValueType::Array, 1, &bytes);
        }
        let mut c = Cursor::at(&bytes, 0);
        read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap();
    }

    #[test]
    fn lying_counts_fail_fast() {
        let bytes = array(ValueType::String, u64::MAX, &string("x"));
        let mut c = Cursor::at(&bytes, 0);
        let err = read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
        let bytes = array(ValueType::U64, u64::MAX / 4, &[0; 64]);
        let mut c = Cursor::at(&bytes, 0);
        let err = read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
        let bytes = array(ValueType::Array, 1 << 40, &[0; 64]);
        let mut c = Cursor::at(&bytes, 0);
        let err = read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
    }

    #[test]
    fn unknown_element_type_is_reported() {
        let mut bytes = 13u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0u64.to_le_bytes());
        let mut c = Cursor::at(&bytes, 0);
        assert_eq!(
            read_value(&mut c, ValueType::Array, 0, Check::Full).unwrap_err(),
            GgufError::BadValueType {
                offset: 0,
                code: 13,
                item: Item::Unknown
            }
        );
    }

    #[test]
    fn integer_conversions_are_lossless_or_none() {
        assert_eq!(Value::U64(5).as_u32(), Some(5));
        assert_eq!(Value::U64(1 << 32).as_u32(), None);
        assert_eq!(Value::I8(-1).as_u64(), None);
        assert_eq!(Value::I8(-1).as_i64(), Some(-1));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::F32(1.0).as_u32(), None);
        assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
        assert_eq!(Value::F64(0.5).as_f32(), None);
        assert_eq!(Value::Str("x").as_bool(), None);
    }
}
