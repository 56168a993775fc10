//! Tests of byte-pair merging.

use super::super::bytes::byte_to_char;
use super::*;
use alloc::string::{String, ToString};
use alloc::vec;

/// A vocabulary of the 256 byte characters followed by `extra` tokens.
fn vocab(extra: &[&str]) -> (StrTable, [u32; 256]) {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.extend(extra.iter().map(|s| s.to_string()));
    let table = StrTable::new(&tokens);
    let mut byte_token = [0u32; 256];
    for (b, slot) in byte_token.iter_mut().enumerate() {
        *slot = b as u32;
    }
    (table, byte_token)
}

fn encode(texts: &StrTable, byte_symbol: &[u32; 256], merges: &Merges, word: &str) -> Vec<u32> {
    let ctx = MergeContext {
        merges,
        byte_symbol,
        texts,
    };
    let mut out = Vec::new();
    ctx.merge_word(word.as_bytes(), &mut MergeScratch::default(), &mut out);
    out
}

#[test]
fn merges_by_rank_not_position() {
    // "abc": rule (b c) outranks (a b), so "a" + "bc".
    let (t, bt) = vocab(&["bc", "ab", "abc"]);
    let m = Merges::new(&t, &["b c", "a b", "a bc"]).unwrap();
    assert_eq!(m.len(), 3);
    // b c (rank 0) -> bc, then a bc (rank 2) -> abc.
    assert_eq!(encode(&t, &bt, &m, "abc"), vec![258]);
    let m2 = Merges::new(&t, &["b c", "a b"]).unwrap();
    assert_eq!(encode(&t, &bt, &m2, "abc"), vec![u32::from(b'a'), 256]);
}

#[test]
fn ties_go_left() {
    // "aaa" with only (a a): leftmost pair merges first -> "aa" + "a".
    let (t, bt) = vocab(&["aa"]);
    let m = Merges::new(&t, &["a a"]).unwrap();
    assert_eq!(encode(&t, &bt, &m, "aaa"), vec![256, u32::from(b'a')]);
    assert_eq!(encode(&t, &bt, &m, "aaaa"), vec![256, 256]);
}

#[test]
fn spaces_use_their_alphabet_character() {
    let (t, bt) = vocab(&["Ġt", "Ġthe", "he"]);
    let m = Merges::new(&t, &["Ġ t", "h e", "Ġt he"]).unwrap();
    assert_eq!(encode(&t, &bt, &m, " the"), vec![257]);
    assert_eq!(encode(&t, &bt, &m, "the"), vec![u32::from(b't'), 258]);
}

#[test]
fn earlier_duplicate_rule_wins_and_bad_lines_are_skipped() {
    let (t, bt) = vocab(&["ab"]);
    let m = Merges::new(&t, &["nospace", " x", "a b", "a b", "x "]).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m.find(u32::from(b'a'), u32::from(b'b')), Some((2, 256)));
    assert_eq!(encode(&t, &bt, &m, "ab"), vec![256]);
    // " x" has no space after its first byte, so it names no pair.
    assert_eq!(m.find(u32::from(b' '), u32::from(b'x')), None);
}

#[test]
fn joined_string_missing_from_vocab_falls_back_per_byte() {
    // Rule (a b) -> "ab", but "ab" is not a token: llama.cpp emits the
    // one-byte tokens of the encoded text.
    let (t, bt) = vocab(&[]);
    let m = Merges::new(&t, &["a b"]).unwrap();
    assert_eq!(
        encode(&t, &bt, &m, "ab"),
        vec![u32::from(b'a'), u32::from(b'b')]
    );
    // Encoded "Ġ" is two UTF-8 bytes, neither a token: dropped.
    let m = Merges::new(&t, &["Ġ a"]).unwrap();
    assert_eq!(encode(&t, &bt, &m, " a"), vec![u32::from(b'a')]);
}

#[test]
fn long_word_is_fast_and_complete() {
    let (t, bt) = vocab(&["aa", "aaaa"]);
    let m = Merges::new(&t, &["a a", "aa aa"]).unwrap();
    let word = "a".repeat(100_000);
    let ids = encode(&t, &bt, &m, &word);
    assert_eq!(ids.len(), 25_000);
    assert!(ids.iter().all(|&id| id == 257));
}

#[test]
fn bytes_without_a_token_are_dropped() {
    let (t, mut bs) = vocab(&["ab"]);
    let m = Merges::new(&t, &["a b"]).unwrap();
    // As if byte 0x04 had no token and no rule named it.
    bs[4] = m.symbol(&t, "no such string".as_bytes());
    assert_eq!(bs[4], NO_SYMBOL);
    assert_eq!(
        encode(&t, &bs, &m, "a\u{4}b"),
        vec![u32::from(b'a'), u32::from(b'b')]
    );
    assert_eq!(encode(&t, &bs, &m, "ab\u{4}"), vec![256]);
}

#[test]
fn rule_strings_that_are_not_tokens_get_symbols() {
    let (t, bt) = vocab(&[]);
    let m = Merges::new(&t, &["x y", "xy z"]).unwrap();
    let xy = m.symbol(&t, b"xy");
    assert!(xy >= 256 && xy != NO_SYMBOL);
    assert_eq!(m.symbol(&t, b"x"), u32::from(b'x'));
    // "xyz" is joined through the non-token "xy", then falls back.
    assert_eq!(
        encode(&t, &bt, &m, "xyz"),
        vec![u32::from(b'x'), u32::from(b'y'), u32::from(b'z')]
    );
}

#[test]
fn empty_word() {
    let (t, bt) = vocab(&[]);
    let m = Merges::new(&t, &["a b"]).unwrap();
    assert!(encode(&t, &bt, &m, "").is_empty());
}
