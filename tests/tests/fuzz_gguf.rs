//! Fuzzing the GGUF reader: [`Gguf::parse`], then every accessor of a file
//! that parses (each metadata entry and every element of every array,
//! nested ones included; lookups by key; each tensor's data, first and
//! last row, and the first row dequantized), the llama check
//! ([`Gguf::check_llama`]) and the tokenizer copy ([`tokenizer_only`]).
//!
//! Inputs: valid GGUF files (every value type, nested arrays, a non-default
//! alignment, tensors of every type lode reads; a version 2 file; a small
//! llama model with a tokenizer) mutated by bit flips, byte changes,
//! truncation, insertion, removal, copies and length, count and offset
//! fields set to extreme values; and random or spliced bytes. GGUF has no
//! checksums, so every mutation reaches the parser's checks.
//!
//! Asserted for every input: no panic; every error a [`GgufError`] with a
//! message; each case within the harness's time limit; **no allocation at
//! all** by the reader and its accessors (`no_std`, zero-copy); at most
//! `4 * input + 64 KiB` bytes by `tokenizer_only`, whose output parses as
//! a GGUF v3 file without tensors.
//!
//! A CI run gives this 10,000 cases. A longer run by hand, in release mode:
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_gguf -- --nocapture
//! ```
//!
//! (`LODE_FUZZ_SEED=<n>` repeats the run a report line names.)

mod fuzz;

use std::sync::Arc;

use fuzz::gguf::{file, vocab_metadata, Tensor, V};
use lode_formats::gguf::{dequantize_row, tokenizer_only, Gguf, GgufError, Value};
use lode_formats::DType;
use lode_tests::CountingAlloc;
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Bytes `tokenizer_only` may allocate for an input of `len` bytes.
fn copy_bound(len: usize) -> u64 {
    4 * len as u64 + (64 << 10)
}

/// Elements of the largest row the walk dequantizes.
const MAX_ROW: usize = 4096;

/// Every value type, nested arrays, UTF-8 beyond ASCII, alignment 64, and
/// one tensor of each type lode reads.
fn every_type() -> Vec<u8> {
    let kvs = vec![
        ("general.architecture", V::s("test")),
        ("general.alignment", V::U32(64)),
        ("a.u8", V::U8(200)),
        ("a.i8", V::I8(-3)),
        ("a.u16", V::U16(65_000)),
        ("a.i16", V::I16(-30_000)),
        ("a.u32", V::U32(4_000_000_000)),
        ("a.i32", V::I32(-2_000_000_000)),
        ("a.f32", V::F32(1.5)),
        ("a.bool", V::Bool(true)),
        ("a.str", V::s("héllo → wörld")),
        ("a.u64", V::U64(u64::MAX / 3)),
        ("a.i64", V::I64(i64::MIN / 5)),
        ("a.f64", V::F64(-2.25)),
        ("a.ints", V::Arr(4, (0..9).map(V::U32).collect())),
        ("a.strs", V::strs(&["", "x", "yz", "ünï"])),
        (
            "a.nested",
            V::Arr(
                9,
                vec![
                    V::Arr(0, vec![V::U8(1), V::U8(2)]),
                    V::Arr(0, vec![]),
                    V::Arr(0, vec![V::U8(3)]),
                ],
            ),
        ),
        (
            "a.nested_strs",
            V::Arr(9, vec![V::strs(&["p", "q"]), V::strs(&["r"])]),
        ),
        ("a.bools", V::Arr(7, vec![V::Bool(false), V::Bool(true)])),
        ("a.deep", deep(lode_formats::gguf::MAX_ARRAY_DEPTH)),
        ("a.empty", V::Arr(8, vec![])),
    ];
    let tensors = [
        Tensor::new("f32", DType::F32, &[8, 3], 1),
        Tensor::new("f16", DType::F16, &[16], 2),
        Tensor::new("q4_0", DType::Q4_0, &[32, 2], 3),
        Tensor::new("q4_1", DType::Q4_1, &[64], 4),
        Tensor::new("q5_1", DType::Q5_1, &[32, 1, 2], 5),
        Tensor::new("q8_0", DType::Q8_0, &[32, 2, 1, 2], 6),
    ];
    file(3, &kvs, &tensors, 64)
}

/// Arrays nested `depth` deep (the most the reader accepts), a `u16` at
/// the bottom.
fn deep(depth: usize) -> V {
    (1..depth).fold(V::Arr(2, vec![V::U16(7)]), |inner, _| {
        V::Arr(9, vec![inner])
    })
}

/// A version 2 file with a little of everything.
fn version_2() -> Vec<u8> {
    let kvs = vec![
        ("general.architecture", V::s("llama")),
        ("general.name", V::s("two")),
        ("b.count", V::U64(7)),
    ];
    file(2, &kvs, &[Tensor::new("t", DType::F16, &[4, 4], 9)], 32)
}

/// A llama model small enough to mutate quickly that passes
/// `check_llama`, with the fuzz tests' byte-level vocabulary.
pub fn tiny_llama() -> Vec<u8> {
    let (embd, ff, vocab) = (32u64, 32u64, fuzz::gguf::vocab_tokens().len() as u64);
    let mut kvs = vocab_metadata("llama");
    kvs.extend([
        ("llama.block_count", V::U32(1)),
        ("llama.context_length", V::U32(128)),
        ("llama.embedding_length", V::U32(embd as u32)),
        ("llama.feed_forward_length", V::U32(ff as u32)),
        ("llama.attention.head_count", V::U32(2)),
        ("llama.attention.head_count_kv", V::U32(1)),
        ("llama.rope.freq_base", V::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
    ]);
    let q = DType::Q8_0;
    let tensors = [
        Tensor::new("token_embd.weight", q, &[embd, vocab], 1),
        Tensor::new("output_norm.weight", DType::F32, &[embd], 2),
        Tensor::new("blk.0.attn_norm.weight", DType::F32, &[embd], 3),
        Tensor::new("blk.0.attn_q.weight", q, &[embd, embd], 4),
        Tensor::new("blk.0.attn_k.weight", q, &[embd, embd / 2], 5),
        Tensor::new("blk.0.attn_v.weight", q, &[embd, embd / 2], 6),
        Tensor::new("blk.0.attn_output.weight", q, &[embd, embd], 7),
        Tensor::new("blk.0.ffn_norm.weight", DType::F32, &[embd], 8),
        Tensor::new("blk.0.ffn_gate.weight", DType::Q4_1, &[embd, ff], 9),
        Tensor::new("blk.0.ffn_up.weight", DType::Q4_1, &[embd, ff], 10),
        Tensor::new("blk.0.ffn_down.weight", DType::Q4_0, &[ff, embd], 11),
    ];
    file(3, &kvs, &tensors, 32)
}

fn seeds() -> Arc<Vec<Vec<u8>>> {
    Arc::new(vec![every_type(), version_2(), tiny_llama()])
}

/// GGUF has no checksums to fix.
fn nothing(_: &mut [u8]) {}

/// Every element of `v`, arrays walked to the bottom; the number visited.
fn visit(v: Value<'_>) -> u64 {
    let _ = (v.as_u64(), v.as_i64(), v.as_f64(), v.as_bool(), v.as_str());
    match v.as_array() {
        Some(a) => {
            let mut n = 1;
            for item in a.iter() {
                n += visit(item);
            }
            if let Some(last) = a.len().checked_sub(1) {
                let _ = a.get(last);
            }
            n
        }
        None => 1,
    }
}

/// Every accessor of a parsed file; the first tensor error.
fn walk(file: &Gguf<'_>, row: &mut [f32]) -> Result<(), GgufError> {
    let _ = (file.version(), file.alignment(), file.data_offset());
    let _ = (file.architecture(), file.metadata_count());
    let mut entries = 0u64;
    for (i, (key, value)) in file.metadata().enumerate() {
        entries += 1;
        visit(value);
        // Lookups scan from the start: a few keep the walk linear.
        if i < 16 {
            assert!(file.get(key).is_some(), "key {key:?} not found");
        }
    }
    assert_eq!(entries, file.metadata_count(), "metadata walk ended early");
    let mut tensors = 0u64;
    for t in file.tensors() {
        tensors += 1;
        file.data(&t)?;
        let rows = t.dims.rows().unwrap_or(0);
        if rows == 0 {
            continue;
        }
        let first = file.row_data(&t, 0)?;
        file.row_data(&t, rows - 1)?;
        let n = usize::try_from(t.dims.row_len()).unwrap_or(usize::MAX);
        if let Some(out) = row.get_mut(..n).filter(|_| n <= MAX_ROW) {
            dequantize_row(t.dtype, first, out)?;
        }
    }
    assert_eq!(tensors, file.tensor_count(), "tensor walk ended early");
    Ok(())
}

/// Parse, walk and check `bytes` as a llama model; `true` when it parsed.
fn read_all(bytes: &[u8], row: &mut [f32]) -> Result<bool, GgufError> {
    let file = Gguf::parse(bytes)?;
    walk(&file, row)?;
    let _ = file.check_llama();
    Ok(true)
}

#[test]
fn fuzz_gguf_reader() {
    fuzz::run(
        "GGUF reader",
        fuzz::inputs(seeds(), nothing, 4096),
        |input| {
            let bytes = &input.bytes;
            let mut row = vec![0.0f32; MAX_ROW];
            let result = fuzz::read_without_allocating(|| read_all(bytes, &mut row))?;
            if let Err(e) = &result {
                let _ = e.kind();
            }
            if let Ok(file) = Gguf::parse(bytes) {
                let (copy, used) = CountingAlloc::measure(|| tokenizer_only(&file));
                prop_assert!(
                    used.bytes <= copy_bound(bytes.len()),
                    "tokenizer_only allocated {} bytes for a {}-byte input",
                    used.bytes,
                    bytes.len()
                );
                if let Ok(copy) = copy {
                    let parsed = Gguf::parse(&copy);
                    prop_assert!(parsed.is_ok(), "tokenizer_only wrote {:?}", parsed.err());
                    let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!((parsed.version(), parsed.tensor_count()), (3, 0));
                }
            }
            Ok(result.unwrap_or(false))
        },
    );
}
