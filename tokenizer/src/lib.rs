//! Tokenizers built from GGUF metadata: byte-level BPE and SentencePiece.
//!
//! lode must feed a model exactly the token ids it was trained on, so this
//! crate reproduces llama.cpp's tokenizer (the reference lode is tested
//! against) for the two families of vocabulary most models use:
//!
//! - **byte-level BPE** (GGUF `tokenizer.ggml.model = "gpt2"`: GPT-2,
//!   SmolLM2, Llama 3, Qwen2, ...): cut special tokens written as text
//!   (`<|im_start|>`) out of the input (module `special`), cut the rest into
//!   words by the vocabulary's rule ([`PreTokenizer`]), then within each word
//!   start from one symbol per byte and apply the merge rules by rank
//!   (module `bpe`). Token texts are stored in GPT-2's byte alphabet
//!   ([`bytes`]).
//! - **SentencePiece** (`"llama"`: Gemma 3, Llama 2, Phi-3, ...): the same
//!   special-token cut, then spaces become `▁` and adjacent pieces join by the
//!   scores of the tokens they form, with unknown characters spelled as
//!   `<0xXX>` byte tokens (module `spm`).
//!
//! Decoding concatenates each token's bytes ([`Tokenizer::decode`]), so
//! `decode(encode(s)) == s` whenever every byte of `s` has a token
//! ([`Tokenizer::can_encode`]); [`Tokenizer::detokenize`] also applies
//! llama.cpp's rule for the space a SentencePiece vocabulary put in front of
//! the text. Not every byte-level vocabulary covers all 256 bytes: SmolLM2
//! lacks 21 (six rare control characters and bytes that never or almost
//! never occur in UTF-8). Like llama.cpp, encoding drops such bytes.
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
mod decode;
mod gguf;
mod model;
mod pretok;
mod pretok_llama3;
mod session;
mod special;
mod spm;
mod strtable;
mod types;
mod unicode_tables;

use alloc::vec::Vec;

pub use chat::{
    ChatMessage, ChatTemplate, ChatTemplateError, END_OF_TURN, IM_END, IM_START, START_OF_TURN,
};
pub use decode::DetokenizeOptions;
pub use gguf::GgufVocabError;
pub use model::TokenizerModel;
pub use pretok::PreTokenizer;
pub use types::{EncodeOptions, Specials, TokenType, TokenizerError};

use chat::{Marker, Piece};
use model::Model;
use session::Session;
use strtable::StrTable;

/// A tokenizer. Immutable once built; share it freely.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token texts as stored in the vocabulary (byte alphabet or `▁`).
    texts: StrTable,
    /// The bytes each token decodes to.
    pieces: StrTable,
    types: Vec<TokenType>,
    model: Model,
    /// Control, user-defined and unknown tokens, longest text first (ties by
    /// id), the order special tokens are cut out of text.
    special_order: Vec<u32>,
    specials: Specials,
    /// [`Tokenizer::detokenize`] tidies spaces (see [`Tokenizer::with_clean_spaces`]).
    clean_spaces: bool,
}

/// Checks what both vocabulary families share and returns the token count.
fn check_vocab<T>(
    tokens: &[T],
    token_types: &[i32],
    specials: &Specials,
) -> Result<u32, TokenizerError> {
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
    Ok(n)
}

impl Tokenizer {
    /// Builds a byte-level BPE tokenizer from a vocabulary's parts.
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
        check_vocab(tokens, token_types, &specials)?;
        let texts = StrTable::new(tokens);
        let model = Model::bpe(&texts, merges, pre)?;
        Ok(Self::assemble(texts, token_types, model, specials))
    }

    /// Builds a SentencePiece tokenizer (GGUF model `llama`) from a
    /// vocabulary's parts: token texts with `▁` for spaces, their GGUF
    /// types, one score per token (higher joins first), and whether text
    /// gets a `▁` in front (`tokenizer.ggml.add_space_prefix`).
    pub fn from_spm_vocab<T: AsRef<[u8]>>(
        tokens: &[T],
        token_types: &[i32],
        scores: &[f32],
        specials: Specials,
        add_space_prefix: bool,
    ) -> Result<Self, TokenizerError> {
        check_vocab(tokens, token_types, &specials)?;
        if scores.len() != tokens.len() {
            return Err(TokenizerError::ScoresLengthMismatch {
                tokens: tokens.len(),
                scores: scores.len(),
            });
        }
        let texts = StrTable::new(tokens);
        let model = Model::Spm(spm::SpmModel::new(&texts, scores, add_space_prefix));
        Ok(Self::assemble(texts, token_types, model, specials))
    }

    fn assemble(texts: StrTable, token_types: &[i32], model: Model, specials: Specials) -> Self {
        let types: Vec<TokenType> = token_types
            .iter()
            .map(|&t| TokenType::from_gguf(t))
            .collect();
        let pieces = decode::pieces(&texts, &types, &model);
        let n = u32::try_from(texts.len()).unwrap_or(u32::MAX);
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
        Tokenizer {
            texts,
            pieces,
            types,
            model,
            special_order,
            specials,
            clean_spaces: false,
        }
    }

    /// The same tokenizer with [`Tokenizer::detokenize`] tidying spaces
    /// (`" ,"` to `","`, ...) as llama.cpp does for byte-level vocabularies
    /// whose pre-tokenizer name asks for it
    /// ([`PreTokenizer::cleans_spaces`]); off unless set.
    /// [`Tokenizer::from_gguf`] sets it from the file.
    pub fn with_clean_spaces(mut self, on: bool) -> Self {
        self.clean_spaces = on;
        self
    }

    /// Number of tokens (the model's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// Number of distinct merge rules (0 for SentencePiece, which has none).
    pub fn merge_count(&self) -> usize {
        self.model.merge_count()
    }

    /// The special token ids and BOS policy.
    pub fn specials(&self) -> &Specials {
        &self.specials
    }

    /// Which family of tokenizer this is.
    pub fn model(&self) -> TokenizerModel {
        self.model.kind()
    }

    /// The pre-tokenizer in use; `None` for SentencePiece, which has none.
    pub fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        self.model.pre_tokenizer()
    }

    /// True when byte `b` has a token (its alphabet character, or its
    /// `<0xXX>` byte token). Text containing a byte without one loses it in
    /// [`Tokenizer::encode`], as it does in llama.cpp.
    pub fn is_byte_encodable(&self, b: u8) -> bool {
        self.model.is_byte_encodable(b, self.texts.len())
    }

    /// True when `decode(encode(text)) == text` is sure: every byte of
    /// `text` has a token, and (SentencePiece) the text has no `▁` of its own
    /// (which decodes as a space) and the vocabulary adds no space in front.
    pub fn can_encode(&self, text: &str) -> bool {
        text.bytes().all(|b| self.is_byte_encodable(b)) && self.model.round_trips(text)
    }

    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.texts.find(text.as_bytes())
    }

    /// Token `id`'s text as stored (e.g. `Ġthe` or `▁the`).
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
            + self.model.heap_bytes()
            + self.special_order.capacity() * core::mem::size_of::<u32>()
    }

    /// Token ids of `text`, with BOS first when `add_bos` (and the
    /// vocabulary has one). Special tokens written in `text` are spelled out
    /// as ordinary text; see [`Tokenizer::encode_special`].
    pub fn encode(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let opts = EncodeOptions {
            add_bos,
            parse_special: false,
        };
        self.encode_into(text, opts, &mut out);
        out
    }

    /// Like [`Tokenizer::encode`], but control tokens written in `text`
    /// (`<|im_start|>`) become their ids. For trusted text only.
    pub fn encode_special(&self, text: &str, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let opts = EncodeOptions {
            add_bos,
            parse_special: true,
        };
        self.encode_into(text, opts, &mut out);
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

    /// Token ids of a conversation in the template's layout (see
    /// [`ChatTemplate`]), with BOS first when the vocabulary adds one (Gemma:
    /// yes, SmolLM2: no) and the template starts a conversation. Turn
    /// markers become their ids directly; roles and contents are encoded as
    /// ordinary text, so a message cannot forge a marker.
    pub fn encode_chat(
        &self,
        template: &ChatTemplate,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let marker = |is_start: bool| {
            let text = template.marker_text(is_start);
            self.token_id(text)
                .ok_or(TokenizerError::MissingChatMarker { marker: text })
        };
        let (start, end) = (marker(true)?, marker(false)?);
        let mut out = Vec::new();
        if self.specials.add_bos && !template.continues() {
            out.extend(self.specials.bos);
        }
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
}

#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod spm_tests;
#[cfg(test)]
mod tests;
