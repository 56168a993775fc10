//! The architecture section (kind 11) and the K-quant element types of
//! format 1.3: written by `ImageBuilder::arch_params`, read back by
//! `Image::arch_params`, and every rule of FORMAT.md's section refused.

use super::*;

const GEMMA: ArchParams = ArchParams {
    window: 512,
    period: 6,
    local_rope_base: 10_000.0,
    approx_head: false,
};

/// A one-layer gemma3 image holding a Q4_K, a Q6_K and a Q5_0 tensor,
/// with `arch` as its architecture section. Its layer is dense (an empty
/// bundle region) and names a Q6_K down type, whose row of the hidden
/// width 640 is not whole blocks: bundle size 0, as 1.3 allows.
fn gemma_image(arch: Option<ArchParams>) -> Result<Vec<u8>, ImageError> {
    let mut g = geometry(1, 640);
    g.arch = ArchTag::new(SLIDING_WINDOW_ARCH).unwrap();
    let mut b = ImageBuilder::new(g);
    b.block_size(512);
    let data = |n: usize| (0..n).map(|i| (i * 13 + 1) as u8).collect::<Vec<u8>>();
    b.add_tensor("blk.0.ffn_down.weight", DType::Q6_K, &[256, 2], data(420))
        .unwrap();
    b.add_tensor("blk.0.ffn_gate.weight", DType::Q5_0, &[256, 1], data(176))
        .unwrap();
    b.add_tensor(
        "blk.0.attn_output.weight",
        DType::Q4_K,
        &[256, 1],
        data(144),
    )
    .unwrap();
    let parts = BundleParts {
        gate: None,
        up: None,
        down: Some(DType::Q6_K),
    };
    b.add_layer(LayerSpec::new(parts, Vec::new(), Vec::new()));
    if let Some(a) = arch {
        b.arch_params(a);
    }
    match b.to_bytes() {
        Ok(bytes) => open_and_verify(&bytes).map(|()| bytes),
        Err(WriteError::Invalid(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_gemma_image_holds_its_window_and_k_quants() {
    let bytes = gemma_image(Some(GEMMA)).unwrap();
    let image = Image::parse(&bytes).unwrap();
    let h = image.header();
    assert_eq!((h.major, h.minor, h.section_count), (1, 3, 9));
    assert_eq!(image.arch_params(), Some(GEMMA));
    assert_eq!(section(&bytes, SectionKind::Arch).len(), 16);
    let r = image.bundle_region(0).unwrap();
    assert_eq!(
        (r.count, r.bundle_size, r.parts.down),
        (0, 0, Some(DType::Q6_K))
    );
    let types: Vec<DType> = (0..3).map(|i| image.tensor(i).unwrap().dtype).collect();
    assert_eq!(types, [DType::Q4_K, DType::Q6_K, DType::Q5_0]);
    // A llama image without K-quants stays the version it was.
    assert_eq!(Image::parse(&small_image()).unwrap().header().minor, 0);
}

#[test]
fn k_quants_alone_make_a_1_3_image() {
    let mut b = ImageBuilder::new(geometry(0, 256));
    b.add_tensor("t", DType::Q4_K, &[256], vec![0u8; 144])
        .unwrap();
    let bytes = b.to_bytes().unwrap();
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.header().minor, 3);
    assert!(image.arch_params().is_none());
}

#[test]
fn every_single_byte_corruption_is_detected_with_an_arch_section() {
    every_single_byte_corruption_of(&gemma_image(Some(GEMMA)).unwrap());
}

#[test]
fn arch_section_rules_are_checked() {
    let malformed = |r: Result<Vec<u8>, ImageError>| {
        let e = r.unwrap_err();
        assert_eq!(e.location(), Location::Section(SectionKind::Arch));
        assert_eq!(e.kind(), ErrorKind::Malformed);
        e.detail()
    };
    assert_eq!(
        malformed(gemma_image(None)),
        "a gemma3 image lacks its architecture section (the sliding window)"
    );
    let zero = "the window or its layer period is zero";
    for bad in [
        ArchParams { window: 0, ..GEMMA },
        ArchParams { period: 0, ..GEMMA },
    ] {
        assert_eq!(malformed(gemma_image(Some(bad))), zero);
    }
    for base in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let bad = ArchParams {
            local_rope_base: base,
            ..GEMMA
        };
        assert_eq!(
            malformed(gemma_image(Some(bad))),
            "the local RoPE base is not finite and positive"
        );
    }
    // A llama image may not carry one.
    let mut b = small_builder(None);
    b.arch_params(GEMMA);
    let Err(WriteError::Invalid(e)) = b.to_bytes() else {
        panic!("a llama image with an architecture section was written");
    };
    assert_eq!(
        e.detail(),
        "architecture section in an image of an architecture without one"
    );
}

#[test]
fn arch_section_needs_minor_3_and_known_flags() {
    let patched =
        |patch: &dyn Fn(&mut Vec<u8>)| reopened_with(gemma_image(Some(GEMMA)).unwrap(), patch);
    let minor = |m: u16| patched(&|b: &mut Vec<u8>| set_minor(b, m));
    let e = minor(2).unwrap_err();
    assert_eq!(
        (e.location(), e.detail()),
        (
            Location::Section(SectionKind::Arch),
            "architecture section in an image of minor version below 3"
        )
    );
    // Without the section, a K-quant tensor in a 1.2 image is refused.
    let mut b = ImageBuilder::new(geometry(0, 256));
    b.add_tensor("t", DType::Q6_K, &[256], vec![0u8; 210])
        .unwrap();
    let e = reopened_with(b.to_bytes().unwrap(), &|b| set_minor(b, 2)).unwrap_err();
    assert_eq!(
        (e.location(), e.detail()),
        (
            Location::Tensor(0),
            "dtype code unknown in this image's version"
        )
    );
    assert_eq!(minor(4), Ok(()));
    let e = patched(&|b: &mut Vec<u8>| {
        let at = section(b, SectionKind::Arch).start + 12;
        b[at] = 2;
    })
    .unwrap_err();
    assert_eq!(e.detail(), "unknown flag bits are set");
    // The approximate head flag needs an output head.
    let e = patched(&|b: &mut Vec<u8>| {
        let at = section(b, SectionKind::Arch).start + 12;
        b[at] = 1;
    })
    .unwrap_err();
    assert_eq!(
        e.detail(),
        "the approximate head flag is set but there is no output.weight"
    );
}

#[test]
fn an_approximate_head_is_flagged() {
    let mut g = geometry(0, 256);
    g.arch = ArchTag::new(SLIDING_WINDOW_ARCH).unwrap();
    let mut b = ImageBuilder::new(g);
    b.add_tensor("output.weight", DType::Q4_0, &[256, 2], vec![0u8; 288])
        .unwrap();
    let approx = ArchParams {
        approx_head: true,
        ..GEMMA
    };
    b.arch_params(approx);
    let bytes = b.to_bytes().unwrap();
    assert_eq!(Image::parse(&bytes).unwrap().arch_params(), Some(approx));
}
