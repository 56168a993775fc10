//! The attention tallies a KV chunk carries after its keys and values
//! (`R` in the chunk layout, [`super`]): folded in at the end of each
//! forward pass, read back per chunk, and turned into LLMS's information
//! density, which ranks chunks for the KV lifecycle.

use crate::arena::{DramArena, Slot};
use crate::model::error::EvalError;
use crate::model::view::f32s;

use super::{density, KvCache, CHUNK_TOKENS};

impl KvCache {
    /// Adds `received[p]` to the attention tally of position `p`, for
    /// positions `0..received.len()` (all reserved): the end of a forward
    /// pass folds its per-pass sums into the chunks.
    pub fn add_received<A: DramArena>(
        &self,
        arena: &mut A,
        received: Slot,
        positions: usize,
    ) -> Result<(), EvalError> {
        let tally = self.tally_at();
        for (c, &slot) in self.chunks.iter().enumerate() {
            let first = c * CHUNK_TOKENS;
            if first >= positions {
                break;
            }
            let n = (positions - first).min(CHUNK_TOKENS);
            let (t, m) = arena.parts_mut();
            let ([dst], sh) = crate::model::view::split(t, m, [slot])?;
            let add = sh.f32s(received)?.get(first..first + n);
            let sums = dst.get_mut(tally..tally + n * 4);
            let (Some(add), Some(sums)) = (add, sums) else {
                return Err(EvalError::Internal("attention tally outside its chunk"));
            };
            for (s, &a) in crate::model::view::f32s_mut(sums)?.iter_mut().zip(add) {
                *s += a;
            }
        }
        Ok(())
    }

    /// The attention tallies of chunk `index` (its 16 positions; those not
    /// yet evaluated are 0).
    pub fn tallies<'a, A: DramArena>(
        &self,
        arena: &'a A,
        index: usize,
    ) -> Result<&'a [f32], EvalError> {
        let slot = *self
            .chunks
            .get(index)
            .ok_or(EvalError::Internal("no such KV chunk"))?;
        let tally = self.tally_at();
        let bytes = arena.bytes(slot).map_err(EvalError::arena)?;
        let tallies = bytes
            .get(tally..tally + CHUNK_TOKENS * 4)
            .ok_or(EvalError::Internal("attention tally outside its chunk"))?;
        Ok(f32s(tallies)?)
    }

    /// LLMS's information density of chunk `index` (see [`density`]).
    pub fn density<A: DramArena>(&self, arena: &A, index: usize) -> Result<f32, EvalError> {
        let shape = density::TallyShape {
            heads: self.heads,
            layers: self.layout.layers,
        };
        let t = self.tallies(arena, index)?;
        Ok(density::chunk_density(t, index, self.len, shape))
    }

    /// Byte offset of the attention tally inside a main part.
    pub(super) fn tally_at(&self) -> usize {
        self.layout.main_bytes() - CHUNK_TOKENS * 4
    }
}
