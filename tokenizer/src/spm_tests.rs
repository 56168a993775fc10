//! Tests of the assembled SentencePiece tokenizer on a small hand-made
//! vocabulary. The tests against llama.cpp are in `tests/gemma_golden.rs`
//! and `tests/llama_vocab.rs`.

use super::*;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;

/// Ids: 0 `<unk>`, 1 `<s>`, 2 `</s>` (control), 3 `<tool>` (user-defined),
/// 4..260 the byte tokens, then pieces.
fn toy(add_space_prefix: bool) -> Tokenizer {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>", "<tool>"]
        .iter()
        .map(|s| String::from(*s))
        .collect();
    let mut types = vec![2, 3, 3, 4];
    let mut scores = vec![0.0; 4];
    for b in 0..=255u32 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, s) in [
        ("▁", -1.0),
        ("▁hi", -2.0),
        ("hi", -3.0),
        ("h", -4.0),
        ("i", -4.0),
    ] {
        tokens.push(String::from(t));
        types.push(1);
        scores.push(s);
    }
    let specials = Specials {
        bos: Some(1),
        eos: Some(2),
        pad: None,
        unk: Some(0),
        add_bos: true,
    };
    Tokenizer::from_spm_vocab(&tokens, &types, &scores, specials, add_space_prefix).unwrap()
}

#[test]
fn space_prefix_and_its_removal() {
    let t = toy(true);
    assert_eq!(t.model(), TokenizerModel::SentencePiece);
    assert_eq!(t.merge_count(), 0);
    // "hi" gets "▁" in front: "▁hi".
    let ids = t.encode("hi", true);
    assert_eq!(ids, [1, 261]);
    assert_eq!(t.decode(&ids).unwrap(), b"<s> hi");
    let opts = DetokenizeOptions {
        remove_special: true,
        unparse_special: false,
    };
    // A dropped BOS keeps the space, as in llama.cpp.
    assert_eq!(t.detokenize(&ids, opts).unwrap(), b" hi");
    assert_eq!(t.detokenize(&ids[1..], opts).unwrap(), b"hi");
    // After a special token, text gets the prefix again.
    assert_eq!(t.encode("hi<tool>hi", false), [261, 3, 261]);
    assert!(!t.can_encode("hi"));
}

#[test]
fn byte_fallback_and_its_decoding() {
    let t = toy(false);
    // 'x' is no piece: its byte token; é is two.
    let ids = t.encode("hix é", false);
    assert_eq!(ids, [262, 4 + 0x78, 260, 4 + 0xC3, 4 + 0xA9]);
    assert_eq!(t.decode(&ids).unwrap(), "hix é".as_bytes());
    assert_eq!(t.piece(4 + 0x0A), Some(&b"\n"[..]));
    assert!(t.can_encode("hix é"));
    assert!(!t.can_encode("▁"));
    assert_eq!(t.pre_tokenizer(), None);
}

#[test]
fn scores_must_match_tokens() {
    let err = Tokenizer::from_spm_vocab(&["a", "b"], &[1, 1], &[0.0], Specials::default(), false)
        .unwrap_err();
    assert_eq!(
        err,
        TokenizerError::ScoresLengthMismatch {
            tokens: 2,
            scores: 1
        }
    );
    assert!(err.to_string().contains("scores"));
}
