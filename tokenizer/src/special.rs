//! Finding special tokens written out in text.
//!
//! Chat prompts carry markers such as `<|im_start|>` as text; when the caller
//! asks for it, each occurrence becomes that token's id instead of being
//! spelled out by BPE. The procedure is llama.cpp's: special tokens are tried
//! longest first, and each one cuts every occurrence out of the text that
//! earlier (longer) tokens left, leftmost first, without overlap. What is left
//! between the cuts is ordinary text, pre-tokenized and merged piece by piece.

use alloc::vec::Vec;
use core::ops::Range;

/// A stretch of the input: ordinary text (a byte range) or one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Bytes `range` of the input, to be tokenized by BPE.
    Text(Range<usize>),
    /// A special token found in the input.
    Token(u32),
}

/// Position of the first occurrence of `needle` in `hay` (non-empty needle).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, _) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last_start {
        let window = hay.get(from..=last_start)?;
        let at = from + window.iter().position(|&b| b == first)?;
        if hay.get(at..at + needle.len()) == Some(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Cuts `text` at the special tokens in `specials` (id and text, already in
/// the order to try them) and returns the fragments in input order.
pub(crate) fn partition<'s>(
    text: &[u8],
    specials: impl Iterator<Item = (u32, &'s [u8])>,
) -> Vec<Fragment> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text(0..text.len()));
    let mut next = Vec::new();
    for (id, needle) in specials {
        if needle.is_empty() {
            continue;
        }
        next.clear();
        for frag in frags.drain(..) {
            let Fragment::Text(range) = frag else {
                next.push(frag);
                continue;
            };
            let mut start = range.start;
            while let Some(at) = text
                .get(start..range.end)
                .and_then(|hay| find(hay, needle))
                .map(|off| start + off)
            {
                if at > start {
                    next.push(Fragment::Text(start..at));
                }
                next.push(Fragment::Token(id));
                start = at + needle.len();
            }
            if start < range.end {
                next.push(Fragment::Text(start..range.end));
            }
        }
        core::mem::swap(&mut frags, &mut next);
    }
    frags
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn run(text: &str, specials: &[(u32, &str)]) -> Vec<Fragment> {
        partition(
            text.as_bytes(),
            specials.iter().map(|&(id, s)| (id, s.as_bytes())),
        )
    }

    #[test]
    fn finds_needles() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b"abc"), Some(0));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"", b"a"), None);
        assert_eq!(find(b"abc", b""), None);
    }

    #[test]
    fn chat_markers() {
        let sp = [(1, "<|im_start|>"), (2, "<|im_end|>")];
        assert_eq!(
            run("<|im_start|>user\nHi<|im_end|>\n", &sp),
            vec![
                Fragment::Token(1),
                Fragment::Text(12..19),
                Fragment::Token(2),
                Fragment::Text(29..30),
            ]
        );
        assert_eq!(
            run("<|im_end|><|im_end|>", &sp),
            vec![Fragment::Token(2), Fragment::Token(2)]
        );
        assert_eq!(run("plain", &sp), vec![Fragment::Text(0..5)]);
        assert!(run("", &sp).is_empty());
    }

    #[test]
    fn longer_tokens_are_cut_first() {
        // Ordered longest first, "<ab>" claims its text before "<a".
        let sp = [(7, "<ab>"), (8, "<a")];
        assert_eq!(
            run("<a<ab>", &sp),
            vec![Fragment::Token(8), Fragment::Token(7)]
        );
    }

    proptest! {
        #[test]
        fn text_fragments_are_ordered_and_special_free(text in "[ab<>|]{0,30}") {
            let sp = [(5u32, "<|a|>"), (6u32, "<b>")];
            let frags = run(&text, &sp);
            let mut pos = 0;
            let mut rebuilt = alloc::string::String::new();
            for f in &frags {
                match f {
                    Fragment::Text(r) => {
                        prop_assert!(r.start >= pos && r.start < r.end);
                        let piece = &text[r.clone()];
                        prop_assert!(!piece.contains("<|a|>") && !piece.contains("<b>"));
                        rebuilt.push_str(piece);
                        pos = r.end;
                    }
                    Fragment::Token(5) => rebuilt.push_str("<|a|>"),
                    Fragment::Token(6) => rebuilt.push_str("<b>"),
                    Fragment::Token(other) => prop_assert!(false, "unexpected id {}", other),
                }
            }
            prop_assert_eq!(rebuilt, text);
        }
    }
}
