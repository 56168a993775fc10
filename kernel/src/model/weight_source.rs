//! The seam where the decode loop gets every weight it uses.
//!
//! A [`WeightSource`] owns all of a model's weights, wherever they are:
//! [`Resident`] holds them in DRAM (the embedding, head, norms and
//! attention as loaded, the FFN computed by any [`FfnSource`]), and the
//! streaming source ([`StreamSource`](super::stream::StreamSource)) keeps
//! what its plan keeps resident and reads the rest from flash. The loop in
//! `forward.rs` asks the source for a layer's norms, its attention
//! projections, its FFN, an embedding row and the output head piece by
//! piece, and never learns which one it has.

use crate::arena::DramArena;
use crate::compute::Compute;

use super::error::EvalError;
use super::ffn::{FfnIo, FfnSource};
use super::gemma::GemmaNorms;
use super::tensor::TensorRef;
use super::weights::{Attention, Weights};

/// [`WeightSource::embedding_rows`] one [`WeightSource::embedding_row`] at
/// a time: what a source whose rows are in DRAM does.
pub fn rows_one_by_one<W: WeightSource, A: DramArena, C: Compute>(
    source: &mut W,
    tokens: &[u32],
    arena: &mut A,
    compute: &mut C,
    each: &mut EachRow<'_, A, C>,
) -> Result<(), EvalError> {
    for (i, &t) in tokens.iter().enumerate() {
        let (e, r) = source.embedding_row(t, arena, compute)?;
        each(i, arena, compute, e, r)?;
    }
    Ok(())
}

/// What [`WeightSource::embedding_rows`] hands each row to: its index in
/// the tokens asked for, the arena and compute, the matrix and the row.
pub type EachRow<'f, A, C> =
    dyn FnMut(usize, &mut A, &mut C, TensorRef, usize) -> Result<(), EvalError> + 'f;

/// All of a model's weights, handed to the decode loop one piece at a time.
/// Every method runs while evaluating (a source is loaded by its own
/// constructor), so each fails with an [`EvalError`].
pub trait WeightSource {
    /// Transformer blocks.
    fn layers(&self) -> usize;

    /// Layer `layer`'s attention and FFN norms (always resident: a few KiB
    /// a layer).
    fn norms(&self, layer: usize) -> Result<(TensorRef, TensorRef), EvalError>;

    /// The final norm.
    fn output_norm(&self) -> TensorRef;

    /// Layer `layer`'s extra Gemma norms when the source holds them (a
    /// streamed Gemma image; a model loaded whole keeps its own).
    fn extra_norms(&self, layer: usize) -> Option<GemmaNorms> {
        let _ = layer;
        None
    }

    /// Called before each pass over the layers; `logits` says whether the
    /// pass ends with the output head (a streaming source prefetches it only
    /// then).
    fn begin_pass<A: DramArena>(&mut self, arena: &mut A, logits: bool) -> Result<(), EvalError>;

    /// Layer `layer`'s attention projections, valid until the next call on
    /// the source (a streaming source lends its I/O buffer).
    /// `compute` checks streamed reads (see
    /// [`Compute::checksums`]).
    fn attention<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<Attention, EvalError>;

    /// The embedding matrix and the row of `token` in it (a streaming
    /// source reads just that row).
    fn embedding_row<A: DramArena, C: Compute>(
        &mut self,
        token: u32,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<(TensorRef, usize), EvalError>;

    /// The rows of `tokens`, handed one by one to `each(index in tokens,
    /// arena, compute, matrix, row)`; each row is valid until `each`
    /// returns. A streaming source reads them together (one wait behind its
    /// prefetches instead of one a row); by default, one
    /// [`WeightSource::embedding_row`] each.
    fn embedding_rows<A: DramArena, C: Compute>(
        &mut self,
        tokens: &[u32],
        arena: &mut A,
        compute: &mut C,
        each: &mut EachRow<'_, A, C>,
    ) -> Result<(), EvalError>
    where
        Self: Sized,
    {
        rows_one_by_one(self, tokens, arena, compute, each)
    }

    /// Piece `piece` of the output head: rows starting at the returned
    /// vocabulary index, or `None` past the last piece.
    fn head_piece<A: DramArena, C: Compute>(
        &mut self,
        piece: usize,
        arena: &mut A,
        compute: &mut C,
    ) -> Result<Option<(TensorRef, usize)>, EvalError>;

    /// Runs layer `layer`'s FFN over `io`. The arena is free to borrow;
    /// `io`'s slots stay live.
    fn ffn<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError>;
}

/// Every weight in DRAM: the embedding, head, norms and attention as
/// loaded, and the FFN computed by `F` (the dense matrices, neuron
/// bundles, or a profiling FFN).
#[derive(Debug, Clone)]
pub struct Resident<F> {
    weights: Weights,
    ffn: F,
}

impl<F: FfnSource> Resident<F> {
    /// The resident `weights` with the FFN `ffn`.
    pub fn new(weights: Weights, ffn: F) -> Self {
        Resident { weights, ffn }
    }

    /// The non-FFN weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The FFN.
    pub fn ffn(&self) -> &F {
        &self.ffn
    }

    /// The FFN, mutably.
    pub fn ffn_mut(&mut self) -> &mut F {
        &mut self.ffn
    }
}

impl<F: FfnSource> WeightSource for Resident<F> {
    fn layers(&self) -> usize {
        self.weights.layers.len()
    }

    fn norms(&self, layer: usize) -> Result<(TensorRef, TensorRef), EvalError> {
        self.weights.norms(layer)
    }

    fn output_norm(&self) -> TensorRef {
        self.weights.output_norm
    }

    fn begin_pass<A: DramArena>(&mut self, arena: &mut A, logits: bool) -> Result<(), EvalError> {
        self.ffn.begin_pass(arena, logits)
    }

    fn attention<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        _arena: &mut A,
        _compute: &mut C,
    ) -> Result<Attention, EvalError> {
        self.weights.attention(layer)
    }

    fn embedding_row<A: DramArena, C: Compute>(
        &mut self,
        token: u32,
        _arena: &mut A,
        _compute: &mut C,
    ) -> Result<(TensorRef, usize), EvalError> {
        let e = self
            .weights
            .embed
            .ok_or(EvalError::Internal("the embedding is not resident"))?;
        Ok((e, token as usize))
    }

    fn head_piece<A: DramArena, C: Compute>(
        &mut self,
        piece: usize,
        _arena: &mut A,
        _compute: &mut C,
    ) -> Result<Option<(TensorRef, usize)>, EvalError> {
        let h = self
            .weights
            .output
            .ok_or(EvalError::Internal("the output head is not resident"))?;
        Ok((piece == 0).then_some((h, 0)))
    }

    fn ffn<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        self.ffn.run(layer, arena, compute, io)
    }
}
