//! One encoding call: special tokens cut out, then each stretch of text
//! encoded by the vocabulary's model.

use alloc::string::String;
use alloc::vec::Vec;

use super::bpe::{MergeContext, MergeScratch};
use super::model::{BpeModel, Model};
use super::special::{self, Fragment};
use super::spm::{SpmContext, SpmModel, SpmScratch};
use super::Tokenizer;

/// Reusable state for one encoding call.
pub(crate) struct Session<'t> {
    tok: &'t Tokenizer,
    chars: Vec<(usize, char)>,
    scratch: MergeScratch,
    spm_scratch: SpmScratch,
    escaped: String,
}

impl<'t> Session<'t> {
    pub(crate) fn new(tok: &'t Tokenizer) -> Self {
        Session {
            tok,
            chars: Vec::new(),
            scratch: MergeScratch::default(),
            spm_scratch: SpmScratch::default(),
            escaped: String::new(),
        }
    }

    /// Appends the ids of `text`. Special tokens (control and unknown ones
    /// only when `parse_special`) are cut out first, as llama.cpp does.
    pub(crate) fn encode(&mut self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        let tok = self.tok;
        let specials = tok
            .special_order
            .iter()
            .filter(|&&id| {
                tok.token_type(id)
                    .is_some_and(|t| t.is_special(parse_special))
            })
            .filter_map(|&id| tok.texts.get(id).map(|t| (id, t)));
        // SentencePiece puts its space prefix on text that starts the input
        // or follows a special token.
        let mut after_special = true;
        for frag in special::partition(text.as_bytes(), specials) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    if let Some(piece) = text.get(range) {
                        match &tok.model {
                            Model::Bpe(m) => self.encode_bpe(m, piece, out),
                            Model::Spm(m) => self.encode_spm(m, piece, after_special, out),
                        }
                    }
                    after_special = false;
                }
            }
        }
    }

    fn encode_bpe(&mut self, model: &BpeModel, text: &str, out: &mut Vec<u32>) {
        let ctx = MergeContext {
            merges: &model.merges,
            byte_symbol: &model.byte_symbol,
            texts: &self.tok.texts,
        };
        let scratch = &mut self.scratch;
        let whole_words = model.pre.whole_words_first();
        model.pre.split(text, &mut self.chars, |word| {
            if whole_words {
                if let Some(id) = ctx.whole_word(word.as_bytes(), scratch) {
                    out.push(id);
                    return;
                }
            }
            ctx.merge_word(word.as_bytes(), scratch, out);
        });
    }

    fn encode_spm(&mut self, model: &SpmModel, text: &str, prefix: bool, out: &mut Vec<u32>) {
        model.escape(text, prefix, &mut self.escaped);
        let ctx = SpmContext {
            model,
            texts: &self.tok.texts,
        };
        ctx.merge(&self.escaped, &mut self.spm_scratch, out);
    }
}
