//! Llama 3's split rule, which Qwen2 shares but for its numbers.
//!
//! Llama 3 (GGUF `tokenizer.ggml.pre = "llama-bpe"`) cuts words by
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! and Qwen2 (`qwen2`) by the same pattern with `\p{N}` in place of
//! `\p{N}{1,3}`: digits one by one. Compared with GPT-2's rule
//! ([`super::pretok`]): contractions match in either case, a word of letters
//! may start with any one character that is not a letter, a number or a line
//! break (so `"(hello"` and `"\u{a0}hello"` are one word), punctuation takes
//! the line breaks that follow it, and white space that contains a line
//! break ends at its last line break.
//!
//! Like the GPT-2 scanner this is a hand-written scanner over the four
//! character classes, reproducing llama.cpp's own scanner for these
//! patterns (which is what the token ids are checked against).

use alloc::vec::Vec;

use super::class::{classify, Class};

fn is_line_break(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// Length in characters of a contraction (`'s`, `'RE`, ...) at `pos`, any
/// case, or 0.
fn contraction(char_at: impl Fn(usize) -> Option<char>, pos: usize) -> usize {
    let lower = |p: usize| char_at(p).map(|c| c.to_ascii_lowercase());
    match (lower(pos + 1), lower(pos + 2)) {
        (Some('s' | 't' | 'm' | 'd'), _) => 2,
        (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => 3,
        _ => 0,
    }
}

/// Splits `seg` by Llama 3's rule, numbers in runs of at most `max_digits`
/// characters (3 for Llama 3, 1 for Qwen2). `scratch` receives the
/// characters with their byte offsets.
pub(crate) fn llama3_split<'t>(
    seg: &'t str,
    max_digits: usize,
    scratch: &mut Vec<(usize, char)>,
    word: &mut impl FnMut(&'t str),
) {
    scratch.clear();
    scratch.extend(seg.char_indices());
    let chars: &[(usize, char)] = scratch;
    let n = chars.len();
    let char_at = |pos: usize| chars.get(pos).map(|&(_, c)| c);
    let class_at = |pos: usize| char_at(pos).map(classify);
    let byte_at = |pos: usize| chars.get(pos).map_or(seg.len(), |&(b, _)| b);
    let max_digits = max_digits.max(1);

    let mut pos = 0;
    while let Some(c) = char_at(pos) {
        let class = classify(c);
        let end = if c == '\'' && contraction(char_at, pos) > 0 {
            pos + contraction(char_at, pos)
        } else if !is_line_break(c)
            && class != Class::Number
            && (class == Class::Letter || class_at(pos + 1) == Some(Class::Letter))
        {
            // [^\r\n\p{L}\p{N}]?\p{L}+
            let mut end = pos + 1;
            while class_at(end) == Some(Class::Letter) {
                end += 1;
            }
            end
        } else if class == Class::Number {
            // \p{N}{1,max}: the next group of the run.
            let mut end = pos + 1;
            while end - pos < max_digits && class_at(end) == Some(Class::Number) {
                end += 1;
            }
            end
        } else {
            let lead = if c == ' ' {
                class_at(pos + 1)
            } else {
                Some(class)
            };
            if lead == Some(Class::Other) {
                // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
                let mut end = pos + usize::from(c == ' ');
                while class_at(end) == Some(Class::Other) {
                    end += 1;
                }
                while char_at(end).is_some_and(is_line_break) {
                    end += 1;
                }
                end
            } else {
                white_space_end(char_at, class_at, pos, n)
            }
        };
        let end = end.clamp(pos + 1, n);
        if let Some(w) = seg.get(byte_at(pos)..byte_at(end)) {
            word(w);
        }
        pos = end;
    }
}

/// Where a word of white space starting at `pos` ends: `\s*[\r\n]+` (up to
/// the run's last line break), else `\s+(?!\S)` (all but the last space
/// before a word), else `\s+`, else one character.
fn white_space_end(
    char_at: impl Fn(usize) -> Option<char>,
    class_at: impl Fn(usize) -> Option<Class>,
    pos: usize,
    n: usize,
) -> usize {
    let mut spaces = 0;
    let mut after_break = 0;
    while class_at(pos + spaces) == Some(Class::Space) {
        if char_at(pos + spaces).is_some_and(is_line_break) {
            after_break = pos + spaces + 1;
        }
        spaces += 1;
    }
    if after_break > 0 {
        after_break
    } else if spaces > 1 && pos + spaces < n {
        pos + spaces - 1
    } else {
        pos + spaces.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use proptest::prelude::*;

    fn words(text: &str, max_digits: usize) -> Vec<&str> {
        let mut out = Vec::new();
        llama3_split(text, max_digits, &mut Vec::new(), &mut |w| out.push(w));
        out
    }

    fn llama3(text: &str) -> Vec<&str> {
        words(text, 3)
    }

    #[test]
    fn numbers_in_threes_or_ones() {
        assert_eq!(llama3("1234567"), ["123", "456", "7"]);
        assert_eq!(llama3("in 2024,"), ["in", " ", "202", "4", ","]);
        assert_eq!(words("2024", 1), ["2", "0", "2", "4"]);
    }

    #[test]
    fn contractions_any_case() {
        assert_eq!(llama3("IT'S"), ["IT", "'S"]);
        assert_eq!(llama3("we'RE you'll"), ["we", "'RE", " you", "'ll"]);
        assert_eq!(llama3("' era"), ["'", " era"]);
    }

    #[test]
    fn one_non_letter_may_lead_a_word() {
        assert_eq!(llama3("(hello)"), ["(hello", ")"]);
        assert_eq!(llama3("a\u{a0}b"), ["a", "\u{a0}b"]);
        assert_eq!(llama3("\tx"), ["\tx"]);
    }

    #[test]
    fn punctuation_takes_line_breaks() {
        assert_eq!(llama3("end.\n\nNext"), ["end", ".\n\n", "Next"]);
        assert_eq!(llama3("a ==\n"), ["a", " ==\n"]);
    }

    #[test]
    fn white_space() {
        assert_eq!(llama3("a  \n  b"), ["a", "  \n", " ", " b"]);
        assert_eq!(llama3("a   b"), ["a", "  ", " b"]);
        assert_eq!(llama3("a   "), ["a", "   "]);
        assert_eq!(llama3("\n\n\n"), ["\n\n\n"]);
        assert_eq!(
            llama3("    Hello\n    Hello"),
            ["   ", " Hello", "\n", "   ", " Hello"]
        );
    }

    proptest! {
        #[test]
        fn words_cover_the_text(text in any::<String>(), digits in 1usize..4) {
            let ws = words(&text, digits);
            prop_assert!(ws.iter().all(|w| !w.is_empty()));
            prop_assert_eq!(ws.concat(), text);
        }
    }
}
