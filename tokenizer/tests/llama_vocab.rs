//! lode's token ids against llama.cpp's own tokenizer test files.
//!
//! llama.cpp ships test vocabularies `models/ggml-vocab-<name>.gguf` with
//! inputs (`.gguf.inp`, cases separated by `\n__ggml_vocab_test__\n`) and
//! the ids its tokenizer gives them (`.gguf.out`, one line of ids per case),
//! encoded without BOS and without parsing special tokens.
//! `scripts/fetch-vocab-tests` puts them in `models/vocab/` (git-ignored);
//! `LODE_VOCAB_DIR` names another directory. Every case of every vocabulary
//! lode supports must give identical ids, and those ids must detokenize to
//! what llama.cpp's `llama_detokenize` gives (the input, except where
//! `tests/golden/vocab-detokenize.json` says otherwise). When the files are absent, the
//! test says so and passes without checking.

use std::path::PathBuf;

use lode_formats::gguf::Gguf;
use lode_tokenizer::{DetokenizeOptions, EncodeOptions, Tokenizer};

/// The vocabularies whose tokenizer lode implements: SentencePiece
/// (`llama-spm`, `phi-3`) and byte-level BPE with each supported split
/// rule.
const SUPPORTED: [&str; 9] = [
    "llama-spm",
    "phi-3",
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "starcoder",
    "refact",
    "mpt",
    "command-r",
];

fn vocab_dir() -> PathBuf {
    std::env::var_os("LODE_VOCAB_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/vocab"),
        PathBuf::from,
    )
}

/// The cases of one vocabulary: (input, expected ids).
fn cases(inp: &str, out: &str) -> Vec<(String, Vec<u32>)> {
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let mut inputs: Vec<&str> = inp.split(SEP).collect();
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("an id"))
                .collect()
        })
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "as many inputs as outputs");
    inputs
        .into_iter()
        .map(str::to_string)
        .zip(outputs)
        .collect()
}

/// What llama.cpp's detokenize gives for case `i` of vocabulary `name`
/// when that is not the case's input (recorded by
/// scripts/record-vocab-detokenize).
fn detokenized(name: &str, i: usize) -> Option<Vec<u8>> {
    static GOLDEN: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let g = GOLDEN.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/vocab-detokenize.json");
        let text = std::fs::read_to_string(path).expect("the golden file is in the repository");
        serde_json::from_str(&text).expect("JSON")
    });
    let hex = g["vocabs"][name]["differs"][i.to_string()].as_str()?;
    Some(
        hex.as_bytes()
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect(),
    )
}

/// Checks one vocabulary; returns (cases checked, failures described).
fn check(name: &str) -> Option<(usize, Vec<String>)> {
    let dir = vocab_dir();
    let gguf = dir.join(format!("ggml-vocab-{name}.gguf"));
    let bytes = std::fs::read(&gguf).ok()?;
    let inp = std::fs::read_to_string(gguf.with_extension("gguf.inp")).ok()?;
    let out = std::fs::read_to_string(gguf.with_extension("gguf.out")).ok()?;
    let file = Gguf::parse(&bytes).expect("the vocabulary's GGUF parses");
    let tok =
        Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{name}: the vocabulary loads: {e}"));
    let opts = EncodeOptions {
        add_bos: false,
        parse_special: false,
    };
    let cases = cases(&inp, &out);
    let mut failures = Vec::new();
    for (i, (text, want)) in cases.iter().enumerate() {
        let mut got = Vec::new();
        tok.encode_into(text, opts, &mut got);
        if &got != want {
            failures.push(format!(
                "{name}: {text:?}\n    lode:      {got:?}\n    llama.cpp: {want:?}"
            ));
        }
        // Decoding gives what llama.cpp's detokenize gives: the text back,
        // but for the cases tests/golden/vocab-detokenize.json lists.
        let expected = detokenized(name, i).unwrap_or_else(|| text.as_bytes().to_vec());
        match tok.detokenize(want, DetokenizeOptions::default()) {
            Ok(back) if back == expected => {}
            back => failures.push(format!(
                "{name}: {text:?} detokenizes to {:?}, llama.cpp: {:?}",
                back.map(|b| String::from_utf8_lossy(&b).into_owned()),
                String::from_utf8_lossy(&expected)
            )),
        }
    }
    Some((cases.len(), failures))
}

#[test]
fn ids_match_llama_cpp_on_its_vocab_tests() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in SUPPORTED {
        match check(name) {
            Some((n, f)) => {
                eprintln!(
                    "vocab {name}: {n} cases, {} with ids and detokenized text identical to llama.cpp",
                    n - f.len()
                );
                checked += 1;
                failures.extend(f);
            }
            None => eprintln!(
                "SKIPPED vocab {name}: ggml-vocab-{name}.gguf(.inp/.out) not in {}; run scripts/fetch-vocab-tests",
                vocab_dir().display()
            ),
        }
    }
    eprintln!("{checked} of {} vocabularies checked", SUPPORTED.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
