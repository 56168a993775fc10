//! From token ids back to bytes.
//!
//! Each token's bytes are worked out once, when the vocabulary is built, the
//! way llama.cpp's `token_to_piece` does it:
//!
//! - control, unknown and user-defined tokens are their text verbatim;
//! - in a byte-level vocabulary, other tokens map back through GPT-2's byte
//!   alphabet ([`super::bytes`]);
//! - in a SentencePiece vocabulary, normal tokens are their text with `▁`
//!   as a space, byte tokens (`<0x0A>`) are that byte, and unused or
//!   undefined tokens are nothing.
//!
//! [`Tokenizer::decode`] concatenates pieces, which is what streaming one
//! token at a time needs. [`Tokenizer::detokenize`] is llama.cpp's
//! `detokenize`: it also drops the space a SentencePiece vocabulary put in
//! front of the text (`add_space_prefix`) and, when asked, the BOS token,
//! and for most byte-level vocabularies tidies spaces the way Hugging Face's
//! `clean_up_tokenization_spaces` does (see [`clean_spaces`]).

use alloc::vec::Vec;

use super::bytes;
use super::model::Model;
use super::spm::SPACE_MARK;
use super::strtable::StrTable;
use super::{TokenType, Tokenizer, TokenizerError};

/// Options for [`Tokenizer::detokenize`] (llama.cpp's `detokenize` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetokenizeOptions {
    /// Drop a leading BOS token when the vocabulary adds one.
    pub remove_special: bool,
    /// Write control and unknown tokens as their text (else leave them out).
    pub unparse_special: bool,
}

/// A byte-level token's bytes: each alphabet character back to its byte; a
/// character outside the alphabet (not produced by a byte-level
/// vocabulary) is kept as its UTF-8.
fn from_alphabet(s: &str) -> Vec<u8> {
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

/// The byte a SentencePiece byte token (`<0xE2>`) stands for.
fn byte_token_value(text: &[u8]) -> Option<u8> {
    let hex = text.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    let hex = core::str::from_utf8(hex).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// A SentencePiece token's bytes (see the module docs).
fn spm_piece(text: &[u8], ty: TokenType) -> Vec<u8> {
    match ty {
        TokenType::Normal => match core::str::from_utf8(text) {
            Ok(s) => s.replace(SPACE_MARK, " ").into_bytes(),
            Err(_) => text.to_vec(),
        },
        TokenType::Byte => byte_token_value(text).map_or_else(Vec::new, |b| alloc::vec![b]),
        TokenType::Undefined | TokenType::Unused => Vec::new(),
        _ => text.to_vec(),
    }
}

/// The bytes each token decodes to.
pub(crate) fn pieces(texts: &StrTable, types: &[TokenType], model: &Model) -> StrTable {
    let mut pieces: Vec<Vec<u8>> = Vec::with_capacity(texts.len());
    for (id, &ty) in (0u32..).zip(types) {
        let text = texts.get(id).unwrap_or(&[]);
        let verbatim = matches!(
            ty,
            TokenType::Control | TokenType::Unknown | TokenType::UserDefined
        );
        let piece = match model {
            _ if verbatim => text.to_vec(),
            Model::Spm(_) => spm_piece(text, ty),
            Model::Bpe(_) => match core::str::from_utf8(text) {
                Ok(s) => from_alphabet(s),
                Err(_) => text.to_vec(),
            },
        };
        pieces.push(piece);
    }
    StrTable::new(&pieces)
}

impl Tokenizer {
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
            out.extend_from_slice(self.shown_piece(id, render_special)?);
        }
        Ok(())
    }

    fn shown_piece(&self, id: u32, render_special: bool) -> Result<&[u8], TokenizerError> {
        let piece = self
            .pieces
            .get(id)
            .ok_or(TokenizerError::UnknownId { id })?;
        let hidden = matches!(
            self.token_type(id),
            Some(TokenType::Control | TokenType::Unknown)
        );
        Ok(if render_special || !hidden {
            piece
        } else {
            &[]
        })
    }

    /// The text of a whole sequence, as llama.cpp's `detokenize` gives it:
    /// like [`Tokenizer::decode_into`], but a leading BOS is dropped when
    /// `remove_special` and the vocabulary adds BOS, and when a
    /// SentencePiece vocabulary adds a space prefix, the first token's
    /// leading space goes (unless a BOS was dropped, as in llama.cpp).
    pub fn detokenize(
        &self,
        ids: &[u32],
        opts: DetokenizeOptions,
    ) -> Result<Vec<u8>, TokenizerError> {
        let mut ids = ids;
        let mut strip_space = matches!(&self.model, Model::Spm(m) if m.add_space_prefix);
        if opts.remove_special && self.specials.add_bos {
            if let Some((&first, rest)) = ids.split_first() {
                if Some(first) == self.specials.bos {
                    strip_space = false;
                    ids = rest;
                }
            }
        }
        let mut out = Vec::new();
        for &id in ids {
            let piece = self.shown_piece(id, opts.unparse_special)?;
            let piece = match piece.split_first() {
                Some((b' ', rest)) if strip_space => rest,
                _ => piece,
            };
            out.extend_from_slice(piece);
            strip_space = false;
        }
        if self.clean_spaces {
            clean_spaces(&mut out);
        }
        Ok(out)
    }
}

/// llama.cpp's `clean_spaces` passes over detokenized bytes, in order: a
/// space before `?`, `!`, `.` or `,` goes; a lone `'` between two spaces
/// loses both; a space before `'s`, `'m`, `'re` or `'ve` goes.
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    // Pass 1: " ?", " !", " .", " ,".
    let mut out = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        let next = text.get(i + 1).copied();
        if !(x == b' ' && matches!(next, Some(b'?' | b'!' | b'.' | b','))) {
            out.push(x);
        }
    }
    // Pass 2: " ' " becomes "'"; the dropped second space no longer counts
    // as the space before the next character.
    let src = core::mem::take(&mut out);
    let mut i = 0;
    let mut prev_dropped = false;
    while let Some(&x) = src.get(i) {
        let prev = if prev_dropped || i == 0 {
            None
        } else {
            src.get(i - 1).copied()
        };
        prev_dropped = false;
        if i > 0 && x == b'\'' && prev == Some(b' ') && src.get(i + 1) == Some(&b' ') {
            out.pop();
            i += 1;
            prev_dropped = true;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3: " 's", " 'm", " 're", " 've" (not " 't", " 'd", " 'll").
    text.clear();
    for (i, &x) in out.iter().enumerate() {
        let after = |k: usize| out.get(i + k).copied();
        if i > 0 && x == b'\'' && out.get(i - 1) == Some(&b' ') && after(1).is_some() {
            let contraction = matches!(
                (after(1), after(2)),
                (Some(b's' | b'm'), _) | (Some(b'r' | b'v'), Some(b'e'))
            );
            if contraction {
                text.pop();
            }
        }
        text.push(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> alloc::string::String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        alloc::string::String::from_utf8(v).unwrap()
    }

    #[test]
    fn cleans_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("a ' ' b"), "a'' b");
        assert_eq!(
            clean("he 's she 'll we 're I 'm they 've it 'd"),
            "he's she 'll we're I'm they've it 'd"
        );
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean("x '"), "x '");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn byte_token_values() {
        assert_eq!(byte_token_value(b"<0x0A>"), Some(10));
        assert_eq!(byte_token_value(b"<0xff>"), Some(255));
        assert_eq!(byte_token_value(b"<0x>"), None);
        assert_eq!(byte_token_value(b"<0x1FF>"), None);
        assert_eq!(byte_token_value(b"0x0A"), None);
    }

    #[test]
    fn spm_pieces() {
        assert_eq!(
            spm_piece("▁the▁end".as_bytes(), TokenType::Normal),
            b" the end"
        );
        assert_eq!(spm_piece(b"<0xE2>", TokenType::Byte), [0xE2]);
        assert_eq!(spm_piece(b"<unused1>", TokenType::Unused), b"");
        assert_eq!(
            spm_piece("▁".as_bytes(), TokenType::UserDefined),
            "▁".as_bytes()
        );
    }
}
