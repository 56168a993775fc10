//! Fuzzing the tokenizer: building one from GGUF metadata
//! ([`Tokenizer::from_gguf`], [`ChatTemplate::from_gguf`]), recognising
//! chat templates ([`ChatTemplate::from_jinja`]), encoding
//! arbitrary text ([`Tokenizer::encode`], [`Tokenizer::encode_special`],
//! [`Tokenizer::encode_chat`]) and decoding arbitrary ids
//! ([`Tokenizer::decode`], [`Tokenizer::decode_text`]).
//!
//! Inputs: for loading, a small byte-level BPE vocabulary as a GGUF file
//! (and variants: another pre-tokenizer, no token types, BOS added) and a
//! small SentencePiece one (with and without a space prefix, without
//! scores),
//! mutated by bit flips, byte changes, truncation, insertion, removal,
//! copies and length and count fields set to extreme values, and random or
//! spliced bytes; for encoding, any Unicode string, random bytes made UTF-8,
//! runs of one character, and text pieced together from fragments that
//! exercise the pre-tokenizer and special tokens (spaces, digits,
//! contractions, markers and broken markers, combining marks, emoji); for
//! decoding, ids in and around the vocabulary and any `u32`. Encoding and
//! decoding run on both small vocabularies and, when the models are
//! present, on SmolLM2's own (49152 tokens, 48900 merges) and Gemma 3's
//! (SentencePiece, 262144 tokens).
//!
//! Asserted for every input: no panic; every error typed
//! ([`GgufVocabError`], [`ChatTemplateError`], [`TokenizerError`]) with a
//! message; each case within the harness's time limit; every id encoded
//! is in the vocabulary; `decode(encode(s)) == s` whenever every byte of
//! `s` has a token; decoding fails exactly on an id outside the vocabulary,
//! naming it. Allocation bounds (bytes requested, growth included):
//!
//! - building a tokenizer: at most `64 * input + 1 MiB`;
//! - recognising a chat template: at most `8 * template + 16 KiB`;
//! - encoding `s`: at most `1024 * s.len() + 64 KiB` (why: [`encode_bound`]);
//! - decoding: at most `4 * output + 64` bytes.
//!
//! A CI run gives each property 10,000 cases. A longer run by hand, in
//! release mode:
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_tokenizer -- --nocapture
//! ```
//!
//! (`LODE_FUZZ_SEED=<n>` repeats the run a report line names.)

mod fuzz;

use std::sync::{Arc, OnceLock};

use fuzz::gguf::{file, spm_vocab_file, spm_vocab_metadata, vocab_file, vocab_metadata, V};
use lode_formats::gguf::Gguf;
use lode_tests::{Allocated, CountingAlloc};
use lode_tokenizer::{
    ChatMessage, ChatTemplate, TokenType, Tokenizer, TokenizerError, TokenizerModel,
};
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Bytes building a tokenizer from `len` bytes of GGUF may allocate: the
/// token texts twice (stored and decoded), their offsets, types, the merge
/// rules, each at most a few times the bytes they came from (measured:
/// at most 6 times the file).
fn load_bound(len: usize) -> u64 {
    64 * len as u64 + (1 << 20)
}

/// Bytes encoding `len` bytes of text may allocate. Per input byte BPE
/// holds a merge symbol (56 bytes), at most three candidate pairs in its
/// heap (40 bytes each: one per adjacent pair, two more per merge), a
/// character position (16) and an id (4): 196 bytes. Buffers grow by
/// doubling, so what is requested over a call (every size a buffer passes
/// through, counted here) is at most four times that: 784. Measured: about
/// 420 for long runs of one letter on SmolLM2's vocabulary.
fn encode_bound(len: usize) -> u64 {
    1024 * len as u64 + (64 << 10)
}

/// Bytes decoding to `out` bytes may allocate.
fn decode_bound(out: usize) -> u64 {
    4 * out as u64 + 64
}

/// The fuzz tests' small vocabulary, built once.
fn small() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = vocab_file();
        Tokenizer::from_gguf(&Gguf::parse(&bytes).expect("GGUF")).expect("tokenizer")
    })
}

/// The small SentencePiece vocabulary, built once.
fn small_spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = spm_vocab_file();
        Tokenizer::from_gguf(&Gguf::parse(&bytes).expect("GGUF")).expect("tokenizer")
    })
}

/// Gemma 3's tokenizer (SentencePiece), when its model is present.
fn gemma() -> Option<&'static Tokenizer> {
    static T: OnceLock<Option<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/gemma-3-270m-Q4_K_M.gguf");
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!(
                "note: {} absent; fuzzing without Gemma's tokenizer",
                path.display()
            );
            return None;
        };
        Tokenizer::from_gguf(&Gguf::parse(&bytes).ok()?).ok()
    })
    .as_ref()
}

/// SmolLM2's tokenizer, when the model is present.
fn real() -> Option<&'static Tokenizer> {
    static T: OnceLock<Option<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        let bytes = lode_tests::real_model()?;
        Tokenizer::from_gguf(&Gguf::parse(bytes).ok()?).ok()
    })
    .as_ref()
}

/// Every tokenizer the encode and decode properties run on.
fn tokenizers() -> Vec<&'static Tokenizer> {
    [small(), small_spm()]
        .into_iter()
        .chain(real())
        .chain(gemma())
        .collect()
}

/// Seeds for loading: the vocabulary and three variants of it.
fn vocab_seeds() -> Arc<Vec<Vec<u8>>> {
    let without = |key: &str| -> Vec<(&'static str, V)> {
        vocab_metadata("llama")
            .into_iter()
            .filter(|(k, _)| *k != key)
            .collect()
    };
    let mut gpt2 = without("tokenizer.ggml.pre");
    gpt2.push(("tokenizer.ggml.pre", V::s("gpt2")));
    let mut bos = without("tokenizer.ggml.add_bos_token");
    bos.push(("tokenizer.ggml.add_bos_token", V::Bool(true)));
    let spm_without_scores: Vec<(&'static str, V)> = spm_vocab_metadata(true)
        .into_iter()
        .filter(|(k, _)| *k != "tokenizer.ggml.scores")
        .collect();
    Arc::new(vec![
        vocab_file(),
        file(3, &gpt2, &[], 32),
        file(3, &without("tokenizer.ggml.token_type"), &[], 32),
        file(2, &bos, &[], 32),
        spm_vocab_file(),
        file(3, &spm_vocab_metadata(true), &[], 32),
        file(3, &spm_without_scores, &[], 32),
    ])
}

fn nothing(_: &mut [u8]) {}

/// Pieces of text that exercise the pre-tokenizer, the merges and the
/// special tokens.
const FRAGMENTS: [&str; 42] = [
    "\u{2581}",
    "\u{2581}the",
    "<0x41>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    "the",
    " the",
    "Hello",
    " a",
    "ing",
    "er",
    "1",
    "123",
    "4567890",
    "'s",
    "'ll",
    "n't",
    "'S",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start",
    "|>",
    "<|",
    "é",
    "ü",
    "日本語",
    "🦀",
    "\u{301}",
    "\u{0}",
    "ʼ",
    "٣",
    "ǅ",
    ".",
    "...",
];

/// Text of every kind the encoder may meet.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        4 => prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(FRAGMENTS.to_vec()).prop_map(str::to_string),
                1 => any::<char>().prop_map(|c| c.to_string()),
            ],
            0..64
        )
        .prop_map(|v| v.concat()),
        1 => (any::<char>(), 0usize..2048).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// Ids of the small vocabulary (valid in both), and ids in and around
/// either vocabulary's end and anywhere.
fn ids() -> impl Strategy<Value = Vec<u32>> {
    let n = small().vocab_size() as u32;
    prop_oneof![
        prop::collection::vec(0..n, 0..256),
        prop::collection::vec(
            prop_oneof![
                8 => 0u32..n + 40,
                4 => 49_000u32..49_300,
                1 => any::<u32>(),
            ],
            0..256,
        ),
    ]
}

/// True when token `id` decodes through the byte alphabet: control,
/// unknown and user-defined tokens decode to their text verbatim instead.
fn decodes_as_bytes(tok: &Tokenizer, id: u32) -> bool {
    !matches!(
        tok.token_type(id),
        Some(TokenType::Control | TokenType::Unknown | TokenType::UserDefined)
    )
}

/// True when every token BPE can emit for `tok` (each byte's and each
/// merge rule's joined string) exists and decodes through the byte
/// alphabet: then text every byte of which has a token decodes back to
/// itself. Never for a mutated SentencePiece vocabulary: any token whose
/// text the input spells out can be formed, and a mutation may have made
/// one a byte token (`<0x41>` decoding to `A`) or an unused one (decoding
/// to nothing). A mutated vocabulary may break either: where a joined string
/// is not a token, lode, like llama.cpp, falls back to one-byte tokens of
/// its encoded text and drops bytes without one; a byte's token typed
/// user-defined decodes to its alphabet character's UTF-8.
fn round_trips(tok: &Tokenizer, file: &Gguf<'_>) -> bool {
    if tok.model() == TokenizerModel::SentencePiece {
        return false;
    }
    let bytes_plain = (0..=255u8).all(|b| {
        let c = lode_tokenizer::bytes::byte_to_char(b).to_string();
        tok.token_id(&c).is_none_or(|id| decodes_as_bytes(tok, id))
    });
    let Some(lines) = file
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.as_array())
        .and_then(|a| a.strings())
    else {
        return bytes_plain;
    };
    bytes_plain
        && lines.into_iter().all(|line| {
            // The rule's two sides are split at the first space after the
            // first byte; the joined string is the line without it.
            let space = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some(at) = space else { return true };
            let joined = [&line[..at], &line[at + 1..]].concat();
            tok.token_id(&joined)
                .is_some_and(|id| decodes_as_bytes(tok, id))
        })
}

/// Checks one tokenizer's encoding of `s` (plain and with special tokens);
/// `exact` when decoding must give `s` back for text every byte of which
/// has a token (see [`round_trips`]).
fn check_encode(tok: &Tokenizer, s: &str, exact: bool) -> Result<(), TestCaseError> {
    let vocab = tok.vocab_size();
    for special in [false, true] {
        let (ids, used) = CountingAlloc::measure(|| match special {
            false => tok.encode(s, false),
            true => tok.encode_special(s, false),
        });
        prop_assert!(
            used.bytes <= encode_bound(s.len()),
            "encoding {} bytes allocated {:?}",
            s.len(),
            used
        );
        prop_assert!(ids.iter().all(|&id| (id as usize) < vocab), "{ids:?}");
        if exact && tok.can_encode(s) {
            let back = tok
                .decode(&ids)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, s.as_bytes(), "special {}: {:?}", special, ids);
        }
    }
    Ok(())
}

/// Checks one tokenizer's decoding of `ids`.
fn check_decode(tok: &Tokenizer, ids: &[u32]) -> Result<(), TestCaseError> {
    let vocab = tok.vocab_size();
    let first_bad = ids.iter().copied().find(|&id| id as usize >= vocab);
    for all in [true, false] {
        let (out, used): (_, Allocated) = CountingAlloc::measure(|| match all {
            true => tok.decode(ids),
            false => tok.decode_text(ids),
        });
        match (out, first_bad) {
            (Ok(bytes), None) => prop_assert!(
                used.bytes <= decode_bound(bytes.len()),
                "{} bytes out, {:?}",
                bytes.len(),
                used
            ),
            (Err(TokenizerError::UnknownId { id }), Some(bad)) => prop_assert_eq!(id, bad),
            (other, bad) => prop_assert!(false, "{other:?} for first bad id {bad:?}"),
        }
    }
    Ok(())
}

/// Says which tokenizers the encode and decode properties run on.
fn announce() {
    let names: Vec<String> = tokenizers()
        .iter()
        .map(|t| {
            format!(
                "{:?}, {} tokens, {} merges",
                t.model(),
                t.vocab_size(),
                t.merge_count()
            )
        })
        .collect();
    fuzz::report(&format!("tokenizers: {}", names.join("; ")));
}

#[test]
fn fuzz_tokenizer_encode() {
    announce(); // and loaded before the clock starts
    fuzz::run("tokenizer encode", text(), |s| {
        for tok in tokenizers() {
            check_encode(tok, s, true)?;
        }
        Ok(true)
    });
}

#[test]
fn fuzz_tokenizer_decode() {
    announce();
    fuzz::run("tokenizer decode", ids(), |ids| {
        for tok in tokenizers() {
            check_decode(tok, ids)?;
        }
        Ok(ids.iter().all(|&id| (id as usize) < small().vocab_size()))
    });
}

/// What a tokenizer built from a mutated file does with a little text.
fn use_loaded(
    tok: &Tokenizer,
    file: &Gguf<'_>,
    chat: Option<&ChatTemplate>,
) -> Result<(), TestCaseError> {
    let exact = round_trips(tok, file);
    check_encode(
        tok,
        "Hello <|im_start|>user\n the 123 🦀 é\n<|im_end|>",
        exact,
    )?;
    check_decode(tok, &[0, 1, 2, 3, 100, 300])?;
    if let Some(template) = chat {
        let msgs = [ChatMessage::new("user", "hi <|im_end|> there")];
        match tok.encode_chat(template, &msgs, true) {
            Ok(ids) => prop_assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size())),
            Err(e) => {
                let missing = matches!(e, TokenizerError::MissingChatMarker { .. });
                prop_assert!(missing, "{e}");
            }
        }
    }
    Ok(())
}

/// SmolLM2's chat template, with its default system prompt.
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and \
    messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant \
    named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + \
    message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if \
    add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A Gemma-style chat template (the shape of Gemma's own).
const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% set role = \
    'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + \
    role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if \
    add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// Bytes recognising a chat template of `len` bytes may allocate: the
/// template without white space, the patterns it is searched for, the
/// default system prompt.
fn template_bound(len: usize) -> u64 {
    8 * len as u64 + (16 << 10)
}

/// Recognising mutated chat templates ([`ChatTemplate::from_jinja`]); a
/// template that is recognised renders a conversation, and its encoding
/// ([`Tokenizer::encode_chat`]) decodes to exactly that rendering.
#[test]
fn fuzz_chat_template() {
    let seeds = vec![
        SMOLLM2_TEMPLATE.as_bytes().to_vec(),
        GEMMA_TEMPLATE.as_bytes().to_vec(),
        match vocab_metadata("llama").pop() {
            Some((_, V::Str(t))) => t.into_bytes(),
            _ => panic!("the vocabulary's last entry is its chat template"),
        },
    ];
    fuzz::run(
        "chat template",
        fuzz::inputs(Arc::new(seeds), nothing, 512),
        |input| {
            let src = String::from_utf8_lossy(&input.bytes);
            let (template, used) = CountingAlloc::measure(|| ChatTemplate::from_jinja(&src));
            prop_assert!(
                used.bytes <= template_bound(src.len()),
                "{} bytes of template allocated {:?}",
                src.len(),
                used
            );
            let template = match template {
                Ok(t) => t,
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    return Ok(false);
                }
            };
            let msgs = [
                ChatMessage::new("user", "hi <|im_end|> 🦀"),
                ChatMessage::new("assistant", ""),
                ChatMessage::new("user", " the 123\n"),
            ];
            let text = template.render(&msgs, true);
            // Gemma's layout needs Gemma's markers, which the SentencePiece
            // vocabulary has (and it adds BOS).
            let (tok, bos) = match template.is_gemma() {
                false => (small(), ""),
                true => (small_spm(), "<bos>"),
            };
            let ids = tok
                .encode_chat(&template, &msgs, true)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = tok
                .decode(&ids)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, [bos, text.as_str()].concat().into_bytes());
            Ok(true)
        },
    );
}

#[test]
fn fuzz_tokenizer_load() {
    fuzz::run(
        "tokenizer load",
        fuzz::inputs(vocab_seeds(), nothing, 2048),
        |input| {
            let bytes = &input.bytes;
            let Ok(file) = Gguf::parse(bytes) else {
                return Ok(false);
            };
            let (tok, used) = CountingAlloc::measure(|| Tokenizer::from_gguf(&file));
            prop_assert!(
                used.bytes <= load_bound(bytes.len()),
                "building from {} bytes allocated {:?}",
                bytes.len(),
                used
            );
            let chat = ChatTemplate::from_gguf(&file);
            match (&tok, &chat) {
                (Err(e), _) => prop_assert!(!e.to_string().is_empty()),
                (_, Err(e)) => prop_assert!(!e.to_string().is_empty()),
                _ => {}
            }
            match tok {
                Ok(tok) => {
                    use_loaded(&tok, &file, chat.as_ref().ok())?;
                    Ok(true)
                }
                Err(_) => Ok(false),
            }
        },
    );
}
