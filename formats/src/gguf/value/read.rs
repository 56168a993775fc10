//! Reading and skipping values from a cursor, with the checks a caller
//! asks for ([`Check`]).

use super::super::cursor::Cursor;
use super::super::error::{GgufError, Item};
use super::super::MAX_ARRAY_DEPTH;
use super::*;

/// How much to check when walking values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Everything: type codes, lengths, UTF-8, booleans, depth. Used once, by
    /// [`Gguf::parse`](crate::gguf::Gguf::parse).
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
