//! SentencePiece-style merging with byte fallback (GGUF model `llama`).
//!
//! Gemma and llama's SPM vocabularies carry no merge rules: they carry a
//! score per token, and a pair of adjacent pieces may join whenever the
//! joined text is itself a token. This reproduces llama.cpp's SPM encoder,
//! which lode must match id for id:
//!
//! 1. spaces are written as U+2581 (`▁`), and a `▁` is put in front of text
//!    that starts the input or follows a special token when the vocabulary
//!    asks for it (`tokenizer.ggml.add_space_prefix`); see
//!    [`SpmModel::escape`];
//! 2. the text starts as one piece per UTF-8 character;
//! 3. repeatedly, of all adjacent pairs whose joined text is a token, the
//!    pair whose token has the highest score joins (the leftmost on a tie),
//!    until no pair joins;
//! 4. a piece that is a token becomes its id; any other piece (a single
//!    character the vocabulary lacks) becomes one `<0xXX>` byte token per
//!    byte, and a byte with no such token is dropped.
//!
//! llama.cpp also keeps a map from each joined text back to its two halves,
//! to re-split a piece that is not a token; but a piece only ever grows by a
//! join whose text is a token, so that map is never consulted for the
//! result, and this module does without it.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Ordering;

use super::strtable::StrTable;

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's stand-in for a space.
pub(crate) const SPACE_MARK: &str = "\u{2581}";

/// What SPM encoding needs besides the token texts.
#[derive(Debug, Clone)]
pub(crate) struct SpmModel {
    /// One score per token (`tokenizer.ggml.scores`): higher joins first.
    pub(crate) scores: Vec<f32>,
    /// The `<0xXX>` token of each byte, or `u32::MAX` when it has none.
    pub(crate) byte_token: [u32; 256],
    /// Put `▁` in front of text that starts the input or follows a
    /// special token (`tokenizer.ggml.add_space_prefix`).
    pub(crate) add_space_prefix: bool,
}

/// No byte token for this byte.
pub(crate) const NO_TOKEN: u32 = u32::MAX;

impl SpmModel {
    /// Builds the model: finds each byte's fallback token the way llama.cpp
    /// does (`<0xXX>` with upper-case hex, else the byte itself as text).
    /// Scores of `-0.0` become `0.0` so the comparison below agrees with
    /// llama.cpp's `<` on every pair of scores.
    pub(crate) fn new(texts: &StrTable, scores: &[f32], add_space_prefix: bool) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut byte_token = [NO_TOKEN; 256];
        for (b, slot) in (0..=255u8).zip(byte_token.iter_mut()) {
            let name = [
                b'<',
                b'0',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
                b'>',
            ];
            *slot = texts
                .find(&name)
                .or_else(|| texts.find(&[b]))
                .unwrap_or(NO_TOKEN);
        }
        SpmModel {
            scores: scores.iter().map(|&s| s + 0.0).collect(),
            byte_token,
            add_space_prefix,
        }
    }

    /// Writes `text` into `out` as SPM sees it: every space as `▁`, and a
    /// leading `▁` when `prefix` and the vocabulary adds one.
    pub(crate) fn escape(&self, text: &str, prefix: bool, out: &mut alloc::string::String) {
        out.clear();
        if prefix && self.add_space_prefix {
            out.push_str(SPACE_MARK);
        }
        for (i, part) in text.split(' ').enumerate() {
            if i > 0 {
                out.push_str(SPACE_MARK);
            }
            out.push_str(part);
        }
    }

    /// Bytes of heap memory held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.scores.capacity() * core::mem::size_of::<f32>()
    }
}

/// One piece of the text being merged.
#[derive(Debug, Clone, Copy)]
struct Sym {
    start: usize,
    /// Byte length; 0 once joined into its left neighbour.
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A pair that may join: ordered so the heap pops the highest score, then
/// the leftmost.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Joined byte length when queued; a pair whose sides changed since no
    /// longer adds up to it and is skipped.
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers for SPM merging.
#[derive(Debug, Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
}

/// Everything [`SpmContext::merge`] needs from the vocabulary.
pub(crate) struct SpmContext<'v> {
    pub(crate) model: &'v SpmModel,
    pub(crate) texts: &'v StrTable,
}

impl SpmContext<'_> {
    /// Queues the pair `left`, `right` when their joined text is a token.
    fn try_pair(
        &self,
        text: &[u8],
        scratch: &mut SpmScratch,
        left: Option<usize>,
        right: Option<usize>,
    ) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (Some(ls), Some(rs)) = (scratch.syms.get(l), scratch.syms.get(r)) else {
            return;
        };
        let size = ls.len + rs.len;
        let Some(joined) = text.get(ls.start..ls.start + size) else {
            return;
        };
        let Some(id) = self.texts.find(joined) else {
            return;
        };
        let score = self.model.scores.get(id as usize).copied().unwrap_or(0.0);
        scratch.heap.push(Bigram {
            score,
            left: l,
            right: r,
            size,
        });
    }

    /// Appends the ids of `text` (already escaped, see [`SpmModel::escape`]).
    pub(crate) fn merge(&self, text: &str, scratch: &mut SpmScratch, out: &mut Vec<u32>) {
        scratch.syms.clear();
        scratch.heap.clear();
        let bytes = text.as_bytes();
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            let i = scratch.syms.len();
            scratch.syms.push(Sym {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: chars.peek().map(|_| i + 1),
            });
        }
        for i in 1..scratch.syms.len() {
            self.try_pair(bytes, scratch, Some(i - 1), Some(i));
        }
        while let Some(b) = scratch.heap.pop() {
            let (Some(&l), Some(&r)) = (scratch.syms.get(b.left), scratch.syms.get(b.right)) else {
                continue;
            };
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue; // stale: one side was joined away or grew
            }
            if let Some(s) = scratch.syms.get_mut(b.left) {
                s.len += r.len;
                s.next = r.next;
            }
            if let Some(s) = scratch.syms.get_mut(b.right) {
                s.len = 0;
            }
            if let Some(s) = r.next.and_then(|n| scratch.syms.get_mut(n)) {
                s.prev = Some(b.left);
            }
            self.try_pair(bytes, scratch, l.prev, Some(b.left));
            self.try_pair(bytes, scratch, Some(b.left), r.next);
        }
        for s in scratch.syms.iter().filter(|s| s.len > 0) {
            let piece = bytes.get(s.start..s.start + s.len).unwrap_or(&[]);
            match self.texts.find(piece) {
                Some(id) => out.push(id),
                None => out.extend(
                    piece
                        .iter()
                        .map(|&b| self.model.byte_token[usize::from(b)])
                        .filter(|&id| id != NO_TOKEN),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// Tokens, scores and the encoding of `text` (escaped, no prefix).
    fn encode(tokens: &[&str], scores: &[f32], text: &str) -> Vec<u32> {
        let texts = StrTable::new(tokens);
        let model = SpmModel::new(&texts, scores, false);
        let mut escaped = String::new();
        model.escape(text, true, &mut escaped);
        let mut out = Vec::new();
        SpmContext {
            model: &model,
            texts: &texts,
        }
        .merge(&escaped, &mut SpmScratch::default(), &mut out);
        out
    }

    #[test]
    fn highest_score_joins_first() {
        // "abc": "bc" outscores "ab", so a + bc, then nothing joins "abc"
        // unless it is a token.
        let toks = ["a", "b", "c", "ab", "bc"];
        assert_eq!(
            encode(&toks, &[0.0, 0.0, 0.0, -2.0, -1.0], "abc"),
            vec![0, 4]
        );
        assert_eq!(
            encode(&toks, &[0.0, 0.0, 0.0, -1.0, -2.0], "abc"),
            vec![3, 2]
        );
        let toks = ["a", "b", "c", "ab", "bc", "abc"];
        assert_eq!(
            encode(&toks, &[0.0, 0.0, 0.0, -2.0, -1.0, -3.0], "abc"),
            vec![5]
        );
    }

    #[test]
    fn ties_go_left() {
        let toks = ["a", "aa"];
        assert_eq!(encode(&toks, &[0.0, -1.0], "aaa"), vec![1, 0]);
    }

    #[test]
    fn spaces_become_marks() {
        let toks = ["\u{2581}", "a", "\u{2581}a", "b"];
        assert_eq!(encode(&toks, &[0.0, 0.0, -1.0, 0.0], "b a"), vec![3, 2]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let mut toks: Vec<String> = (0..=255u32)
            .map(|b| alloc::format!("<0x{b:02X}>"))
            .collect();
        toks.push("a".into());
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        let scores = vec![0.0; refs.len()];
        // é is C3 A9.
        assert_eq!(encode(&refs, &scores, "aé"), vec![256, 0xC3, 0xA9]);
        // No byte tokens at all: the character is dropped.
        assert_eq!(encode(&["a"], &[0.0], "aé"), vec![0]);
    }

    #[test]
    fn prefix_only_when_asked() {
        let texts = StrTable::new(&["x"]);
        let mut s = String::new();
        SpmModel::new(&texts, &[0.0], true).escape("a b", true, &mut s);
        assert_eq!(s, "\u{2581}a\u{2581}b");
        SpmModel::new(&texts, &[0.0], true).escape("a", false, &mut s);
        assert_eq!(s, "a");
        SpmModel::new(&texts, &[0.0], false).escape(" a", true, &mut s);
        assert_eq!(s, "\u{2581}a");
    }
}
