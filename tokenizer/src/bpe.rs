//! Byte-pair merging within one word.
//!
//! A word starts as one symbol per byte (each byte's alphabet character, see
//! [`super::bytes`]). Repeatedly, among all adjacent pairs that a merge rule
//! names, the pair with the lowest rank (the rule's line number in the merges
//! list) is joined, the leftmost on a tie, until no adjacent pair has a rule.
//! The result is the same as llama.cpp's and Hugging Face's.
//!
//! Rules are stored by *symbol* ids rather than strings: every string that
//! appears in a rule (left side, right side, joined result) gets an id, equal
//! to its token id when the string is a token. Checking a pair is then one
//! binary search over 64-bit keys, and a joined symbol's id comes with the
//! rule. A candidate pair lives in a binary heap ordered by (rank, position),
//! so a long word costs O(n log n), not O(n²); a popped pair that no longer
//! matches its two symbols (one of them grew since) is skipped.

use alloc::collections::{BTreeMap, BinaryHeap};
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::bytes::push_encoded;
use super::strtable::StrTable;
use super::TokenizerError;

/// One merge rule: `left` + `right` -> `joined`, applied in `rank` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    /// `(left << 32) | right`, the sort and search key.
    key: u64,
    rank: u32,
    joined: u32,
}

/// A symbol id that no rule names and that is not a token: the symbol of
/// a byte whose alphabet character is neither in the vocabulary nor in any
/// rule. Such a symbol never merges and is dropped from the output.
pub(crate) const NO_SYMBOL: u32 = u32::MAX;

/// The merge rules of a vocabulary, searchable by symbol pair.
#[derive(Debug, Clone, Default)]
pub(crate) struct Merges {
    /// Sorted by `key`; one rule per pair (the lowest rank).
    rules: Vec<Rule>,
    /// Symbol ids `>= vocab_len` name strings that occur in rules but are
    /// not tokens; such a symbol can never be emitted as itself.
    vocab_len: u32,
    /// Those strings (usually none for a well-formed vocabulary).
    extra: BTreeMap<Vec<u8>, u32>,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

impl Merges {
    /// Parses `"left right"` rule lines against the vocabulary `vocab`.
    ///
    /// A line is split at its first space after the first byte (so a rule
    /// may merge a literal space character, as llama.cpp allows); a line
    /// with no such space names the empty pair and can never apply, so it is
    /// skipped. When two lines name the same pair, the earlier one wins.
    pub(crate) fn new<M: AsRef<[u8]>>(
        vocab: &StrTable,
        lines: &[M],
    ) -> Result<Self, TokenizerError> {
        let vocab_len = u32::try_from(vocab.len()).map_err(|_| TokenizerError::VocabTooLarge {
            tokens: vocab.len(),
        })?;
        let mut extra: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut next_extra = vocab_len;
        let mut intern = |s: &[u8]| -> Result<u32, TokenizerError> {
            if let Some(id) = vocab.find(s) {
                return Ok(id);
            }
            if let Some(&id) = extra.get(s) {
                return Ok(id);
            }
            let id = next_extra;
            next_extra = next_extra
                .checked_add(1)
                .ok_or(TokenizerError::TooManyMerges {
                    merges: lines.len(),
                })?;
            extra.insert(s.to_vec(), id);
            Ok(id)
        };

        let mut rules = Vec::with_capacity(lines.len());
        let mut joined = Vec::new();
        for (rank, line) in lines.iter().enumerate() {
            let line = line.as_ref();
            let Some(space) = line.iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (Some(left), Some(right)) = (line.get(..space), line.get(space + 1..)) else {
                continue;
            };
            if left.is_empty() || right.is_empty() {
                // An empty side never matches a symbol (symbols are non-empty).
                continue;
            }
            let rank = u32::try_from(rank).map_err(|_| TokenizerError::TooManyMerges {
                merges: lines.len(),
            })?;
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let key = pair_key(intern(left)?, intern(right)?);
            rules.push(Rule {
                key,
                rank,
                joined: intern(&joined)?,
            });
        }
        // Stable sort keeps equal keys in rank order; dedup keeps the first.
        rules.sort_by_key(|r| r.key);
        rules.dedup_by_key(|r| r.key);
        Ok(Merges {
            rules,
            vocab_len,
            extra,
        })
    }

    /// The symbol id of string `s`: its token id, else its id among the
    /// strings the rules name, else [`NO_SYMBOL`].
    pub(crate) fn symbol(&self, vocab: &StrTable, s: &[u8]) -> u32 {
        vocab
            .find(s)
            .or_else(|| self.extra.get(s).copied())
            .unwrap_or(NO_SYMBOL)
    }

    /// Number of distinct rules.
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule joining symbols `left` and `right`: `(rank, joined)`.
    fn find(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let key = pair_key(left, right);
        let i = self.rules.binary_search_by_key(&key, |r| r.key).ok()?;
        self.rules.get(i).map(|r| (r.rank, r.joined))
    }

    /// True when symbol `sym` is a token of the vocabulary.
    fn is_token(&self, sym: u32) -> bool {
        sym < self.vocab_len
    }

    /// Bytes of heap memory held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.rules.capacity() * core::mem::size_of::<Rule>()
    }
}

/// One symbol of the word being merged: a byte range and its symbol id.
#[derive(Debug, Clone, Copy)]
struct Sym {
    start: usize,
    /// Byte length; 0 once merged into its left neighbour.
    len: usize,
    id: u32,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge: ordered so the heap pops the lowest rank, leftmost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    right: usize,
    /// Lengths when queued: if either symbol grew since, the pair is stale.
    left_len: usize,
    right_len: usize,
    joined: u32,
}

/// Reusable buffers for merging, so encoding a long text allocates only
/// while the buffers grow.
#[derive(Debug, Default)]
pub(crate) struct MergeScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<Candidate>>,
    encoded: Vec<u8>,
}

/// Everything [`merge_word`] needs from the vocabulary.
pub(crate) struct MergeContext<'v> {
    pub(crate) merges: &'v Merges,
    /// Symbol of each byte's alphabet character (see [`Merges::symbol`]).
    pub(crate) byte_symbol: &'v [u32; 256],
    /// Token texts, for the fallback when a joined string is not a token.
    pub(crate) texts: &'v StrTable,
}

impl MergeContext<'_> {
    fn queue(&self, scratch: &mut MergeScratch, left: Option<usize>, right: Option<usize>) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        let (Some(ls), Some(rs)) = (scratch.syms.get(l), scratch.syms.get(r)) else {
            return;
        };
        if let Some((rank, joined)) = self.merges.find(ls.id, rs.id) {
            scratch.heap.push(Reverse(Candidate {
                rank,
                left: l,
                right: r,
                left_len: ls.len,
                right_len: rs.len,
                joined,
            }));
        }
    }

    /// The token whose text is all of `word` in the byte alphabet, if any:
    /// vocabularies that take whole words first (Llama 3's) emit it without
    /// merging.
    pub(crate) fn whole_word(&self, word: &[u8], scratch: &mut MergeScratch) -> Option<u32> {
        scratch.encoded.clear();
        for &b in word {
            push_encoded(b, &mut scratch.encoded);
        }
        self.texts.find(&scratch.encoded)
    }

    /// Appends the tokens of `word` (raw bytes, not yet byte-encoded).
    pub(crate) fn merge_word(&self, word: &[u8], scratch: &mut MergeScratch, out: &mut Vec<u32>) {
        scratch.syms.clear();
        scratch.heap.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            scratch.syms.push(Sym {
                start: i,
                len: 1,
                id: self.byte_symbol[usize::from(b)],
                prev: i.checked_sub(1),
                next: if i + 1 < n { Some(i + 1) } else { None },
            });
        }
        for i in 1..n {
            self.queue(scratch, Some(i - 1), Some(i));
        }

        while let Some(Reverse(c)) = scratch.heap.pop() {
            let (Some(&l), Some(&r)) = (scratch.syms.get(c.left), scratch.syms.get(c.right)) else {
                continue;
            };
            if l.len == 0 || r.len == 0 || l.len != c.left_len || r.len != c.right_len {
                continue; // stale: one side was merged away or grew
            }
            let merged = Sym {
                len: l.len + r.len,
                id: c.joined,
                next: r.next,
                ..l
            };
            if let Some(s) = scratch.syms.get_mut(c.left) {
                *s = merged;
            }
            if let Some(s) = scratch.syms.get_mut(c.right) {
                s.len = 0;
            }
            if let Some(s) = r.next.and_then(|nx| scratch.syms.get_mut(nx)) {
                s.prev = Some(c.left);
            }
            self.queue(scratch, merged.prev, Some(c.left));
            self.queue(scratch, Some(c.left), merged.next);
        }

        for i in 0..scratch.syms.len() {
            let Some(&s) = scratch.syms.get(i) else { break };
            if s.len == 0 {
                continue;
            }
            if self.merges.is_token(s.id) {
                out.push(s.id);
            } else {
                self.fallback(
                    word.get(s.start..s.start + s.len).unwrap_or(&[]),
                    scratch,
                    out,
                );
            }
        }
    }

    /// A symbol that is not a token: a joined string the vocabulary lacks,
    /// or a byte whose alphabet character is missing (SmolLM2 lacks 21, such
    /// as 0x04 and 0xFF). llama.cpp then looks up each byte of the symbol's
    /// *encoded* text as a one-byte token and drops bytes that have none;
    /// this does the same so ids stay identical.
    fn fallback(&self, raw: &[u8], scratch: &mut MergeScratch, out: &mut Vec<u32>) {
        scratch.encoded.clear();
        for &b in raw {
            push_encoded(b, &mut scratch.encoded);
        }
        for &e in &scratch.encoded {
            if let Some(id) = self.texts.find(&[e]) {
                out.push(id);
            }
        }
    }
}

#[cfg(test)]
#[path = "bpe_tests.rs"]
mod tests;
