//! The tokenizer of a lode image, so running an image needs no GGUF.
//!
//! `lode pack` stores the source model's tokenizer metadata in the image's
//! tokenizer section (format 1.1) as a GGUF file without tensors. Building a
//! [`Tokenizer`] from it is the same code path as building one from the
//! model file ([`Tokenizer::from_gguf`]), so an image and its source GGUF
//! give the same token ids by construction; `lode-cli`'s pack tests check it
//! on the real model.

use lode_formats::gguf::Gguf;
use lode_formats::image::Image;
use lode_tokenizer::Tokenizer;

/// Why an image has no tokenizer, and what to do about it.
pub const NO_TOKENIZER: &str = "image packed without a tokenizer; repack with this lode";

/// The image's tokenizer section, parsed as the GGUF file it is (for the
/// tokenizer, the chat template, or anything else under `tokenizer.*`).
pub fn tokenizer_gguf<'a>(image: &Image<'a>) -> Result<Gguf<'a>, String> {
    let bytes = image.tokenizer_gguf().ok_or(NO_TOKENIZER)?;
    // `Image::parse` already checked that the section parses; this cannot
    // fail on an opened image, but stays an error rather than a panic.
    Gguf::parse(bytes).map_err(|e| format!("image tokenizer section: {e}"))
}

/// The tokenizer stored in `image`: an error naming the fix when the image
/// has none (packed before format 1.1), or naming the problem when its
/// vocabulary is one lode's tokenizer cannot build.
pub fn tokenizer_from_image(image: &Image<'_>) -> Result<Tokenizer, String> {
    let file = tokenizer_gguf(image)?;
    Tokenizer::from_gguf(&file).map_err(|e| format!("image tokenizer: {e}"))
}

#[cfg(test)]
mod tests {
    use lode_formats::gguf::tokenizer_only;
    use lode_formats::image::{ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry};
    use lode_formats::DType;

    use super::*;

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A source GGUF's metadata with the tokenizer model `model` and three
    /// tokens, run through `tokenizer_only` as `lode pack` does.
    fn tokenizer_section(model: &str) -> Vec<u8> {
        let mut src = b"GGUF".to_vec();
        src.extend_from_slice(&3u32.to_le_bytes());
        src.extend_from_slice(&0u64.to_le_bytes());
        src.extend_from_slice(&3u64.to_le_bytes());
        for (key, value) in [
            ("general.architecture", "llama"),
            ("tokenizer.ggml.model", model),
        ] {
            put_str(&mut src, key);
            src.extend_from_slice(&8u32.to_le_bytes());
            put_str(&mut src, value);
        }
        put_str(&mut src, "tokenizer.ggml.tokens");
        src.extend_from_slice(&9u32.to_le_bytes());
        src.extend_from_slice(&8u32.to_le_bytes());
        src.extend_from_slice(&3u64.to_le_bytes());
        for t in ["a", "b", "ab"] {
            put_str(&mut src, t);
        }
        tokenizer_only(&Gguf::parse(&src).unwrap()).unwrap()
    }

    /// A one-layer image, with `tokenizer` as its tokenizer section if given.
    fn image_bytes(tokenizer: Option<Vec<u8>>) -> Vec<u8> {
        let geometry = ModelGeometry {
            arch: ArchTag::new("llama").unwrap(),
            layers: 1,
            hidden: 32,
            ffn: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 32,
            vocab: 3,
            context: 64,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            fingerprint: 1,
        };
        let q = Some(DType::Q8_0);
        let parts = BundleParts {
            gate: q,
            up: q,
            down: q,
        };
        let mut b = ImageBuilder::new(geometry);
        b.add_layer(LayerSpec::new(parts, vec![0u8; 102], vec![0]));
        if let Some(t) = tokenizer {
            b.tokenizer_gguf(t);
        }
        b.to_bytes().unwrap()
    }

    #[test]
    fn an_image_without_a_tokenizer_says_to_repack() {
        let bytes = image_bytes(None);
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(tokenizer_from_image(&image).unwrap_err(), NO_TOKENIZER);
        assert_eq!(tokenizer_gguf(&image).unwrap_err(), NO_TOKENIZER);
    }

    #[test]
    fn an_unsupported_vocabulary_is_named() {
        let bytes = image_bytes(Some(tokenizer_section("bert")));
        let image = Image::parse(&bytes).unwrap();
        let e = tokenizer_from_image(&image).unwrap_err();
        assert!(e.starts_with("image tokenizer: "), "{e}");
        assert!(e.contains("\"bert\""), "{e}");
        // The section itself is there and reads as GGUF.
        let file = tokenizer_gguf(&image).unwrap();
        assert_eq!(file.get_str("tokenizer.ggml.model"), Ok("bert"));
    }
}
