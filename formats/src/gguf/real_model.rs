//! Tests against the real SmolLM2-135M-Instruct Q4_1 file, when present.
//!
//! `scripts/fetch-model` places it under `models/` (git-ignored). Without it
//! these tests print a note and pass, so a fresh checkout still tests green.
//! The expected element values were computed independently (Python's
//! `struct`, decoding the ggml layouts by hand, rounded to f32).

// The expected values are written out exactly (they are short dyadic
// fractions), so comparing with `==` checks the decoding bit for bit.
#![allow(clippy::excessive_precision)]

extern crate std;

use std::path::PathBuf;
use std::vec;
use std::vec::Vec;
use std::{eprintln, fs};

use super::*;
use crate::DType;

const MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_bytes() -> Option<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "models", MODEL]
        .iter()
        .collect();
    match fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            eprintln!(
                "note: skipping the real-model test: {} ({e}); run scripts/fetch-model",
                path.display()
            );
            None
        }
    }
}

fn row(g: &Gguf<'_>, name: &str, index: usize) -> Vec<f32> {
    let t = g.require_tensor(name).unwrap();
    let bytes = g.row_data(&t, index as u64).unwrap();
    let mut out = vec![0.0; t.dims.row_len() as usize];
    dequantize_row(t.dtype, bytes, &mut out).unwrap();
    out
}

#[test]
fn smollm2_parses_and_checks_as_llama() {
    let Some(bytes) = model_bytes() else { return };
    assert_eq!(bytes.len(), 98_362_432);
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.metadata_count(), 33);
    assert_eq!(g.tensor_count(), 272);
    assert_eq!(g.data_offset(), 1_785_664);
    assert_eq!(g.architecture(), Some("llama"));

    let p = g.check_llama().unwrap();
    let s = p.shape;
    assert_eq!(s.layers, 30);
    assert_eq!(s.hidden, 576);
    assert_eq!(s.ffn, 1536);
    assert_eq!(s.heads, 9);
    assert_eq!(s.kv_heads, 3);
    assert_eq!(s.head_dim, 64);
    assert_eq!(p.rope_dims, 64);
    assert_eq!(s.rope_base, 100_000.0);
    assert_eq!(s.rms_eps, 1e-5);
    assert_eq!(s.vocab, 49_152);
    assert_eq!(s.context, 8192);
    assert!(s.tied_embeddings);

    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
}

#[test]
fn smollm2_vocabulary_walks_linearly() {
    let Some(bytes) = model_bytes() else { return };
    let g = Gguf::parse(&bytes).unwrap();
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49_152);
    let mut n = 0;
    let mut first = "";
    for (i, t) in tokens.strings().unwrap().enumerate() {
        if i == 0 {
            first = t;
        }
        n += 1;
    }
    assert_eq!(n, 49_152);
    assert_eq!(first, "<|endoftext|>");
    assert_eq!(tokens.get(2), Some(Value::Str("<|im_end|>")));

    let merges = g.get_array("tokenizer.ggml.merges").unwrap();
    assert_eq!(merges.len(), 48_900);
    assert_eq!(merges.strings().unwrap().count(), 48_900);
    assert_eq!(merges.strings().unwrap().next(), Some("Ġ t"));

    let types = g.get_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.elem_type(), ValueType::I32);
    assert_eq!(types.iter().count(), 49_152);
    // Keys after the big arrays are still found.
    assert_eq!(g.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert_eq!(g.get_u32("general.quantization_version").unwrap(), 2);
}

#[test]
fn smollm2_tensors_dequantize() {
    let Some(bytes) = model_bytes() else { return };
    let g = Gguf::parse(&bytes).unwrap();

    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dtype, DType::Q8_0);
    assert_eq!(embd.dims.as_slice(), &[576, 49_152]);
    assert_eq!(embd.offset, 1_785_664);
    assert!(g.tensor("output.weight").is_none());

    let mut counts = [0usize; 3];
    let mut total_bytes = 0u64;
    let mut out = Vec::new();
    for t in g.tensors() {
        match t.dtype {
            DType::F32 => counts[0] += 1,
            DType::Q4_1 => counts[1] += 1,
            DType::Q8_0 => counts[2] += 1,
            other => panic!("{}: unexpected type {other:?}", t.name),
        }
        let data = g.data(&t).unwrap();
        out.resize(t.dims.elements().unwrap() as usize, 0.0);
        dequantize_row(t.dtype, data, &mut out).unwrap();
        assert!(out.iter().all(|x| x.is_finite()), "{}", t.name);
        total_bytes += t.len_bytes;
    }
    assert_eq!(counts, [61, 210, 1]);
    // The data section is the tensors, back to back, and nothing else.
    assert_eq!(g.data_offset() + total_bytes, bytes.len() as u64);

    // Spot values, decoded independently.
    let r = row(&g, "token_embd.weight", 0);
    assert_eq!(r[0], -0.106_544_494_628_906_25);
    assert_eq!(r[1], 0.032_978_057_861_328_125);
    assert_eq!(r[575], 0.029_754_638_671_875);
    let sum: f32 = r.iter().sum();
    assert!((sum - -2.254_109_4).abs() < 1e-3, "{sum}");
    let r = row(&g, "token_embd.weight", 100);
    assert_eq!(r[31], -0.172_833_442_687_988_28);
    let r = row(&g, "blk.0.ffn_down.weight", 0);
    assert_eq!(r.len(), 1536);
    assert_eq!(r[0], -0.330_810_546_875);
    assert_eq!(r[16], -0.601_562_5);
    assert_eq!(r[1535], 0.064_086_914_062_5);
    let sum: f32 = r.iter().sum();
    assert!((sum - -17.089_996).abs() < 1e-2, "{sum}");
    let r = row(&g, "blk.0.attn_norm.weight", 0);
    assert_eq!(
        &r[..4],
        &[
            0.013_977_050_781_25,
            0.023_803_710_937_5,
            -0.019_775_390_625,
            -0.030_273_437_5
        ]
    );
}
