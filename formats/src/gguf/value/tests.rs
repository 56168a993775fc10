extern crate std;
use std::vec::Vec;

use super::super::cursor::Cursor;
use super::super::error::{GgufError, Item};
use super::super::MAX_ARRAY_DEPTH;
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
