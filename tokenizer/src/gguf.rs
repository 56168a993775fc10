//! Building a [`Tokenizer`] and [`ChatTemplate`] from GGUF metadata.
//!
//! The keys read, as llama.cpp writes them:
//!
//! | key | use |
//! |---|---|
//! | `tokenizer.ggml.model` | must be `gpt2` (byte-level BPE) |
//! | `tokenizer.ggml.pre` | the split rule, see [`PreTokenizer::from_gguf_name`] |
//! | `tokenizer.ggml.tokens` | token texts in id order |
//! | `tokenizer.ggml.token_type` | [`TokenType`](super::TokenType) per token; all normal when absent |
//! | `tokenizer.ggml.merges` | merge rules in rank order |
//! | `tokenizer.ggml.{bos,eos,padding,unknown}_token_id` | [`Specials`]; absent means none |
//! | `tokenizer.ggml.add_bos_token` | [`Specials::add_bos`]; false when absent |
//! | `tokenizer.chat_template` | [`ChatTemplate::from_gguf`] |

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use lode_formats::gguf::{Gguf, Value};

use super::{ChatTemplate, ChatTemplateError, PreTokenizer, Specials, Tokenizer, TokenizerError};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const BOS: &str = "tokenizer.ggml.bos_token_id";
const EOS: &str = "tokenizer.ggml.eos_token_id";
const PAD: &str = "tokenizer.ggml.padding_token_id";
const UNK: &str = "tokenizer.ggml.unknown_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// Why a GGUF file's metadata does not give a tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GgufVocabError {
    /// A required key is absent.
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key holds a value of the wrong type (or an array of the wrong
    /// element type, or an integer out of range).
    WrongType {
        /// The key.
        key: &'static str,
        /// What lode expected there.
        expected: &'static str,
    },
    /// `tokenizer.ggml.model` names a tokenizer other than byte-level BPE.
    UnsupportedModel {
        /// The name found.
        name: String,
    },
    /// `tokenizer.ggml.pre` names a split rule lode does not implement.
    UnsupportedPreTokenizer {
        /// The name found.
        name: String,
    },
    /// The vocabulary itself is unusable.
    Vocab(TokenizerError),
    /// The chat template is not one lode can reproduce.
    ChatTemplate(ChatTemplateError),
}

impl fmt::Display for GgufVocabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufVocabError::MissingKey { key } => write!(f, "GGUF metadata has no {key}"),
            GgufVocabError::WrongType { key, expected } => {
                write!(f, "GGUF metadata {key} is not {expected}")
            }
            GgufVocabError::UnsupportedModel { name } => write!(
                f,
                "tokenizer model {name:?} is not supported (lode reads byte-level BPE, \"gpt2\")"
            ),
            GgufVocabError::UnsupportedPreTokenizer { name } => {
                write!(f, "pre-tokenizer {name:?} is not supported")
            }
            GgufVocabError::Vocab(e) => write!(f, "bad vocabulary: {e}"),
            GgufVocabError::ChatTemplate(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for GgufVocabError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            GgufVocabError::Vocab(e) => Some(e),
            GgufVocabError::ChatTemplate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TokenizerError> for GgufVocabError {
    fn from(e: TokenizerError) -> Self {
        GgufVocabError::Vocab(e)
    }
}

fn required<'a>(file: &Gguf<'a>, key: &'static str) -> Result<Value<'a>, GgufVocabError> {
    file.get(key).ok_or(GgufVocabError::MissingKey { key })
}

fn string<'a>(file: &Gguf<'a>, key: &'static str) -> Result<&'a str, GgufVocabError> {
    required(file, key)?
        .as_str()
        .ok_or(GgufVocabError::WrongType {
            key,
            expected: "a string",
        })
}

fn strings<'a>(file: &Gguf<'a>, key: &'static str) -> Result<Vec<&'a str>, GgufVocabError> {
    let wrong = GgufVocabError::WrongType {
        key,
        expected: "an array of strings",
    };
    let array = required(file, key)?.as_array().ok_or(wrong.clone())?;
    let items = array.strings().ok_or(wrong.clone())?;
    let out: Vec<&str> = items.collect();
    // The reader stops early only on bytes it could not decode.
    if u64::try_from(out.len()).ok() != Some(array.len()) {
        return Err(wrong);
    }
    Ok(out)
}

fn optional_id(file: &Gguf<'_>, key: &'static str) -> Result<Option<u32>, GgufVocabError> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => v.as_u32().map(Some).ok_or(GgufVocabError::WrongType {
            key,
            expected: "a token id",
        }),
    }
}

impl Tokenizer {
    /// The tokenizer a GGUF model file describes (keys in the module docs).
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        let model = string(file, MODEL)?;
        if model != "gpt2" {
            return Err(GgufVocabError::UnsupportedModel {
                name: model.to_string(),
            });
        }
        let pre_name = string(file, PRE)?;
        let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
            GgufVocabError::UnsupportedPreTokenizer {
                name: pre_name.to_string(),
            }
        })?;

        let tokens = strings(file, TOKENS)?;
        let types: Vec<i32> = match file.get(TOKEN_TYPE) {
            None => alloc::vec![1; tokens.len()],
            Some(v) => {
                let wrong = GgufVocabError::WrongType {
                    key: TOKEN_TYPE,
                    expected: "an array of i32",
                };
                let array = v.as_array().ok_or(wrong.clone())?;
                array
                    .iter()
                    .map(|x| x.as_i32().ok_or(wrong.clone()))
                    .collect::<Result<_, _>>()?
            }
        };
        let merges = strings(file, MERGES)?;

        let add_bos = match file.get(ADD_BOS) {
            None => false,
            Some(v) => v.as_bool().ok_or(GgufVocabError::WrongType {
                key: ADD_BOS,
                expected: "a bool",
            })?,
        };
        let specials = Specials {
            bos: optional_id(file, BOS)?,
            eos: optional_id(file, EOS)?,
            pad: optional_id(file, PAD)?,
            unk: optional_id(file, UNK)?,
            add_bos,
        };
        Ok(Tokenizer::from_vocab(
            &tokens, &types, &merges, specials, pre,
        )?)
    }
}

impl ChatTemplate {
    /// The chat template of a GGUF model file (`tokenizer.chat_template`).
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        let src = string(file, CHAT_TEMPLATE)?;
        ChatTemplate::from_jinja(src).map_err(GgufVocabError::ChatTemplate)
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(t.pre_tokenizer(), PreTokenizer::DigitsThenGpt2);
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
        assert_eq!(t.pre_tokenizer(), PreTokenizer::Gpt2);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            load(&good("llama", "smollm")).unwrap_err(),
            GgufVocabError::UnsupportedModel {
                name: "llama".to_string()
            }
        );
        assert_eq!(
            load(&good("gpt2", "qwen2")).unwrap_err(),
            GgufVocabError::UnsupportedPreTokenizer {
                name: "qwen2".to_string()
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
}
