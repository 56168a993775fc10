//! Pre-tokenization: cutting text into the words BPE merges within.
//!
//! BPE never merges across a word boundary, so where the words start decides
//! the token ids as much as the merges do. GPT-2 defines words by the pattern
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! and SmolLM2 (GGUF `tokenizer.ggml.pre = "smollm"`) first isolates every
//! number character (`\p{N}`) as a word of its own, then applies GPT-2's
//! pattern to the text between them. That is why "1969" is four tokens and
//! why " 3" is a space token followed by "3".
//!
//! This is a hand-written scanner over character classes rather than a regex
//! engine: the pattern is small, a scanner is allocation-free apart from one
//! reusable buffer of character positions, and it reproduces llama.cpp's own
//! scanner, including its one departure from the regex: a run of white space
//! that ends the text (or ends a segment before a number) is one word.

use alloc::vec::Vec;

use super::class::{classify, is_number, Class};
use super::pretok_llama3::llama3_split;

/// Which split rule a vocabulary was trained with (GGUF `tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PreTokenizer {
    /// GPT-2's pattern alone (`gpt2`, `mpt`, `olmo`, ...).
    Gpt2,
    /// Every number character alone, then GPT-2's pattern (`smollm`,
    /// `starcoder`, `refact`, ...).
    DigitsThenGpt2,
    /// Llama 3's pattern, numbers in groups of up to three (`llama-bpe`,
    /// `llama3`, ...; see [`super::pretok_llama3`]). These vocabularies also
    /// take a whole word as one token when it is one, before any merge.
    Llama3,
    /// Llama 3's pattern with every number character alone (`qwen2`, ...).
    Qwen2,
}

impl PreTokenizer {
    /// The rule for a GGUF `tokenizer.ggml.pre` name, or `None` for names
    /// whose rules this scanner does not implement. The names are
    /// llama.cpp's; a name is listed only where llama.cpp gives it exactly
    /// this rule and nothing else that changes the ids (`dbrx` has Llama 3's
    /// pattern but not its whole-word lookup, so it is not listed).
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            // "gpt2" is not a name llama.cpp writes, but lode accepted it first.
            "gpt2" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "mpt" | "olmo"
            | "jais" | "trillion" | "granite-docling" => Some(PreTokenizer::Gpt2),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => Some(PreTokenizer::Llama3),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2"
            | "hunyuan" | "solar-open" => Some(PreTokenizer::Qwen2),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => Some(PreTokenizer::DigitsThenGpt2),
            _ => None,
        }
    }

    /// True when llama.cpp's `detokenize` tidies spaces for vocabularies
    /// of this `tokenizer.ggml.pre` name (its `clean_spaces`, on for
    /// byte-level BPE unless the name turns it off); see
    /// [`super::Tokenizer::detokenize`].
    pub fn cleans_spaces(name: &str) -> bool {
        !matches!(
            name,
            "trillion"
                | "granite-docling"
                | "smollm"
                | "command-r"
                | "qwen2"
                | "deepseek-r1-qwen"
                | "kormo"
                | "f2llmv2"
                | "hunyuan"
                | "solar-open"
        )
    }

    /// True when a word that is itself a token is taken whole, before any
    /// merge (llama.cpp's `ignore_merges`, set for Llama 3's vocabularies).
    pub(crate) fn whole_words_first(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// Calls `word` for each word of `text`, in order. The words are
    /// non-empty and concatenate to `text`. `scratch` is reused between calls
    /// to avoid allocating per segment.
    pub(crate) fn split<'t>(
        self,
        text: &'t str,
        scratch: &mut Vec<(usize, char)>,
        mut word: impl FnMut(&'t str),
    ) {
        match self {
            PreTokenizer::Gpt2 => gpt2_split(text, scratch, &mut word),
            PreTokenizer::Llama3 => llama3_split(text, 3, scratch, &mut word),
            PreTokenizer::Qwen2 => llama3_split(text, 1, scratch, &mut word),
            PreTokenizer::DigitsThenGpt2 => {
                let mut seg_start = 0;
                for (i, c) in text.char_indices() {
                    if is_number(c) {
                        let end = i + c.len_utf8();
                        if let Some(seg) = text.get(seg_start..i) {
                            gpt2_split(seg, scratch, &mut word);
                        }
                        if let Some(digit) = text.get(i..end) {
                            word(digit);
                        }
                        seg_start = end;
                    }
                }
                if let Some(seg) = text.get(seg_start..) {
                    gpt2_split(seg, scratch, &mut word);
                }
            }
        }
    }
}

/// GPT-2's pattern over one segment. `scratch` receives the segment's
/// characters with their byte offsets so the scanner can look ahead.
fn gpt2_split<'t>(seg: &'t str, scratch: &mut Vec<(usize, char)>, word: &mut impl FnMut(&'t str)) {
    if seg.is_empty() {
        return;
    }
    scratch.clear();
    scratch.extend(seg.char_indices());
    let chars: &[(usize, char)] = scratch;
    let n = chars.len();
    let char_at = |pos: usize| chars.get(pos).map(|&(_, c)| c);
    let class_at = |pos: usize| char_at(pos).map(classify);
    let byte_at = |pos: usize| chars.get(pos).map_or(seg.len(), |&(b, _)| b);

    let mut pos = 0;
    while pos < n {
        let start = pos;
        let Some(c) = char_at(pos) else { break };

        // 's|'t|'re|'ve|'m|'ll|'d  (lower case only, as in GPT-2)
        if c == '\'' {
            match (char_at(pos + 1), char_at(pos + 2)) {
                (Some('s' | 't' | 'm' | 'd'), _) => pos += 2,
                (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => pos += 3,
                _ => {}
            }
        }

        if pos == start {
            // An optional leading ASCII space joins a run of letters, of
            // numbers, or of "other" characters.
            let lead = if c == ' ' {
                class_at(pos + 1)
            } else {
                class_at(pos)
            };
            match lead {
                Some(run @ (Class::Letter | Class::Number | Class::Other)) => {
                    if c == ' ' {
                        pos += 1;
                    }
                    while class_at(pos) == Some(run) {
                        pos += 1;
                    }
                }
                Some(Class::Space) | None => {
                    let mut spaces = 0;
                    while class_at(pos + spaces) == Some(Class::Space) {
                        spaces += 1;
                    }
                    if spaces > 1 && pos + spaces < n {
                        // \s+(?!\S): leave the last space to prefix the next word.
                        pos += spaces - 1;
                    } else if spaces > 0 {
                        pos += spaces;
                    } else {
                        pos += 1;
                    }
                }
            }
        }

        if let Some(w) = seg.get(byte_at(start)..byte_at(pos)) {
            word(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use proptest::prelude::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        pre.split(text, &mut scratch, |w| out.push(w));
        out
    }

    fn smollm(text: &str) -> Vec<&str> {
        words(PreTokenizer::DigitsThenGpt2, text)
    }

    #[test]
    fn digits_split_singly() {
        assert_eq!(
            smollm("In 1969, 3 astronauts"),
            ["In", " ", "1", "9", "6", "9", ",", " ", "3", " astronauts"]
        );
        assert_eq!(smollm("x12y"), ["x", "1", "2", "y"]);
        assert_eq!(smollm("٣٤"), ["٣", "٤"]);
        // Plain GPT-2 keeps a number run together with its leading space.
        assert_eq!(
            words(PreTokenizer::Gpt2, "In 1969, 3 astronauts"),
            ["In", " 1969", ",", " 3", " astronauts"]
        );
    }

    #[test]
    fn contractions() {
        assert_eq!(smollm("I'm sure it's"), ["I", "'m", " sure", " it", "'s"]);
        assert_eq!(
            smollm("we're they've you'll he'd"),
            ["we", "'re", " they", "'ve", " you", "'ll", " he", "'d"]
        );
        // Upper case is not a contraction in GPT-2's pattern.
        assert_eq!(smollm("IT'S"), ["IT", "'", "S"]);
        // A lone apostrophe is punctuation and joins following punctuation.
        assert_eq!(smollm("rock 'n' roll"), ["rock", " '", "n", "'", " roll"]);
        assert_eq!(smollm("'''"), ["'''"]);
        assert_eq!(smollm("'"), ["'"]);
    }

    #[test]
    fn spaces() {
        assert_eq!(smollm("a  b"), ["a", " ", " b"]);
        assert_eq!(smollm("a   b"), ["a", "  ", " b"]);
        assert_eq!(smollm("a   "), ["a", "   "]);
        assert_eq!(smollm("   "), ["   "]);
        assert_eq!(smollm(" "), [" "]);
        assert_eq!(smollm(" a"), [" a"]);
        // A space run before a number ends its segment, so it stays whole.
        assert_eq!(smollm("a   7"), ["a", "   ", "7"]);
        assert_eq!(smollm("\t x"), ["\t", " x"]);
        // Non-ASCII spaces are white space but never a word's optional prefix.
        assert_eq!(smollm("a\u{A0}b"), ["a", "\u{A0}", "b"]);
    }

    #[test]
    fn newlines() {
        assert_eq!(smollm("one\ntwo"), ["one", "\n", "two"]);
        // \s+(?!\S) backs off one character before "two"; that last
        // newline is not a space, so it becomes a word of its own.
        assert_eq!(smollm("one\n\ntwo"), ["one", "\n", "\n", "two"]);
        assert_eq!(smollm("one\n\n two"), ["one", "\n\n", " two"]);
        assert_eq!(smollm("end.\r\n"), ["end", ".", "\r\n"]);
        assert_eq!(smollm("a \n b"), ["a", " \n", " b"]);
    }

    #[test]
    fn punctuation() {
        assert_eq!(smollm("Hello, world!"), ["Hello", ",", " world", "!"]);
        assert_eq!(smollm("a -- b"), ["a", " --", " b"]);
        assert_eq!(
            smollm("(see <http://x>)"),
            ["(", "see", " <", "http", "://", "x", ">)"]
        );
        assert_eq!(smollm("$5"), ["$", "5"]);
    }

    #[test]
    fn unicode_letters() {
        assert_eq!(smollm("café au lait"), ["café", " au", " lait"]);
        assert_eq!(smollm("Ünïcödé straße"), ["Ünïcödé", " straße"]);
        assert_eq!(smollm("日本語です"), ["日本語です"]);
        // A combining mark is not a letter: it breaks the letter run.
        assert_eq!(smollm("e\u{301}t"), ["e", "\u{301}", "t"]);
        assert_eq!(smollm("hi 😀!"), ["hi", " 😀!"]);
    }

    #[test]
    fn empty_text_has_no_words() {
        assert!(smollm("").is_empty());
        assert!(words(PreTokenizer::Gpt2, "").is_empty());
    }

    #[test]
    fn gguf_names() {
        assert_eq!(
            PreTokenizer::from_gguf_name("smollm"),
            Some(PreTokenizer::DigitsThenGpt2)
        );
        assert_eq!(
            PreTokenizer::from_gguf_name("gpt2"),
            Some(PreTokenizer::Gpt2)
        );
        assert_eq!(
            PreTokenizer::from_gguf_name("llama-bpe"),
            Some(PreTokenizer::Llama3)
        );
        assert_eq!(
            PreTokenizer::from_gguf_name("qwen2"),
            Some(PreTokenizer::Qwen2)
        );
        assert_eq!(PreTokenizer::from_gguf_name("dbrx"), None);
        assert_eq!(PreTokenizer::from_gguf_name(""), None);
    }

    proptest! {
        #[test]
        fn words_cover_the_text(text in any::<String>()) {
            for pre in [PreTokenizer::Gpt2, PreTokenizer::DigitsThenGpt2] {
                let ws = words(pre, &text);
                prop_assert!(ws.iter().all(|w| !w.is_empty()));
                prop_assert_eq!(ws.concat(), text.clone());
            }
        }

        #[test]
        fn numbers_stand_alone(text in "[a-z0-9 ,.\n'٣½Ⅻ]{0,40}") {
            for w in smollm(&text) {
                if w.chars().any(is_number) {
                    prop_assert_eq!(w.chars().count(), 1, "{:?}", w);
                }
            }
        }

        #[test]
        fn space_runs_give_their_last_space_away(text in "[a-z!? \n\t]{0,40}") {
            // \s+(?!\S): a run of two or more spaces that is followed by a
            // word keeps its last space for that word, so the next word
            // starts with white space. Only at the end of the text is a run
            // taken whole.
            for pre in [PreTokenizer::Gpt2, PreTokenizer::DigitsThenGpt2] {
                let ws = words(pre, &text);
                for pair in ws.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    if a.chars().count() > 1 && a.chars().all(char::is_whitespace) {
                        prop_assert!(
                            b.starts_with(char::is_whitespace),
                            "{:?} then {:?} in {:?}", a, b, text
                        );
                    }
                }
            }
        }
    }
}
