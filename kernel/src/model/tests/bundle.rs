//! The FFN over neuron bundles against the reference, and its refusals.

use super::*;

/// F32 bundles of layer `layer` written from `src`: gate row, up row and
/// down column of each neuron in turn.
pub(super) fn f32_bundles(src: &Src, c: &LlamaConfig, layer: usize, out: &mut [u8]) {
    let (h, f) = (c.hidden, c.ffn);
    let gate = src.get(&std::format!("blk.{layer}.ffn_gate.weight"));
    let up = src.get(&std::format!("blk.{layer}.ffn_up.weight"));
    let down = src.get(&std::format!("blk.{layer}.ffn_down.weight"));
    let mut vals = Vec::with_capacity(3 * h * f);
    for n in 0..f {
        vals.extend_from_slice(&gate[n * h..(n + 1) * h]);
        vals.extend_from_slice(&up[n * h..(n + 1) * h]);
        vals.extend((0..h).map(|r| down[r * f + n]));
    }
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.copy_from_slice(&bytes);
}

#[test]
fn bundle_ffn_matches_the_reference() {
    let c = tiny(false);
    let src = model_src(&c, 11);
    let toks = tokens(20, c.vocab, 2);
    let want = reference(&src, &c, &toks);
    let types = BundleTypes {
        rows: DType::F32,
        down: DType::F32,
    };
    let l = Limits::new(32, 4);
    let dense = MemoryPlan::dense(&src, &c, &l).unwrap();
    let (bytes, slots) = BundleFfn::arena_bytes(&c, types).unwrap();
    let plan = MemoryPlan {
        ffn: bytes,
        slots: dense.slots + slots,
        ..dense
    };
    let mut arena = VecArena::new(plan.total());
    let ffn = BundleFfn::load(&c, &l, types, &mut arena, |layer, out| {
        f32_bundles(&src, &c, layer, out);
        Ok(())
    })
    .unwrap();
    assert_eq!(ffn.types(), types);
    let mut m = Model::with_ffn(&src, c, l, &mut arena, ffn).unwrap();
    let mut ctx = m.new_context();
    let mut got = Vec::new();
    for chunk in toks.chunks(3) {
        m.eval(
            &mut ctx,
            &mut arena,
            &mut Naive,
            chunk,
            WantLogits::From(0),
            |_, lg| got.push(lg.to_vec()),
        )
        .unwrap();
    }
    close(&got, &want, 1e-4);
    assert!(arena.peak() <= plan.total());
}

#[test]
fn bundle_ffn_calls_out_of_range_are_errors() {
    let c = tiny(true);
    let src = model_src(&c, 3);
    let types = BundleTypes {
        rows: DType::F32,
        down: DType::F32,
    };
    let mut arena = VecArena::new(1 << 20);
    let mut ffn = BundleFfn::load(&c, &Limits::new(8, 2), types, &mut arena, |layer, out| {
        f32_bundles(&src, &c, layer, out);
        Ok(())
    })
    .unwrap();
    let input = arena
        .alloc(4 * 3 * c.hidden, 64, crate::arena::SlotKind::Scratch)
        .unwrap();
    let output = arena
        .alloc(4 * 3 * c.hidden, 64, crate::arena::SlotKind::Scratch)
        .unwrap();
    let io = |rows| FfnIo {
        input,
        output,
        rows,
    };
    assert!(ffn.run(2, &mut arena, &mut Naive, io(1)).is_err());
    assert!(ffn.run(0, &mut arena, &mut Naive, io(0)).is_err());
    assert!(ffn.run(0, &mut arena, &mut Naive, io(3)).is_err());
    // Two rows: each output row is its own input's FFN, overwritten.
    arena.bytes_mut(output).unwrap().fill(0x7f);
    let x: Vec<f32> = (0..2 * c.hidden)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    arena.bytes_mut(input).unwrap()[..xb.len()].copy_from_slice(&xb);
    ffn.run(1, &mut arena, &mut Naive, io(2)).unwrap();
    let got = view::f32s(arena.bytes(output).unwrap()).unwrap().to_vec();
    let (h, f) = (c.hidden, c.ffn);
    let gate = src.get("blk.1.ffn_gate.weight");
    let up = src.get("blk.1.ffn_up.weight");
    let down = src.get("blk.1.ffn_down.weight");
    for r in 0..2 {
        let xr = &x[r * h..(r + 1) * h];
        let act: Vec<f32> = (0..f)
            .map(|n| {
                let g = mv(&gate[n * h..(n + 1) * h], xr)[0];
                let u = mv(&up[n * h..(n + 1) * h], xr)[0];
                g / (1.0 + (-g).exp()) * u
            })
            .collect();
        let want = mv(down, &act);
        for (a, b) in got[r * h..(r + 1) * h].iter().zip(&want) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn bundle_ffn_rejects_types_that_do_not_fit_hidden() {
    let mut c = tiny(true);
    c.hidden = 48; // not whole Q8_0 blocks
    let types = BundleTypes {
        rows: DType::Q8_0,
        down: DType::Q8_0,
    };
    assert!(matches!(
        BundleFfn::layer_bytes(&c, types),
        Err(LoadError::Config(_))
    ));
    let c = tiny(true);
    let mut arena = VecArena::new(1 << 16);
    // The fill's error comes back unchanged and nothing is half-built.
    let err = BundleFfn::load(&c, &Limits::new(8, 1), types, &mut arena, |_, _| {
        Err(LoadError::Config("fill failed"))
    })
    .unwrap_err();
    assert!(matches!(err, LoadError::Config("fill failed")));
}
