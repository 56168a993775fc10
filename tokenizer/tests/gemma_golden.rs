//! Gemma 3's tokenizer against llama.cpp.
//!
//! Needs `models/gemma-3-270m-Q4_K_M.gguf` (`scripts/fetch-model
//! gemma3-270m`; or a path in `LODE_GEMMA_MODEL`) and
//! `tests/golden/gemma3-tokenizer.json` (`scripts/record-tokenizer-golden`):
//! token ids of the golden prompts, 319 tokenizer cases, Gemma-specific
//! strings, a long mixed text and the GPL-3, and llama.cpp's detokenization
//! of each. Without the model each test says so and passes without checking.

use std::path::PathBuf;
use std::sync::OnceLock;

use lode_formats::gguf::Gguf;
use lode_tokenizer::{
    ChatMessage, ChatTemplate, DetokenizeOptions, EncodeOptions, Tokenizer, TokenizerModel,
};
use serde_json::Value as Json;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Gemma's tokenizer, built once; `None` (with a note) without the model.
fn gemma() -> Option<&'static Tokenizer> {
    static T: OnceLock<Option<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let path = std::env::var_os("LODE_GEMMA_MODEL").map_or_else(
            || repo_root().join("models/gemma-3-270m-Q4_K_M.gguf"),
            PathBuf::from,
        );
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!(
                "SKIPPED: {} not found; run scripts/fetch-model gemma3-270m",
                path.display()
            );
            return None;
        };
        let file = Gguf::parse(&bytes).expect("Gemma's GGUF parses");
        Some(Tokenizer::from_gguf(&file).expect("Gemma's vocabulary loads"))
    })
    .as_ref()
}

fn golden() -> Json {
    let path = repo_root().join("tests/golden/gemma3-tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("the golden file is in the repository");
    serde_json::from_str(&text).expect("golden file is JSON")
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .expect("an id array")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("an id")).expect("id fits u32"))
        .collect()
}

fn hex(v: &Json) -> Vec<u8> {
    let s = v.as_str().expect("a hex string").as_bytes();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn encode(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<u32> {
    let mut out = Vec::new();
    let opts = EncodeOptions {
        add_bos: tok.specials().add_bos,
        parse_special,
    };
    tok.encode_into(text, opts, &mut out);
    out
}

#[test]
fn gemma_loads_as_sentencepiece() {
    let Some(tok) = gemma() else { return };
    assert_eq!(tok.model(), TokenizerModel::SentencePiece);
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(tok.pre_tokenizer(), None);
    let s = tok.specials();
    assert_eq!(
        (s.bos, s.eos, s.pad, s.unk),
        (Some(2), Some(1), Some(0), Some(3))
    );
    assert!(s.add_bos);
    assert!((0..=255u8).all(|b| tok.is_byte_encodable(b)));
    assert!(tok.is_end_of_generation(tok.token_id("<end_of_turn>").unwrap()));
}

#[test]
fn gemma_ids_match_llama_cpp() {
    let Some(tok) = gemma() else { return };
    let g = golden();
    let cases = g["cases"].as_array().expect("cases");
    let mut failures = Vec::new();
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let special = c["parse_special"].as_bool().expect("parse_special");
        let want = ids(&c["ids"]);
        let got = encode(tok, text, special);
        if got != want {
            failures.push(format!(
                "{text:?}\n  lode:      {got:?}\n  llama.cpp: {want:?}"
            ));
        }
    }
    let long = &cases[g["long_text_case"].as_u64().unwrap() as usize];
    eprintln!(
        "gemma: {} cases identical to llama.cpp of {} (long text: {} bytes, {} ids)",
        cases.len() - failures.len(),
        cases.len(),
        long["text"].as_str().unwrap().len(),
        long["ids"].as_array().unwrap().len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gemma_detokenizes_like_llama_cpp() {
    let Some(tok) = gemma() else { return };
    let g = golden();
    for c in g["cases"].as_array().expect("cases") {
        let ids = ids(&c["ids"]);
        let plain = tok.detokenize(&ids, DetokenizeOptions::default()).unwrap();
        assert_eq!(plain, hex(&c["detok_plain"]), "{:?}", c["text"]);
        let opts = DetokenizeOptions {
            remove_special: true,
            unparse_special: true,
        };
        let special = tok.detokenize(&ids, opts).unwrap();
        assert_eq!(special, hex(&c["detok_special"]), "{:?}", c["text"]);
        // Streaming piece by piece gives the same text here (Gemma adds no
        // space prefix).
        let text = tok.decode_text(&ids).unwrap();
        assert_eq!(text, plain);
    }
}

#[test]
fn gemma_gpl3_matches_llama_cpp() {
    let Some(tok) = gemma() else { return };
    let g = golden();
    let gpl = &g["gpl3"];
    let Ok(text) = std::fs::read_to_string(gpl["path"].as_str().unwrap()) else {
        eprintln!("SKIPPED: the GPL-3 text is not on this machine");
        return;
    };
    // As the SmolLM2 golden test does: the byte length tells a different
    // copy of the text apart.
    if Some(text.len() as u64) != gpl["bytes"].as_u64() {
        eprintln!("SKIPPED: this machine's GPL-3 text differs from the recorded one");
        return;
    }
    let want = ids(&gpl["ids"]);
    assert_eq!(encode(tok, &text, false), want);
    eprintln!(
        "gemma: GPL-3, {} bytes, {} ids identical",
        text.len(),
        want.len()
    );
}

#[test]
fn gemma_chat_matches_llama_cpp() {
    let Some(tok) = gemma() else { return };
    let path = std::env::var_os("LODE_GEMMA_MODEL").map_or_else(
        || repo_root().join("models/gemma-3-270m-Q4_K_M.gguf"),
        PathBuf::from,
    );
    let bytes = std::fs::read(path).expect("read once already");
    let file = Gguf::parse(&bytes).expect("parses");
    // Gemma 3 270M's GGUF has no chat template; its turn markers say Gemma.
    assert!(file.get("tokenizer.chat_template").is_none());
    let template = ChatTemplate::from_gguf(&file).expect("Gemma's layout");
    assert!(template.is_gemma());
    let g = golden();
    for chat in g["chats"].as_array().expect("chats") {
        let msgs: Vec<ChatMessage<'_>> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let text = chat["text"].as_str().unwrap();
        assert_eq!(template.render(&msgs, true), text);
        let got = tok.encode_chat(&template, &msgs, true).unwrap();
        assert_eq!(
            tok.decode(&got).unwrap(),
            [b"<bos>", text.as_bytes()].concat()
        );
        // llama.cpp tokenizes the rendered text with special tokens parsed,
        // so a marker written inside a message becomes a marker there;
        // lode spells it out. Elsewhere the ids are identical.
        let forged = msgs.iter().any(|m| m.content.contains("<end_of_turn>"));
        if !forged {
            assert_eq!(got, ids(&chat["ids"]), "{text:?}");
        } else {
            assert_ne!(got, ids(&chat["ids"]));
        }
    }
}
