//! A sliding-window model's KV cache keeps only the window on local
//! layers: the same logits as a cache that keeps every layer whole, in a
//! bounded number of window parts, within the memory plan, and through an
//! encode-and-restore of every chunk.

use super::*;
use crate::model::kv::codec::ChunkLevel;
use crate::model::kv::KvLayout;
use crate::model::{Arch, Context, Gemma3};

const WINDOW: usize = 20;

/// Three layers, the first two local (window 20), the third global.
fn gemma_tiny() -> (LlamaConfig, Arch, Src) {
    let mut c = tiny(true);
    c.layers = 3;
    c.context = 256;
    let arch = Arch::Gemma3(Gemma3 {
        window: WINDOW,
        local_rope_base: 10_000.0,
        swa_period: 3,
    });
    let mut src = model_src(&c, 11);
    let mut r = SplitMix64::new(12);
    for l in 0..c.layers {
        for (suffix, per_head) in crate::model::gemma::NORMS {
            let len = if per_head { c.head_dim } else { c.hidden } as u64;
            let name = std::format!("blk.{l}.{suffix}");
            src.0.push(f32_tensor(name, &[len], &mut r, 0.2, 1.0));
        }
    }
    (c, arch, src)
}

/// Logits of every position of `toks`, evaluated in calls of `call`
/// positions into `ctx`.
fn logits_of(
    m: &mut Model<Resident<DenseFfn>>,
    arena: &mut VecArena,
    ctx: &mut Context,
    toks: &[u32],
    call: usize,
) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for piece in toks.chunks(call) {
        let from = ctx.len();
        m.eval(
            ctx,
            arena,
            &mut Naive,
            piece,
            WantLogits::From(from),
            |_, z| out.push(z.to_vec()),
        )
        .unwrap();
    }
    out
}

#[test]
fn windowed_kv_gives_the_logits_of_a_whole_cache_in_bounded_memory() {
    let (c, arch, src) = gemma_tiny();
    let l = Limits::new(240, 6).with_logit_rows(6);
    let plan = MemoryPlan::dense_for(&src, &c, &arch, &l).unwrap();
    // The arena of the plan: the windowed cache must fit in it at the
    // longest context.
    let mut arena = VecArena::new(plan.total());
    let mut m = Model::load_for(&src, c, arch, l, &mut arena).unwrap();
    let toks = tokens(240, c.vocab, 9);
    let mut ctx = m.new_context();
    let windowed = logits_of(&mut m, &mut arena, &mut ctx, &toks, 7);
    let layout = KvLayout::new(&c, &arch);
    let parts = (0..ctx.chunks().len())
        .filter(|&i| ctx.kv().window_part(i).is_some())
        .count();
    // The last position's query sees 220..240: chunks 13 and 14.
    assert_eq!(parts, 2);
    assert!(ctx.kv().bytes() <= layout.context_bytes(240, 6).exact);
    ctx.clear(&mut arena).unwrap();
    assert_eq!(arena.used_by(crate::arena::SlotKind::KvChunk), 0);

    // The same model with a cache that keeps every layer whole (what a
    // window part's expiry must not change).
    let mut arena = VecArena::new(plan.total() * 4);
    let mut m = Model::load_for(&src, c, arch, l, &mut arena).unwrap();
    let mut whole = Context::whole_for_tests(&c, &l);
    let want = logits_of(&mut m, &mut arena, &mut whole, &toks, 5);
    assert_eq!(windowed, want, "bit for bit");
    assert!(whole.kv().bytes() > 2 * layout.context_bytes(240, 6).exact);
}

#[test]
fn a_windowed_context_restores_from_its_payloads_and_continues_exactly() {
    let (c, arch, src) = gemma_tiny();
    let l = Limits::new(200, 4);
    let plan = MemoryPlan::dense_for(&src, &c, &arch, &l).unwrap();
    let mut arena = VecArena::new(plan.total() * 3);
    let mut m = Model::load_for(&src, c, arch, l, &mut arena).unwrap();
    let toks = tokens(150, c.vocab, 3);
    let mut ctx = m.new_context();
    let straight = logits_of(&mut m, &mut arena, &mut ctx, &toks, 4);

    // 100 positions, every chunk encoded (the last one partial), the
    // context emptied and rebuilt from the payloads, then 50 more.
    let mut ctx = m.new_context();
    let mut got = logits_of(&mut m, &mut arena, &mut ctx, &toks[..100], 4);
    let mut payloads = Vec::new();
    for i in 0..ctx.chunks().len() {
        let n = ctx.payload_bytes(i, ChunkLevel::F32).unwrap();
        let mut p = std::vec![0u8; n];
        ctx.encode_chunk(&arena, &mut Naive, i, ChunkLevel::F32, &mut p)
            .unwrap();
        payloads.push(p);
    }
    let main = KvLayout::new(&c, &arch).main_bytes();
    // Chunks 0-4 (positions below 80) are past the window at 100 (its
    // query sees 81..=100); the rest still carry their window part.
    assert!(payloads[..5].iter().all(|p| p.len() == main));
    assert!(payloads[5..].iter().all(|p| p.len() > main));
    ctx.clear(&mut arena).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        let tokens = (100 - i * 16).min(16);
        ctx.push_chunk(&mut arena, &mut Naive, ChunkLevel::F32, p, tokens)
            .unwrap();
    }
    assert_eq!(ctx.len(), 100);
    // A payload of neither size is refused, with nothing appended.
    let mut other = m.new_context();
    let e = other.push_chunk(
        &mut arena,
        &mut Naive,
        ChunkLevel::F32,
        &payloads[6][1..],
        16,
    );
    assert!(e.is_err());
    assert_eq!(other.chunks().len(), 0);
    got.extend(logits_of(&mut m, &mut arena, &mut ctx, &toks[100..], 4));
    assert_eq!(got, straight, "bit for bit");
}

#[test]
fn a_cache_without_a_needed_window_part_is_an_error_not_a_panic() {
    let (c, arch, src) = gemma_tiny();
    let l = Limits::new(200, 4);
    let plan = MemoryPlan::dense_for(&src, &c, &arch, &l).unwrap();
    let mut arena = VecArena::new(plan.total() * 2);
    let mut m = Model::load_for(&src, c, arch, l, &mut arena).unwrap();
    let toks = tokens(40, c.vocab, 3);
    let mut ctx = m.new_context();
    logits_of(&mut m, &mut arena, &mut ctx, &toks[..32], 4);
    // Chunk 1 (positions 16..32) is in the window at 32: restoring it from
    // its main part alone leaves the next query without its keys.
    let main = KvLayout::new(&c, &arch).main_bytes();
    let mut payloads = Vec::new();
    for i in 0..2 {
        let mut p = std::vec![0u8; ctx.payload_bytes(i, ChunkLevel::F32).unwrap()];
        ctx.encode_chunk(&arena, &mut Naive, i, ChunkLevel::F32, &mut p)
            .unwrap();
        payloads.push(p);
    }
    ctx.clear(&mut arena).unwrap();
    for p in &payloads {
        ctx.push_chunk(&mut arena, &mut Naive, ChunkLevel::F32, &p[..main], 16)
            .unwrap();
    }
    let e = m
        .eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &toks[32..33],
            WantLogits::Last,
            |_, _| {},
        )
        .unwrap_err();
    assert!(std::format!("{e}").contains("expired"), "{e}");
}

/// What a caller must free before a call ([`KvCache::growth`]) bounds what
/// the call allocates, and counts reused window parts as free: from empty
/// to 240 positions it is 15 main parts and only 3 window parts.
#[test]
fn the_growth_bound_holds_call_by_call_and_reuses_window_parts() {
    let (c, arch, src) = gemma_tiny();
    let l = Limits::new(240, 6).with_logit_rows(6);
    let plan = MemoryPlan::dense_for(&src, &c, &arch, &l).unwrap();
    let mut arena = VecArena::new(plan.total());
    let mut m = Model::load_for(&src, c, arch, l, &mut arena).unwrap();
    let toks = tokens(240, c.vocab, 5);
    let mut ctx = m.new_context();
    let layout = KvLayout::new(&c, &arch);
    let all = ctx.kv().growth(240, 6);
    assert_eq!((all.mains, all.windows), (15, 3));
    assert_eq!(layout.growth_bytes(all), layout.context_bytes(240, 6).exact);
    let kv = crate::arena::SlotKind::KvChunk;
    for piece in toks.chunks(6) {
        let from = ctx.len();
        let g = ctx.kv().growth(from + piece.len(), 6);
        let before = arena.used_by(kv);
        let want = WantLogits::From(from);
        m.eval(&mut ctx, &mut arena, &mut Naive, piece, want, |_, _| {})
            .unwrap();
        let grew = arena.used_by(kv) - before;
        assert!(grew <= layout.growth_bytes(g), "{grew} > {g:?}");
    }
    assert_eq!(arena.used_by(kv), layout.growth_bytes(all));
}
