//! The tokenizer a packed image carries equals its source GGUF's, on the
//! real model (the runtime reads it; `lode pack` writes it).

use lode_formats::gguf::Gguf;
use lode_formats::image::Image;
use lode_runtime::image_tokenizer::tokenizer_from_image;
use lode_tokenizer::Tokenizer;

use crate::cmd_pack::{self, PackArgs};
use crate::testutil::real_model;

/// Texts that exercise the pre-tokenizer (digits, spaces, punctuation,
/// contractions), multi-byte UTF-8, and the chat markers.
const TEXTS: [&str; 7] = [
    "The capital of France is",
    "  Hello,   world!\n\nIt's 2024-06-01: 3.14159 > 42.",
    "naïve café – 東京 🚀",
    "<|im_start|>user\nWhat is 7*6?<|im_end|>\n<|im_start|>assistant\n",
    "",
    "don't won't they'll I'm",
    "\t\tdef f(x):\n\t\treturn x**2",
];

#[test]
fn the_packed_real_model_tokenizes_like_its_gguf() {
    let Some(model) = real_model() else { return };
    let path =
        std::env::temp_dir().join(format!("lode-image-tokenizer-{}.lode", std::process::id()));
    let args = PackArgs::quiet_defaults(model.clone(), path.clone());
    let packed = cmd_pack::run(&args, &mut Vec::new());
    let bytes = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    packed.unwrap();
    let bytes = bytes.unwrap();
    let image = Image::parse(&bytes).unwrap();
    let from_image = tokenizer_from_image(&image).unwrap();

    let gguf_bytes = std::fs::read(&model).unwrap();
    let from_gguf = Tokenizer::from_gguf(&Gguf::parse(&gguf_bytes).unwrap()).unwrap();

    assert_eq!(from_image.vocab_size(), 49152);
    assert_eq!(from_image.vocab_size(), from_gguf.vocab_size());
    assert_eq!(from_image.merge_count(), from_gguf.merge_count());
    assert_eq!(from_image.specials(), from_gguf.specials());
    assert_eq!(from_image.pre_tokenizer(), from_gguf.pre_tokenizer());
    for text in TEXTS {
        for add_bos in [false, true] {
            let ids = from_image.encode(text, add_bos);
            assert_eq!(ids, from_gguf.encode(text, add_bos), "{text:?}");
            let special = from_image.encode_special(text, add_bos);
            assert_eq!(special, from_gguf.encode_special(text, add_bos));
            for ids in [&ids, &special] {
                assert_eq!(from_image.decode(ids), from_gguf.decode(ids));
                assert_eq!(from_image.decode_text(ids), from_gguf.decode_text(ids));
            }
        }
    }
    // Markers are single tokens when parsed, text otherwise.
    let marked = from_image.encode_special(TEXTS[3], false);
    assert_eq!(marked.first(), from_image.token_id("<|im_start|>").as_ref());
    assert!(marked.len() < from_image.encode(TEXTS[3], false).len());
    // Every id decodes the same (covers the whole vocabulary).
    let all: Vec<u32> = (0..49152).collect();
    assert_eq!(from_image.decode(&all), from_gguf.decode(&all));
    let first = from_image.encode(TEXTS[0], false);
    assert!(!first.is_empty());
    assert_eq!(
        from_image.decode(&first).unwrap(),
        TEXTS[0].as_bytes().to_vec()
    );
}
