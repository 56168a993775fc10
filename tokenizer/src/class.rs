//! The four character classes the pre-tokenizer distinguishes.
//!
//! GPT-2's split pattern speaks of `\p{L}` (letters), `\p{N}` (numbers), `\s`
//! (white space) and everything else. The classes follow llama.cpp exactly:
//! letters and numbers by Unicode General Category (tables generated for
//! Unicode 15.1, the version llama.cpp ships), white space by the Unicode
//! White_Space property, and a character's class checked in that order.

use super::unicode_tables::{LETTER, NUMBER};

/// The class of one character, as the split pattern sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// General Category L.
    Letter,
    /// General Category N.
    Number,
    /// Unicode White_Space.
    Space,
    /// Anything else: punctuation, symbols, marks, controls, unassigned.
    Other,
}

/// True when `cp` falls in one of `table`'s sorted inclusive ranges.
fn in_table(table: &[(u32, u32)], cp: u32) -> bool {
    // Index of the first range starting after `cp`; the range before it is
    // the only one that can contain `cp`.
    let after = table.partition_point(|&(first, _)| first <= cp);
    after
        .checked_sub(1)
        .and_then(|i| table.get(i))
        .is_some_and(|&(_, last)| cp <= last)
}

/// Unicode White_Space: the 25 code points llama.cpp's `\s` accepts.
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// General Category L.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        in_table(LETTER, c as u32)
    }
}

/// General Category N.
pub(crate) fn is_number(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_table(NUMBER, c as u32)
    }
}

/// The class of `c`, letter first, then number, then white space.
pub(crate) fn classify(c: char) -> Class {
    if is_letter(c) {
        Class::Letter
    } else if is_number(c) {
        Class::Number
    } else if is_space(c) {
        Class::Space
    } else {
        Class::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        for table in [LETTER, NUMBER] {
            assert!(!table.is_empty());
            for w in table.windows(2) {
                assert!(w[0].0 <= w[0].1, "empty range {:?}", w[0]);
                assert!(w[0].1 < w[1].0, "overlap or disorder {:?} {:?}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn ascii_classes() {
        assert_eq!(classify('a'), Class::Letter);
        assert_eq!(classify('Z'), Class::Letter);
        assert_eq!(classify('7'), Class::Number);
        assert_eq!(classify(' '), Class::Space);
        assert_eq!(classify('\n'), Class::Space);
        assert_eq!(classify('\r'), Class::Space);
        assert_eq!(classify('\''), Class::Other);
        assert_eq!(classify('_'), Class::Other);
        assert_eq!(classify('\0'), Class::Other);
        // U+001C..U+001F are separators to Python's isspace, not to White_Space.
        assert_eq!(classify('\u{1F}'), Class::Other);
    }

    #[test]
    fn non_ascii_classes() {
        assert_eq!(classify('é'), Class::Letter);
        assert_eq!(classify('ß'), Class::Letter);
        assert_eq!(classify('Ж'), Class::Letter);
        assert_eq!(classify('中'), Class::Letter); // Lo
        assert_eq!(classify('ʰ'), Class::Letter); // Lm
        assert_eq!(classify('٣'), Class::Number); // Nd, Arabic-Indic three
        assert_eq!(classify('Ⅻ'), Class::Number); // Nl: alphabetic, yet a number
        assert_eq!(classify('½'), Class::Number); // No
        assert_eq!(classify('\u{A0}'), Class::Space);
        assert_eq!(classify('\u{3000}'), Class::Space);
        assert_eq!(classify('\u{301}'), Class::Other); // combining acute: a mark
        assert_eq!(classify('€'), Class::Other);
        assert_eq!(classify('😀'), Class::Other);
        assert_eq!(classify('\u{10FFFF}'), Class::Other);
    }

    #[test]
    fn in_table_edges() {
        let t = [(10, 12), (20, 20)];
        let hits: [(u32, bool); 7] = [
            (9, false),
            (10, true),
            (12, true),
            (13, false),
            (20, true),
            (21, false),
            (0, false),
        ];
        for (cp, want) in hits {
            assert_eq!(in_table(&t, cp), want, "{cp}");
        }
        assert!(!in_table(&[], 5));
    }

    proptest! {
        /// Our White_Space list is the one Rust's `char::is_whitespace`
        /// implements (the property has not changed since Unicode 6.3).
        #[test]
        fn space_matches_core(c in any::<char>()) {
            prop_assert_eq!(is_space(c), c.is_whitespace());
        }

        /// General Category N is what `char::is_numeric` implements; the two
        /// may differ only on code points assigned after Unicode 15.1.
        #[test]
        fn number_matches_core_below_new_blocks(c in any::<char>()) {
            if (c as u32) < 0x1_0000 {
                prop_assert_eq!(is_number(c), c.is_numeric());
            }
        }

        /// Every letter is alphabetic (the converse fails for Nl and marks).
        #[test]
        fn letters_are_alphabetic(c in any::<char>()) {
            if is_letter(c) && (c as u32) < 0x1_0000 {
                prop_assert!(c.is_alphabetic());
            }
        }
    }
}
