//! The lineage section (kind 10): written by `ImageBuilder::lineage`, read
//! back by `Image::lineage`, and every rule of FORMAT.md's section refused.

use super::*;

/// [`small_builder`]'s two layers as layers 1 and 3 of a five-layer model.
fn pruned(kept: &[u32], base_layers: u32) -> Result<Vec<u8>, ImageError> {
    let mut b = small_builder(Some(tokenizer_file(&SMALL_TOKENS)));
    b.lineage(0xBA5E, base_layers, kept);
    match b.to_bytes() {
        Ok(bytes) => open_and_verify(&bytes).map(|()| bytes),
        Err(WriteError::Invalid(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_pruned_image_says_which_layers_of_which_model_it_kept() {
    let bytes = pruned(&[1, 3], 5).unwrap();
    let image = Image::parse(&bytes).unwrap();
    let h = image.header();
    assert_eq!((h.major, h.minor, h.section_count), (1, 2, 10));
    let l = image.lineage().unwrap();
    assert_eq!((l.base_fingerprint(), l.base_layers()), (0xBA5E, 5));
    assert_eq!(l.kept().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(l.dropped().collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!((l.source_layer(1), l.source_layer(2)), (Some(3), None));
    // Kind 10 comes last; the data is that of the image without it.
    let range = section(&bytes, SectionKind::Lineage);
    assert_eq!(range.len(), 16 + 4 * 2);
    assert!(range.start >= section(&bytes, SectionKind::Tokenizer).end);
    let plain = small_image_tok();
    let old = Image::parse(&plain).unwrap();
    assert!(old.lineage().is_none());
    assert_eq!(
        &bytes[h.meta_len as usize..],
        &plain[old.header().meta_len as usize..]
    );
}

#[test]
fn every_single_byte_corruption_is_detected_with_a_lineage() {
    every_single_byte_corruption_of(&pruned(&[0, 4], 5).unwrap());
}

#[test]
fn lineage_rules_are_checked() {
    let malformed = |r: Result<Vec<u8>, ImageError>| {
        let e = r.unwrap_err();
        assert_eq!(e.location(), Location::Section(SectionKind::Lineage));
        assert_eq!(e.kind(), ErrorKind::Malformed);
        e.detail()
    };
    assert_eq!(
        malformed(pruned(&[3, 1], 5)),
        "source layers are not strictly increasing"
    );
    assert_eq!(
        malformed(pruned(&[2, 2], 5)),
        "source layers are not strictly increasing"
    );
    assert_eq!(
        malformed(pruned(&[1, 5], 5)),
        "a source layer is not below the base's layer count"
    );
    assert_eq!(
        malformed(pruned(&[1], 5)),
        "entries differ from the geometry's layer count"
    );
    assert_eq!(
        malformed(pruned(&[0, 1, 2], 5)),
        "entries differ from the geometry's layer count"
    );
    // Every layer kept is allowed: a base of two layers, both kept.
    assert!(pruned(&[0, 1], 2).is_ok());
}

#[test]
fn lineage_needs_minor_2_and_zero_reserved_bytes() {
    let patched = |patch: &dyn Fn(&mut Vec<u8>)| reopened_with(pruned(&[1, 3], 5).unwrap(), patch);
    let minor = |m: u16| patched(&|b: &mut Vec<u8>| set_minor(b, m));
    let e = minor(1).unwrap_err();
    assert_eq!(
        (e.kind(), e.location(), e.detail()),
        (
            ErrorKind::Malformed,
            Location::Section(SectionKind::Lineage),
            "lineage section in an image of minor version below 2"
        )
    );
    assert_eq!(minor(3), Ok(()));
    let e = patched(&|b: &mut Vec<u8>| {
        let at = section(b, SectionKind::Lineage).start + 12;
        b[at] = 1;
    })
    .unwrap_err();
    assert_eq!(e.detail(), "reserved bytes are not zero");
}
