//! The weight codec on the real model (skipped with a note when
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf` is absent; CI has it): every
//! quantized tensor codes and decodes back to its exact bytes, and the
//! model's coded tensors shrink by the 10% at least.

use lode_formats::gguf::Gguf;
use lode_kernel::codec::{decode_with, Scratch, Verify};
use lode_pack::codec::encode;

#[test]
fn every_tensor_of_the_real_model_roundtrips() {
    let Some(bytes) = lode_tests::real_model() else {
        return;
    };
    let gguf = Gguf::parse(bytes).unwrap();
    let mut s = Scratch::default();
    let (mut raw, mut coded, mut tensors) = (0usize, 0usize, 0);
    for t in gguf.tensors() {
        let data = gguf.data(&t).unwrap();
        let Ok(e) = encode(t.dtype, data) else {
            // Floats (the norms) are not coded.
            assert!(t.dtype.block_elems() == 1, "{}", t.name);
            continue;
        };
        let mut out = vec![0u8; data.len()];
        let n = decode_with(&mut s, Verify::Crc, &e.bytes, &mut out).unwrap();
        assert_eq!(n, data.len(), "{}", t.name);
        assert!(out == data, "{} decodes to other bytes", t.name);
        raw += data.len();
        coded += e.bytes.len();
        tensors += 1;
    }
    let ratio = raw as f64 / coded as f64;
    println!("{tensors} tensors: {raw} bytes coded to {coded} ({ratio:.4}x)");
    assert_eq!(tensors, 211, "SmolLM2's quantized tensors");
    assert!(ratio > 1.10, "{ratio}");
}
