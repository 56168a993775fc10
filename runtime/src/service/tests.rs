//! The service with the real model (skipped when it is absent, like the
//! CLI's tests): contexts interleaved give what each gives alone, from
//! one thread or two; deleting gives the chunks back; every error is the
//! typed one.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lode_kernel::arena::DramArena;

use super::*;
use crate::{ModelFile, Quiet, SessionOptions};

/// The real model (`LODE_MODEL`, else `models/` at the workspace root).
fn real_model() -> Option<PathBuf> {
    model_at("LODE_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Gemma 3 270M (`LODE_GEMMA_MODEL`, else `models/`).
pub(super) fn gemma_model() -> Option<PathBuf> {
    model_at("LODE_GEMMA_MODEL", "gemma-3-270m-Q4_K_M.gguf")
}

fn model_at(var: &str, file: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file)
    });
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: {} is absent; skipping.", p.display());
        None
    }
}

/// A service over the real model: contexts of `positions` positions, KV
/// room reserved for `kv_contexts` of them, at most `max_contexts`.
fn service(positions: usize, kv_contexts: usize, max_contexts: usize) -> Option<Service> {
    real_service(positions, kv_contexts, max_contexts, KvPolicy::default())
}

/// [`service`] with idle contexts compressed as `kv` says.
pub(super) fn real_service(
    positions: usize,
    kv_contexts: usize,
    max_contexts: usize,
    kv: KvPolicy,
) -> Option<Service> {
    service_of(&real_model()?, positions, (kv_contexts, max_contexts), kv)
}

/// A service over the model at `path` ([`real_service`]'s arguments).
pub(super) fn service_of(
    path: &std::path::Path,
    positions: usize,
    (kv_contexts, max_contexts): (usize, usize),
    kv: KvPolicy,
) -> Option<Service> {
    let file = ModelFile::open(path).unwrap();
    let opts = SessionOptions {
        contexts: kv_contexts,
        threads: Some(2),
        ..SessionOptions::new(positions)
    };
    let session = Session::load(file, &opts, 64, &mut Quiet).unwrap();
    let opts = ServiceOptions {
        kv,
        ..ServiceOptions::new(max_contexts)
    };
    Some(Service::new(session, opts))
}

/// Text of one greedy call of `n` tokens.
pub(super) fn say(s: &Service, id: ContextId, text: &str, n: usize) -> String {
    s.call(id, Input::Text(text), &CallOptions::greedy(n), |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
    .text
}

fn used(s: &Service) -> usize {
    s.with_session(|x| x.arena().used())
}

#[test]
fn interleaved_contexts_give_what_each_gives_alone() {
    let Some(s) = service(128, 4, 4) else { return };
    let turns = [
        ("The capital of France is", " It"),
        ("Once upon a time", " The"),
    ];
    let alone: Vec<[String; 2]> = turns
        .iter()
        .map(|(a, b)| {
            let id = s.create_context(None).unwrap();
            [say(&s, id, a, 4), say(&s, id, b, 4)]
        })
        .collect();
    assert!(alone[0][0].starts_with(" Paris"), "{alone:?}");
    let (x, y) = (
        s.create_context(None).unwrap(),
        s.create_context(None).unwrap(),
    );
    let x0 = say(&s, x, turns[0].0, 4);
    let y0 = say(&s, y, turns[1].0, 4);
    let x1 = say(&s, x, turns[0].1, 4);
    let y1 = say(&s, y, turns[1].1, 4);
    assert_eq!([x0, x1], alone[0]);
    assert_eq!([y0, y1], alone[1]);
}

#[test]
fn two_threads_at_once_give_what_each_gives_alone() {
    let Some(s) = service(128, 3, 3) else { return };
    let s = Arc::new(s);
    let prompts = ["The capital of France is", "Once upon a time"];
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| {
            let id = s.create_context(None).unwrap();
            let t = say(&s, id, p, 6);
            s.delete_context(id).unwrap();
            t
        })
        .collect();
    let threads: Vec<_> = prompts
        .into_iter()
        .map(|p| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let id = s.create_context(None).unwrap();
                say(&s, id, p, 6)
            })
        })
        .collect();
    let together: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(together, alone);
}

#[test]
fn deleting_a_context_gives_its_chunks_back() {
    let Some(s) = service(128, 2, 2) else { return };
    let before = used(&s);
    let id = s.create_context(None).unwrap();
    say(&s, id, "The capital of France is", 20);
    let info = s.contexts();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].id, id);
    assert!(info[0].tokens >= 24 && info[0].chunks == 2, "{info:?}");
    assert!(used(&s) > before);
    s.delete_context(id).unwrap();
    assert_eq!(used(&s), before);
    assert!(s.contexts().is_empty());
    let e = s.delete_context(id).unwrap_err();
    assert_eq!(e.kind(), ServiceErrorKind::UnknownContext);
    let opts = CallOptions::greedy(1);
    let e = s
        .call(id, Input::Text("x"), &opts, |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert_eq!(e.kind(), ServiceErrorKind::UnknownContext);
}

#[test]
fn limits_are_typed_errors_and_the_context_stays_usable() {
    let Some(s) = service(64, 1, 2) else { return };
    let a = s.create_context(None).unwrap();
    let b = s.create_context(None).unwrap();
    let e = s.create_context(None).unwrap_err();
    assert_eq!(e.kind(), ServiceErrorKind::TooManyContexts);
    let greedy = CallOptions::greedy(4);
    let go = |_: &str| ControlFlow::Continue(());
    // Longer than the context: refused before anything is evaluated.
    let long = "word ".repeat(100);
    match s.call(a, Input::Text(&long), &greedy, go).unwrap_err() {
        CallError::InputTooLong { need, room } => assert!(need > 64 && room == 64),
        e => panic!("{e:?}"),
    }
    // The arena holds KV for one full context: `a` takes most of it, so
    // `b`'s call parks `a` (compressed in DRAM), and `a`'s next call
    // restores it, parking `b`.
    let fill = CallOptions::greedy(40);
    s.call(a, Input::Text("The capital of France is"), &fill, go)
        .unwrap();
    s.call(b, Input::Text("Once upon a time"), &fill, go)
        .unwrap();
    let life = s.life_stats();
    assert!(life.reclaims >= 1 && life.restores == 0, "{life:?}");
    s.call(a, Input::Text(" and"), &CallOptions::greedy(8), go)
        .unwrap();
    let life = s.life_stats();
    // `a`'s 45 positions are 3 chunks: decoded from DRAM, or recomputed
    // where a compressed copy was evicted too (there is no swap area).
    assert_eq!(life.restores, 1, "{life:?}");
    assert_eq!(life.from_dram + life.recomputed, 3, "{life:?}");
    assert!(life.from_dram >= 1, "{life:?}");
    s.delete_context(a).unwrap();
    assert!(!say(&s, b, " there was", 4).is_empty());
    // Shutting down: no new work.
    let r = s.shutdown(Duration::from_secs(1));
    assert!(r.finished);
    assert_eq!(r.swapped_out, 0, "no swap area");
    let e = s.create_context(None).unwrap_err();
    assert_eq!(e.kind(), ServiceErrorKind::ShuttingDown);
    let e = s.call(b, Input::Text("x"), &greedy, go).unwrap_err();
    assert_eq!(e.kind(), ServiceErrorKind::ShuttingDown);
}

#[test]
fn a_chat_continues_and_a_stopped_call_leaves_the_context_usable() {
    let Some(s) = service(256, 1, 1) else { return };
    let id = s.create_context(Some("You are brief.")).unwrap();
    let q = [Message::new("user", "What is the capital of France?")];
    let mut pieces = String::new();
    let first = s
        .call(id, Input::Chat(&q), &CallOptions::greedy(8), |p| {
            pieces.push_str(p);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(pieces, first.text);
    assert!(!first.text.is_empty(), "{first:?}");
    // The caller stops after the first piece: the context keeps it.
    let q2 = [Message::new("user", "And of Italy?")];
    let stopped = s
        .call(id, Input::Chat(&q2), &CallOptions::greedy(8), |_| {
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(stopped.finish, Finish::Caller);
    assert_eq!(stopped.generated_tokens, 1);
    // A third turn evaluates only its own tokens, not the conversation.
    let q3 = [Message::new("user", "Thanks.")];
    let third = s
        .call(id, Input::Chat(&q3), &CallOptions::greedy(4), |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(!third.rebuilt, "{third:?}");
    assert!(
        third.evaluated_tokens < stopped.context_tokens / 2,
        "{third:?}"
    );
    // A stop string ends the text before it.
    let mut opts = CallOptions::greedy(16);
    opts.stop = vec!["Paris".into()];
    let c = s.create_context(None).err();
    assert!(c.is_some(), "max_contexts is 1");
    s.delete_context(id).unwrap();
    let id = s.create_context(None).unwrap();
    let r = s
        .call(id, Input::Text("The capital of France is"), &opts, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(r.finish, Finish::StopSequence);
    assert_eq!(r.text, " ");
}
