//! Building a [`Tokenizer`] and [`ChatTemplate`] from GGUF metadata.
//!
//! The keys read, as llama.cpp writes them:
//!
//! | key | use |
//! |---|---|
//! | `tokenizer.ggml.model` | `gpt2` (byte-level BPE) or `llama` (SentencePiece) |
//! | `tokenizer.ggml.pre` | BPE: the split rule, see [`PreTokenizer::from_gguf_name`] |
//! | `tokenizer.ggml.tokens` | token texts in id order |
//! | `tokenizer.ggml.token_type` | [`TokenType`](super::TokenType) per token; all normal when absent |
//! | `tokenizer.ggml.merges` | BPE: merge rules in rank order |
//! | `tokenizer.ggml.scores` | SentencePiece: one score per token (f32 or i32) |
//! | `tokenizer.ggml.add_space_prefix` | SentencePiece: put `▁` in front of text; true when absent |
//! | `tokenizer.ggml.{bos,eos,padding,unknown}_token_id` | [`Specials`]; absent means none (SentencePiece: llama.cpp's defaults 1, 2, -, 0) |
//! | `tokenizer.ggml.add_bos_token` | [`Specials::add_bos`]; when absent false for BPE, true for SentencePiece |
//!
//! llama.cpp accepts a SentencePiece vocabulary without scores (every score
//! 0, which merges nothing sensibly); lode refuses it, naming the key.
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
const SCORES: &str = "tokenizer.ggml.scores";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
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
                "tokenizer model {name:?} is not supported (lode reads byte-level BPE, \"gpt2\", and SentencePiece, \"llama\")"
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

fn optional_bool(file: &Gguf<'_>, key: &'static str, absent: bool) -> Result<bool, GgufVocabError> {
    match file.get(key) {
        None => Ok(absent),
        Some(v) => v.as_bool().ok_or(GgufVocabError::WrongType {
            key,
            expected: "a bool",
        }),
    }
}

/// Token types, all normal (1) when the key is absent.
fn token_types(file: &Gguf<'_>, count: usize) -> Result<Vec<i32>, GgufVocabError> {
    let Some(v) = file.get(TOKEN_TYPE) else {
        return Ok(alloc::vec![1; count]);
    };
    let wrong = GgufVocabError::WrongType {
        key: TOKEN_TYPE,
        expected: "an array of i32",
    };
    let array = v.as_array().ok_or(wrong.clone())?;
    array
        .iter()
        .map(|x| x.as_i32().ok_or(wrong.clone()))
        .collect()
}

/// SentencePiece scores: an array of f32 (or of i32, as llama.cpp allows).
fn scores(file: &Gguf<'_>) -> Result<Vec<f32>, GgufVocabError> {
    let wrong = GgufVocabError::WrongType {
        key: SCORES,
        expected: "an array of f32",
    };
    let array = required(file, SCORES)?.as_array().ok_or(wrong.clone())?;
    array
        .iter()
        .map(|x| {
            x.as_f32()
                .or_else(|| x.as_i32().map(|i| i as f32))
                .ok_or(wrong.clone())
        })
        .collect()
}

/// A special token id: the key's value, else `default` when it names a
/// token (llama.cpp's defaults for SentencePiece vocabularies).
fn id_or(
    file: &Gguf<'_>,
    key: &'static str,
    default: Option<u32>,
    n: usize,
) -> Result<Option<u32>, GgufVocabError> {
    Ok(optional_id(file, key)?.or(default.filter(|&d| (d as usize) < n)))
}

impl Tokenizer {
    /// The tokenizer a GGUF model file describes (keys in the module docs).
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        let model = string(file, MODEL)?;
        match model {
            "gpt2" => Self::bpe_from_gguf(file),
            "llama" => Self::spm_from_gguf(file),
            _ => Err(GgufVocabError::UnsupportedModel {
                name: model.to_string(),
            }),
        }
    }

    fn bpe_from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        let pre_name = string(file, PRE)?;
        let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
            GgufVocabError::UnsupportedPreTokenizer {
                name: pre_name.to_string(),
            }
        })?;
        let tokens = strings(file, TOKENS)?;
        let types = token_types(file, tokens.len())?;
        let merges = strings(file, MERGES)?;
        let specials = Specials {
            bos: optional_id(file, BOS)?,
            eos: optional_id(file, EOS)?,
            pad: optional_id(file, PAD)?,
            unk: optional_id(file, UNK)?,
            add_bos: optional_bool(file, ADD_BOS, false)?,
        };
        let tok = Tokenizer::from_vocab(&tokens, &types, &merges, specials, pre)?;
        Ok(tok.with_clean_spaces(PreTokenizer::cleans_spaces(pre_name)))
    }

    fn spm_from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        let tokens = strings(file, TOKENS)?;
        let types = token_types(file, tokens.len())?;
        let scores = scores(file)?;
        let n = tokens.len();
        let specials = Specials {
            bos: id_or(file, BOS, Some(1), n)?,
            eos: id_or(file, EOS, Some(2), n)?,
            pad: optional_id(file, PAD)?,
            unk: id_or(file, UNK, Some(0), n)?,
            add_bos: optional_bool(file, ADD_BOS, true)?,
        };
        let add_space_prefix = optional_bool(file, ADD_SPACE_PREFIX, true)?;
        Ok(Tokenizer::from_spm_vocab(
            &tokens,
            &types,
            &scores,
            specials,
            add_space_prefix,
        )?)
    }
}

/// True when the vocabulary has both of Gemma's turn markers.
fn has_gemma_markers(file: &Gguf<'_>) -> bool {
    let Some(tokens) = file
        .get(TOKENS)
        .and_then(|v| v.as_array())
        .and_then(|a| a.strings())
    else {
        return false;
    };
    let (mut start, mut end) = (false, false);
    for t in tokens {
        start |= t == super::START_OF_TURN;
        end |= t == super::END_OF_TURN;
    }
    start && end
}

impl ChatTemplate {
    /// The chat template of a GGUF model file (`tokenizer.chat_template`).
    /// A file without one whose vocabulary has Gemma's turn markers
    /// (`<start_of_turn>`, `<end_of_turn>`; Gemma 3 270M's GGUF is such a
    /// file) gets Gemma's layout.
    pub fn from_gguf(file: &Gguf<'_>) -> Result<Self, GgufVocabError> {
        if file.get(CHAT_TEMPLATE).is_none() && has_gemma_markers(file) {
            return Ok(ChatTemplate::gemma());
        }
        let src = string(file, CHAT_TEMPLATE)?;
        ChatTemplate::from_jinja(src).map_err(GgufVocabError::ChatTemplate)
    }
}

#[cfg(test)]
#[path = "gguf_tests.rs"]
mod tests;
