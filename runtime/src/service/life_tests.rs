//! The KV lifecycle through the service, with the real model (skipped
//! when absent): contexts beyond the DRAM plan are parked, evicted to the
//! swap area or dropped, and restored; at f32 every restore is exact, so
//! the text equals a run where every context stayed resident.

use std::ops::ControlFlow;

use lode_kernel::arena::DramArena;

use super::tests::{real_service, say};
use super::*;
use crate::kv_life::KvPolicy;
use crate::swap_store::{model_fingerprint, SwapSpec, SwapStore};

const EXACT: KvPolicy = KvPolicy::EXACT;

/// The two turns of three conversations: about 40 tokens each first, so
/// three contexts need 12 chunks where the plan's one context of 128
/// positions holds 8.
fn script_turns() -> ([&'static str; 3], [&'static str; 3]) {
    (
        [
            "Paris has been a centre of finance, diplomacy, commerce, fashion and science \
             for centuries. The capital of France is",
            "The old sailor told the children a story about the sea and the storms he had \
             seen. Once upon a time",
            "# Compute Fibonacci numbers recursively, with a cache for the values seen so \
             far.\ndef fib(n):",
        ],
        [" The river", " there lived", "\n    return"],
    )
}

/// Three conversations of two turns each, interleaved; the texts in order.
fn script(s: &Service) -> Vec<String> {
    let ids: Vec<ContextId> = (0..3).map(|_| s.create_context(None).unwrap()).collect();
    let (first, second) = script_turns();
    let mut out = Vec::new();
    for turn in [first, second] {
        for (&id, text) in ids.iter().zip(turn) {
            out.push(say(s, id, text, 12));
        }
    }
    out
}

fn swap_store(s: &Service, spec: &SwapSpec) -> SwapStore {
    sized_store(s, spec, 64 << 20)
}

fn sized_store(s: &Service, spec: &SwapSpec, size: u64) -> SwapStore {
    let (fp, chunk) =
        s.with_session(|x| (model_fingerprint(x).unwrap(), x.kv_layout().max_payload()));
    SwapStore::open(spec, size, fp, chunk).unwrap()
}

/// A fresh path for a swap file, in a directory of its own.
fn swap_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lode-swap-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("swap.bin");
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn parked_and_dropped_contexts_restore_exactly_at_f32() {
    let Some(all) = real_service(128, 3, 3, EXACT) else {
        return;
    };
    let want = script(&all);
    // Room for one context: every switch parks or evicts the others.
    let one = real_service(128, 1, 3, EXACT).unwrap();
    assert_eq!(script(&one), want);
    let life = one.life_stats();
    assert!(life.restores >= 3 && life.recomputed > 0, "{life:?}");
}

#[test]
fn swapped_contexts_restore_exactly_from_the_fake_flash() {
    let Some(all) = real_service(128, 3, 3, EXACT) else {
        return;
    };
    let want = script(&all);
    let one = real_service(128, 1, 3, EXACT).unwrap();
    let store = swap_store(&one, &SwapSpec::parse("fake:ufs40").unwrap());
    let one = one.with_swap(store).unwrap();
    assert_eq!(script(&one), want);
    let life = one.life_stats();
    assert!(life.swapped_chunks > 0 && life.from_flash > 0, "{life:?}");
    assert_eq!(life.failed_reads, 0, "{life:?}");
    assert_eq!(one.last_swap_error(), None);
}

#[test]
fn conversations_survive_a_restart_through_a_swap_file() {
    let dir = std::env::temp_dir().join(format!("lode-swap-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("swap.bin");
    let _ = std::fs::remove_file(&path);
    survive_a_restart(&SwapSpec::File(path));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same on a raw block device (a partition) when
/// `LODE_TEST_BLOCK_DEVICE` names one: `.ci/run` attaches a loop device
/// with direct I/O and sets it. The device's old bytes are whatever the
/// previous tests left; its first blocks are zeroed so the area is
/// formatted as on a new partition.
#[test]
fn conversations_survive_a_restart_through_a_block_device() {
    let Ok(dev) = std::env::var("LODE_TEST_BLOCK_DEVICE") else {
        eprintln!("LODE_TEST_BLOCK_DEVICE is not set: the swap area was tested on a file only");
        return;
    };
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
        f.write_all(&vec![0u8; 1 << 20]).unwrap();
        f.sync_all().unwrap();
    }
    survive_a_restart(&SwapSpec::parse(&format!("file:{dev}")).unwrap());
}

/// A conversation committed to the swap area on `spec` at shutdown is
/// there after a restart (a new service over a new store) under its id,
/// restored from flash, and continues exactly as an uninterrupted one.
fn survive_a_restart(spec: &SwapSpec) {
    let Some(all) = real_service(128, 1, 2, EXACT) else {
        return;
    };
    let id = all.create_context(None).unwrap();
    let opening = "Paris has been a centre of finance, diplomacy, commerce, fashion and \
                   science for centuries. The capital of France is";
    let first = say(&all, id, opening, 8);
    let second = say(&all, id, " The river", 8);
    {
        let s = real_service(128, 1, 2, EXACT).unwrap();
        let store = swap_store(&s, spec);
        assert!(store.info().formatted, "{spec}: a new area");
        let s = s.with_swap(store).unwrap();
        let a = s.create_context(None).unwrap();
        assert_eq!(say(&s, a, opening, 8), first);
        let r = s.shutdown(std::time::Duration::from_secs(1));
        assert_eq!(r.swapped_out, 1);
    }
    // A new process, as after a restart: the conversation is there under
    // its id and continues where it stopped.
    let s = real_service(128, 1, 2, EXACT).unwrap();
    let store = swap_store(&s, spec);
    assert_eq!(store.info().contexts, 1);
    let s = s.with_swap(store).unwrap();
    let listed = s.contexts();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(say(&s, listed[0].id, " The river", 8), second);
    let life = s.life_stats();
    assert!(life.from_flash >= 1, "{life:?}");
}

#[test]
fn compressed_contexts_shrink_and_come_back() {
    let Some(s) = real_service(128, 1, 3, KvPolicy::default()) else {
        return;
    };
    let text = "The history of the printing press begins in the fifteenth century. ".repeat(7);
    let go = |_: &str| ControlFlow::Continue(());
    let used = || s.with_session(|x| x.arena().used());
    let base = used();
    let ids: Vec<ContextId> = (0..3).map(|_| s.create_context(None).unwrap()).collect();
    let mut resident = 0;
    for &id in &ids {
        s.call(id, Input::Text(&text), &CallOptions::greedy(8), go)
            .unwrap();
        resident = resident.max(used() - base);
    }
    // Three contexts of 6 f32 chunks do not fit: the oldest was parked at
    // a mean of 4 bits (about a sixth of its f32 size).
    let life = s.life_stats();
    assert!(life.reclaims >= 1, "{life:?}");
    let info = s.contexts();
    assert_eq!(info[0].chunks, 0, "parked: {info:?}");
    let per_context = resident / 2;
    assert!(
        used() - base < 2 * per_context + per_context / 3,
        "{} vs {per_context}",
        used() - base
    );
    let back = s
        .call(ids[0], Input::Text(" It"), &CallOptions::greedy(8), go)
        .unwrap();
    assert!(!back.text.is_empty());
    let life = s.life_stats();
    assert_eq!(life.restores, 1, "{life:?}");
    assert!(life.from_dram >= 1, "{life:?}");
    // The call reports its own restore, as the service's totals count it.
    let r = back.restore.expect("the parked context was restored");
    assert_eq!(r.from_dram as u64, life.from_dram);
    assert_eq!((r.from_flash, r.recomputed), (0, 0), "{r:?}");
    assert!(r.describe().contains("chunks decoded from DRAM"), "{r:?}");
    // A call on a resident context restores nothing.
    let again = s
        .call(ids[0], Input::Text(" And"), &CallOptions::greedy(2), go)
        .unwrap();
    assert!(again.restore.is_none());
}

#[test]
fn damaged_swapped_chunks_are_recomputed_never_used() {
    let Some(all) = real_service(128, 3, 3, EXACT) else {
        return;
    };
    let want = script(&all);
    let path = swap_path("damaged");
    let one = real_service(128, 1, 3, EXACT).unwrap();
    let store = swap_store(&one, &SwapSpec::File(path.clone()));
    // At f32 a DRAM copy is as large as the chunk it copies, so parked
    // chunks are left in the swap area and restores read it.
    let one = one.with_swap(store).unwrap();
    let mut got = Vec::new();
    let ids: Vec<ContextId> = (0..3).map(|_| one.create_context(None).unwrap()).collect();
    let (first, second) = script_turns();
    for (&id, text) in ids.iter().zip(first) {
        got.push(say(&one, id, text, 12));
    }
    // Everything committed so far is damaged on the medium: one byte in
    // every 4 KiB past the two superblocks.
    let mut bytes = std::fs::read(&path).unwrap();
    for i in (2 * 4096 + 100..bytes.len()).step_by(4096) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    for (&id, text) in ids.iter().zip(second) {
        got.push(say(&one, id, text, 12));
    }
    assert_eq!(got, want);
    let life = one.life_stats();
    assert!(life.failed_reads > 0, "{life:?}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_full_swap_area_loses_nothing() {
    let Some(all) = real_service(128, 3, 3, EXACT) else {
        return;
    };
    let want = script(&all);
    let one = real_service(128, 1, 3, EXACT).unwrap();
    // Room for about two f32 chunks: most commits are refused as full.
    let store = sized_store(&one, &SwapSpec::parse("fake:ufs40").unwrap(), 2 << 20);
    let one = one.with_swap(store).unwrap();
    assert_eq!(script(&one), want);
    let life = one.life_stats();
    assert!(life.swap_failures > 0, "{life:?}");
    let e = one.last_swap_error().unwrap();
    assert!(e.contains("Full") || e.contains("full"), "{e}");
}

#[test]
fn a_chat_survives_a_restart_and_continues_where_it_stopped() {
    let Some(all) = real_service(256, 1, 2, EXACT) else {
        return;
    };
    let q1 = [Message::new("user", "What is the capital of France?")];
    let q2 = [Message::new("user", "And of Italy?")];
    let chat = |s: &Service, id: ContextId, q: &[Message]| {
        s.call(id, Input::Chat(q), &CallOptions::greedy(10), |_| {
            ControlFlow::Continue(())
        })
        .unwrap()
    };
    let id = all.create_context(Some("You are brief.")).unwrap();
    let first = chat(&all, id, &q1).text;
    let second = chat(&all, id, &q2);

    let path = swap_path("chat");
    let spec = SwapSpec::File(path.clone());
    {
        let s = real_service(256, 1, 2, EXACT).unwrap();
        let store = swap_store(&s, &spec);
        let s = s.with_swap(store).unwrap();
        let a = s.create_context(Some("You are brief.")).unwrap();
        assert_eq!(chat(&s, a, &q1).text, first);
        assert_eq!(s.shutdown(std::time::Duration::from_secs(1)).swapped_out, 1);
    }
    // After the restart only the new message is sent, as to a live
    // session: the conversation continues from its tokens, evaluating
    // only the new turn, and says what the uninterrupted one said.
    let s = real_service(256, 1, 2, EXACT).unwrap();
    let store = swap_store(&s, &spec);
    let s = s.with_swap(store).unwrap();
    let id = s.contexts()[0].id;
    let again = chat(&s, id, &q2);
    assert!(!again.rebuilt, "{again:?}");
    assert_eq!(again.text, second.text);
    assert!(again.evaluated_tokens < 20, "{again:?}");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
