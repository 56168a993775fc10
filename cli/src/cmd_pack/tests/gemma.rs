//! `lode pack` of Gemma 3: dense by default, llama's layout options
//! refused, and a separate re-quantized head.

use super::super::args::HeadType;
use super::*;
use crate::testutil::gemma_model;

/// A Gemma 3 GGUF packs dense (the default for it), into a 1.3 image that
/// verifies and holds its sliding window; llama's layout options are
/// refused by name before any work.
#[test]
fn packs_gemma_dense_and_refuses_llama_options() {
    let Some(model) = gemma_model() else { return };
    let refused = |set: &dyn Fn(&mut PackArgs), what: &str| {
        let mut a = args(model.clone(), tmp("gemma-refused.lode"));
        set(&mut a);
        let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
        assert!(!a.output.exists());
    };
    refused(
        &|a| a.layout = Some(Layout::Split),
        "--layout bundled and split",
    );
    refused(&|a| a.placement = PlacementKind::Freq, "--placement");
    refused(&|a| a.drop_layers = vec![3], "--drop-layers");
    let a = args(model, tmp("gemma.lode"));
    let (bytes, text) = pack_verified(&a);
    assert!(
        text.contains("Gemma 3") && text.contains("dense FFN"),
        "{text}"
    );
    let img = Image::parse(&bytes).unwrap();
    assert_eq!(img.header().minor, 3);
    let p = img.arch_params().unwrap();
    assert_eq!((p.window, p.period), (512, 6));
    assert!(img.tensor_by_name("output.weight").is_none());
    // A separate, narrower head: an untied image, its cost printed.
    let text = tmp("head-text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(8),
    )
    .unwrap();
    let mut a = args(gemma_model().unwrap(), tmp("gemma-head.lode"));
    a.head = Some(HeadType::Q4_0);
    a.check_text = Some(text.clone());
    a.check_tokens = 48;
    let (bytes, out) = pack_verified(&a);
    let _ = std::fs::remove_file(&text);
    assert!(
        out.contains("head q4_0: perplexity over 47 tokens"),
        "{out}"
    );
    let img = Image::parse(&bytes).unwrap();
    let (_, head) = img.tensor_by_name("output.weight").unwrap();
    assert_eq!((head.dtype, head.length), (DType::Q4_0, 262_144 * 360));
}

/// `--head` re-quantizes a tied head for Gemma 3 only, so far.
#[test]
fn a_llama_model_refuses_head() {
    let Some(model) = real_model() else { return };
    let mut a = args(model, tmp("llama-head.lode"));
    a.head = Some(HeadType::Q4_0);
    let e = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("--head is for Gemma 3"), "{e}");
}
