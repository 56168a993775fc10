//! Byte-level BPE tokenizer built from GGUF metadata.
//!
//! lode must feed a model exactly the token ids it was trained on, so this
//! tokenizer reproduces llama.cpp's (the reference lode is tested against)
//! for GPT-2-style byte-level BPE vocabularies such as SmolLM2's:
//!
//! 1. optionally cut special tokens written as text (`<|im_start|>`) out of
//!    the input (module `special`);
//! 2. cut the rest into words ([`PreTokenizer`]; SmolLM2 isolates digits);
//! 3. within each word, start from one symbol per byte and apply the merge
//!    rules by rank (module `bpe`);
//! 4. emit each symbol's token id.
//!
//! Decoding maps each token's text back through GPT-2's byte alphabet
//! ([`bytes`]), so `decode(encode(s)) == s` whenever every byte of `s` has a
//! token and every merge rule joins into a token (true of real vocabularies;
//! where a joined string is not a token, encoding falls back, like
//! llama.cpp, to one-byte tokens of its encoded text and drops bytes that
//! have none). Not every vocabulary covers all 256: SmolLM2 lacks 21 (six rare
//! control characters and bytes that never or almost never occur in UTF-8,
//! such as 0xC0 and 0xF5..=0xFF). Like llama.cpp, encoding drops such bytes;
//! [`Tokenizer::is_byte_encodable`] tells which they are.
//!
//! This crate needs `alloc` (the vocabulary is built at load time) but not
//! `std`. Encoding allocates only while its reusable buffers grow.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod bpe;
pub mod bytes;
mod chat;
mod class;
mod gguf;
mod pretok;
mod special;
mod strtable;
mod unicode_tables;

use alloc::vec::Vec;
use core::fmt;

pub use chat::{ChatMessage, ChatTemplate, ChatTemplateError, IM_END, IM_START};
pub use gguf::GgufVocabError;
pub use pretok::PreTokenizer;

use bpe::{MergeContext, MergeScratch, Merges};
use chat::{Marker, Piece};
use special::Fragment;
use strtable::StrTable;

/// How a vocabulary entry is used (GGUF `tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenType {
    /// Type 0 or a value this reader does not know; decoded like `Normal`.
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
    fn is_special(self, parse_special: bool) -> bool {
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

/// A byte-level BPE tokenizer. Immutable once built; share it freely.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token texts as stored in the vocabulary (byte alphabet).
    texts: StrTable,
    /// The bytes each token decodes to.
    pieces: StrTable,
    types: Vec<TokenType>,
    merges: Merges,
    /// Symbol of each byte's alphabet character ([`bpe::NO_SYMBOL`] when
    /// neither a token nor named by a rule).
    byte_symbol: [u32; 256],
    /// Control, user-defined and unknown tokens, longest text first (ties by
    /// id), the order special tokens are cut out of text.
    special_order: Vec<u32>,
    specials: Specials,
    pre: PreTokenizer,
}

impl Tokenizer {
    /// Builds a tokenizer from a vocabulary's parts.
    ///
    /// `tokens` are the token texts in id order (GPT-2 byte alphabet),
    /// `token_types` the GGUF type of each (see [`TokenType::from_gguf`]),
    /// `merges` the rules as `"left right"` lines in rank order.
    pub fn from_vocab<T: AsRef<[u8]>, M: AsRef<[u8]>>(
        tokens: &[T],
        token_types: &[i32],
        merges: &[M],
        specials: Specials,
        pre: PreTokenizer,
    ) -> Result<Self, TokenizerError> {
        if tokens.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        let n = u32::try_from(tokens.len()).map_err(|_| TokenizerError::VocabTooLarge {
            tokens: tokens.len(),
        })?;
        if token_types.len() != tokens.len() {
            return Err(TokenizerError::TypesLengthMismatch {
                tokens: tokens.len(),
                types: token_types.len(),
            });
        }
        for (which, id) in [
            ("bos", specials.bos),
            ("eos", specials.eos),
            ("pad", specials.pad),
            ("unk", specials.unk),
        ] {
            if let Some(id) = id.filter(|&id| id >= n) {
                return Err(TokenizerError::SpecialOutOfRange { which, id });
            }
        }

        let texts = StrTable::new(tokens);
        let types: Vec<TokenType> = token_types
            .iter()
            .map(|&t| TokenType::from_gguf(t))
            .collect();

        let merges = Merges::new(&texts, merges)?;

        let mut byte_symbol = [bpe::NO_SYMBOL; 256];
        let mut buf = Vec::with_capacity(2);
        for (b, slot) in (0..=255u8).zip(byte_symbol.iter_mut()) {
            buf.clear();
            bytes::push_encoded(b, &mut buf);
            *slot = merges.symbol(&texts, &buf);
        }
        let pieces = decoded_pieces(&texts, &types);

        // Only non-empty UTF-8 texts can be cut out of a `&str` at character
        // boundaries; other "special" texts could never match anyway.
        let mut special_order: Vec<u32> = (0..n)
            .filter(|&id| {
                types.get(id as usize).is_some_and(|t| t.is_special(true))
                    && texts
                        .get(id)
                        .is_some_and(|t| !t.is_empty() && core::str::from_utf8(t).is_ok())
            })
            .collect();
        special_order.sort_by_key(|&id| core::cmp::Reverse(texts.get(id).map_or(0, <[u8]>::len)));

        Ok(Tokenizer {
            texts,
            pieces,
            types,
            merges,
            byte_symbol,
            special_order,
            specials,
            pre,
        })
    }

    /// Number of tokens (the model's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// Number of distinct merge rules.
    pub fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// The special token ids and BOS policy.
    pub fn specials(&self) -> &Specials {
        &self.specials
    }

    /// The pre-tokenizer in use.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// True when byte `b` has a token (its alphabet character is in the
    /// vocabulary). Text containing a byte without one loses it in
    /// [`Tokenizer::encode`], as it does in llama.cpp.
    pub fn is_byte_encodable(&self, b: u8) -> bool {
        let sym = self.byte_symbol[usize::from(b)];
        usize::try_from(sym).is_ok_and(|s| s < self.texts.len())
    }

    /// True when every byte of `text` has a token, so
    /// `decode(encode(text)) == text` (when every merge rule joins into a
    /// token, as in every real vocabulary: see the crate docs).
    pub fn can_encode(&self, text: &str) -> bool {
        text.bytes().all(|b| self.is_byte_encodable(b))
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.texts.find(text.as_bytes())
    }

    /// Token `id`'s text as stored (byte alphabet, e.g. `Ġthe`).
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        self.texts.get(id)
    }

    /// The bytes token `id` stands for (` the`); control tokens give their
    /// text. A piece may be part of a UTF-8 character.
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id)
    }

    /// Token `id`'s type.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(usize::try_from(id).ok()?).copied()
    }

    /// True when generation should stop at `id`: the EOS token, or a control
    /// token that ends a turn or a document (`<|im_end|>`, `<|endoftext|>`,
    /// and the equivalents of other families).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        if Some(id) == self.specials.eos {
            return true;
        }
        self.token_type(id) == Some(TokenType::Control)
            && self.texts.get(id).is_some_and(|t| {
                matches!(
                    t,
                    b"<|im_end|>"
                        | b"<|endoftext|>"
                        | b"<|eot_id|>"
                        | b"<|end|>"
                        | b"</s>"
                        | b"<end_of_turn>"
                )
            })
    }

    /// Bytes of heap memory the tokenizer holds.
    pub fn heap_bytes(&self) -> usize {
        self.texts.heap_bytes()
            + self.pieces.heap_bytes()
            + self.types.capacity() * core::mem::size_of::<TokenType>()
            + self.merges.heap_bytes()
            + self.special_order.capacity() * core::mem::size_of::<u32>()
    }

    /// Token ids of `text`, with BOS first when `add_bos` (and the
    /// vocabulary has one). Special tokens written in `text` are spelled out
    /// as ordinary text; see [`Tokenizer::encode_special`].
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(
            text,
            EncodeOptions {
                add_bos,
                parse_special: false,
            },
            &mut out,
        );
        out
    }

    /// Like [`Tokenizer::encode`], but control tokens written in `text`
    /// (`<|im_start|>`) become their ids. For trusted text only.
    pub fn encode_special(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_into(
            text,
            EncodeOptions {
                add_bos,
                parse_special: true,
            },
            &mut out,
        );
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, opts: EncodeOptions, out: &mut Vec<u32>) {
        let mut session = Session::new(self);
        if opts.add_bos {
            out.extend(self.specials.bos);
        }
        session.encode(text, opts.parse_special, out);
    }

    /// Token ids of a conversation in ChatML form (see [`ChatTemplate`]).
    /// Turn markers become their ids directly; roles and contents are
    /// encoded as ordinary text, so a message cannot forge a marker.
    pub fn encode_chat(
        &self,
        template: &ChatTemplate,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let start = self
            .token_id(IM_START)
            .ok_or(TokenizerError::MissingChatMarker { marker: IM_START })?;
        let end = self
            .token_id(IM_END)
            .ok_or(TokenizerError::MissingChatMarker { marker: IM_END })?;
        let mut out = Vec::new();
        let mut session = Session::new(self);
        // Consecutive text pieces form one fragment, as they would between
        // two markers in rendered text.
        let mut pending = alloc::string::String::new();
        template.walk(messages, add_generation_prompt, |p| match p {
            Piece::Text(t) => pending.push_str(t),
            Piece::Marker(m) => {
                session.encode(&pending, false, &mut out);
                pending.clear();
                out.push(match m {
                    Marker::Start => start,
                    Marker::End => end,
                });
            }
        });
        session.encode(&pending, false, &mut out);
        Ok(out)
    }

    /// The bytes `ids` decode to, control tokens included as their text.
    /// Bytes, not a string: a token may end inside a UTF-8 character.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        self.decode_into(ids, true, &mut out)?;
        Ok(out)
    }

    /// Like [`Tokenizer::decode`], but control and unknown tokens are left
    /// out: what a chat user should see.
    pub fn decode_text(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        self.decode_into(ids, false, &mut out)?;
        Ok(out)
    }

    /// Appends the bytes of `ids` to `out`; control and unknown tokens only
    /// when `render_special`. On an unknown id, `out` holds the bytes of the
    /// ids before it.
    pub fn decode_into(
        &self,
        ids: &[u32],
        render_special: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), TokenizerError> {
        for &id in ids {
            let piece = self
                .pieces
                .get(id)
                .ok_or(TokenizerError::UnknownId { id })?;
            let hidden = matches!(
                self.token_type(id),
                Some(TokenType::Control | TokenType::Unknown)
            );
            if render_special || !hidden {
                out.extend_from_slice(piece);
            }
        }
        Ok(())
    }
}

/// The bytes each token decodes to: control, unknown and user-defined
/// tokens are their text verbatim; other tokens are mapped back through the
/// byte alphabet. A character outside the alphabet (not produced by a
/// byte-level vocabulary) is kept as its UTF-8 bytes.
fn decoded_pieces(texts: &StrTable, types: &[TokenType]) -> StrTable {
    let mut pieces: Vec<Vec<u8>> = Vec::with_capacity(texts.len());
    for (id, ty) in (0u32..).zip(types) {
        let text = texts.get(id).unwrap_or(&[]);
        let verbatim = matches!(
            ty,
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined
        );
        let piece = match core::str::from_utf8(text) {
            Ok(s) if !verbatim => {
                let mut p = Vec::with_capacity(s.len());
                let mut buf = [0u8; 4];
                for c in s.chars() {
                    match bytes::char_to_byte(c) {
                        Some(b) => p.push(b),
                        None => p.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
                    }
                }
                p
            }
            _ => text.to_vec(),
        };
        pieces.push(piece);
    }
    StrTable::new(&pieces)
}

/// Reusable state for one encoding call.
struct Session<'t> {
    tok: &'t Tokenizer,
    chars: Vec<(usize, char)>,
    scratch: MergeScratch,
}

impl<'t> Session<'t> {
    fn new(tok: &'t Tokenizer) -> Self {
        Session {
            tok,
            chars: Vec::new(),
            scratch: MergeScratch::default(),
        }
    }

    fn encode(&mut self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        let tok = self.tok;
        let specials = tok
            .special_order
            .iter()
            .filter(|&&id| {
                tok.token_type(id)
                    .is_some_and(|t| t.is_special(parse_special))
            })
            .filter_map(|&id| tok.texts.get(id).map(|t| (id, t)));
        for frag in special::partition(text.as_bytes(), specials) {
            match frag {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(range) => {
                    if let Some(piece) = text.get(range) {
                        self.encode_plain(piece, out);
                    }
                }
            }
        }
    }

    fn encode_plain(&mut self, text: &str, out: &mut Vec<u32>) {
        let ctx = MergeContext {
            merges: &self.tok.merges,
            byte_symbol: &self.tok.byte_symbol,
            texts: &self.tok.texts,
        };
        let scratch = &mut self.scratch;
        self.tok.pre.split(text, &mut self.chars, |word| {
            ctx.merge_word(word.as_bytes(), scratch, out);
        });
    }
}

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;
