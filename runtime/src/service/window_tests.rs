//! The KV lifecycle of a sliding-window model (Gemma 3 270M, skipped when
//! absent): conversations longer than the window, whose chunks past it
//! have given up their local layers' keys and values, are parked, dropped
//! or swapped to the fake flash and restored, and continue exactly as in a
//! service where every context stayed resident.

use super::tests::{gemma_model, say, service_of};
use super::*;
use crate::kv_life::KvPolicy;
use crate::swap_store::{model_fingerprint, SwapSpec, SwapStore};

/// Two openings of about 640 tokens (past Gemma's 512-position window)
/// and a short second turn each. The openings are made here, from a
/// fixed word list and seed, so no edit elsewhere in the repository can
/// move them under the window (they were once cut from a document).
fn turns() -> ([String; 2], [&'static str; 2]) {
    const WORDS: [&str; 24] = [
        "the", "reader", "checks", "every", "section", "before", "it", "trusts", "a", "block",
        "of", "bytes", "and", "writer", "replaces", "file", "when", "its", "length", "changes",
        "so", "old", "images", "still",
    ];
    let piece = |seed: u64| -> String {
        let mut r = lode_kernel::rng::SplitMix64::new(seed);
        let mut s = String::new();
        for i in 0..580 {
            match i {
                0 => {}
                _ if i % 12 == 0 => s.push_str(". "),
                _ => s.push(' '),
            }
            s.push_str(WORDS[r.below(WORDS.len() as u64) as usize]);
        }
        s + ".\n\nIn one sentence, this section says that"
    };
    ([piece(1), piece(2)], [" The reader", " A writer"])
}

fn gemma(kv_contexts: usize) -> Option<Service> {
    service_of(&gemma_model()?, 768, (kv_contexts, 2), KvPolicy::EXACT)
}

/// Both conversations, interleaved; the texts in order.
fn script(s: &Service) -> Vec<String> {
    let ids: Vec<ContextId> = (0..2).map(|_| s.create_context(None).unwrap()).collect();
    let (first, second) = turns();
    let mut out = Vec::new();
    for (&id, text) in ids.iter().zip(&first) {
        out.push(say(s, id, text, 6));
    }
    for c in s.contexts() {
        // At 543 positions the first two chunks are past every window.
        assert!(c.tokens >= 543, "past the window: {c:?}");
    }
    for (&id, text) in ids.iter().zip(second) {
        out.push(say(s, id, text, 6));
    }
    out
}

#[test]
fn long_windowed_contexts_park_drop_and_restore_exactly() {
    let Some(both) = gemma(2) else { return };
    let want = script(&both);
    // Room for one context: each switch parks the other, in DRAM where a
    // copy fits, else dropped and recomputed from its tokens.
    let one = gemma(1).unwrap();
    assert_eq!(script(&one), want);
    let life = one.life_stats();
    // No copy fits beside the one context: every chunk is recomputed
    // (from the first, see `kv_life::restore::plan`).
    assert!(life.restores >= 2 && life.recomputed > 0, "{life:?}");
}

#[test]
fn long_windowed_contexts_restore_exactly_from_the_fake_flash() {
    let Some(both) = gemma(2) else { return };
    let want = script(&both);
    let one = gemma(1).unwrap();
    let (fp, chunk) =
        one.with_session(|x| (model_fingerprint(x).unwrap(), x.kv_layout().max_payload()));
    let spec = SwapSpec::parse("fake:ufs40").unwrap();
    let store = SwapStore::open(&spec, 512 << 20, fp, chunk).unwrap();
    let one = one.with_swap(store).unwrap();
    assert_eq!(script(&one), want);
    let life = one.life_stats();
    assert!(life.swapped_chunks > 0 && life.from_flash > 0, "{life:?}");
    assert_eq!(life.failed_reads, 0, "{life:?}");
}
