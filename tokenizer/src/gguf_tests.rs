//! Tests of building tokenizers from GGUF metadata.

use super::*;
use alloc::string::ToString;
use alloc::vec;

/// One metadata value for the test writer.
enum V<'a> {
    Str(&'a str),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    U32(u32),
    Bool(bool),
    F32s(Vec<f32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file with no tensors and the given metadata.
fn gguf(kvs: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        put_str(&mut out, k);
        match v {
            V::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut out, s);
            }
            V::Strs(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
            V::I32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for x in items {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            V::U32(x) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            V::Bool(b) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(u8::from(*b));
            }
            V::F32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for x in items {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out
}

fn byte_tokens() -> Vec<String> {
    let mut t = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
    t.extend((0..=255u8).map(|b| super::super::bytes::byte_to_char(b).to_string()));
    t.push("Ġt".to_string());
    t
}

fn good<'a>(model: &'a str, pre: &'a str) -> Vec<(&'static str, V<'a>)> {
    let tokens = byte_tokens();
    let mut types = vec![3, 3];
    types.extend(core::iter::repeat_n(1, tokens.len() - 2));
    vec![
        (MODEL, V::Str(model)),
        (PRE, V::Str(pre)),
        (TOKENS, V::Strs(tokens)),
        (TOKEN_TYPE, V::I32s(types)),
        (MERGES, V::Strs(vec!["Ġ t".to_string()])),
        (BOS, V::U32(0)),
        (EOS, V::U32(1)),
        (ADD_BOS, V::Bool(false)),
        (
            CHAT_TEMPLATE,
            V::Str("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"),
        ),
    ]
}

fn load(kvs: &[(&str, V<'_>)]) -> Result<Tokenizer, GgufVocabError> {
    let bytes = gguf(kvs);
    let file = Gguf::parse(&bytes).expect("test file parses");
    Tokenizer::from_gguf(&file)
}

#[test]
fn loads_a_minimal_vocabulary() {
    let kvs = good("gpt2", "smollm");
    let t = load(&kvs).unwrap();
    assert_eq!(t.vocab_size(), 259);
    assert_eq!(t.merge_count(), 1);
    assert_eq!(t.pre_tokenizer(), Some(PreTokenizer::DigitsThenGpt2));
    assert_eq!(t.specials().bos, Some(0));
    assert_eq!(t.specials().eos, Some(1));
    assert_eq!(t.specials().pad, None);
    assert!(!t.specials().add_bos);
    assert_eq!(t.encode(" t", false), vec![258]);
    assert_eq!(t.token_type(0), Some(super::super::TokenType::Control));

    let bytes = gguf(&kvs);
    let file = Gguf::parse(&bytes).unwrap();
    let chat = ChatTemplate::from_gguf(&file).unwrap();
    assert_eq!(chat.default_system(), None);
}

#[test]
fn types_default_to_normal() {
    let kvs: Vec<_> = good("gpt2", "gpt2")
        .into_iter()
        .filter(|(k, _)| *k != TOKEN_TYPE)
        .collect();
    let t = load(&kvs).unwrap();
    assert_eq!(t.token_type(0), Some(super::super::TokenType::Normal));
    assert_eq!(t.pre_tokenizer(), Some(PreTokenizer::Gpt2));
}

#[test]
fn typed_errors() {
    assert_eq!(
        load(&good("t5", "smollm")).unwrap_err(),
        GgufVocabError::UnsupportedModel {
            name: "t5".to_string()
        }
    );
    assert_eq!(
        load(&good("gpt2", "dbrx")).unwrap_err(),
        GgufVocabError::UnsupportedPreTokenizer {
            name: "dbrx".to_string()
        }
    );
    let without = |key: &str| -> Vec<(&'static str, V<'static>)> {
        good("gpt2", "smollm")
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect()
    };
    assert_eq!(
        load(&without(MERGES)).unwrap_err(),
        GgufVocabError::MissingKey { key: MERGES }
    );
    assert_eq!(
        load(&without(TOKENS)).unwrap_err(),
        GgufVocabError::MissingKey { key: TOKENS }
    );
    assert_eq!(
        load(&without(MODEL)).unwrap_err(),
        GgufVocabError::MissingKey { key: MODEL }
    );

    let mut kvs = without(PRE);
    kvs.push((PRE, V::U32(7)));
    assert_eq!(
        load(&kvs).unwrap_err(),
        GgufVocabError::WrongType {
            key: PRE,
            expected: "a string"
        }
    );
    let mut kvs = without(TOKEN_TYPE);
    kvs.push((TOKEN_TYPE, V::Strs(vec!["1".to_string()])));
    assert!(matches!(
        load(&kvs).unwrap_err(),
        GgufVocabError::WrongType {
            key: TOKEN_TYPE,
            ..
        }
    ));
    let mut kvs = without(TOKEN_TYPE);
    kvs.push((TOKEN_TYPE, V::I32s(vec![1, 1])));
    assert!(matches!(
        load(&kvs).unwrap_err(),
        GgufVocabError::Vocab(TokenizerError::TypesLengthMismatch { .. })
    ));
    let mut kvs = without(EOS);
    kvs.push((EOS, V::U32(100_000)));
    assert_eq!(
        load(&kvs).unwrap_err(),
        GgufVocabError::Vocab(TokenizerError::SpecialOutOfRange {
            which: "eos",
            id: 100_000
        })
    );
    let mut kvs = without(ADD_BOS);
    kvs.push((ADD_BOS, V::Str("yes")));
    assert!(matches!(
        load(&kvs).unwrap_err(),
        GgufVocabError::WrongType { key: ADD_BOS, .. }
    ));

    let mut kvs = without(CHAT_TEMPLATE);
    kvs.push((CHAT_TEMPLATE, V::Str("{{ messages }}")));
    let bytes = gguf(&kvs);
    let file = Gguf::parse(&bytes).unwrap();
    assert_eq!(
        ChatTemplate::from_gguf(&file),
        Err(GgufVocabError::ChatTemplate(ChatTemplateError::NotChatMl))
    );
    let bytes = gguf(&without(CHAT_TEMPLATE));
    let file = Gguf::parse(&bytes).unwrap();
    assert_eq!(
        ChatTemplate::from_gguf(&file),
        Err(GgufVocabError::MissingKey { key: CHAT_TEMPLATE })
    );
    // Every error names what is wrong.
    let msg = GgufVocabError::MissingKey { key: MERGES }.to_string();
    assert!(msg.contains(MERGES));
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the byte tokens,
/// then `▁a`, with only the keys `extra` adds beyond tokens and scores.
fn spm(extra: Vec<(&'static str, V<'static>)>) -> Result<Tokenizer, GgufVocabError> {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    tokens.extend((0..=255u32).map(|b| alloc::format!("<0x{b:02X}>")));
    tokens.push("\u{2581}a".to_string());
    let mut types = vec![2, 3, 3];
    types.extend(core::iter::repeat_n(6, 256));
    types.push(1);
    let scores = vec![0.0; tokens.len()];
    let mut kvs = vec![
        (MODEL, V::Str("llama")),
        (TOKENS, V::Strs(tokens)),
        (TOKEN_TYPE, V::I32s(types)),
        (SCORES, V::F32s(scores)),
    ];
    kvs.extend(extra);
    load(&kvs)
}

#[test]
fn sentencepiece_defaults_are_llama_cpp_s() {
    let t = spm(vec![]).unwrap();
    assert_eq!(t.model(), super::super::TokenizerModel::SentencePiece);
    let s = t.specials();
    assert_eq!(
        (s.bos, s.eos, s.unk, s.pad),
        (Some(1), Some(2), Some(0), None)
    );
    assert!(s.add_bos);
    // add_space_prefix defaults to true: "a" is "▁a".
    assert_eq!(t.encode("a", false), vec![259]);
    let t = spm(vec![(ADD_SPACE_PREFIX, V::Bool(false)), (BOS, V::U32(2))]).unwrap();
    assert_eq!(t.encode("a", false), vec![3 + u32::from(b'a')]);
    assert_eq!(t.specials().bos, Some(2));
}

#[test]
fn sentencepiece_without_scores_is_refused_by_name() {
    let kvs: Vec<(&str, V<'_>)> = vec![
        (MODEL, V::Str("llama")),
        (TOKENS, V::Strs(vec!["a".to_string()])),
    ];
    let err = load(&kvs).unwrap_err();
    assert_eq!(err, GgufVocabError::MissingKey { key: SCORES });
    assert!(err.to_string().contains("tokenizer.ggml.scores"));
}
