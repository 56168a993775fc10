//! What the model refuses, changing nothing: a foreign context, a full
//! context, bad tokens, an arena smaller than the plan, missing and
//! misshapen tensors.

use super::*;

#[test]
fn a_context_of_another_model_is_refused() {
    let c = tiny(true);
    let src = model_src(&c, 4);
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let longer = Context::new(&c, &Arch::Llama, &Limits::new(64, 4));
    let other = LlamaConfig {
        layers: c.layers + 1,
        ..c
    };
    for mut ctx in [longer, Context::new(&other, &Arch::Llama, &l)] {
        let r = m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1],
            WantLogits::Last,
            |_, _| {},
        );
        assert_eq!(r, Err(EvalError::ForeignContext));
        assert!(ctx.is_empty());
    }
}

#[test]
fn full_context_and_bad_tokens_are_errors_that_change_nothing() {
    let c = tiny(true);
    let src = model_src(&c, 9);
    let l = Limits::new(20, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &tokens(18, c.vocab, 1),
        WantLogits::None,
        |_, _| {},
    )
    .unwrap();
    let used = arena.used();
    assert_eq!(
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1, 2, 3],
            WantLogits::Last,
            |_, _| {}
        ),
        Err(EvalError::ContextFull { max: 20 })
    );
    assert_eq!(
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1, 50],
            WantLogits::Last,
            |_, _| {}
        )
        .map_err(|e| e.kind()),
        Err(ErrorKind::BadToken)
    );
    assert_eq!((ctx.len(), arena.used()), (18, used));
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &[1, 2],
        WantLogits::Last,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(ctx.len(), 20);
}

#[test]
fn the_plan_is_exact_and_a_smaller_arena_fails_cleanly() {
    let c = tiny(false);
    let src = model_src(&c, 11);
    let l = Limits::new(64, 16).with_logit_rows(4);
    let plan = MemoryPlan::dense(&src, &c, &l).unwrap();
    let mut arena = VecArena::new(plan.total());
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    // Loading allocated exactly what the plan counted, kind by kind.
    assert_eq!(plan.arena_use.check(&arena), Ok(()));
    let mut ctx = m.new_context();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        &tokens(64, c.vocab, 5),
        WantLogits::Last,
        |_, _| {},
    )
    .unwrap();
    // Every planned byte was used, up to each slot's alignment padding.
    assert!(arena.peak() <= plan.total());
    assert!(
        plan.total() - arena.peak() < plan.slots * ALIGN,
        "{plan:?} peak {}",
        arena.peak()
    );
    assert_eq!(arena.parts().0.live(), plan.slots);
    assert_eq!(arena.used_by(crate::arena::SlotKind::KvChunk), plan.kv);
    assert_eq!(plan.arena_use.check(&arena), Ok(()));

    let mut small = VecArena::new(plan.total() - KvLayout::new(&c, &Arch::Llama).main_bytes());
    let mut m = Model::load(&src, c, l, &mut small).unwrap();
    let mut ctx = m.new_context();
    let err = m.eval(
        &mut ctx,
        &mut small,
        &mut Naive,
        &tokens(64, c.vocab, 5),
        WantLogits::Last,
        |_, _| {},
    );
    assert_eq!(
        err,
        Err(EvalError::Arena(crate::arena::ErrorKind::OutOfMemory))
    );
    let mut tiny_arena = VecArena::new(plan.weights / 2);
    assert_eq!(
        Model::load(&src, c, l, &mut tiny_arena)
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::Arena)
    );
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let c = tiny(true);
    let l = Limits::new(16, 4);
    let mut src = model_src(&c, 1);
    src.find_mut("blk.1.ffn_down.weight").name = "blk.1.ffn_down.bias".into();
    let mut a = VecArena::new(1 << 20);
    match Model::load(&src, c, l, &mut a) {
        Err(LoadError::Tensor { name, .. }) => assert_eq!(name.as_str(), "blk.1.ffn_down.weight"),
        other => panic!("{other:?}"),
    }
    let mut src = model_src(&c, 1);
    src.find_mut("blk.0.attn_k.weight").dims = vec![64, 64];
    assert!(matches!(
        MemoryPlan::dense(&src, &c, &l),
        Err(LoadError::Tensor { .. })
    ));
    let mut src = model_src(&c, 1);
    src.find_mut("output_norm.weight").data.pop();
    assert!(matches!(
        MemoryPlan::dense(&src, &c, &l),
        Err(LoadError::Tensor { .. })
    ));
    // An untied config needs output.weight, which this source lacks.
    let src = model_src(&c, 1);
    assert!(matches!(
        MemoryPlan::dense(&src, &tiny(false), &l),
        Err(LoadError::Tensor { .. })
    ));
    // Q5_0 (Gemma 3's) has products now: a model using it plans like any
    // other. (Every type the formats read is computable, so no refusal by
    // type is left to test here.)
    let mut src = model_src(&c, 1);
    let q = src.find_mut("blk.0.attn_q.weight");
    q.dtype = DType::Q5_0;
    q.data = vec![0; c.hidden * DType::Q5_0.row_bytes(c.hidden as u64).unwrap() as usize];
    assert!(MemoryPlan::dense(&src, &c, &l).is_ok());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    /// However a sequence is cut into calls and batches, every position's
    /// logits are the same.
    #[test]
    fn batching_does_not_change_results(
        seed in 0u64..1000,
        len in 1usize..30,
        batch in 1usize..12,
        cut in 0usize..30,
    ) {
        let c = tiny(true);
        let src = model_src(&c, seed);
        let toks = tokens(len, c.vocab, seed + 1);
        let one = run(&src, &c, Limits::new(32, 1), &toks, &[len]);
        let cut = cut.min(len);
        let calls: Vec<usize> = [cut, len - cut].into_iter().filter(|&n| n > 0).collect();
        let many = run(&src, &c, Limits::new(32, batch.min(32)), &toks, &calls);
        for (a, b) in one.iter().zip(&many) {
            for (x, y) in a.iter().zip(b) {
                proptest::prop_assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()));
            }
        }
    }
}

/// Refining a head from the embedding table needs a separate head, and at
/// most `MAX_REFINED_LOGITS` a position; refining every logit of an
/// untied model gives the logits its embedding table would give as a tied
/// head, whatever the separate head held.
#[test]
fn a_refined_head_takes_its_largest_logits_from_the_embedding() {
    let l = Limits::new(32, 4);
    // One set of tensors with a separate head; loaded as tied, its
    // embedding table is the head.
    let src = model_src(&tiny(false), 4);
    let logits_of = |c: &LlamaConfig, refine: usize| {
        let (mut arena, _) = arena_for(&src, c, &l);
        let mut m = Model::load(&src, *c, l, &mut arena).unwrap();
        m.refine_head(refine).unwrap();
        let mut ctx = m.new_context();
        let mut out = Vec::new();
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[1, 7, 3],
            WantLogits::Last,
            |_, x| out = x.to_vec(),
        )
        .unwrap();
        out
    };
    let (tied, untied) = (tiny(true), tiny(false));
    let (mut arena, _) = arena_for(&src, &tied, &l);
    let mut m = Model::load(&src, tied, l, &mut arena).unwrap();
    assert!(m.refine_head(1).is_err());
    assert!(m.refine_head(0).is_ok());
    let as_tied = logits_of(&tied, 0);
    let own_head = logits_of(&untied, 0);
    assert!(own_head
        .iter()
        .zip(&as_tied)
        .any(|(a, b)| (a - b).abs() > 1e-3));
    let refined = logits_of(&untied, tied.vocab);
    for (a, b) in refined.iter().zip(&as_tied) {
        assert!((a - b).abs() < 1e-4, "{a} {b}");
    }
}
