//! Evaluating tokens: the checks before any work, the batching of a call
//! into weight passes of `max_batch` positions, and what each pass hands
//! back (logits where wanted, or the hidden rows). The pass itself is
//! `forward.rs`.

use crate::arena::DramArena;
use crate::compute::Compute;

use super::context::Context;
use super::error::EvalError;
use super::forward::rows;
use super::view::split;
use super::weight_source::WeightSource;
use super::Model;

/// Which positions' logits an evaluation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantLogits {
    /// None (filling the context only).
    None,
    /// The last position of the call: what generation samples from.
    Last,
    /// Every position at or after this absolute position (scoring a text).
    From(usize),
}

/// What a batch of passes is for: the positions `want` selects, and
/// whether they need the output head.
#[derive(Debug, Clone, Copy)]
struct Pass {
    want: WantLogits,
    head: bool,
}

/// The rows of one pass after it ran: rows `first..n` of the batch whose
/// first position is `pos0`.
#[derive(Debug, Clone, Copy)]
struct Rows {
    first: usize,
    n: usize,
    pos0: usize,
}

impl<W: WeightSource> Model<W> {
    /// Evaluates `tokens` at the next positions of `ctx` and calls
    /// `on_logits(position, logits)` for each position `want` selects, in
    /// order. Prompts are processed `max_batch` positions per weight pass.
    ///
    /// Nothing is evaluated when a token is outside the vocabulary, the
    /// tokens do not fit the context, or the context was made for another
    /// model; after a failure during evaluation the context keeps the
    /// positions of the batches that completed.
    pub fn eval<A, C, G>(
        &mut self,
        ctx: &mut Context,
        arena: &mut A,
        compute: &mut C,
        tokens: &[u32],
        want: WantLogits,
        mut on_logits: G,
    ) -> Result<(), EvalError>
    where
        A: DramArena,
        C: Compute,
        G: FnMut(usize, &[f32]),
    {
        let pass = Pass { want, head: true };
        self.passes(ctx, arena, compute, tokens, pass, |m, arena, compute, r| {
            m.logits(arena, compute, r.first, r.n, r.pos0, &mut on_logits)
        })
    }

    /// Evaluates `tokens` like [`eval`](Self::eval) and calls
    /// `on_hidden(position, row)` for each of them with the residual
    /// stream after the last layer run (before the final norm): the model's
    /// own representation of each position, which is what a calibration
    /// set is clustered by, and, with the later layers skipped, the input
    /// of any layer (a layer's influence is how much it changes that row).
    pub fn eval_hidden<A, C, H>(
        &mut self,
        ctx: &mut Context,
        arena: &mut A,
        compute: &mut C,
        tokens: &[u32],
        mut on_hidden: H,
    ) -> Result<(), EvalError>
    where
        A: DramArena,
        C: Compute,
        H: FnMut(usize, &[f32]),
    {
        let pass = Pass {
            want: WantLogits::From(0),
            head: false,
        };
        let hd = self.cfg.hidden;
        let x = self.buf.x;
        self.passes(ctx, arena, compute, tokens, pass, |_, arena, _, r| {
            let (t, m) = arena.parts_mut();
            let ([], sh) = split(t, m, [])?;
            let rows = rows(sh.f32s(x)?, hd, r.first..r.n)?;
            for (i, row) in rows.chunks_exact(hd).enumerate() {
                on_hidden(r.pos0 + r.first + i, row);
            }
            Ok(())
        })
    }

    /// The batching both evaluations share: checks, then `max_batch`
    /// positions a weight pass, and `after(model, arena, compute, rows)`
    /// for each pass that holds a position `pass.want` selects.
    fn passes<A, C, F>(
        &mut self,
        ctx: &mut Context,
        arena: &mut A,
        compute: &mut C,
        tokens: &[u32],
        pass: Pass,
        mut after: F,
    ) -> Result<(), EvalError>
    where
        A: DramArena,
        C: Compute,
        F: FnMut(&mut Self, &mut A, &mut C, Rows) -> Result<(), EvalError>,
    {
        let vocab = self.cfg.vocab;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EvalError::TokenOutOfRange { token, vocab });
        }
        if !ctx.fits(&self.cfg, &self.arch, &self.limits) || !ctx.adopt_mask(self.skipped) {
            return Err(EvalError::ForeignContext);
        }
        let kv = ctx.kv_mut();
        let start = kv.len();
        let end = start
            .checked_add(tokens.len())
            .filter(|&e| e <= kv.max_positions())
            .ok_or(EvalError::ContextFull {
                max: kv.max_positions(),
            })?;
        for batch in tokens.chunks(self.limits.max_batch) {
            let pos0 = kv.len();
            let first = match pass.want {
                WantLogits::None => None,
                WantLogits::Last if pos0 + batch.len() == end => Some(end - 1),
                WantLogits::Last => None,
                WantLogits::From(p) => Some(p.max(pos0)).filter(|&f| f < pos0 + batch.len()),
            };
            kv.reserve(arena, batch.len())?;
            self.weights
                .begin_pass(arena, pass.head && first.is_some())?;
            self.forward(kv, arena, compute, batch, pos0)?;
            kv.advance(batch.len())?;
            if let Some(first) = first {
                let rows = Rows {
                    first: first - pos0,
                    n: batch.len(),
                    pos0,
                };
                after(self, arena, compute, rows)?;
            }
        }
        Ok(())
    }
}
