//! Skipped layers: a model skipping a layer computes what the same model
//! with that layer cut out computes; the hidden rows are what the head
//! reads; a mask past the last layer, and contexts started under another
//! mask, are refused.

use super::*;

/// `src` with layer `cut` removed and the later layers renumbered, as an
/// image with that layer pruned would hold it.
fn without_layer(src: &Src, layers: usize, cut: usize) -> Src {
    let mut out = Vec::new();
    for t in &src.0 {
        let mut name = t.name.clone();
        if let Some(rest) = t.name.strip_prefix("blk.") {
            let (l, tail) = rest.split_once('.').unwrap();
            let l: usize = l.parse().unwrap();
            assert!(l < layers);
            if l == cut {
                continue;
            }
            let l = if l > cut { l - 1 } else { l };
            name = std::format!("blk.{l}.{tail}");
        }
        out.push(T {
            name,
            dtype: t.dtype,
            dims: t.dims.clone(),
            data: t.data.clone(),
            values: t.values.clone(),
        });
    }
    Src(out)
}

fn logits_with_mask(src: &Src, c: &LlamaConfig, mask: u128, toks: &[u32]) -> Vec<Vec<f32>> {
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(src, c, &l);
    let mut m = Model::load(src, *c, l, &mut arena).unwrap();
    m.set_skipped_layers(mask).unwrap();
    assert_eq!(m.skipped_layers(), mask);
    let mut ctx = m.new_context();
    let mut out = Vec::new();
    m.eval(
        &mut ctx,
        &mut arena,
        &mut Naive,
        toks,
        WantLogits::From(0),
        |_, lg| out.push(lg.to_vec()),
    )
    .unwrap();
    out
}

#[test]
fn a_skipped_layer_computes_as_if_it_were_cut() {
    let mut c = tiny(true);
    c.layers = 3;
    let src = model_src(&c, 11);
    let toks = tokens(12, c.vocab, 5);
    for cut in 0..3 {
        let mut c1 = c;
        c1.layers = 2;
        let want = reference(&without_layer(&src, 3, cut), &c1, &toks);
        close(&logits_with_mask(&src, &c, 1 << cut, &toks), &want, 1e-4);
    }
    // And the mask matters: no layer skipped is the full model, not the cut one.
    let full = reference(&src, &c, &toks);
    close(&logits_with_mask(&src, &c, 0, &toks), &full, 1e-4);
    let mut c1 = c;
    c1.layers = 2;
    let cut = reference(&without_layer(&src, 3, 1), &c1, &toks);
    let differs = full
        .iter()
        .flatten()
        .zip(cut.iter().flatten())
        .any(|(a, b)| (a - b).abs() > 1e-3);
    assert!(differs, "cutting a layer changes the logits");
}

/// The final norm and the head applied to the hidden rows give the logits.
#[test]
fn hidden_rows_are_what_the_head_reads() {
    let c = tiny(true);
    let src = model_src(&c, 4);
    let toks = tokens(9, c.vocab, 8);
    let want = reference(&src, &c, &toks);
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    let mut ctx = m.new_context();
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
    m.eval_hidden(&mut ctx, &mut arena, &mut Naive, &toks, |p, r| {
        rows.push((p, r.to_vec()))
    })
    .unwrap();
    assert_eq!(ctx.len(), toks.len());
    let positions: Vec<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(positions, (0..toks.len()).collect::<Vec<_>>());
    let got: Vec<Vec<f32>> = rows
        .iter()
        .map(|(_, x)| {
            let xn = norm(x, src.get("output_norm.weight"), c.rms_eps);
            mv(src.get("token_embd.weight"), &xn)
        })
        .collect();
    close(&got, &want, 1e-4);
}

#[test]
fn masks_that_cannot_run_and_contexts_of_another_mask_are_refused() {
    let c = tiny(true);
    let src = model_src(&c, 2);
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    for bad in [0b100, 0b111, 1 << 127] {
        assert!(
            matches!(m.set_skipped_layers(bad), Err(LoadError::Config(_))),
            "{bad:b}"
        );
    }
    assert_eq!(m.skipped_layers(), 0, "a refused mask changes nothing");
    let mut ctx = m.new_context();
    let run = |m: &mut Model, ctx: &mut Context, arena: &mut VecArena| {
        m.eval(ctx, arena, &mut Naive, &[1, 2], WantLogits::None, |_, _| {})
    };
    run(&mut m, &mut ctx, &mut arena).unwrap();
    m.set_skipped_layers(0b10).unwrap();
    assert_eq!(
        run(&mut m, &mut ctx, &mut arena),
        Err(EvalError::ForeignContext)
    );
    // A new context starts under the new mask, and continues under it.
    let mut fresh = m.new_context();
    run(&mut m, &mut fresh, &mut arena).unwrap();
    run(&mut m, &mut fresh, &mut arena).unwrap();
    m.set_skipped_layers(0).unwrap();
    run(&mut m, &mut ctx, &mut arena).unwrap();
}

/// With every layer skipped the hidden rows are the embedding rows.
#[test]
fn every_layer_skipped_leaves_the_embedding() {
    let c = tiny(true);
    let src = model_src(&c, 6);
    let l = Limits::new(32, 4);
    let (mut arena, _) = arena_for(&src, &c, &l);
    let mut m = Model::load(&src, c, l, &mut arena).unwrap();
    m.set_skipped_layers(0b11).unwrap();
    let mut ctx = m.new_context();
    let toks = [3u32, 7, 1];
    let embd = src.get("token_embd.weight");
    let mut n = 0;
    m.eval_hidden(&mut ctx, &mut arena, &mut Naive, &toks, |p, r| {
        let t = toks[p] as usize;
        let want = &embd[t * c.hidden..(t + 1) * c.hidden];
        assert!(r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
        n += 1;
    })
    .unwrap();
    assert_eq!(n, toks.len());
}
