//! The two kinds of vocabulary and what each needs besides token texts.
//!
//! A byte-level BPE vocabulary needs its merge rules, the symbol of each
//! byte's alphabet character and its split rule; a SentencePiece one needs
//! its scores and byte tokens ([`super::spm`]). Everything else (texts,
//! types, special tokens, decoding) the two share.

use alloc::vec::Vec;

use super::bpe::{self, Merges};
use super::bytes;
use super::pretok::PreTokenizer;
use super::spm::{SpmModel, NO_TOKEN, SPACE_MARK};
use super::strtable::StrTable;
use super::TokenizerError;

/// Which family of tokenizer a vocabulary uses (GGUF `tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenizerModel {
    /// Byte-level BPE with merge rules (`gpt2`).
    ByteLevelBpe,
    /// SentencePiece with scores and byte fallback (`llama`).
    SentencePiece,
}

/// Byte-level BPE's parts.
#[derive(Debug, Clone)]
pub(crate) struct BpeModel {
    pub(crate) merges: Merges,
    /// Symbol of each byte's alphabet character ([`bpe::NO_SYMBOL`] when
    /// neither a token nor named by a rule).
    pub(crate) byte_symbol: [u32; 256],
    pub(crate) pre: PreTokenizer,
}

/// A vocabulary's encoder.
#[derive(Debug, Clone)]
pub(crate) enum Model {
    Bpe(BpeModel),
    Spm(SpmModel),
}

impl Model {
    /// Byte-level BPE over `texts` with rule lines `merges`.
    pub(crate) fn bpe<M: AsRef<[u8]>>(
        texts: &StrTable,
        merges: &[M],
        pre: PreTokenizer,
    ) -> Result<Self, TokenizerError> {
        let merges = Merges::new(texts, merges)?;
        let mut byte_symbol = [bpe::NO_SYMBOL; 256];
        let mut buf = Vec::with_capacity(2);
        for (b, slot) in (0..=255u8).zip(byte_symbol.iter_mut()) {
            buf.clear();
            bytes::push_encoded(b, &mut buf);
            *slot = merges.symbol(texts, &buf);
        }
        Ok(Model::Bpe(BpeModel {
            merges,
            byte_symbol,
            pre,
        }))
    }

    pub(crate) fn kind(&self) -> TokenizerModel {
        match self {
            Model::Bpe(_) => TokenizerModel::ByteLevelBpe,
            Model::Spm(_) => TokenizerModel::SentencePiece,
        }
    }

    pub(crate) fn merge_count(&self) -> usize {
        match self {
            Model::Bpe(m) => m.merges.len(),
            Model::Spm(_) => 0,
        }
    }

    pub(crate) fn pre_tokenizer(&self) -> Option<PreTokenizer> {
        match self {
            Model::Bpe(m) => Some(m.pre),
            Model::Spm(_) => None,
        }
    }

    /// True when byte `b` has a token in a vocabulary of `vocab_len`.
    pub(crate) fn is_byte_encodable(&self, b: u8, vocab_len: usize) -> bool {
        let id = match self {
            Model::Bpe(m) => m.byte_symbol[usize::from(b)],
            Model::Spm(m) => m.byte_token[usize::from(b)],
        };
        id != NO_TOKEN && usize::try_from(id).is_ok_and(|s| s < vocab_len)
    }

    /// False when decoding cannot give `text` back even though every byte
    /// has a token: a SentencePiece `▁` in the text decodes as a space, and
    /// a space prefix is added in front.
    pub(crate) fn round_trips(&self, text: &str) -> bool {
        match self {
            Model::Bpe(_) => true,
            Model::Spm(m) => !m.add_space_prefix && !text.contains(SPACE_MARK),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Model::Bpe(m) => m.merges.heap_bytes(),
            Model::Spm(m) => m.heap_bytes(),
        }
    }
}
