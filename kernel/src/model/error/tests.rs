//! Every variant's kind and text, and the conversions of the shared faults.

use std::format;
use std::string::ToString;

use lode_formats::gguf::GgufError;

use super::*;
use crate::arena::SlotKind;

fn mismatch() -> Mismatch {
    Mismatch {
        kind: Some(SlotKind::Scratch),
        planned: 64,
        used: 128,
    }
}

#[test]
fn every_load_error_has_its_kind() {
    let read = LoadError::Read {
        offset: 4096,
        kind: flash::ErrorKind::Io,
        attempts: 3,
    };
    let cases = [
        (LoadError::Config("x"), ErrorKind::BadConfig),
        (LoadError::Layout("x"), ErrorKind::BadLayout),
        (
            LoadError::Format(GgufError::UnsupportedVersion { version: 9 }),
            ErrorKind::BadTensor,
        ),
        (
            LoadError::tensor("output.weight", "x"),
            ErrorKind::BadTensor,
        ),
        (
            LoadError::BudgetTooSmall { need: 2, have: 1 },
            ErrorKind::Budget,
        ),
        (
            LoadError::Arena(arena::ErrorKind::OutOfMemory),
            ErrorKind::Arena,
        ),
        (LoadError::PlanMismatch(mismatch()), ErrorKind::Arena),
        (
            LoadError::Compute(compute::ErrorKind::ShapeMismatch),
            ErrorKind::Compute,
        ),
        (LoadError::Device(flash::ErrorKind::Io), ErrorKind::Flash),
        (read, ErrorKind::Flash),
        (
            LoadError::Corrupt {
                offset: 0,
                attempts: 3,
            },
            ErrorKind::Corrupt,
        ),
        (LoadError::Internal("x"), ErrorKind::Internal),
    ];
    for (e, kind) in cases {
        assert_eq!(e.kind(), kind, "{e:?}");
    }
}

#[test]
fn every_eval_error_has_its_kind() {
    let cases = [
        (EvalError::ContextFull { max: 8 }, ErrorKind::ContextFull),
        (
            EvalError::TokenOutOfRange { token: 9, vocab: 8 },
            ErrorKind::BadToken,
        ),
        (EvalError::ForeignContext, ErrorKind::ForeignContext),
        (
            EvalError::Arena(arena::ErrorKind::StaleSlot),
            ErrorKind::Arena,
        ),
        (EvalError::PlanMismatch(mismatch()), ErrorKind::Arena),
        (
            EvalError::Compute(compute::ErrorKind::NonFinite),
            ErrorKind::Compute,
        ),
        (EvalError::Device(flash::ErrorKind::Io), ErrorKind::Flash),
        (
            EvalError::Read {
                offset: 0,
                kind: flash::ErrorKind::Io,
                attempts: 3,
            },
            ErrorKind::Flash,
        ),
        (
            EvalError::Corrupt {
                offset: 0,
                attempts: 3,
            },
            ErrorKind::Corrupt,
        ),
        (EvalError::Internal("x"), ErrorKind::Internal),
    ];
    for (e, kind) in cases {
        assert_eq!(e.kind(), kind, "{e:?}");
    }
}

/// The shared faults convert into the variant of the same name in either
/// enum, so helpers that return them can be used by both operations.
#[test]
fn shared_faults_convert_into_both() {
    let oom = arena::ErrorKind::OutOfMemory;
    assert_eq!(LoadError::from(oom), LoadError::Arena(oom));
    assert_eq!(EvalError::from(oom), EvalError::Arena(oom));
    let shape = compute::ErrorKind::ShapeMismatch;
    assert_eq!(LoadError::from(shape), LoadError::Compute(shape));
    assert_eq!(EvalError::from(shape), EvalError::Compute(shape));
    assert_eq!(
        LoadError::from(mismatch()),
        LoadError::PlanMismatch(mismatch())
    );
    assert_eq!(
        EvalError::from(mismatch()),
        EvalError::PlanMismatch(mismatch())
    );
}

/// The texts users see did not change when the variants moved, and a
/// fault both operations hit reads the same in either.
#[test]
fn texts_are_the_ones_users_saw() {
    assert_eq!(
        LoadError::Config("max_batch must be 1 to max_context").to_string(),
        "invalid model configuration: max_batch must be 1 to max_context"
    );
    assert_eq!(
        LoadError::BudgetTooSmall {
            need: 2 << 20,
            have: 1 << 20
        }
        .to_string(),
        "a DRAM budget of 1048576 bytes (1.0 MiB) cannot hold the minimum working set of \
         2097152 bytes (2.0 MiB); give at least that"
    );
    assert_eq!(
        EvalError::ContextFull { max: 256 }.to_string(),
        "the context is full (256 positions)"
    );
    let read = "reading weights at device offset 8192 failed 3 times: ";
    let e = EvalError::Read {
        offset: 8192,
        kind: flash::ErrorKind::Io,
        attempts: 3,
    };
    assert!(e.to_string().starts_with(read), "{e}");
    assert!(e.to_string().ends_with("; generation stopped"), "{e}");
    let l = LoadError::Read {
        offset: 8192,
        kind: flash::ErrorKind::Io,
        attempts: 3,
    };
    assert_eq!(l.to_string(), e.to_string());
    let c = EvalError::Corrupt {
        offset: 4096,
        attempts: 3,
    };
    assert_eq!(
        c.to_string(),
        "weights read at device offset 4096 failed their checksum 3 times (the data changed \
         since it was verified at load); generation stopped"
    );
    assert_eq!(
        LoadError::Corrupt {
            offset: 4096,
            attempts: 3
        }
        .to_string(),
        c.to_string()
    );
    assert_eq!(
        format!("{}", EvalError::Internal("x")),
        format!("{}", LoadError::Internal("x"))
    );
}

#[test]
fn a_format_error_is_the_source_of_a_load_error() {
    use core::error::Error;
    let e = LoadError::from(GgufError::UnsupportedVersion { version: 9 });
    let source = e.source().map(|s| s.to_string());
    assert_eq!(
        source,
        Some(GgufError::UnsupportedVersion { version: 9 }.to_string())
    );
}
