//! Which operation's error a fault comes back as: what loading can hit is
//! a [`LoadError`], what evaluating can hit an [`EvalError`]. The types are
//! written out so the test also stops compiling if an operation's error
//! type changes.

use super::*;

#[test]
fn a_load_fault_is_a_load_error_and_an_eval_fault_an_eval_error() {
    let c = tiny(true);
    let src = model_src(&c, 2);
    let l = Limits::new(20, 4);
    let (mut arena, plan) = arena_for(&src, &c, &l);

    // Limits longer than the model's context: configuration, at load.
    let longer = Limits::new(c.context + 16, 4);
    let e: LoadError = Model::load(&src, c, longer, &mut arena).unwrap_err();
    assert!(matches!(e, LoadError::Config(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::BadConfig);
    assert_eq!(arena.used(), 0, "a refused load allocates nothing");

    // An arena smaller than the plan: the arena refuses, at load.
    let mut small = VecArena::new(plan.weights / 2);
    let e: LoadError = Model::load(&src, c, l, &mut small).unwrap_err();
    assert_eq!(e, LoadError::Arena(crate::arena::ErrorKind::OutOfMemory));

    // Past the context: evaluating.
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let e: EvalError = m
        .eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &tokens(21, c.vocab, 3),
            WantLogits::Last,
            |_, _| {},
        )
        .unwrap_err();
    assert_eq!(e, EvalError::ContextFull { max: 20 });
    assert_eq!(e.kind(), ErrorKind::ContextFull);
    // A token outside the vocabulary: evaluating.
    let bad = c.vocab as u32;
    let e: EvalError = m
        .eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            &[bad],
            WantLogits::Last,
            |_, _| {},
        )
        .unwrap_err();
    assert_eq!(
        e,
        EvalError::TokenOutOfRange {
            token: bad,
            vocab: c.vocab
        }
    );
    assert!(ctx.is_empty());
}

/// Evaluates `tokens` and checks the arena against `planned`, as a run
/// that checks its plan while running does.
fn eval_checked(
    m: &mut Model,
    ctx: &mut Context,
    arena: &mut VecArena,
    tokens: &[u32],
    planned: &ArenaUse,
) -> Result<(), EvalError> {
    m.eval(ctx, arena, &mut Naive, tokens, WantLogits::None, |_, _| {})?;
    planned.check(arena)?;
    Ok(())
}

/// The arena check converts into either enum: checked while running, a
/// plan that disagrees with the arena is an evaluation's error.
#[test]
fn a_plan_mismatch_while_running_is_an_eval_error() {
    let c = tiny(true);
    let src = model_src(&c, 5);
    let l = Limits::new(32, 4);
    let (mut arena, plan) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    eval_checked(&mut m, &mut ctx, &mut arena, &[1, 2, 3], &plan.arena_use).unwrap();
    let wrong = ArenaUse {
        scratch: plan.arena_use.scratch - 64,
        ..plan.arena_use
    };
    let e = eval_checked(&mut m, &mut ctx, &mut arena, &[4], &wrong).unwrap_err();
    assert!(matches!(e, EvalError::PlanMismatch(_)), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Arena);
}
