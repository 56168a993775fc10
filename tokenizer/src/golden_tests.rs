//! The tokenizer against llama.cpp on the real SmolLM2 vocabulary.
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (`scripts/fetch-model`;
//! or a path in `LODE_MODEL`) and `tests/golden/smollm2-q4_1.json`
//! (`scripts/record-golden`). When either is missing each test prints why and
//! passes without checking, so a checkout without the model still tests.

extern crate std;

use super::*;
use alloc::string::String;
use proptest::prelude::*;
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::{eprintln, format, fs};

use lode_formats::gguf::Gguf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    std::env::var_os("LODE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

struct Real {
    tok: Tokenizer,
    chat: ChatTemplate,
}

/// The real tokenizer, built once; `None` (with a note) without the model.
fn real() -> Option<&'static Real> {
    static REAL: OnceLock<Option<Real>> = OnceLock::new();
    REAL.get_or_init(|| {
        let path = model_path();
        let Ok(bytes) = fs::read(&path) else {
            eprintln!(
                "note: {} not found; run scripts/fetch-model. Skipping.",
                path.display()
            );
            return None;
        };
        let file = Gguf::parse(&bytes).expect("the model's GGUF header parses");
        let tok = Tokenizer::from_gguf(&file).expect("the model's vocabulary loads");
        let chat = ChatTemplate::from_gguf(&file).expect("the model's chat template is ChatML");
        Some(Real { tok, chat })
    })
    .as_ref()
}

/// The golden file; `None` (with a note) when it has not been recorded.
fn golden() -> Option<&'static Json> {
    static GOLDEN: OnceLock<Option<Json>> = OnceLock::new();
    GOLDEN
        .get_or_init(|| {
            let path = repo_root().join("tests/golden/smollm2-q4_1.json");
            let Ok(text) = fs::read_to_string(&path) else {
                eprintln!(
                    "note: {} not found; run scripts/record-golden. Skipping.",
                    path.display()
                );
                return None;
            };
            Some(serde_json::from_str(&text).expect("golden file is JSON"))
        })
        .as_ref()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .expect("an id array")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("an id")).expect("id fits u32"))
        .collect()
}

/// Encodes `text` the way the golden data was recorded: BOS as the model
/// asks (SmolLM2: none), control tokens parsed only when the case says so.
fn encode_like_golden(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<u32> {
    let mut out = Vec::new();
    tok.encode_into(
        text,
        EncodeOptions {
            add_bos: tok.specials().add_bos,
            parse_special,
        },
        &mut out,
    );
    out
}

/// Where two id sequences first differ, with some context, for messages.
fn first_difference(tok: &Tokenizer, ours: &[u32], theirs: &[u32]) -> String {
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    let show = |ids: &[u32]| {
        let lo = at.saturating_sub(3);
        let hi = (at + 4).min(ids.len());
        ids[lo..hi]
            .iter()
            .map(|&id| {
                format!(
                    "{id}:{:?}",
                    String::from_utf8_lossy(tok.piece(id).unwrap_or(b"?"))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "first difference at token {at} (lengths {} vs {}):\n  lode:      {}\n  llama.cpp: {}",
        ours.len(),
        theirs.len(),
        show(ours),
        show(theirs)
    )
}

#[test]
fn real_vocabulary_shape() {
    let Some(r) = real() else { return };
    let t = &r.tok;
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.merge_count(), 48900);
    assert_eq!(t.pre_tokenizer(), Some(PreTokenizer::DigitsThenGpt2));
    assert_eq!(
        *t.specials(),
        Specials {
            bos: Some(1),
            eos: Some(2),
            pad: Some(2),
            unk: Some(0),
            add_bos: false,
        }
    );
    assert_eq!(t.token_id(IM_START), Some(1));
    assert_eq!(t.token_id(IM_END), Some(2));
    assert!(t.is_end_of_generation(2) && t.is_end_of_generation(0));
    assert!(!t.is_end_of_generation(1));
    // Every normal token is spelled in the byte alphabet, so its piece is
    // exact bytes, never a guess.
    for id in 0..t.vocab_size() as u32 {
        if t.token_type(id) == Some(TokenType::Normal) {
            let text = core::str::from_utf8(t.token_text(id).unwrap()).unwrap();
            assert!(
                text.chars().all(|c| bytes::char_to_byte(c).is_some()),
                "token {id} {text:?} has a character outside the byte alphabet"
            );
        }
    }
    assert_eq!(t.piece(t.token_id("ĠParis").unwrap()), Some(&b" Paris"[..]));
    // SmolLM2 has no token for 21 bytes; printable ASCII and the bytes of
    // common UTF-8 (lead bytes 0xC2..=0xF0, continuation bytes) all have one.
    let missing: Vec<u8> = (0..=255u8).filter(|&b| !t.is_byte_encodable(b)).collect();
    assert_eq!(
        missing,
        [
            0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5, 0xF6, 0xF7, 0xF8,
            0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF
        ]
    );
    std::println!("tokenizer heap: {} KiB", t.heap_bytes() / 1024);
}

#[test]
fn prompts_tokenize_like_llama_cpp() {
    let (Some(r), Some(g)) = (real(), golden()) else {
        return;
    };
    let prompts = g["prompts"].as_array().expect("prompts");
    assert!(prompts.len() >= 5);
    for p in prompts {
        let text = p["text"].as_str().expect("text");
        let want = ids(&p["ids"]);
        let got = encode_like_golden(&r.tok, text, p["parse_special"].as_bool().unwrap_or(false));
        assert!(
            got == want,
            "prompt {:?}: {}",
            p["name"],
            first_difference(&r.tok, &got, &want)
        );
        assert_eq!(r.tok.decode(&got).unwrap(), text.as_bytes());
    }
}

#[test]
fn tokenizer_cases_match_llama_cpp() {
    let (Some(r), Some(g)) = (real(), golden()) else {
        return;
    };
    let cases = g["tokenizer_cases"].as_array().expect("tokenizer_cases");
    assert!(!cases.is_empty());
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let want = ids(&c["ids"]);
        let got = encode_like_golden(&r.tok, text, c["parse_special"].as_bool().unwrap_or(false));
        assert!(
            got == want,
            "case {text:?}: {}",
            first_difference(&r.tok, &got, &want)
        );
    }
}

#[test]
fn chat_prompt_matches_the_jinja_template_and_llama_cpp() {
    let (Some(r), Some(g)) = (real(), golden()) else {
        return;
    };
    let chat = g["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .find(|p| p["name"] == "chat")
        .expect("a chat prompt");
    let messages: Vec<ChatMessage<'_>> = chat["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    let add_gen = chat["add_generation_prompt"].as_bool().unwrap();
    // Our rendering equals what Jinja rendered from the GGUF's template...
    assert_eq!(
        r.chat.render(&messages, add_gen),
        chat["text"].as_str().unwrap()
    );
    // ...and encoding the turns directly gives llama.cpp's ids.
    let want = ids(&chat["ids"]);
    let got = r.tok.encode_chat(&r.chat, &messages, add_gen).unwrap();
    assert!(got == want, "{}", first_difference(&r.tok, &got, &want));
}

#[test]
fn gpl3_tokenizes_like_llama_cpp() {
    let (Some(r), Some(g)) = (real(), golden()) else {
        return;
    };
    let gpl = &g["gpl3"];
    let path = gpl["path"].as_str().expect("path");
    let Ok(text) = fs::read(path) else {
        eprintln!("note: {path} not found (not a Debian system?). Skipping.");
        return;
    };
    if Some(text.len() as u64) != gpl["bytes"].as_u64() {
        eprintln!("note: {path} differs in length from the recorded copy. Skipping.");
        return;
    }
    let text = String::from_utf8(text).expect("GPL-3 is UTF-8");
    let want = ids(&gpl["ids"]);
    let got = encode_like_golden(&r.tok, &text, false);
    assert!(
        got == want,
        "GPL-3: {}",
        first_difference(&r.tok, &got, &want)
    );
    assert_eq!(r.tok.decode(&got).unwrap(), text.as_bytes());
}

#[test]
fn greedy_golden_tokens_are_in_the_vocabulary() {
    // Guards the golden file itself: the recorded ids must name real tokens
    // and the famous continuation must be there.
    let (Some(r), Some(g)) = (real(), golden()) else {
        return;
    };
    let capital = g["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "capital")
        .expect("the capital prompt");
    let next = u32::try_from(capital["greedy_next"].as_u64().unwrap()).unwrap();
    assert_eq!(r.tok.piece(next), Some(&b" Paris"[..]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn real_vocabulary_round_trips(s in any::<String>()) {
        if let Some(r) = real() {
            let ids = r.tok.encode(&s, false);
            let back = r.tok.decode(&ids).unwrap();
            if r.tok.can_encode(&s) {
                prop_assert_eq!(back, s.as_bytes());
            } else {
                // The bytes without a token are dropped, the rest kept in order.
                let kept: Vec<u8> = s.bytes().filter(|&b| r.tok.is_byte_encodable(b)).collect();
                prop_assert_eq!(back, kept);
            }
        }
    }

    #[test]
    fn real_vocabulary_round_trips_english(s in "[A-Za-z0-9 ,.;:'\"!?()\n\t-]{0,80}") {
        if let Some(r) = real() {
            let ids = r.tok.encode(&s, false);
            prop_assert_eq!(r.tok.decode(&ids).unwrap(), s.as_bytes());
            // BPE never emits more tokens than bytes.
            prop_assert!(ids.len() <= s.len());
        }
    }
}
