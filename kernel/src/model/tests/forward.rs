//! The forward pass against the reference: across chunk boundaries and
//! call lengths, logits where wanted, resets, and contexts over one model.

use super::*;

#[test]
fn matches_the_reference_across_chunk_boundaries() {
    for tied in [true, false] {
        let c = tiny(tied);
        let src = model_src(&c, 7);
        let toks = tokens(40, c.vocab, 1);
        let want = reference(&src, &c, &toks);
        // One position at a time, then batches of 8 that straddle chunks.
        close(
            &run(&src, &c, Limits::new(48, 1), &toks, &[40]),
            &want,
            1e-4,
        );
        let l = Limits::new(48, 8).with_logit_rows(3);
        close(&run(&src, &c, l, &toks, &[13, 1, 1, 20, 5]), &want, 1e-4);
    }
}

#[test]
fn logits_are_reported_only_where_wanted() {
    let c = tiny(true);
    let src = model_src(&c, 3);
    let l = Limits::new(32, 4).with_logit_rows(2);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let toks = tokens(10, c.vocab, 2);
    let mut seen = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks[..7],
        WantLogits::Last,
        |p, _| seen.push(p),
    )
    .unwrap();
    assert_eq!(seen, [6]);
    seen.clear();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks[7..],
        WantLogits::From(8),
        |p, _| seen.push(p),
    )
    .unwrap();
    assert_eq!(seen, [8, 9]);
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &[1],
        WantLogits::None,
        |_, _| panic!("no logits wanted"),
    )
    .unwrap();
    assert_eq!(ctx.len(), 11);
}

#[test]
fn reset_frees_the_context_and_repeats_exactly() {
    let c = tiny(true);
    let src = model_src(&c, 5);
    let l = Limits::new(40, 8);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let toks = tokens(33, c.vocab, 4);
    let mut first = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks,
        WantLogits::Last,
        |_, lg| first = lg.to_vec(),
    )
    .unwrap();
    assert_eq!(ctx.kv().chunks().len(), 3);
    let kv_bytes = arena.used_by(crate::arena::SlotKind::KvChunk);
    assert_eq!(kv_bytes, 3 * KvLayout::new(&c, &Arch::Llama).main_bytes());
    ctx.clear(&mut arena).unwrap();
    assert!(ctx.is_empty());
    assert_eq!(arena.used_by(crate::arena::SlotKind::KvChunk), 0);
    let mut again = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &toks,
        WantLogits::Last,
        |_, lg| again = lg.to_vec(),
    )
    .unwrap();
    assert_eq!(first, again);
}

/// Greedy continuation of `prompt` by `n` tokens in `ctx`, with every
/// position's logits.
pub(super) fn greedy<W: WeightSource>(
    m: &mut Model<W>,
    ctx: &mut Context,
    arena: &mut VecArena,
    prompt: &[u32],
    n: usize,
) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    let mut feed = prompt.to_vec();
    for _ in 0..n {
        m.eval(ctx, arena, &mut Naive, &feed, WantLogits::Last, |_, lg| {
            out.push(lg.to_vec())
        })
        .unwrap();
        let l = out.last().unwrap();
        let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
        feed = vec![best as u32];
    }
    out
}

#[test]
fn contexts_over_one_model_equal_each_alone() {
    let c = tiny(true);
    let src = model_src(&c, 21);
    let prompts = [
        tokens(19, c.vocab, 1),
        tokens(5, c.vocab, 2),
        tokens(33, c.vocab, 3),
    ];
    // Each conversation alone, in a model of its own.
    let alone: Vec<_> = prompts
        .iter()
        .map(|p| {
            let l = Limits::new(48, 8);
            let (mut arena, _) = arena_for(&src, &c, &l);
            let mut m = Model::load(&src, c, l, &mut arena).unwrap();
            let mut ctx = m.new_context();
            greedy(&mut m, &mut ctx, &mut arena, p, 6)
        })
        .collect();
    // All three over one model in one arena planned for three contexts,
    // interleaved token by token.
    let l = Limits::new(48, 8).with_contexts(3);
    let (mut arena, plan) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctxs: Vec<Context> = prompts.iter().map(|_| m.new_context()).collect();
    let mut got: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
    let mut feed: Vec<Vec<u32>> = prompts.to_vec();
    for _ in 0..6 {
        for i in [2, 0, 1] {
            m.eval(
                &mut ctxs[i],
                &mut arena,
                &mut Naive,
                &feed[i],
                WantLogits::Last,
                |_, lg| got[i].push(lg.to_vec()),
            )
            .unwrap();
            let l = got[i].last().unwrap();
            feed[i] = vec![(0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32];
        }
    }
    assert_eq!(got, alone, "interleaved contexts differ from each alone");
    for (ctx, p) in ctxs.iter().zip(&prompts) {
        assert_eq!(ctx.len(), p.len() + 5);
    }
    assert!(arena.peak() <= plan.total());
    // Clearing one context frees only its chunks; the others go on.
    let before = arena.used_by(crate::arena::SlotKind::KvChunk);
    let freed = ctxs[1].chunks().len() * KvLayout::new(&c, &Arch::Llama).main_bytes();
    ctxs[1].clear(&mut arena).unwrap();
    assert_eq!(
        arena.used_by(crate::arena::SlotKind::KvChunk),
        before - freed
    );
    let mut again = m.new_context();
    assert_eq!(
        greedy(&mut m, &mut again, &mut arena, &prompts[1], 6),
        alone[1]
    );
}
