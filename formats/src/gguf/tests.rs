//! Reader tests against files from the independent test builder: valid files
//! read back exactly; each kind of damage gives its own error; random and
//! mutated input never panics.

extern crate std;

use std::string::String;
use std::vec;
use std::vec::Vec;
use std::{format, println};

use proptest::prelude::*;

use super::builder::{
    llama_builder, Builder, Enc, TINY_EMBD, TINY_FF, TINY_HEADS, TINY_KV_HEADS, TINY_LAYERS,
    TINY_VOCAB,
};
use super::*;
use super::{cursor, tensor};
use crate::{DType, ModelShape};

fn parse(bytes: &[u8]) -> Result<Gguf<'_>, GgufError> {
    Gguf::parse(bytes)
}

fn name(s: &str) -> Name {
    Name::new(s)
}

/// Touch every byte the reader exposes: every value (arrays recursively),
/// every tensor's data, decoded. Panics only if the reader does.
fn exercise(g: &Gguf<'_>) -> usize {
    fn walk(v: Value<'_>) -> usize {
        match v {
            Value::Array(a) => a.iter().map(walk).sum::<usize>() + 1,
            Value::Str(s) => s.len(),
            _ => 1,
        }
    }
    let mut n = 0;
    let mut kvs = 0;
    for (k, v) in g.metadata() {
        n += k.len() + walk(v);
        assert!(g.get(k).is_some());
        kvs += 1;
    }
    assert_eq!(kvs, g.metadata_count());
    let _ = g.architecture();
    let _ = g.check_llama();
    let mut previous_end = 0;
    let mut count = 0;
    for t in g.tensors() {
        count += 1;
        assert_eq!(t.offset % u64::from(g.alignment()), 0);
        assert!(t.offset >= previous_end);
        assert!(t.offset >= g.data_offset());
        previous_end = t.offset + t.len_bytes;
        assert!(previous_end <= g.bytes().len() as u64);
        let data = g.data(&t).expect("parsed tensors are in bounds");
        assert_eq!(data.len() as u64, t.len_bytes);
        let elems = t.dims.elements().expect("checked") as usize;
        let mut out = vec![0.0f32; elems];
        dequantize_row(t.dtype, data, &mut out).expect("whole rows");
        n += elems;
    }
    assert_eq!(count, g.tensor_count());
    n
}

// ---------------------------------------------------------------- valid files

#[test]
fn empty_files_of_both_versions() {
    for version in [2, 3] {
        let bytes = Builder {
            version,
            ..Builder::default()
        }
        .build();
        assert_eq!(bytes.len(), 24);
        let g = parse(&bytes).unwrap();
        assert_eq!(g.version(), version);
        assert_eq!(g.alignment(), 32);
        assert_eq!(g.metadata().count(), 0);
        assert_eq!(g.tensors().count(), 0);
        assert_eq!(g.architecture(), None);
        // The data section would start past the end; with no tensors that is fine.
        assert_eq!(g.data_offset(), 32);
    }
}

#[test]
fn tiny_llama_reads_back() {
    let b = llama_builder();
    let bytes = b.build();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.architecture(), Some("llama"));
    assert_eq!(g.get_u32("llama.block_count").unwrap(), TINY_LAYERS);
    assert_eq!(g.get_f32("llama.rope.freq_base").unwrap(), 100_000.0);
    assert_eq!(g.get_str("general.name").unwrap(), "tiny");
    assert!(!g.get_bool("tokenizer.ggml.add_bos_token").unwrap());

    // Metadata in file order, equal to what was written.
    let keys: Vec<&str> = g.metadata().map(|(k, _)| k).collect();
    let want: Vec<&str> = b.kvs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want);

    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), TINY_VOCAB);
    let toks: Vec<&str> = tokens.strings().unwrap().collect();
    assert_eq!(toks[0], "tok0");
    assert_eq!(toks[7], "tok7");
    let types = g.get_array("tokenizer.ggml.token_type").unwrap();
    assert!(types.iter().all(|v| v.as_i32() == Some(1)));

    // Tensors: order, types, offsets, data identical to what was written.
    let infos: Vec<TensorInfo<'_>> = g.tensors().collect();
    assert_eq!(infos.len(), b.tensors.len());
    for (t, spec) in infos.iter().zip(&b.tensors) {
        assert_eq!(t.name, spec.name);
        assert_eq!(t.dims.as_slice(), spec.dims.as_slice());
        assert_eq!(t.dtype.code(), spec.code);
        assert_eq!(t.offset % 32, 0);
        assert_eq!(g.data(t).unwrap(), spec.data.as_slice());
        assert_eq!(g.tensor(spec.name.as_str()), Some(*t));
    }
    assert_eq!(g.tensor("nope"), None);
    assert_eq!(
        g.tensor("token_embd.weight").map(|t| t.dtype),
        Some(DType::Q8_0)
    );
    assert!(exercise(&g) > 0);

    let p = g.check_llama().unwrap();
    assert_eq!(
        p,
        LlamaParams {
            shape: ModelShape {
                layers: TINY_LAYERS as usize,
                hidden: TINY_EMBD as usize,
                ffn: TINY_FF as usize,
                heads: TINY_HEADS as usize,
                kv_heads: TINY_KV_HEADS as usize,
                head_dim: 16,
                vocab: TINY_VOCAB as usize,
                rope_base: 100_000.0,
                rms_eps: 1e-5,
                context: 128,
                tied_embeddings: true,
            },
            rope_dims: 16,
        }
    );
}

#[test]
fn every_value_type_round_trips() {
    let nested = Enc::Arr(
        9,
        vec![
            Enc::Arr(0, vec![Enc::U8(1), Enc::U8(2)]),
            Enc::Arr(8, vec![Enc::str("x")]),
            Enc::Arr(4, vec![]),
        ],
    );
    let values = vec![
        Enc::U8(250),
        Enc::I8(-7),
        Enc::U16(65_000),
        Enc::I16(-30_000),
        Enc::U32(4_000_000_000),
        Enc::I32(-2_000_000_000),
        Enc::F32(-0.125),
        Enc::Bool(1),
        Enc::str("héllo wörld"),
        nested.clone(),
        Enc::U64(u64::MAX),
        Enc::I64(i64::MIN),
        Enc::F64(1e300),
    ];
    let mut b = Builder::default();
    for (i, v) in values.iter().enumerate() {
        b = b.kv(&format!("k.{i}"), v.clone());
    }
    let bytes = b.build();
    let g = parse(&bytes).unwrap();
    for (i, want) in values.iter().enumerate() {
        let got = g.get(&format!("k.{i}")).unwrap();
        assert_eq!(decode(got), *want, "key k.{i}");
        assert_eq!(got.value_type().code(), want.code());
    }
}

/// Turn a read value back into the builder's description of it.
fn decode(v: Value<'_>) -> Enc {
    match v {
        Value::U8(x) => Enc::U8(x),
        Value::I8(x) => Enc::I8(x),
        Value::U16(x) => Enc::U16(x),
        Value::I16(x) => Enc::I16(x),
        Value::U32(x) => Enc::U32(x),
        Value::I32(x) => Enc::I32(x),
        Value::F32(x) => Enc::F32(x),
        Value::Bool(x) => Enc::Bool(u8::from(x)),
        Value::Str(s) => Enc::str(s),
        Value::Array(a) => Enc::Arr(a.elem_type().code(), a.iter().map(decode).collect()),
        Value::U64(x) => Enc::U64(x),
        Value::I64(x) => Enc::I64(x),
        Value::F64(x) => Enc::F64(x),
    }
}

#[test]
fn alignment_is_honoured() {
    for align in [1u32, 8, 64, 4096] {
        let mut b = Builder::default()
            .kv("general.architecture", Enc::str("llama"))
            .tensor("a", &[3], DType::F32, 1)
            .tensor("b", &[32], DType::Q4_0, 2)
            .tensor("c", &[5], DType::F16, 3);
        b.alignment = Some(align);
        let bytes = b.build();
        let g = parse(&bytes).unwrap();
        assert_eq!(g.alignment(), align);
        assert_eq!(g.data_offset() % u64::from(align), 0);
        for t in g.tensors() {
            assert_eq!(t.offset % u64::from(align), 0, "{} at {}", t.name, t.offset);
        }
        exercise(&g);
    }
}

#[test]
fn first_duplicate_key_wins() {
    let bytes = Builder::default()
        .kv("x", Enc::U32(1))
        .kv("x", Enc::U32(2))
        .build();
    let g = parse(&bytes).unwrap();
    assert_eq!(g.get_u32("x").unwrap(), 1);
    assert_eq!(g.metadata().count(), 2);
}

#[test]
fn typed_getters_name_the_key() {
    let bytes = Builder::default()
        .kv("s", Enc::str("text"))
        .kv("neg", Enc::I32(-1))
        .kv("big", Enc::U64(1 << 40))
        .kv("small", Enc::U8(9))
        .kv("d", Enc::F64(0.5))
        .build();
    let g = parse(&bytes).unwrap();
    assert_eq!(
        g.get_u32("s").unwrap_err(),
        GgufError::WrongType {
            key: name("s"),
            expected: "an integer",
            found: ValueType::String
        }
    );
    assert_eq!(g.get_u32("neg").unwrap_err().kind(), ErrorKind::BadValue);
    assert_eq!(g.get_u64("neg").unwrap_err().kind(), ErrorKind::BadValue);
    assert_eq!(g.get_u32("big").unwrap_err().kind(), ErrorKind::BadValue);
    assert_eq!(g.get_u64("big").unwrap(), 1 << 40);
    assert_eq!(g.get_u32("small").unwrap(), 9);
    assert_eq!(g.get_f32("d").unwrap_err().kind(), ErrorKind::WrongType);
    assert_eq!(g.get_array("s").unwrap_err().kind(), ErrorKind::WrongType);
    assert_eq!(g.get_bool("s").unwrap_err().kind(), ErrorKind::WrongType);
    assert_eq!(g.get_str("small").unwrap_err().kind(), ErrorKind::WrongType);
    assert_eq!(
        g.get_str("absent").unwrap_err(),
        GgufError::MissingKey {
            key: name("absent")
        }
    );
}

#[test]
fn rows_are_sliced_by_index() {
    let b = llama_builder();
    let bytes = b.build();
    let g = parse(&bytes).unwrap();
    let t = g.tensor("blk.0.ffn_down.weight").unwrap();
    let spec = b.tensors.iter().find(|s| s.name == t.name).unwrap();
    let row_bytes = (TINY_FF / 32 * 20) as usize;
    assert_eq!(t.row_bytes() as usize, row_bytes);
    for r in 0..TINY_EMBD {
        let at = r as usize * row_bytes;
        assert_eq!(g.row_data(&t, r).unwrap(), &spec.data[at..at + row_bytes]);
    }
    assert_eq!(
        g.row_data(&t, TINY_EMBD).unwrap_err(),
        GgufError::RowOutOfRange {
            tensor: name("blk.0.ffn_down.weight"),
            row: TINY_EMBD,
            rows: TINY_EMBD
        }
    );
    assert_eq!(
        g.row_data(&t, u64::MAX).unwrap_err().kind(),
        ErrorKind::RowOutOfRange
    );
    // A tensor with zero-length rows has rows but no bytes.
    let bytes = Builder::default()
        .raw_tensor("z", &[0, 3], 0, vec![], None)
        .build();
    let g = parse(&bytes).unwrap();
    let z = g.tensor("z").unwrap();
    assert_eq!(g.row_data(&z, 2).unwrap(), &[] as &[u8]);
}

#[test]
fn data_refuses_foreign_infos() {
    let bytes = llama_builder().build();
    let g = parse(&bytes).unwrap();
    let mut t = g.tensor("output_norm.weight").unwrap();
    t.offset = bytes.len() as u64 - 4;
    assert_eq!(g.data(&t).unwrap_err().kind(), ErrorKind::TensorOutOfBounds);
    t.offset = u64::MAX;
    assert_eq!(g.data(&t).unwrap_err().kind(), ErrorKind::TensorOutOfBounds);
}

// ------------------------------------------------------- each kind of damage

#[test]
fn wrong_magic() {
    let mut b = llama_builder();
    b.magic = *b"GGML";
    let bytes = b.build();
    let e = parse(&bytes).unwrap_err();
    assert_eq!(e, GgufError::BadMagic { found: *b"GGML" });
    assert!(format!("{e}").contains("not a GGUF file"));
    // Too short to hold a magic at all.
    assert_eq!(parse(b"GG").unwrap_err().kind(), ErrorKind::Truncated);
    assert_eq!(parse(&[]).unwrap_err().kind(), ErrorKind::Truncated);
}

#[test]
fn versions_other_than_2_and_3() {
    for (version, kind) in [
        (0, ErrorKind::UnsupportedVersion),
        (1, ErrorKind::UnsupportedVersion),
        (4, ErrorKind::UnsupportedVersion),
        (0x0300_0000, ErrorKind::ByteOrder),
        (0x0200_0000, ErrorKind::ByteOrder),
    ] {
        let bytes = Builder {
            version,
            ..Builder::default()
        }
        .build();
        let e = parse(&bytes).unwrap_err();
        assert_eq!(e.kind(), kind, "version {version:#x}");
    }
    let e = parse(
        &Builder {
            version: 1,
            ..Builder::default()
        }
        .build(),
    )
    .unwrap_err();
    assert_eq!(e, GgufError::UnsupportedVersion { version: 1 });
    assert!(format!("{e}").contains("version 1"));
}

#[test]
fn truncated_tensor_table() {
    let layout = llama_builder().layout();
    // Cut in the middle of the third tensor info's name.
    let g = parse(&layout.bytes).unwrap();
    let mut c = cursor::Cursor::at(&layout.bytes, layout.tensor_table);
    for i in 0..2 {
        tensor::read_info(&mut c, i).unwrap();
    }
    let third_start = c.pos();
    let cut = &layout.bytes[..third_start + 12];
    let e = parse(cut).unwrap_err();
    assert_eq!(
        e,
        GgufError::Truncated {
            offset: third_start as u64 + 8,
            item: Item::TensorInfo {
                index: 2,
                name: None
            }
        }
    );
    assert!(format!("{e}").contains("tensor info #2"), "{e}");
    // Cut after the third tensor's name: the error names the tensor.
    let third = g.tensors().nth(2).unwrap();
    let cut = &layout.bytes[..third_start + 8 + third.name.len() + 2];
    match parse(cut).unwrap_err() {
        GgufError::Truncated {
            item:
                Item::TensorInfo {
                    index: 2,
                    name: Some(n),
                },
            ..
        } => assert_eq!(n, third.name),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn tensor_past_the_end() {
    // The last tensor's data cut short.
    let bytes = llama_builder().build();
    let e = parse(&bytes[..bytes.len() - 1]).unwrap_err();
    match e {
        GgufError::TensorOutOfBounds {
            tensor,
            offset,
            len,
            file_len,
        } => {
            assert_eq!(tensor, "output_norm.weight");
            assert_eq!(offset + len, bytes.len() as u64);
            assert_eq!(file_len, bytes.len() as u64 - 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    // An offset far past the end (and one that would overflow): the file
    // ends after the tensor table, where the data section would begin.
    for offset in [1 << 20, !31] {
        let b = Builder::default().raw_tensor("far", &[4], 0, vec![], Some(offset));
        let layout = b.layout();
        let bytes = &layout.bytes[..layout.data_start.min(layout.bytes.len())];
        let e = parse(bytes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TensorOutOfBounds, "{offset}");
        assert!(format!("{e}").contains("'far'"), "{e}");
    }
    // A small in-bounds offset whose length reaches past the end.
    {
        let bytes = Builder::default()
            .raw_tensor("long", &[64], 0, vec![0; 16], None)
            .build();
        match parse(&bytes).unwrap_err() {
            GgufError::TensorOutOfBounds { tensor, len, .. } => {
                assert_eq!(tensor, "long");
                assert_eq!(len, 256);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn unknown_block_types() {
    for code in [4u32, 15, 16, 99, u32::MAX] {
        let bytes = Builder::default()
            .raw_tensor("blk.0.ffn_down.weight", &[256], code, vec![0; 512], None)
            .build();
        assert_eq!(
            parse(&bytes).unwrap_err(),
            GgufError::UnknownType {
                tensor: name("blk.0.ffn_down.weight"),
                code
            }
        );
    }
}

#[test]
fn non_llama_architecture() {
    let mut b = llama_builder();
    b.kvs[0].1 = Enc::str("gpt2");
    let bytes = b.build();
    let g = parse(&bytes).unwrap();
    let e = g.check_llama().unwrap_err();
    assert_eq!(
        e,
        GgufError::NotLlama {
            found: name("gpt2")
        }
    );
    assert!(format!("{e}").contains("'gpt2'"));

    b.kvs.remove(0);
    let bytes = b.build();
    let e = parse(&bytes).unwrap().check_llama().unwrap_err();
    assert_eq!(
        e,
        GgufError::MissingKey {
            key: name("general.architecture")
        }
    );
}

#[test]
fn misaligned_and_overlapping_tensors() {
    let bytes = Builder::default()
        .raw_tensor("a", &[4], 0, vec![0; 16], Some(0))
        .raw_tensor("b", &[4], 0, vec![0; 16], Some(40))
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::MisalignedTensor {
            tensor: name("b"),
            offset: 40,
            alignment: 32
        }
    );
    let bytes = Builder::default()
        .raw_tensor("a", &[16], 0, vec![0; 64], Some(0))
        .raw_tensor("b", &[4], 0, vec![0; 16], Some(32))
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::TensorOverlap {
            tensor: name("b"),
            offset: 32,
            previous_end: 64
        }
    );
}

#[test]
fn bad_alignment_values() {
    for a in [0u32, 3, 48, u32::MAX] {
        let bytes = Builder {
            alignment: Some(a),
            ..Builder::default()
        }
        .build();
        assert_eq!(
            parse(&bytes).unwrap_err(),
            GgufError::BadAlignment { alignment: a }
        );
    }
    let bytes = Builder::default()
        .kv("general.alignment", Enc::U64(64))
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::WrongType {
            key: name("general.alignment"),
            expected: "a u32",
            found: ValueType::U64
        }
    );
}

#[test]
fn bad_strings_bools_and_types_in_metadata() {
    // Key not UTF-8.
    let mut bytes = Builder::default().kv("ab", Enc::U8(1)).build();
    bytes[24 + 8] = 0xff;
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::BadUtf8 {
            offset: 32,
            item: Item::KeyValue {
                index: 0,
                key: None
            }
        }
    );
    // String value not UTF-8.
    let mut bytes = Builder::default().kv("k", Enc::str("ok")).build();
    let at = bytes.len() - 1;
    bytes[at] = 0xc3;
    match parse(&bytes).unwrap_err() {
        GgufError::BadUtf8 {
            item: Item::KeyValue { key: Some(k), .. },
            ..
        } => assert_eq!(k, "k"),
        other => panic!("unexpected {other:?}"),
    }
    // Bool 2.
    let bytes = Builder::default().kv("flag", Enc::Bool(2)).build();
    assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::BadBool);
    // Value type 13.
    let mut bytes = Builder::default().kv("k", Enc::U8(1)).build();
    let at = 24 + 8 + 1;
    bytes[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::BadValueType {
            offset: at as u64,
            code: 13,
            item: Item::KeyValue {
                index: 0,
                key: Some(name("k"))
            }
        }
    );
    // Tensor name not UTF-8.
    let layout = Builder::default()
        .raw_tensor("t", &[1], 0, vec![0; 4], None)
        .layout();
    let mut bytes = layout.bytes;
    bytes[layout.tensor_table + 8] = 0xff;
    assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::BadUtf8);
}

#[test]
fn shapes_that_are_not_whole_blocks_or_too_big() {
    let bytes = Builder::default()
        .raw_tensor("w", &[48, 2], 2, vec![0; 64], None)
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::PartialBlock {
            tensor: name("w"),
            dtype: DType::Q4_0,
            row_len: 48
        }
    );
    let bytes = Builder::default()
        .raw_tensor("w", &[1, 2, 3, 4, 5], 0, vec![], None)
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::TooManyDims {
            tensor: name("w"),
            n_dims: 5
        }
    );
    let bytes = Builder::default()
        .raw_tensor("w", &[1 << 40, 1 << 40], 0, vec![], None)
        .build();
    assert_eq!(
        parse(&bytes).unwrap_err(),
        GgufError::SizeOverflow { tensor: name("w") }
    );
}

#[test]
fn lying_counts_end_at_the_file_end() {
    // A tensor count of 2^62 over an empty table.
    let mut bytes = Builder::default().build();
    bytes[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::Truncated);
    // A metadata count of u64::MAX.
    let mut bytes = Builder::default().kv("k", Enc::U8(1)).build();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(parse(&bytes).unwrap_err().kind(), ErrorKind::Truncated);
    // A string array claiming 2^60 strings.
    let mut bytes = Builder::default()
        .kv("a", Enc::Arr(8, vec![Enc::str("x")]))
        .build();
    let at = 24 + 9 + 4 + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    match parse(&bytes).unwrap_err() {
        GgufError::Truncated {
            item: Item::KeyValue { key: Some(k), .. },
            ..
        } => assert_eq!(k, "a"),
        other => panic!("unexpected {other:?}"),
    }
}

// ------------------------------------------------------------- check_llama

fn llama_error(edit: impl FnOnce(&mut Builder)) -> GgufError {
    let mut b = llama_builder();
    edit(&mut b);
    let bytes = b.build();
    parse(&bytes).unwrap().check_llama().unwrap_err()
}

fn set(b: &mut Builder, key: &str, value: Enc) {
    match b.kvs.iter_mut().find(|(k, _)| k == key) {
        Some(kv) => kv.1 = value,
        None => b.kvs.push((String::from(key), value)),
    }
}

#[test]
fn llama_hyper_parameters_are_checked() {
    let e = llama_error(|b| b.kvs.retain(|(k, _)| k != "llama.block_count"));
    assert_eq!(
        e,
        GgufError::MissingKey {
            key: name("llama.block_count")
        }
    );
    let e = llama_error(|b| set(b, "llama.attention.head_count", Enc::U32(5)));
    assert_eq!(
        e,
        GgufError::BadValue {
            key: name("llama.attention.head_count"),
            reason: "does not divide llama.embedding_length"
        }
    );
    let e = llama_error(|b| set(b, "llama.attention.head_count_kv", Enc::U32(3)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
    let e = llama_error(|b| set(b, "llama.embedding_length", Enc::U32(0)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
    let e = llama_error(|b| set(b, "llama.attention.layer_norm_rms_epsilon", Enc::F64(1e-5)));
    assert_eq!(
        e,
        GgufError::WrongType {
            key: name("llama.attention.layer_norm_rms_epsilon"),
            expected: "an f32",
            found: ValueType::F64
        }
    );
    let e = llama_error(|b| set(b, "llama.rope.freq_base", Enc::F32(f32::NAN)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
    let e = llama_error(|b| set(b, "llama.rope.dimension_count", Enc::U32(17)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
    let e = llama_error(|b| set(b, "llama.expert_count", Enc::U32(8)));
    assert_eq!(
        e,
        GgufError::BadValue {
            key: name("llama.expert_count"),
            reason: "mixture-of-experts llama models are not supported"
        }
    );
    let e = llama_error(|b| set(b, "llama.vocab_size", Enc::U32(9)));
    assert_eq!(
        e,
        GgufError::BadValue {
            key: name("tokenizer.ggml.tokens"),
            reason: "length differs from llama.vocab_size"
        }
    );
    let e = llama_error(|b| b.kvs.retain(|(k, _)| !k.starts_with("tokenizer.")));
    assert_eq!(
        e,
        GgufError::MissingKey {
            key: name("llama.vocab_size")
        }
    );
    let e = llama_error(|b| set(b, "llama.attention.key_length", Enc::U32(32)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
}

#[test]
fn llama_layer_limits() {
    let e = llama_error(|b| set(b, "llama.block_count", Enc::U32(MAX_LAYERS + 1)));
    assert_eq!(e.kind(), ErrorKind::BadValue);
    // Declaring a third layer that is not there names its first tensor.
    let e = llama_error(|b| set(b, "llama.block_count", Enc::U32(3)));
    assert_eq!(
        e,
        GgufError::MissingTensor {
            tensor: name("blk.2.attn_norm.weight")
        }
    );
    // A non-canonical layer number does not stand in for the real one.
    let e = llama_error(|b| {
        for t in &mut b.tensors {
            if t.name == "blk.1.attn_q.weight" {
                t.name = String::from("blk.01.attn_q.weight");
            }
        }
    });
    assert_eq!(
        e,
        GgufError::MissingTensor {
            tensor: name("blk.1.attn_q.weight")
        }
    );
}

#[test]
fn llama_tensors_are_checked() {
    let e = llama_error(|b| b.tensors.retain(|t| t.name != "blk.1.ffn_up.weight"));
    assert_eq!(
        e,
        GgufError::MissingTensor {
            tensor: name("blk.1.ffn_up.weight")
        }
    );
    assert!(format!("{e}").contains("'blk.1.ffn_up.weight'"));
    // ffn_down stored the other way round.
    let e = llama_error(|b| {
        let t = b
            .tensors
            .iter_mut()
            .find(|t| t.name == "blk.0.ffn_down.weight")
            .unwrap();
        t.dims = vec![TINY_EMBD, TINY_FF];
    });
    assert_eq!(
        e,
        GgufError::BadShape {
            tensor: name("blk.0.ffn_down.weight"),
            dim: 0,
            found: TINY_EMBD,
            expected: TINY_FF
        }
    );
    // An untied output of the wrong vocabulary size.
    let e = llama_error(|b| {
        *b = std::mem::take(b).tensor("output.weight", &[TINY_EMBD, 9], DType::Q8_0, 5);
    });
    assert_eq!(e.kind(), ErrorKind::BadShape);
    // A correct untied output is accepted and reported.
    let mut b = llama_builder().tensor("output.weight", &[TINY_EMBD, TINY_VOCAB], DType::Q8_0, 5);
    b.alignment = Some(64);
    let bytes = b.build();
    let p = parse(&bytes).unwrap().check_llama().unwrap();
    assert!(!p.shape.tied_embeddings);
}

#[test]
fn layer_names_are_built_without_allocation() {
    assert_eq!(
        layer_tensor_name(29, "ffn_down.weight").unwrap().as_str(),
        "blk.29.ffn_down.weight"
    );
    assert_eq!(
        layer_tensor_name(u32::MAX, "attn_output.weight")
            .unwrap()
            .as_str(),
        "blk.4294967295.attn_output.weight"
    );
    assert!(layer_tensor_name(0, &"x".repeat(70)).is_err());
}

// ------------------------------------------------------------------ fuzzing

/// Positions of every tensor-info type field of a built file, found with
/// the builder's own knowledge of the layout.
fn type_field_offsets(b: &Builder) -> Vec<usize> {
    let layout = b.layout();
    let mut at = layout.tensor_table;
    b.tensors
        .iter()
        .map(|t| {
            at += 8 + t.name.len() + 4 + 8 * t.dims.len();
            let field = at;
            at += 4 + 8;
            field
        })
        .collect()
}

fn small_file() -> Vec<u8> {
    Builder::default()
        .kv("general.architecture", Enc::str("llama"))
        .kv("a", Enc::Arr(8, vec![Enc::str("x"), Enc::str("yz")]))
        .kv("n", Enc::Arr(9, vec![Enc::Arr(5, vec![Enc::I32(-1)])]))
        .kv("f", Enc::F32(0.5))
        .tensor("t0", &[32, 2], DType::Q4_0, 1)
        .tensor("t1", &[32], DType::Q4_1, 2)
        .tensor("t2", &[32], DType::Q5_1, 3)
        .tensor("t3", &[32], DType::Q8_0, 4)
        .tensor("t4", &[3], DType::F16, 5)
        .tensor("t5", &[2, 1], DType::F32, 6)
        .build()
}

fn enc_strategy() -> impl Strategy<Value = Enc> {
    use proptest::collection::vec as list;
    let scalar = prop_oneof![
        any::<u8>().prop_map(Enc::U8),
        any::<i8>().prop_map(Enc::I8),
        any::<u16>().prop_map(Enc::U16),
        any::<i16>().prop_map(Enc::I16),
        any::<u32>().prop_map(Enc::U32),
        any::<i32>().prop_map(Enc::I32),
        any::<f32>()
            .prop_filter("NaN != NaN", |x| !x.is_nan())
            .prop_map(Enc::F32),
        (0u8..2).prop_map(Enc::Bool),
        ".{0,12}".prop_map(Enc::Str),
        any::<u64>().prop_map(Enc::U64),
        any::<i64>().prop_map(Enc::I64),
        any::<f64>()
            .prop_filter("NaN != NaN", |x| !x.is_nan())
            .prop_map(Enc::F64),
    ];
    // Arrays of distinct values for a few element types.
    let array = prop_oneof![
        list(any::<u8>(), 0..6).prop_map(|v| Enc::Arr(0, v.into_iter().map(Enc::U8).collect())),
        list(any::<i32>(), 0..6).prop_map(|v| Enc::Arr(5, v.into_iter().map(Enc::I32).collect())),
        list(0u8..2, 0..6).prop_map(|v| Enc::Arr(7, v.into_iter().map(Enc::Bool).collect())),
        list(".{0,8}", 0..6).prop_map(|v| Enc::Arr(8, v.into_iter().map(Enc::Str).collect())),
        list(any::<u64>(), 0..6).prop_map(|v| Enc::Arr(10, v.into_iter().map(Enc::U64).collect())),
    ];
    prop_oneof![scalar, array].prop_recursive(3, 24, 6, |inner| {
        // Arrays of arrays (or of anything): one element value, repeated,
        // since GGUF arrays are homogeneous.
        (inner, 0usize..4).prop_map(|(e, n)| Enc::Arr(e.code(), vec![e; n]))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes: an error or a file, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(g) = parse(&bytes) {
            exercise(&g);
        }
    }

    /// A valid header followed by arbitrary bytes reaches the deeper code.
    #[test]
    fn random_bodies_never_panic(
        version in 2u32..4,
        n_tensors in 0u64..6,
        n_kv in 0u64..6,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&n_tensors.to_le_bytes());
        bytes.extend_from_slice(&n_kv.to_le_bytes());
        bytes.extend_from_slice(&body);
        if let Ok(g) = parse(&bytes) {
            exercise(&g);
        }
    }

    /// Byte flips anywhere in a valid file: an error or a file that still
    /// satisfies every invariant `exercise` checks.
    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..16)) {
        let mut bytes = small_file();
        for (i, x) in flips {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        if let Ok(g) = parse(&bytes) {
            exercise(&g);
        }
    }

    /// Flips confined to the header and tables (where the structure is),
    /// with arbitrary replacement bytes rather than xor masks.
    #[test]
    fn overwritten_header_bytes_never_panic(writes in proptest::collection::vec((0usize..400, any::<u8>()), 1..8)) {
        let mut bytes = small_file();
        for (at, v) in writes {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        if let Ok(g) = parse(&bytes) {
            exercise(&g);
        }
    }

    /// Any truncation of a valid file is an error: the last tensor's data
    /// ends the file, so every cut loses something the header promised.
    #[test]
    fn every_truncation_is_an_error(cut in any::<prop::sample::Index>()) {
        let bytes = llama_builder().build();
        let len = cut.index(bytes.len());
        let e = parse(&bytes[..len]).unwrap_err();
        prop_assert!(
            matches!(e.kind(), ErrorKind::Truncated | ErrorKind::TensorOutOfBounds),
            "cut at {}: {:?}", len, e
        );
        if len < 4 {
            prop_assert_eq!(e.kind(), ErrorKind::Truncated);
        }
    }

    /// A tensor type field overwritten with any code: unknown codes are
    /// `UnknownType` naming that tensor; known ones parse or fail on size.
    #[test]
    fn type_codes_are_checked(which in 0usize..6, code in prop_oneof![0u32..40, any::<u32>()]) {
        let b = Builder::default()
            .tensor("t0", &[32, 2], DType::Q4_0, 1)
            .tensor("t1", &[32], DType::Q4_1, 2)
            .tensor("t2", &[32], DType::Q5_1, 3)
            .tensor("t3", &[32], DType::Q8_0, 4)
            .tensor("t4", &[32], DType::F16, 5)
            .tensor("t5", &[32], DType::F32, 6);
        let mut bytes = b.build();
        let at = type_field_offsets(&b)[which];
        bytes[at..at + 4].copy_from_slice(&code.to_le_bytes());
        let r = parse(&bytes);
        match DType::from_code(code) {
            None => prop_assert_eq!(r.unwrap_err(), GgufError::UnknownType { tensor: name(&format!("t{which}")), code }),
            Some(_) => {
                if let Ok(g) = r {
                    exercise(&g);
                }
            }
        }
    }

    /// Random metadata written by the builder reads back identically.
    #[test]
    fn metadata_round_trips(values in proptest::collection::vec(enc_strategy(), 0..8), version in 2u32..4) {
        let mut b = Builder { version, ..Builder::default() };
        for (i, v) in values.iter().enumerate() {
            b = b.kv(&format!("key.{i}"), v.clone());
        }
        let bytes = b.build();
        let g = parse(&bytes).unwrap();
        let got: Vec<Enc> = g.metadata().map(|(_, v)| decode(v)).collect();
        prop_assert_eq!(got, values);
    }
}

#[test]
fn print_an_error_for_the_log() {
    // The messages are for people: show one of each family once.
    let bytes = llama_builder().build();
    let e = parse(&bytes[..bytes.len() / 2]).unwrap_err();
    println!("{e}");
    assert!(!format!("{e}").is_empty());
}
