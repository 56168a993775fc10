//! Several contexts over one loaded model, in one arena, produce exactly
//! what each produces alone: bit-identical logits at every step, whether
//! the model is held in DRAM (a GGUF) or streamed from a packed image under
//! half its size, with the contexts' steps interleaved.

use lode_kernel::model::WantLogits;
use lode_runtime::{
    generate, Budget, Context, DeviceSpec, GenerateOptions, ModelFile, Quiet, Session,
    SessionOptions,
};
use lode_tests::TempFile;

const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):",
];
const STEPS: usize = 6;

fn options(contexts: usize, streamed: bool) -> SessionOptions {
    SessionOptions {
        contexts,
        threads: Some(2),
        batch: 16,
        budget: streamed.then_some(Budget::Percent(50.0)),
        device: streamed.then(|| DeviceSpec::parse("fake:ufs40").unwrap()),
        ..SessionOptions::new(64)
    }
}

fn session(path: &std::path::Path, contexts: usize, streamed: bool) -> Session {
    let file = ModelFile::open(path).unwrap();
    Session::load(file, &options(contexts, streamed), 16, &mut Quiet).unwrap()
}

/// One greedy step in `ctx`: evaluates `feed`, returns the logits.
fn step(s: &mut Session, ctx: &mut Context, feed: &[u32]) -> Vec<f32> {
    let mut logits = Vec::new();
    s.eval(ctx, feed, WantLogits::Last, |_, l| logits = l.to_vec())
        .unwrap();
    logits
}

fn argmax(l: &[f32]) -> u32 {
    (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap() as u32
}

fn prompt_ids(s: &Session, text: &str) -> Vec<u32> {
    s.tokenizer().encode(text, s.tokenizer().specials().add_bos)
}

/// Every step's logits of each prompt: alone (a session each), then all
/// three interleaved in one session planned for three contexts.
fn alone_and_shared(path: &std::path::Path, streamed: bool) {
    let alone: Vec<Vec<Vec<f32>>> = PROMPTS
        .iter()
        .map(|p| {
            let mut s = session(path, 1, streamed);
            let mut ctx = s.new_context();
            let mut feed = prompt_ids(&s, p);
            (0..STEPS)
                .map(|_| {
                    let l = step(&mut s, &mut ctx, &feed);
                    feed = vec![argmax(&l)];
                    l
                })
                .collect()
        })
        .collect();
    let mut s = session(path, 3, streamed);
    let mut ctxs: Vec<Context> = PROMPTS.iter().map(|_| s.new_context()).collect();
    let mut feeds: Vec<Vec<u32>> = PROMPTS.iter().map(|p| prompt_ids(&s, p)).collect();
    let mut shared = vec![Vec::new(); PROMPTS.len()];
    for _ in 0..STEPS {
        for i in [1, 2, 0] {
            let l = step(&mut s, &mut ctxs[i], &feeds[i]);
            feeds[i] = vec![argmax(&l)];
            shared[i].push(l);
        }
    }
    for (i, (a, b)) in alone.iter().zip(&shared).enumerate() {
        let same = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same && a.len() == b.len(),
            "context {i} differs from its run alone (streamed: {streamed})"
        );
    }
    assert_eq!(argmax(&shared[0][0]), 7042, "\" Paris\"");
    let arena = s.arena();
    assert!(
        lode_kernel::arena::DramArena::peak(arena)
            <= lode_kernel::arena::DramArena::capacity(arena)
    );
    for ctx in ctxs {
        s.delete_context(ctx).unwrap();
    }
}

#[test]
fn contexts_in_dram_equal_each_alone() {
    let Some(gguf) = lode_tests::real_model() else {
        return;
    };
    let file = TempFile::with_bytes(gguf);
    alone_and_shared(file.path(), false);
}

#[test]
fn streamed_contexts_equal_each_alone() {
    let Some(gguf) = lode_tests::real_model() else {
        return;
    };
    let image = TempFile::with_bytes(&lode_tests::pack_identity(gguf));
    alone_and_shared(image.path(), true);
}

#[test]
fn a_context_of_another_session_is_refused_and_generation_continues_a_context() {
    let Some(gguf) = lode_tests::real_model() else {
        return;
    };
    let file = TempFile::with_bytes(gguf);
    let mut a = session(file.path(), 1, false);
    let mut b = session(file.path(), 1, false);
    let mut foreign = b.new_context();
    let ids = prompt_ids(&a, PROMPTS[0]);
    let e = a
        .eval(&mut foreign, &ids, WantLogits::Last, |_, _| {})
        .unwrap_err();
    assert_eq!(e.kind(), lode_runtime::ErrorKind::BadOptions);
    assert!(foreign.is_empty());

    // Two generate calls of 3 tokens equal one of 6: the sampled token is
    // kept pending and evaluated first by the next call.
    let mut one = a.new_context();
    let whole = generate(&mut a, &mut one, &ids, &GenerateOptions::greedy(6), |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let mut two = b.new_context();
    let ids_b = prompt_ids(&b, PROMPTS[0]);
    let first = generate(
        &mut b,
        &mut two,
        &ids_b,
        &GenerateOptions::greedy(3),
        |_| std::ops::ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(two.pending(), first.generated.last().copied());
    let second = generate(&mut b, &mut two, &[], &GenerateOptions::greedy(3), |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let joined: Vec<u32> = first
        .generated
        .iter()
        .chain(&second.generated)
        .copied()
        .collect();
    assert_eq!(whole.generated, joined);
    b.delete_context(foreign).unwrap();
}
