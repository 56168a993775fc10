//! The FFN of a profiling run: the resident dense matrices, multiplied as
//! [`DenseFfn`](lode_kernel::model::DenseFfn) does, with each neuron's
//! score observed between the gate/up products and the down product.
//!
//! Per layer and batch of positions:
//!
//! ```text
//! g = gate · x, u = up · x               two products over every neuron
//! score_i = |silu(g_i) · u_i|  (exact)   or |silu(g_i)| (gate)
//! a = silu(g) ⊙ u
//! calibrating: keep sampled scores       masking: a_i = 0 where score_i < threshold
//! top-k: a_i = 0 unless |a_i| is among the token's `keep` largest
//! out = down · a
//! ```
//!
//! The dense products are computed even for neurons a real sparse engine
//! would skip: profiling measures *which* neurons a threshold selects and
//! what zeroing the rest costs in quality, not the time it would save. In
//! gate mode (PowerInfer-2's two-phase load: the gate row first, the up row
//! and down column only where it fired) the result is the same as reading
//! up and down for the fired neurons only, because the other activations
//! are zeroed before the down product.
//!
//! [`Profiler`] holds the state; [`ProfilingFfn`] is the [`FfnSource`] the
//! model owns. The model owns its FFN source and offers no mutable access
//! to it, so the driver keeps the [`Profiler`] in a [`RefCell`] and the
//! source borrows it only for the duration of one layer's call: between
//! evaluations the driver switches phases and drains the recorded bitsets.

use std::cell::RefCell;

use lode_kernel::arena::{self, DramArena};
use lode_kernel::compute::{Compute, ErrorKind as ComputeKind};
use lode_kernel::model::stream::keep_strongest_groups;
use lode_kernel::model::{split, DenseLayer, EvalError, FfnIo, FfnSource, LlamaConfig, LoadError};

use super::sample::{SampleError, ScoreSample};

mod mask;
use mask::Mask;

/// How a neuron's importance for one token is scored.
#[derive(serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    /// `|silu(gate·x) · (up·x)|`: the neuron's actual contribution weight.
    Exact,
    /// `|silu(gate·x)|`: what is known after reading only the gate row.
    Gate,
}

/// `x · sigmoid(x)`.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// What the profiler does with the scores.
#[derive(Debug, Clone)]
enum Phase {
    /// Pass 1: keep a sample of scores; every neuron stays active.
    Collect(ScoreSample),
    /// Pass 2: zero the neurons under their layer's threshold and record
    /// the others.
    Mask(Mask),
    /// Pass 3: keep only each token's strongest `keep` neurons per layer,
    /// by the same rule (and code) as a sparse `lode run`.
    TopK { keep: usize, group: usize },
}

/// Profiling state: the dense matrices, scratch and the current phase.
#[derive(Debug, Clone)]
pub struct Profiler {
    layers: Vec<DenseLayer>,
    hidden: usize,
    ffn: usize,
    max_rows: usize,
    mode: ScoreMode,
    gate: Vec<f32>,
    up: Vec<f32>,
    score: Vec<f32>,
    phase: Phase,
    /// Window-relative index of the current batch's first token.
    batch_start: usize,
    /// Rows of the current batch.
    batch_rows: usize,
    /// Tokens of the current window that have reached layer 0.
    window_seen: usize,
    /// Sample slots of the current batch's tokens (collect phase).
    slots: Vec<Option<usize>>,
}

/// A profiler that cannot be built for the model or the batch asked for.
fn config(why: &'static str) -> LoadError {
    LoadError::Config(why)
}

/// A profiler driven out of order while the model runs (its driver's
/// bug: the forward pass calls every layer of a batch in order).
fn misused(why: &'static str) -> EvalError {
    EvalError::Internal(why)
}

impl Profiler {
    /// A profiler over the resident matrices `layers` (from
    /// [`DenseFfn::layers`](lode_kernel::model::DenseFfn::layers)) of a
    /// model shaped `cfg`, for batches of up to `max_rows` positions,
    /// starting in the calibration phase.
    pub fn new(
        layers: &[DenseLayer],
        cfg: &LlamaConfig,
        max_rows: usize,
        mode: ScoreMode,
    ) -> Result<Self, LoadError> {
        let (h, f) = (cfg.hidden, cfg.ffn);
        if layers.len() != cfg.layers {
            return Err(config("profiler: one set of FFN matrices per layer"));
        }
        let shaped = |l: &DenseLayer| {
            (l.gate.rows, l.gate.cols) == (f, h)
                && (l.up.rows, l.up.cols) == (f, h)
                && (l.down.rows, l.down.cols) == (h, f)
        };
        if !layers.iter().all(shaped) {
            return Err(config("profiler: FFN matrices of another shape"));
        }
        let scratch = max_rows
            .checked_mul(f)
            .filter(|_| max_rows > 0)
            .ok_or(config("profiler: batch of 0 or too many rows"))?;
        Ok(Profiler {
            layers: layers.to_vec(),
            hidden: h,
            ffn: f,
            max_rows,
            mode,
            gate: vec![0.0; scratch],
            up: vec![0.0; scratch],
            score: vec![0.0; scratch],
            phase: Phase::Collect(ScoreSample::new(cfg.layers, f)),
            batch_start: 0,
            batch_rows: 0,
            window_seen: 0,
            slots: Vec::with_capacity(max_rows),
        })
    }

    /// Bytes of one layer's bitset.
    pub fn bitset_len(&self) -> usize {
        self.ffn.div_ceil(8)
    }

    /// Tokens whose scores the calibration sample holds (0 once masking).
    pub fn sampled_tokens(&self) -> usize {
        match &self.phase {
            Phase::Collect(s) => s.kept(),
            Phase::Mask(_) | Phase::TopK { .. } => 0,
        }
    }

    /// Ends masking: from now on every token keeps its strongest `keep`
    /// neurons per layer, whatever their scores (what a sparse `lode run`
    /// does, which has no calibrated thresholds), or, with `group` above 1,
    /// its strongest groups of `group` neurons covering at least `keep`.
    pub fn start_top_k(&mut self, keep: usize, group: usize) {
        self.phase = Phase::TopK {
            keep: keep.clamp(1, self.ffn),
            group: group.clamp(1, self.ffn),
        };
    }

    /// Starts a window of `tokens` positions (the context was reset): the
    /// next layer-0 call is its first token. When masking, clears the
    /// window's bitsets.
    pub fn begin_window(&mut self, tokens: usize) -> Result<(), EvalError> {
        self.window_seen = 0;
        self.batch_start = 0;
        self.batch_rows = 0;
        if let Phase::Mask(m) = &mut self.phase {
            let len = tokens
                .checked_mul(self.layers.len())
                .and_then(|n| n.checked_mul(self.ffn.div_ceil(8)))
                .ok_or(misused("profiler: window too large"))?;
            m.bits.clear();
            m.bits.resize(len, 0);
            m.window_tokens = tokens;
        }
        Ok(())
    }

    /// Ends calibration: every layer's threshold for `sparsity` from the
    /// sampled scores, then masking with them. Returns the thresholds.
    pub fn start_masking(&mut self, sparsity: f64) -> Result<Vec<f32>, SampleError> {
        let Phase::Collect(sample) = &self.phase else {
            return Err(SampleError::Finished);
        };
        let thresholds = sample.thresholds(sparsity)?;
        self.phase = Phase::Mask(Mask {
            thresholds: thresholds.clone(),
            bits: Vec::new(),
            window_tokens: 0,
            active: vec![0; self.layers.len()],
            tokens: 0,
        });
        Ok(thresholds)
    }

    /// The active bitsets of token `t` of the current window, one per
    /// layer (masking phase only).
    pub fn token_bitsets(&self, t: usize) -> Option<Vec<&[u8]>> {
        let Phase::Mask(m) = &self.phase else {
            return None;
        };
        let b = self.bitset_len();
        let per_token = b.checked_mul(self.layers.len())?;
        let start = t.checked_mul(per_token)?;
        let record = m.bits.get(start..start.checked_add(per_token)?)?;
        Some(record.chunks_exact(b).collect())
    }

    /// Active (token, neuron) pairs per layer and tokens masked so far.
    pub fn active(&self) -> Option<(&[u64], u64)> {
        match &self.phase {
            Phase::Mask(m) => Some((&m.active, m.tokens)),
            Phase::Collect(_) | Phase::TopK { .. } => None,
        }
    }

    /// Bookkeeping at layer 0: a new batch of `rows` tokens of the window.
    fn start_batch(&mut self, rows: usize) -> Result<(), EvalError> {
        self.batch_start = self.window_seen;
        self.batch_rows = rows;
        self.window_seen = self
            .window_seen
            .checked_add(rows)
            .ok_or(misused("profiler: too many tokens"))?;
        match &mut self.phase {
            Phase::Collect(sample) => {
                self.slots.clear();
                self.slots.extend((0..rows).map(|_| sample.admit()));
            }
            Phase::Mask(m) => {
                if self.window_seen > m.window_tokens {
                    return Err(misused("profiler: more tokens than the window holds"));
                }
                m.tokens += rows as u64;
            }
            Phase::TopK { .. } => {}
        }
        Ok(())
    }

    /// One layer's FFN over `io` (see the module documentation).
    pub fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let l = *self
            .layers
            .get(layer)
            .ok_or(misused("FFN layer index out of range"))?;
        let n = io.rows;
        if n == 0 || n > self.max_rows {
            return Err(misused("FFN batch larger than max_batch"));
        }
        // The forward pass runs every layer of a batch in order, so layer 0
        // marks a batch's start; later layers must see the same batch.
        if layer == 0 {
            self.start_batch(n)?;
        } else if n != self.batch_rows {
            return Err(misused(
                "profiler: layers of one batch disagree on its size",
            ));
        }
        let (h, f) = (self.hidden, self.ffn);
        let short = EvalError::Compute(ComputeKind::ScratchTooSmall);
        let ce = EvalError::compute::<C::Error>;
        let (table, mem) = arena.parts_mut();
        let ([out], sh) = split(table, mem, [io.output])?;
        let x = sh.f32s(io.input)?.get(..n * h).ok_or(short)?;
        let out = bytemuck::try_cast_slice_mut::<u8, f32>(out)
            .map_err(|_| EvalError::Arena(arena::ErrorKind::InvalidArgument))?
            .get_mut(..n * h)
            .ok_or(short)?;
        let g = self.gate.get_mut(..n * f).ok_or(short)?;
        let u = self.up.get_mut(..n * f).ok_or(short)?;
        let s = self.score.get_mut(..n * f).ok_or(short)?;
        compute.matmul(&l.gate.matrix(&sh)?, x, n, g).map_err(ce)?;
        compute.matmul(&l.up.matrix(&sh)?, x, n, u).map_err(ce)?;
        if self.mode == ScoreMode::Gate {
            for (s, &g) in s.iter_mut().zip(g.iter()) {
                *s = silu(g).abs();
            }
        }
        compute.swiglu(g, u).map_err(ce)?;
        if self.mode == ScoreMode::Exact {
            for (s, &a) in s.iter_mut().zip(g.iter()) {
                *s = a.abs();
            }
        }
        match &mut self.phase {
            Phase::Collect(sample) => {
                for (row, &slot) in s.chunks_exact(f).zip(&self.slots) {
                    if let Some(slot) = slot {
                        sample
                            .store(layer, slot, row)
                            .map_err(|_| misused("profiler: calibration sample shape"))?;
                    }
                }
            }
            Phase::Mask(m) => m.apply(layer, self.batch_start, f, g, s)?,
            Phase::TopK { keep, group } => {
                // The kernel's rule on the activations themselves (the
                // scores are only its scratch here).
                for (a, t) in g.chunks_exact_mut(f).zip(s.chunks_exact_mut(f)) {
                    keep_strongest_groups(a, *keep, *group, t)?;
                }
            }
        }
        compute
            .matmul(&l.down.matrix(&sh)?, g, n, out)
            .map_err(ce)?;
        Ok(())
    }
}

/// The [`FfnSource`] of a profiling run: borrows the driver's [`Profiler`]
/// for each layer's call.
#[derive(Debug, Clone, Copy)]
pub struct ProfilingFfn<'p>(pub &'p RefCell<Profiler>);

impl FfnSource for ProfilingFfn<'_> {
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        self.0
            .try_borrow_mut()
            .map_err(|_| misused("profiler: already in use"))?
            .run(layer, arena, compute, io)
    }
}

#[cfg(test)]
mod tests;
