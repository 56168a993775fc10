//! Exact logits for the likely tokens of an approximate output head.
//!
//! A model whose head is its embedding table (Gemma 3's: 70% of the
//! model) must read every head row each token, which is what a small
//! budget streams. An image may carry a narrower copy of that table as
//! its head (`lode pack --head`), read instead; its logits are then
//! slightly off, and the tokens it favours are not always the model's.
//! This step recomputes the `k` largest logits of each position from the
//! embedding table's own rows (the exact head), read together
//! ([`WeightSource::embedding_rows`]):
//! the tokens greedy decoding and sampling choose among come out as the
//! full-precision head gives them, for `k` rows read instead of the whole
//! table. The other logits stay approximate.

use crate::arena::DramArena;
use crate::compute::{Compute, QuantMatrix};
use crate::limits::MAX_REFINED_LOGITS;

use super::error::EvalError;
use super::forward::{rows, short};
use super::view::{f32s_mut, split};
use super::weight_source::WeightSource;
use super::Model;

/// The indices of the `k` largest values of `v` (any order), `k` at most
/// [`MAX_REFINED_LOGITS`].
pub(crate) fn top_k(v: &[f32], k: usize) -> heapless::Vec<u32, MAX_REFINED_LOGITS> {
    let k = k.min(MAX_REFINED_LOGITS);
    let mut top: heapless::Vec<(f32, u32), MAX_REFINED_LOGITS> = heapless::Vec::new();
    // The smallest kept value and its place, once `top` is full.
    let mut min = (f32::NEG_INFINITY, 0usize);
    for (i, &x) in v.iter().enumerate() {
        if top.len() < k {
            let _ = top.push((x, i as u32));
            if top.len() == k {
                min = smallest(&top);
            }
        } else if x > min.0 {
            if let Some(slot) = top.get_mut(min.1) {
                *slot = (x, i as u32);
            }
            min = smallest(&top);
        }
    }
    top.iter().map(|&(_, i)| i).collect()
}

fn smallest(top: &[(f32, u32)]) -> (f32, usize) {
    top.iter().enumerate().fold(
        (f32::INFINITY, 0),
        |m, (j, &(x, _))| if x < m.0 { (x, j) } else { m },
    )
}

impl<W: WeightSource> Model<W> {
    /// Recomputes the [`Model::refined_logits`] largest logits of each of
    /// the `g` rows in the logits buffer from the embedding rows, against
    /// the final-normed rows in `xb`.
    pub(super) fn refine_logits<A: DramArena, C: Compute>(
        &mut self,
        arena: &mut A,
        compute: &mut C,
        g: usize,
    ) -> Result<(), EvalError> {
        let (c, b, k) = (self.cfg, self.buf, self.refine);
        if k == 0 {
            return Ok(());
        }
        for i in 0..g {
            let candidates = {
                let (t, m) = arena.parts_mut();
                let ([], sh) = split(t, m, [])?;
                top_k(rows(sh.f32s(b.logits)?, c.vocab, i..i + 1)?, k)
            };
            let (vocab, hidden) = (c.vocab, c.hidden);
            let refine = &mut |j: usize,
                               arena: &mut A,
                               compute: &mut C,
                               embed: super::tensor::TensorRef,
                               r: usize|
             -> Result<(), EvalError> {
                let tok = *candidates.get(j).ok_or_else(short)? as usize;
                let (t, m) = arena.parts_mut();
                let ([logits], sh) = split(t, m, [b.logits])?;
                let w = QuantMatrix {
                    dtype: embed.dtype,
                    rows: 1,
                    cols: hidden,
                    data: embed.row(&sh, r)?,
                };
                let x = rows(sh.f32s(b.xb)?, hidden, i..i + 1)?;
                let at = i * vocab + tok;
                let out = f32s_mut(logits)?.get_mut(at..at + 1).ok_or_else(short)?;
                compute.matvec(&w, x, out).map_err(EvalError::compute)
            };
            self.weights
                .embedding_rows(&candidates, arena, compute, refine)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_finds_the_largest() {
        let v: heapless::Vec<f32, 100> = (0..100).map(|i| ((i * 37) % 100) as f32).collect();
        let mut t = top_k(&v, 5);
        t.sort_unstable();
        let mut want: heapless::Vec<u32, 5> = (95..100u32)
            .map(|x| v.iter().position(|&y| y == x as f32).unwrap() as u32)
            .collect();
        want.sort_unstable();
        assert_eq!(t.as_slice(), want.as_slice());
        assert_eq!(top_k(&v, 0).len(), 0);
        assert_eq!(top_k(&v[..3], 10).len(), 3);
        assert_eq!(top_k(&v, 1000).len(), MAX_REFINED_LOGITS);
    }
}
