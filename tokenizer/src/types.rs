//! The crate's plain types: token kinds, special ids, encode
//! options and the errors building or decoding can give.
//!
//! Kept apart from the tokenizer itself so `lib.rs` holds only the
//! tokenizer's own state and entry points.

use core::fmt;

/// How a vocabulary entry is used (GGUF `tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenType {
    /// Type 0 or a value this reader does not know; decoded like `Normal`
    /// in a byte-level vocabulary, as nothing in a SentencePiece one.
    Undefined,
    /// Ordinary text, produced by BPE.
    Normal,
    /// The unknown-token placeholder.
    Unknown,
    /// A control token (`<|im_start|>`): only produced from text when special
    /// tokens are parsed, and skipped by [`Tokenizer::decode_text`].
    Control,
    /// A token the model's authors added; always recognised in text.
    UserDefined,
    /// Reserved and unused.
    Unused,
    /// A raw byte token (`<0x0A>`), used by SentencePiece vocabularies.
    Byte,
}

impl TokenType {
    /// The type for a GGUF `token_type` value (llama.cpp's numbering).
    pub fn from_gguf(v: i32) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// True for tokens that are cut out of text before BPE: user-defined
    /// ones always, control and unknown ones when special parsing is on.
    pub(crate) fn is_special(self, parse_special: bool) -> bool {
        match self {
            TokenType::UserDefined => true,
            TokenType::Control | TokenType::Unknown => parse_special,
            _ => false,
        }
    }
}

/// The vocabulary's special token ids and its BOS policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Specials {
    /// Beginning of sequence (`tokenizer.ggml.bos_token_id`).
    pub bos: Option<u32>,
    /// End of sequence (`tokenizer.ggml.eos_token_id`).
    pub eos: Option<u32>,
    /// Padding (`tokenizer.ggml.padding_token_id`).
    pub pad: Option<u32>,
    /// Unknown token (`tokenizer.ggml.unknown_token_id`).
    pub unk: Option<u32>,
    /// Whether prompts start with BOS (`tokenizer.ggml.add_bos_token`).
    /// SmolLM2 says no: its BOS id is the `<|im_start|>` marker.
    pub add_bos: bool,
}

/// Options for [`Tokenizer::encode_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// Prepend the BOS token (if the vocabulary has one).
    pub add_bos: bool,
    /// Turn control tokens written in the text (`<|im_start|>`) into their
    /// ids. Off for untrusted text, so a user cannot forge turn markers.
    pub parse_special: bool,
}

/// Why a vocabulary could not be built, or ids could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The vocabulary has no tokens.
    EmptyVocab,
    /// More tokens than 32-bit ids can name.
    VocabTooLarge {
        /// Number of tokens given.
        tokens: usize,
    },
    /// More merge rules than 32-bit ranks and symbol ids can name.
    TooManyMerges {
        /// Number of rules given.
        merges: usize,
    },
    /// `token_types` is not one entry per token.
    TypesLengthMismatch {
        /// Number of tokens.
        tokens: usize,
        /// Number of token types.
        types: usize,
    },
    /// `scores` is not one entry per token (SentencePiece).
    ScoresLengthMismatch {
        /// Number of tokens.
        tokens: usize,
        /// Number of scores.
        scores: usize,
    },
    /// A special token id is not in the vocabulary.
    SpecialOutOfRange {
        /// Which special (`"bos"`, `"eos"`, ...).
        which: &'static str,
        /// The id given.
        id: u32,
    },
    /// [`Tokenizer::decode`] met an id outside the vocabulary.
    UnknownId {
        /// The id.
        id: u32,
    },
    /// A chat marker (`<|im_start|>`, `<|im_end|>`) is not a token.
    MissingChatMarker {
        /// The marker's text.
        marker: &'static str,
    },
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerError::EmptyVocab => f.write_str("the vocabulary has no tokens"),
            TokenizerError::VocabTooLarge { tokens } => {
                write!(f, "{tokens} tokens do not fit 32-bit ids")
            }
            TokenizerError::TooManyMerges { merges } => {
                write!(f, "{merges} merge rules do not fit 32-bit ranks")
            }
            TokenizerError::TypesLengthMismatch { tokens, types } => {
                write!(f, "{tokens} tokens but {types} token types")
            }
            TokenizerError::ScoresLengthMismatch { tokens, scores } => {
                write!(f, "{tokens} tokens but {scores} scores")
            }
            TokenizerError::SpecialOutOfRange { which, id } => {
                write!(f, "{which} token id {id} is outside the vocabulary")
            }
            TokenizerError::UnknownId { id } => {
                write!(f, "token id {id} is outside the vocabulary")
            }
            TokenizerError::MissingChatMarker { marker } => {
                write!(f, "chat marker {marker} is not a token of this vocabulary")
            }
        }
    }
}

impl core::error::Error for TokenizerError {}
