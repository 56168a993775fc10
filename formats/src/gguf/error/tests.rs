//! GGUF errors: kinds, attribution and messages.

extern crate std;
use std::format;
use std::string::String;

use super::*;

#[test]
fn names_are_cut_at_char_boundaries() {
    let short = Name::new("blk.0.attn_q.weight");
    assert_eq!(short, "blk.0.attn_q.weight");
    assert!(!short.is_cut());

    // 63 ASCII bytes then a 3-byte character: the cut must fall before it.
    let mut long: String = "a".repeat(63);
    long.push_str("\u{20ac}tail");
    let name = Name::new(&long);
    assert!(name.is_cut());
    assert_eq!(name.as_str().len(), 63);
    assert_ne!(name, long.as_str());
    assert!(format!("{name}").ends_with("..."));
}

#[test]
fn within_fills_only_unknown_items() {
    let e = GgufError::Truncated {
        offset: 7,
        item: Item::Unknown,
    };
    let at = Item::KeyValue {
        index: 3,
        key: Some(Name::new("general.name")),
    };
    let e = e.within(at);
    assert_eq!(
        e,
        GgufError::Truncated {
            offset: 7,
            item: at
        }
    );
    // Already attributed: unchanged.
    assert_eq!(e.within(Item::Header), e);
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert!(format!("{e}").contains("'general.name'"));
}

#[test]
fn unknown_type_message_names_known_ggml_types() {
    let e = GgufError::UnknownType {
        tensor: Name::new("blk.0.ffn_down.weight"),
        code: 15,
    };
    let msg = format!("{e}");
    assert!(msg.contains("Q8_K"), "{msg}");
    assert!(msg.contains("blk.0.ffn_down.weight"), "{msg}");
    assert_eq!(ggml_type_name(4), None);
    let unknown = format!(
        "{}",
        GgufError::UnknownType {
            tensor: Name::new("t"),
            code: 999
        }
    );
    assert!(unknown.contains("999"), "{unknown}");
}

#[test]
fn error_is_small() {
    // Results carrying it stay cheap to return (clippy's large-error bar is 128).
    assert!(core::mem::size_of::<GgufError>() <= 128);
}
