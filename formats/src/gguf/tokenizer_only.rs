//! A model's tokenizer as a GGUF file of its own: the metadata that turns
//! text into token ids, without the weights.
//!
//! A lode image must be enough to generate text, so `lode pack` stores the
//! source model's tokenizer in it (the image's tokenizer section, see
//! `formats/FORMAT.md`). Rather than invent a second vocabulary format, that
//! section is a complete GGUF v3 file with zero tensors whose metadata is the
//! source's `general.architecture` and every `tokenizer.*` entry, values
//! copied byte for byte. Any GGUF reader, and the tokenizer lode builds from
//! a model file, read it unchanged.
//!
//! [`tokenizer_only`] (feature `std`) writes such a file; [`metadata_end`]
//! (no allocation) measures where a parsed file's metadata ends, so the image
//! reader can check that the section holds nothing but that file and its
//! zero padding.

use super::file::Gguf;
use super::value::Value;

/// Every key whose name starts with this belongs to the tokenizer.
pub const TOKENIZER_KEY_PREFIX: &str = "tokenizer.";

/// The key a tokenizer cannot do without: the token texts.
pub const TOKENS_KEY: &str = "tokenizer.ggml.tokens";

/// Bytes of the fixed GGUF header: magic, version, tensor and entry counts.
const HEADER_LEN: usize = 4 + 4 + 8 + 8;

/// Bytes of a string as GGUF stores it: a `u64` length, then the bytes.
fn string_len(s: &str) -> Option<usize> {
    8usize.checked_add(s.len())
}

/// Bytes `value` takes after its type code.
fn value_len(value: &Value<'_>) -> Option<usize> {
    match value {
        Value::Str(s) => string_len(s),
        // Element type code, element count, then the elements as stored.
        Value::Array(a) => 12usize.checked_add(a.raw_bytes().len()),
        other => other.value_type().fixed_size(),
    }
}

/// Bytes of one metadata entry: key, type code, value.
fn entry_len(key: &str, value: &Value<'_>) -> Option<usize> {
    string_len(key)?
        .checked_add(4)?
        .checked_add(value_len(value)?)
}

/// Offset just past the last metadata entry of `file`: where its tensor
/// infos start (and, for a file with zero tensors, where the padding before
/// its empty data section starts). `None` only if the sum overflows, which
/// a file held in memory cannot make happen.
pub(crate) fn metadata_end(file: &Gguf<'_>) -> Option<usize> {
    let mut end = HEADER_LEN;
    let mut seen = 0u64;
    for (key, value) in file.metadata() {
        end = end.checked_add(entry_len(key, &value)?)?;
        seen += 1;
    }
    // The iterator stops early only on bytes `Gguf::parse` refused.
    (seen == file.metadata_count()).then_some(end)
}

/// True for the entries [`tokenizer_only`] keeps.
pub fn is_tokenizer_entry(key: &str) -> bool {
    key == super::ARCHITECTURE_KEY || key.starts_with(TOKENIZER_KEY_PREFIX)
}

#[cfg(feature = "std")]
pub use writer::tokenizer_only;

#[cfg(feature = "std")]
mod writer {
    use std::vec::Vec;

    use super::super::error::{GgufError, Name};
    use super::super::value::Value;
    use super::super::{Gguf, ARCHITECTURE_KEY, DEFAULT_ALIGNMENT, MAGIC};
    use super::{is_tokenizer_entry, TOKENS_KEY};

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// Append `value`'s encoding (after its type code) to `out`.
    fn put_value(out: &mut Vec<u8>, value: &Value<'_>) {
        match *value {
            Value::U8(v) => out.push(v),
            Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            // `to_le_bytes` is the bit pattern: NaN payloads survive.
            Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(v)),
            Value::Str(s) => put_str(out, s),
            Value::Array(a) => {
                out.extend_from_slice(&a.elem_type().code().to_le_bytes());
                out.extend_from_slice(&a.len().to_le_bytes());
                // Nested arrays and strings are inside these bytes as stored.
                out.extend_from_slice(a.raw_bytes());
            }
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }

    /// A GGUF v3 file with zero tensors holding `file`'s
    /// `general.architecture` and every `tokenizer.*` entry, in `file`'s
    /// order, each value encoded exactly as `file` stores it (a v2 source
    /// encodes values the same way). The file ends at its data offset: the
    /// metadata, then zero bytes up to the default 32-byte alignment.
    ///
    /// Errors: `general.architecture` absent ([`GgufError::MissingKey`]) or
    /// not a string ([`GgufError::WrongType`]); no `tokenizer.ggml.tokens`
    /// ([`GgufError::MissingKey`]), since a tokenizer without tokens is
    /// useless to a reader that trusts the section to be one.
    pub fn tokenizer_only(file: &Gguf<'_>) -> Result<Vec<u8>, GgufError> {
        let arch = file.get(ARCHITECTURE_KEY).ok_or(GgufError::MissingKey {
            key: Name::new(ARCHITECTURE_KEY),
        })?;
        if arch.as_str().is_none() {
            return Err(GgufError::WrongType {
                key: Name::new(ARCHITECTURE_KEY),
                expected: "a string",
                found: arch.value_type(),
            });
        }
        if file.get(TOKENS_KEY).is_none() {
            return Err(GgufError::MissingKey {
                key: Name::new(TOKENS_KEY),
            });
        }

        let mut body = Vec::new();
        let mut count = 0u64;
        let mut arch_written = false;
        for (key, value) in file.metadata() {
            if !is_tokenizer_entry(key) {
                continue;
            }
            // Lookups answer with a key's first entry; a later duplicate
            // architecture would only be noise.
            if key == ARCHITECTURE_KEY {
                if arch_written {
                    continue;
                }
                arch_written = true;
            }
            put_str(&mut body, key);
            body.extend_from_slice(&value.value_type().code().to_le_bytes());
            put_value(&mut body, &value);
            count += 1;
        }

        let mut out = Vec::with_capacity(body.len() + 64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&body);
        let end = out.len().next_multiple_of(DEFAULT_ALIGNMENT as usize);
        out.resize(end, 0);
        Ok(out)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::super::builder::{llama_builder, Builder, Enc};
    use super::super::{ErrorKind, Gguf};
    use super::*;

    /// Every entry `tokenizer_only` should keep, in order, with its value.
    fn kept<'a>(file: &Gguf<'a>) -> Vec<(&'a str, Value<'a>)> {
        let mut arch_seen = false;
        file.metadata()
            .filter(|(k, _)| {
                if *k == super::super::ARCHITECTURE_KEY {
                    let first = !arch_seen;
                    arch_seen = true;
                    first
                } else {
                    k.starts_with(TOKENIZER_KEY_PREFIX)
                }
            })
            .collect()
    }

    fn check(src_bytes: &[u8]) -> Vec<u8> {
        let src = Gguf::parse(src_bytes).unwrap();
        let out = tokenizer_only(&src).unwrap();
        let file = Gguf::parse(&out).unwrap();
        assert_eq!(file.version(), 3);
        assert_eq!(file.tensor_count(), 0);
        assert_eq!(out.len() as u64, file.data_offset());
        assert_eq!(out.len() % 32, 0);
        let end = metadata_end(&file).unwrap();
        assert!(end <= out.len() && out.len() - end < 32);
        assert!(out[end..].iter().all(|&b| b == 0));
        // Exactly the kept entries, in order, values identical (arrays
        // compare their raw bytes).
        let got: Vec<(&str, Value<'_>)> = file.metadata().collect();
        let want = kept(&src);
        assert_eq!(got.len(), want.len());
        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
            assert_eq!(gk, wk);
            assert!(same(gv, wv), "{gk}: {gv:?} != {wv:?}");
        }
        for (key, _) in &want {
            let (a, b) = (file.get(key).unwrap(), src.get(key).unwrap());
            assert!(same(&a, &b), "{key}");
        }
        out
    }

    /// Equal values, floats compared by their bits (so NaN equals itself).
    fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
        match (a, b) {
            (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
            (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    #[test]
    fn keeps_architecture_and_every_tokenizer_key() {
        let src = llama_builder()
            .kv("tokenizer.chat_template", Enc::str("{{ x }}"))
            .kv(
                "tokenizer.ggml.merges",
                Enc::Arr(8, vec![Enc::str("a b"), Enc::str("ab c")]),
            )
            .kv("tokenizer.ggml.eos_token_id", Enc::U32(2))
            .kv("tokenizer.ggml.scores", Enc::Arr(6, vec![Enc::F32(-1.5)]))
            .kv(
                "tokenizer.odd.nested",
                Enc::Arr(9, vec![Enc::Arr(0, vec![Enc::U8(1)])]),
            )
            .kv("tokenizer.odd.big", Enc::I64(-7))
            .kv("tokenizer.odd.double", Enc::F64(0.25))
            .build();
        let out = check(&src);
        let file = Gguf::parse(&out).unwrap();
        assert_eq!(file.architecture(), Some("llama"));
        assert!(file.get("llama.block_count").is_none());
        assert!(file.get("general.name").is_none());
        assert_eq!(file.metadata_count(), 1 + 4 + 7);
        assert_eq!(
            file.get_array(TOKENS_KEY)
                .unwrap()
                .strings()
                .unwrap()
                .nth(3),
            Some("tok3")
        );
    }

    #[test]
    fn metadata_end_of_a_source_is_its_tensor_table() {
        let b = llama_builder();
        let layout = b.layout();
        let file = Gguf::parse(&layout.bytes).unwrap();
        assert_eq!(metadata_end(&file), Some(layout.tensor_table));
    }

    #[test]
    fn a_v2_source_gives_a_v3_file_with_the_same_values() {
        let mut b = llama_builder();
        b.version = 2;
        check(&b.build());
    }

    #[test]
    fn refuses_sources_without_what_it_needs() {
        let no_arch = Builder::default()
            .kv(TOKENS_KEY, Enc::Arr(8, vec![Enc::str("a")]))
            .build();
        let e = tokenizer_only(&Gguf::parse(&no_arch).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingKey);

        let arch_not_string = Builder::default()
            .kv("general.architecture", Enc::U32(1))
            .kv(TOKENS_KEY, Enc::Arr(8, vec![Enc::str("a")]))
            .build();
        let e = tokenizer_only(&Gguf::parse(&arch_not_string).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongType);

        let no_tokens = Builder::default()
            .kv("general.architecture", Enc::str("llama"))
            .kv("tokenizer.ggml.model", Enc::str("gpt2"))
            .build();
        let e = tokenizer_only(&Gguf::parse(&no_tokens).unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingKey);
        assert!(std::format!("{e}").contains(TOKENS_KEY), "{e}");
    }

    #[test]
    fn a_duplicate_architecture_keeps_the_first() {
        let src = Builder::default()
            .kv("general.architecture", Enc::str("llama"))
            .kv(TOKENS_KEY, Enc::Arr(8, vec![Enc::str("a")]))
            .kv("general.architecture", Enc::str("opt"))
            .build();
        let out = check(&src);
        let file = Gguf::parse(&out).unwrap();
        assert_eq!(file.metadata_count(), 2);
        assert_eq!(file.architecture(), Some("llama"));
    }

    #[test]
    fn the_real_model_keeps_its_whole_tokenizer() {
        let path: std::path::PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "..",
            "models",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ]
        .iter()
        .collect();
        let Ok(bytes) = std::fs::read(&path) else {
            std::eprintln!("note: {} is absent; skipping.", path.display());
            return;
        };
        let out = check(&bytes);
        let file = Gguf::parse(&out).unwrap();
        assert_eq!(file.architecture(), Some("llama"));
        assert_eq!(file.get_array(TOKENS_KEY).unwrap().len(), 49152);
        assert_eq!(
            file.get_array("tokenizer.ggml.merges").unwrap().len(),
            48900
        );
        assert_eq!(file.get_str("tokenizer.ggml.pre"), Ok("smollm"));
        assert!(file.get("tokenizer.chat_template").is_some());
        // Far smaller than the model: only the vocabulary.
        assert!(out.len() < 4 << 20, "{} bytes", out.len());
        std::eprintln!("tokenizer of the real model: {} bytes", out.len());
    }

    /// A random scalar, string or array value.
    fn value() -> impl Strategy<Value = Enc> {
        let scalar = prop_oneof![
            any::<u8>().prop_map(Enc::U8),
            any::<i16>().prop_map(Enc::I16),
            any::<u32>().prop_map(Enc::U32),
            any::<i32>().prop_map(Enc::I32),
            any::<u32>().prop_map(|b| Enc::F32(f32::from_bits(b))),
            (0u8..2).prop_map(Enc::Bool),
            any::<u64>().prop_map(Enc::U64),
            any::<u64>().prop_map(|b| Enc::F64(f64::from_bits(b))),
            "[a-zé ]{0,12}".prop_map(Enc::Str),
        ];
        prop_oneof![
            3 => scalar,
            1 => proptest::collection::vec(any::<i32>(), 0..8)
                .prop_map(|v| Enc::Arr(5, v.into_iter().map(Enc::I32).collect())),
            1 => proptest::collection::vec("[a-z]{0,6}", 0..8)
                .prop_map(|v| Enc::Arr(8, v.into_iter().map(Enc::Str).collect())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever else a model holds, the result parses and keeps exactly
        /// the tokenizer entries, bit for bit.
        #[test]
        fn random_metadata_keeps_tokenizer_values(
            entries in proptest::collection::vec(
                (prop_oneof!["tokenizer\\.[a-z.]{1,10}", "general\\.[a-z]{1,6}", "[a-z]{1,8}"], value()),
                0..12,
            ),
            arch_at in any::<prop::sample::Index>(),
        ) {
            let mut kvs: Vec<(String, Enc)> = entries;
            kvs.push((String::from(TOKENS_KEY), Enc::Arr(8, vec![Enc::str("x")])));
            let at = arch_at.index(kvs.len() + 1);
            kvs.insert(at, (String::from("general.architecture"), Enc::str("llama")));
            let mut b = Builder::default();
            for (k, v) in kvs {
                b = b.kv(&k, v);
            }
            let src = b.build();
            let out = check(&src);
            prop_assert!(out.starts_with(b"GGUF\x03\0\0\0"));
        }
    }
}
