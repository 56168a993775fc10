//! The planner's arithmetic and the ring's reads, on a synthetic layout and
//! an in-memory device.

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::arena::testing::VecArena;
use crate::arena::{DramArena, SlotKind};
use crate::flash::testing::RamFlash;
use crate::flash::{ErrorKind as FlashKind, Geometry};
use crate::model::error::{EvalError, LoadError};
use crate::model::{BundleTypes, Limits, LlamaConfig};
use lode_formats::DType;

fn cfg() -> LlamaConfig {
    LlamaConfig {
        layers: 4,
        hidden: 64,
        ffn: 128,
        heads: 2,
        kv_heads: 1,
        head_dim: 32,
        vocab: 300,
        rope_base: 10000.0,
        rms_eps: 1e-5,
        context: 64,
        tied_embeddings: true,
    }
}

fn t(offset: u64, dtype: DType, rows: usize, cols: usize) -> TensorAt {
    let len = crate::model::tensor::row_bytes(dtype, cols).unwrap() * rows;
    TensorAt {
        offset,
        dtype,
        rows,
        cols,
        len,
        index: 0,
    }
}

const B: u64 = 512;

/// A layout in the image's order: attention spans, head, then regions,
/// each extent on a block boundary.
fn layout(c: &LlamaConfig) -> StreamLayout {
    let mut at = 0u64;
    let mut next = |len: usize| {
        let o = at;
        at += (len as u64).div_ceil(B) * B;
        o
    };
    let mut attn = heapless::Vec::new();
    for _ in 0..c.layers {
        let an = t(next(c.hidden * 4), DType::F32, 1, c.hidden);
        let fnm = t(next(c.hidden * 4), DType::F32, 1, c.hidden);
        let q = t(0, DType::Q8_0, c.hidden, c.hidden);
        let q = t(next(q.len), DType::Q8_0, c.hidden, c.hidden);
        let k = t(next(q.len / 2), DType::Q8_0, c.kv_dim(), c.hidden);
        let v = t(next(k.len), DType::Q8_0, c.kv_dim(), c.hidden);
        let o = t(next(q.len), DType::Q8_0, c.hidden, c.hidden);
        let end = o.offset + o.len as u64;
        attn.push(AttnSpan {
            start: an.offset,
            len: (end - an.offset) as usize,
            attn_norm: an,
            ffn_norm: fnm,
            proj: [q, k, v, o],
        })
        .unwrap();
    }
    let e = t(0, DType::Q8_0, c.vocab, c.hidden);
    let embed = t(next(e.len), DType::Q8_0, c.vocab, c.hidden);
    let output_norm = t(next(c.hidden * 4), DType::F32, 1, c.hidden);
    let types = BundleTypes {
        rows: DType::Q8_0,
        down: DType::Q8_0,
    };
    let len = crate::model::BundleFfn::layer_bytes(c, types).unwrap();
    let mut ffn = heapless::Vec::new();
    for _ in 0..c.layers {
        ffn.push(FfnRegion {
            offset: next(len),
            len,
            count: c.ffn,
            bundle: len / c.ffn,
            types,
            kind: FfnKind::Bundled,
        })
        .unwrap();
    }
    StreamLayout {
        attn,
        ffn,
        embed,
        head: embed,
        output_norm,
    }
}

fn opts(budget: usize) -> StreamOptions {
    StreamOptions {
        budget,
        ring: 2,
        block: B as usize,
        stream_all: false,
        sparse: false,
        checked: 0,
    }
}

fn limits() -> Limits {
    Limits::new(32, 4)
}

#[test]
fn a_budget_below_the_minimum_names_the_minimum() {
    let c = cfg();
    let l = layout(&c);
    let min = StreamPlan::new(&l, &c, &limits(), opts(1 << 30))
        .unwrap()
        .minimum;
    let e = StreamPlan::new(&l, &c, &limits(), opts(min - 1)).unwrap_err();
    assert_eq!(
        e,
        LoadError::BudgetTooSmall {
            need: min,
            have: min - 1
        }
    );
    assert_eq!(e.kind(), crate::model::ErrorKind::Budget);
    assert!(std::format!("{e}").contains(&std::format!("{min} bytes")));
    let p = StreamPlan::new(&l, &c, &limits(), opts(min)).unwrap();
    assert_eq!(p.resident_attention_layers() + p.resident_ffn_layers(), 0);
    assert!(!p.head_resident);
    assert!(p.bytes.total() <= min);
}

#[test]
fn a_large_budget_keeps_everything_resident_and_needs_no_ring() {
    let c = cfg();
    let l = layout(&c);
    let p = StreamPlan::new(&l, &c, &limits(), opts(64 << 20)).unwrap();
    assert_eq!(p.resident_attention_layers(), 4);
    assert_eq!(p.resident_ffn_layers(), 4);
    assert!(p.head_resident);
    assert_eq!((p.ring, p.bytes.ring), (0, 0));
    assert_eq!(p.streamed_per_token, 0);
    // stream_all streams everything whatever the budget.
    let s = StreamPlan::new(
        &l,
        &c,
        &limits(),
        StreamOptions {
            stream_all: true,
            sparse: false,
            ..opts(64 << 20)
        },
    )
    .unwrap();
    assert_eq!(s.resident_attention_layers() + s.resident_ffn_layers(), 0);
}

#[test]
fn streamed_ffn_layers_spread_over_the_depth_when_they_fit() {
    use super::plan::spread_streamed;
    // The streamed layers of `layers` under a resident mask.
    let at = |mask: u128, layers: usize| {
        (0..layers)
            .filter(|&l| mask & (1u128 << l) == 0)
            .collect::<Vec<_>>()
    };
    // 25 of 30 equal layers fit: the 5 streamed end five runs of six.
    let m = spread_streamed(30, 25 * 100 + 99, |_| 100);
    assert_eq!(at(m, 30), [5, 11, 17, 23, 29]);
    // All or none fit: lowest-first filling decides (0).
    assert_eq!(spread_streamed(30, 30 * 100, |_| 100), 0);
    assert_eq!(spread_streamed(30, 99, |_| 100), 0);
    // Unequal layers whose spread set does not fit: lowest first.
    let cost = |l: usize| [50, 100, 200, 200][l];
    assert_eq!(spread_streamed(4, 150, cost), 0);
    // When the spread set fits, it is taken even if costs differ.
    assert_eq!(at(spread_streamed(4, 250, cost), 4), [1, 3]);
}

proptest! {
    /// Whatever the budget, the plan fits it, attention is kept before the
    /// head (lower layers first) and the head before any FFN layer, the
    /// streamed FFN layers are spread over the depth, and a head piece fits
    /// a ring slot.
    #[test]
    fn plans_fit_their_budget_and_follow_the_rule(extra in 0usize..400_000, ring in 1usize..4) {
        let c = cfg();
        let l = layout(&c);
        let min = StreamPlan::new(&l, &c, &limits(), StreamOptions { ring, ..opts(1 << 30) })
            .unwrap()
            .minimum;
        let p = StreamPlan::new(&l, &c, &limits(), StreamOptions { ring, ..opts(min + extra) })
            .unwrap();
        prop_assert!(p.bytes.total() <= p.budget);
        let a = p.resident_attention_layers();
        let f = p.resident_ffn_layers();
        // Streamed FFN layers end equal runs of the depth.
        let s = 4 - f;
        let streamed = |layer: usize| f > 0 && (1..=s).any(|i| i * 4 / s - 1 == layer);
        for layer in 0..4 {
            prop_assert_eq!(p.attn_is_resident(layer), layer < a);
            prop_assert_eq!(p.ffn_is_resident(layer), f == 4 || (f > 0 && !streamed(layer)));
        }
        if f > 0 { prop_assert!(p.head_resident && a == 4); }
        if p.head_resident { prop_assert_eq!(a, 4); }
        if !p.head_resident {
            let rb = l.head.row_bytes();
            prop_assert!(p.head_rows * rb + 2 * B as usize <= p.ring_slot);
            // The head's first rows take what no whole unit fits: less
            // than one more row (and its slot's rounding) is left over.
            prop_assert!(p.head_resident_rows < l.head.rows);
            prop_assert_eq!(p.bytes.head > 0, p.head_resident_rows > 0);
            let left = p.budget - p.bytes.total();
            prop_assert!(left < rb + 2 * B as usize + crate::model::weights::ALIGN, "{} left", left);
            // Those rows are not streamed.
            let streamed_head = (l.head.len - p.head_resident_rows * rb) as u64;
            prop_assert!(p.streamed_per_token >= streamed_head);
        } else {
            prop_assert_eq!(p.head_resident_rows, l.head.rows);
        }
        // The loader allocates exactly what the plan counted, kind by kind,
        // and the arena the plan sized holds it.
        let end = l.ffn.last().map_or(0, |f| f.offset + f.len as u64) as usize;
        let dev = pattern_device(end.div_ceil(B as usize) * B as usize, 8, 64 << 10);
        let mut arena = VecArena::new(p.budget);
        let src = StreamSource::load(dev, &mut arena, l, &c, &limits(), p, no_clock).unwrap();
        let m = crate::model::Model::new(c, limits(), src, &mut arena).unwrap();
        prop_assert_eq!(p.arena_use.check(&arena), Ok(()));
        let mut wrong = p.arena_use; wrong.io += 64;
        prop_assert!(wrong.check(&arena).is_err());
        prop_assert!(arena.used() <= p.bytes.total() - p.bytes.kv, "{} used, {:?}", arena.used(), p.bytes);
        let _ = m;
    }
}

/// A device over `len` bytes where byte `i` is `i * 7 + i / 251`.
fn pattern_device(len: usize, queue_depth: u16, max_transfer: u32) -> RamFlash {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    RamFlash::new(
        data,
        Geometry {
            block_size: B as u32,
            capacity: len as u64,
            max_transfer,
            queue_depth,
        },
    )
}

fn no_clock() -> u64 {
    0
}

/// A unit read from `start`, `len` bytes.
fn unit(start: u64, len: usize) -> Unit {
    Unit {
        start,
        len,
        skip: 0,
        head: false,
    }
}

/// `n` I/O slots of `len` bytes, block-aligned.
fn io_slots(arena: &mut VecArena, n: usize, len: usize) -> Vec<crate::arena::Slot> {
    (0..n)
        .map(|_| arena.alloc(len, B as usize, SlotKind::IoBuffer).unwrap())
        .collect()
}

#[test]
fn the_ring_delivers_each_unit_in_turn_and_prefetches_the_next() {
    let dev = pattern_device(64 * 1024, 16, 1024);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 2, 8192);
    let units = [
        unit(0, 4096),
        unit(8192, 8192),
        Unit {
            start: 20480,
            len: 2048,
            skip: 100,
            head: true,
        },
    ];
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    for pass in 0..3 {
        ring.begin_pass(&mut arena, true).unwrap();
        for (i, u) in units.iter().enumerate() {
            let (slot, skip) = ring.acquire(&mut arena, i).unwrap();
            assert_eq!(skip, u.skip);
            let want: Vec<u8> = (u.start as usize..u.start as usize + u.len)
                .map(|i| (i * 7 + i / 251) as u8)
                .collect();
            assert_eq!(
                &arena.bytes(slot).unwrap()[..u.len],
                &want[..],
                "pass {pass} unit {i}"
            );
        }
    }
    let s = ring.stats();
    // Every unit read once a pass, in commands of at most 1 KiB, and the
    // first unit of the next pass already prefetched.
    assert_eq!(s.bytes, 3 * (4096 + 8192 + 2048) + 4096);
    assert_eq!(s.reads, 3 * (4 + 8 + 2) + 4);
    assert_eq!(s.units, 3 * 3 + 1);
    // Passes without logits skip the head piece: unit 1, then unit 0 of
    // the next pass, then unit 1 again.
    ring.begin_pass(&mut arena, false).unwrap();
    for i in 0..2 {
        ring.acquire(&mut arena, i).unwrap();
    }
    ring.begin_pass(&mut arena, false).unwrap();
    ring.acquire(&mut arena, 0).unwrap();
    ring.quiesce(&mut arena).unwrap();
    assert_eq!(ring.stats().bytes, s.bytes + 8192 + 4096 + 8192);
}

#[test]
fn a_failed_read_is_an_error_naming_the_unit_and_the_ring_recovers() {
    let mut dev = pattern_device(64 * 1024, 2, 4096);
    dev.fail_at = Some(12288);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 2, 8192);
    let units = [unit(0, 4096), unit(8192, 8192)];
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    ring.acquire(&mut arena, 0).unwrap();
    let e = ring.acquire(&mut arena, 1).unwrap_err();
    assert_eq!(
        e,
        EvalError::Read {
            offset: 8192,
            kind: FlashKind::Io,
            attempts: 3,
        }
    );
    // Everything in flight is collected; the next pass starts cleanly and
    // fails again at the same unit, never hands out its stale bytes.
    ring.quiesce(&mut arena).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    ring.acquire(&mut arena, 0).unwrap();
    assert!(ring.acquire(&mut arena, 1).is_err());
}

#[test]
fn an_out_of_order_acquire_restarts_the_schedule_there() {
    let dev = pattern_device(64 * 1024, 8, 4096);
    let mut arena = VecArena::new(1 << 20);
    let slots = io_slots(&mut arena, 3, 4096);
    let units: Vec<Unit> = (0..5).map(|i| unit(i * 4096, 4096)).collect();
    let mut ring = Ring::new(dev, &slots, &units, None, no_clock, None).unwrap();
    ring.begin_pass(&mut arena, true).unwrap();
    let (slot, _) = ring.acquire(&mut arena, 3).unwrap();
    assert_eq!(
        arena.bytes(slot).unwrap()[0],
        ((3 * 4096 * 7 + 3 * 4096 / 251) as usize) as u8
    );
    let (slot, _) = ring.acquire(&mut arena, 4).unwrap();
    assert_eq!(
        arena.bytes(slot).unwrap()[0],
        ((4 * 4096 * 7 + 4 * 4096 / 251) as usize) as u8
    );
    let (slot, _) = ring.acquire(&mut arena, 0).unwrap();
    assert_eq!(arena.bytes(slot).unwrap()[1], 7);
}

proptest! {
    /// The sparse rule keeps at least `keep` activations, every one of them
    /// at least as strong as every one it zeroed, and changes no kept value.
    #[test]
    fn keep_strongest_keeps_the_strongest(
        vals in proptest::collection::vec(-8i32..8, 0..64),
        keep in 0usize..70,
    ) {
        let h0: Vec<f32> = vals.iter().map(|&v| v as f32 * 0.25).collect();
        let mut h = h0.clone();
        let mut scratch = vec![0f32; h.len()];
        keep_strongest(&mut h, keep, &mut scratch).unwrap();
        let kept: Vec<usize> = (0..h.len()).filter(|&i| h[i] != 0.0).collect();
        let nonzero = h0.iter().filter(|v| **v != 0.0).count();
        prop_assert!(kept.len() >= keep.min(nonzero));
        let weakest_kept = kept.iter().map(|&i| h0[i].abs()).fold(f32::INFINITY, f32::min);
        for i in 0..h.len() {
            if h[i] == 0.0 {
                prop_assert!(h0[i].abs() <= weakest_kept);
            } else {
                prop_assert_eq!(h[i], h0[i]);
            }
        }
        if keep < h.len() {
            // Ties aside, no more than `keep` survive.
            let distinct_at_cut = kept.iter().filter(|&&i| h0[i].abs() == weakest_kept).count();
            prop_assert!(kept.len() <= keep + distinct_at_cut);
        }
    }
}

#[test]
fn keep_strongest_needs_scratch() {
    let mut h = [1.0f32, -2.0, 3.0];
    let e = keep_strongest(&mut h, 1, &mut [0.0; 2]).unwrap_err();
    assert_eq!(e.kind(), crate::model::ErrorKind::Compute);
    keep_strongest(&mut h, 1, &mut [0.0; 3]).unwrap();
    assert_eq!(h, [0.0, 0.0, 3.0]);
}

#[test]
fn neurons_kept_rounds_to_the_nearest_neuron_and_keeps_one() {
    assert_eq!(neurons_kept(0.5, 1536), 768);
    assert_eq!(neurons_kept(0.0, 1536), 1536);
    assert_eq!(neurons_kept(0.34, 10), 7, "3.4 dropped rounds to 3");
    assert_eq!(neurons_kept(0.36, 10), 6, "3.6 dropped rounds to 4");
    assert_eq!(neurons_kept(0.99, 10), 1, "never none");
    assert_eq!(neurons_kept(f32::NAN, 10), 10, "NaN cuts nothing");
}

/// [`layout`] with dense FFN layers: gate, up and down as Q8_0 matrices
/// one after another.
fn dense_layout(c: &LlamaConfig) -> StreamLayout {
    let mut l = layout(c);
    let mut at = l.ffn.iter().map(|f| f.offset).max().unwrap() + (1 << 20);
    for f in l.ffn.iter_mut() {
        let mut next = |rows: usize, cols: usize| {
            let t = t(at, DType::Q8_0, rows, cols);
            at += (t.len as u64).div_ceil(B) * B;
            t
        };
        let (gate, up, down) = (
            next(c.ffn, c.hidden),
            next(c.ffn, c.hidden),
            next(c.hidden, c.ffn),
        );
        *f = FfnRegion {
            offset: gate.offset,
            len: (down.offset + down.len as u64 - gate.offset) as usize,
            count: c.ffn,
            bundle: 0,
            types: BundleTypes {
                rows: DType::Q8_0,
                down: DType::Q8_0,
            },
            kind: FfnKind::Dense(DenseMatrices { gate, up, down }),
        };
    }
    l
}

#[test]
fn a_streamed_dense_layer_needs_slots_of_its_largest_matrix_only() {
    let c = cfg();
    let l = dense_layout(&c);
    let p = StreamPlan::new(&l, &c, &limits(), opts(0)).unwrap_err();
    let LoadError::BudgetTooSmall { need, .. } = p else {
        panic!("{p:?}");
    };
    let p = StreamPlan::new(&l, &c, &limits(), opts(need)).unwrap();
    assert_eq!(p.resident_ffn_layers(), 0);
    let m = l.ffn[0].dense().unwrap();
    let largest = m.gate.len.max(m.up.len).max(m.down.len);
    let attn = l.attn[0].len;
    let head_piece = plan::read_slot(largest.max(attn) + 2 * B as usize, B as usize);
    assert_eq!(
        p.ring_slot, head_piece,
        "a matrix (or attention span), not the layer"
    );
    assert!(p.ring_slot < l.ffn[0].len);
    // Each streamed layer reads its three matrices, not the bytes between.
    let per_layer: u64 = [m.gate, m.up, m.down]
        .iter()
        .map(|t| plan::blocks(t.len, B as usize) as u64)
        .sum();
    assert!(p.streamed_per_token >= 4 * per_layer);
    // The default ring reads a whole dense layer ahead: its three units
    // plus the one computing; bundles need one unit plus one.
    assert_eq!(l.ring_for(false), 4);
    assert_eq!(layout(&c).ring_for(false), 2);
    assert_eq!(layout(&c).ring_for(true), 2);
}
