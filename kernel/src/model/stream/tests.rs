//! The planner's arithmetic on a synthetic layout (the ring's reads over
//! an in-memory device are in `tests/ring.rs`).

mod ring;
mod sparse_plan;

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
        stored: None,
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
        gate: crate::model::Gate::Silu,
        extra_norms: heapless::Vec::new(),
        arch: crate::model::Arch::Llama,
        row_reads: 1,
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

/// A dense layout whose gate matrices are coded (their units 3/4 of their
/// bytes): the plan keeps a decode slot of the largest matrix of a coded
/// layer (counted with the ring), reads the units' bytes a token, and
/// says how many coded matrices stream.
#[test]
fn coded_matrices_stream_as_their_units_into_a_decode_slot() {
    let c = cfg();
    let raw = dense_layout(&c);
    let mut l = raw.clone();
    for f in l.ffn.iter_mut() {
        let FfnKind::Dense(m) = &mut f.kind else {
            panic!("dense");
        };
        m.gate.stored = Some(StoredAt {
            offset: m.gate.offset,
            len: m.gate.len * 3 / 4,
        });
    }
    let need = |l: &StreamLayout| match StreamPlan::new(l, &c, &limits(), opts(0)) {
        Err(LoadError::BudgetTooSmall { need, .. }) => need,
        e => panic!("{e:?}"),
    };
    let (p_raw, p) = (
        StreamPlan::new(&raw, &c, &limits(), opts(need(&raw))).unwrap(),
        StreamPlan::new(&l, &c, &limits(), opts(need(&l))).unwrap(),
    );
    let m = l.ffn[0].dense().unwrap();
    let largest = m.gate.len.max(m.up.len).max(m.down.len);
    assert_eq!(
        p.decode_slot,
        plan::read_slot(largest + B as usize, B as usize)
    );
    assert_eq!(p_raw.decode_slot, 0);
    assert_eq!(p.bytes.ring, p.ring_slot * p.ring + p.decode_slot);
    assert_eq!(p.coded.units, c.layers);
    assert_eq!(p.coded.decoded, (c.layers * m.gate.len) as u64);
    assert_eq!(p.coded.stored, (c.layers * (m.gate.len * 3 / 4)) as u64);
    assert!(p.streamed_per_token < p_raw.streamed_per_token);
    assert!(std::format!("{p}").contains("coded FFN matrices"));
}
