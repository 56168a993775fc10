//! The sparse planner's rule on a split layout: what a token reads whole
//! (attention, the head, its rows, the FFN's gate and up rows) is kept
//! before whole FFN layers, whose down columns a token reads only for its
//! kept neurons; and the bytes it predicts a token reads.

use super::*;
use crate::model::stream::layout::SplitRows;

/// [`layout`] with every FFN layer split: gate and up rows as two Q8_0
/// tensors next to each other, the down columns as bundles after them.
fn split_layout(c: &LlamaConfig) -> StreamLayout {
    let mut l = layout(c);
    let mut at = l
        .ffn
        .iter()
        .map(|f| f.offset + f.len as u64)
        .max()
        .unwrap()
        .div_ceil(B)
        * B;
    let mut next = |len: usize| {
        let o = at;
        at += (len as u64).div_ceil(B) * B;
        o
    };
    let column = crate::model::tensor::row_bytes(DType::Q8_0, c.hidden).unwrap();
    for f in l.ffn.iter_mut() {
        let g = t(0, DType::Q8_0, c.ffn, c.hidden);
        let gate = t(next(g.len), DType::Q8_0, c.ffn, c.hidden);
        let up = t(next(g.len), DType::Q8_0, c.ffn, c.hidden);
        let rows = SplitRows {
            start: gate.offset,
            len: (up.offset + up.len as u64 - gate.offset) as usize,
            gate,
            up,
        };
        *f = FfnRegion {
            offset: next(column * c.ffn),
            len: column * c.ffn,
            count: c.ffn,
            bundle: column,
            types: f.types,
            kind: FfnKind::Split(rows),
        };
    }
    l
}

fn sparse_opts(budget: usize) -> StreamOptions {
    StreamOptions {
        sparse: true,
        ..opts(budget)
    }
}

#[test]
fn a_sparse_plan_keeps_what_a_token_reads_whole_before_any_down_column() {
    let c = cfg();
    let l = split_layout(&c);
    let min = StreamPlan::new(&l, &c, &limits(), sparse_opts(1 << 30))
        .unwrap()
        .minimum;
    let full = l.attn.iter().map(|a| a.len).sum::<usize>()
        + l.head.len
        + l.ffn.iter().map(|f| f.resident_len()).sum::<usize>();
    let all = (1u128 << c.layers) - 1;
    let mut saw = [false; 3];
    for extra in (0..full + 64 * 1024).step_by(1536) {
        let p = StreamPlan::new(&l, &c, &limits(), sparse_opts(min + extra)).unwrap();
        // (The head's first rows fill what no whole unit fits, so they may
        // come with some attention streamed.)
        if p.head_resident {
            assert_eq!(p.attn_resident, all, "attention before the head: {p:?}");
        }
        if p.rows_resident != 0 || p.ffn_resident != 0 {
            assert!(p.head_resident, "the head before FFN rows: {p:?}");
        }
        // A layer's columns only after its rows, and rows of as many
        // layers as columns (a region of columns, smaller than a layer's
        // rows, may still fit where no more rows do).
        assert_eq!(p.ffn_resident & !p.rows_resident, 0, "rows first: {p:?}");
        assert!(p.rows_resident.count_ones() >= p.ffn_resident.count_ones());
        saw[0] |= p.head_resident_rows > 0;
        saw[1] |= p.rows_resident != 0 && p.ffn_resident == 0;
        saw[2] |= p.ffn_resident != 0;
        // The bytes a token reads: all of it at sparsity 0, the columns
        // scaled by what is kept above it, never more than the most.
        let most = p.streamed_per_token;
        assert_eq!(p.predicted_per_token(0.0), most);
        assert_eq!(
            p.predicted_per_token(1.0),
            most - p.streamed_columns_per_token
        );
        assert!(p.predicted_per_token(0.5) < most || p.streamed_columns_per_token == 0);
        let streamed_columns: u64 = (0..c.layers)
            .filter(|&i| !p.ffn_is_resident(i))
            .map(|i| l.ffn[i].len.div_ceil(B as usize) as u64 * B)
            .sum();
        assert_eq!(p.streamed_columns_per_token, streamed_columns);
    }
    assert_eq!(saw, [true; 3], "the budgets cover each step of the rule");
}

#[test]
fn a_dense_plan_of_the_same_layout_keeps_whole_layers_before_head_rows() {
    let c = cfg();
    let l = split_layout(&c);
    let p0 = StreamPlan::new(&l, &c, &limits(), opts(1 << 30)).unwrap();
    // Attention, the head, and room for one whole FFN layer (rows and
    // columns) and a little more: a dense run keeps the layer; a sparse
    // one keeps rows of several layers instead.
    let attn: usize = l.attn.iter().map(|a| a.len + B as usize).sum();
    let budget = p0.minimum + attn + l.head.len + l.ffn[0].resident_len() + 8 * B as usize;
    let dense = StreamPlan::new(&l, &c, &limits(), opts(budget)).unwrap();
    assert!(dense.head_resident, "{dense:?}");
    assert_eq!(dense.resident_ffn_layers(), 1, "{dense:?}");
    assert_eq!(dense.rows_resident, 0);
    assert_eq!(dense.streamed_columns_per_token, 0);
    let sparse = StreamPlan::new(&l, &c, &limits(), sparse_opts(budget)).unwrap();
    assert_eq!(sparse.resident_ffn_layers(), 0, "{sparse:?}");
    assert!(sparse.rows_resident.count_ones() >= 1, "{sparse:?}");
}
