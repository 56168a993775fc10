//! A resident model's feed-forward network, behind one small trait.
//!
//! The FFN is over half of a llama model's bytes and the part with the
//! most ways to compute it, so a [`Resident`](super::Resident) model takes
//! any [`FfnSource`]: [`DenseFfn`] keeps the whole gate, up and down
//! matrices and multiplies them (what llama.cpp does); the bundle FFN
//! computes over neuron bundles; `lode profile` records activations. A
//! streamed model computes its FFN inside its
//! [`WeightSource`](super::WeightSource).

use crate::arena::{DramArena, Slot, SlotKind};
use crate::compute::Compute;

use super::arch::Gate;
use super::arena_use::Footprint;
use super::config::{Limits, LlamaConfig, LlamaConfigExt, MAX_LAYERS};
use super::error::{EvalError, LoadError};
use super::tensor::{TensorRef, TensorSource};
use super::view::{f32s_mut, split};
use super::weights::{fetch, for_each_layer_tensor, place, stored_len, Part, ALIGN};

/// The buffers of one FFN call, as arena slots of f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FfnIo {
    /// `rows` normalized inputs of `hidden` values, one after another.
    pub input: Slot,
    /// Receives `rows` outputs of `hidden` values (overwritten, not added).
    pub output: Slot,
    /// Positions in this call (at most the run's `max_batch`).
    pub rows: usize,
}

/// Computes a layer's FFN: `output = down · (silu(gate · x) ⊙ (up · x))`
/// for each of `io.rows` inputs. Called while evaluating, so it fails with
/// an [`EvalError`]; loading the FFN is its constructor's job (a
/// [`LoadError`]).
pub trait FfnSource {
    /// Runs layer `layer`'s FFN over `io`. The arena is free to borrow (the
    /// caller holds no view of it); `io`'s slots stay live.
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError>;

    /// Called before each pass over the layers; `logits` says whether the
    /// pass ends with the output head. Most FFNs have nothing to do.
    fn begin_pass<A: DramArena>(&mut self, _arena: &mut A, _logits: bool) -> Result<(), EvalError> {
        Ok(())
    }
}

/// One layer's resident FFN matrices.
#[derive(Debug, Clone, Copy)]
pub struct DenseLayer {
    /// Gate projection `[ffn] x [hidden]`.
    pub gate: TensorRef,
    /// Up projection `[ffn] x [hidden]`.
    pub up: TensorRef,
    /// Down projection `[hidden] x [ffn]` (one row per output, so GGUF's
    /// `[ffn, hidden]` dims; quantized along the neuron axis).
    pub down: TensorRef,
}

/// An FFN whose matrices are all resident: three products per layer.
#[derive(Debug, Clone)]
pub struct DenseFfn {
    layers: heapless::Vec<DenseLayer, MAX_LAYERS>,
    /// `max_batch * ffn` f32: gate products, then the gated activations.
    gate: Slot,
    /// `max_batch * ffn` f32: up products.
    up: Slot,
    hidden: usize,
    ffn: usize,
    max_rows: usize,
    /// The gate's activation (SiLU for llama, GELU for Gemma).
    gate_act: Gate,
}

fn is_ffn(p: Part) -> bool {
    p.is_ffn()
}

impl DenseFfn {
    /// The slots [`DenseFfn::load`] allocates: the resident matrices, and
    /// the two activation buffers.
    pub fn arena_bytes<S: TensorSource>(
        src: &S,
        cfg: &LlamaConfig,
        limits: &Limits,
    ) -> Result<(Footprint, Footprint), LoadError> {
        let mut matrices = Footprint::default();
        for_each_layer_tensor(cfg, is_ffn, |_, _, name, role| {
            matrices.add(stored_len(&fetch(src, name, role)?, role));
            Ok(())
        })?;
        let mut scratch = Footprint::default();
        let len = scratch_len(cfg, limits)?;
        scratch.add(len);
        scratch.add(len);
        Ok((matrices, scratch))
    }

    /// Copies every layer's gate, up and down matrices into resident slots
    /// and allocates the activation scratch for `limits.max_batch` rows.
    pub fn load<S: TensorSource, A: DramArena>(
        src: &S,
        cfg: &LlamaConfig,
        limits: &Limits,
        arena: &mut A,
    ) -> Result<DenseFfn, LoadError> {
        cfg.validate()?;
        limits.validate(cfg)?;
        let mut layers: heapless::Vec<DenseLayer, MAX_LAYERS> = heapless::Vec::new();
        let mut cur: [Option<TensorRef>; 3] = [None; 3];
        for_each_layer_tensor(cfg, is_ffn, |_, part, name, role| {
            let t = fetch(src, name, role)?;
            let r = place(arena, name, &t, role)?;
            match part {
                Part::Gate => cur[0] = Some(r),
                Part::Up => cur[1] = Some(r),
                _ => cur[2] = Some(r),
            }
            if part == Part::Down {
                let [Some(gate), Some(up), Some(down)] = cur else {
                    return Err(LoadError::tensor(name, "layer incomplete"));
                };
                layers
                    .push(DenseLayer { gate, up, down })
                    .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
                cur = [None; 3];
            }
            Ok(())
        })?;
        let len = scratch_len(cfg, limits)?;
        let gate = arena
            .alloc(len, ALIGN, SlotKind::Scratch)
            .map_err(LoadError::arena)?;
        let up = arena
            .alloc(len, ALIGN, SlotKind::Scratch)
            .map_err(LoadError::arena)?;
        Ok(DenseFfn {
            layers,
            gate,
            up,
            hidden: cfg.hidden,
            ffn: cfg.ffn,
            max_rows: limits.max_batch,
            gate_act: Gate::Silu,
        })
    }

    /// The same FFN with `gate` as its gate activation (SiLU unless set).
    pub fn with_gate(self, gate: Gate) -> DenseFfn {
        DenseFfn {
            gate_act: gate,
            ..self
        }
    }

    /// The resident matrices of every layer.
    pub fn layers(&self) -> &[DenseLayer] {
        &self.layers
    }
}

/// The checks every [`FfnSource`] makes on a call: `layer` names one of
/// `per_layer` and the batch holds 1 to `max_rows` rows. Returns the layer's
/// entry.
pub(super) fn checked_call<T: Copy>(
    per_layer: &[T],
    layer: usize,
    io: &FfnIo,
    max_rows: usize,
) -> Result<T, EvalError> {
    let entry = *per_layer
        .get(layer)
        .ok_or(EvalError::Internal("FFN layer index out of range"))?;
    if io.rows == 0 || io.rows > max_rows {
        return Err(EvalError::Internal("FFN batch larger than max_batch"));
    }
    Ok(entry)
}

/// Bytes of one of the two activation buffers.
fn scratch_len(cfg: &LlamaConfig, limits: &Limits) -> Result<usize, LoadError> {
    cfg.ffn
        .checked_mul(limits.max_batch)
        .and_then(|n| n.checked_mul(4))
        .ok_or(LoadError::Config("ffn * max_batch overflows"))
}

impl FfnSource for DenseFfn {
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let l = checked_call(&self.layers, layer, &io, self.max_rows)?;
        let shape = (self.hidden, self.ffn);
        let scratch = [self.gate, self.up];
        dense_products(arena, compute, &l, io, scratch, shape, self.gate_act)
    }
}

/// One of a dense FFN layer's three products, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Product {
    /// `g = gate · x` into the first scratch buffer.
    Gate,
    /// `u = up · x` into the second, then `g = act(g) ⊙ u` (SiLU or GELU).
    Up,
    /// `io.output = down · g`.
    Down,
}

impl Product {
    /// All three, in order.
    pub(super) const ALL: [Product; 3] = [Product::Gate, Product::Up, Product::Down];
}

/// Product `which` of a dense FFN layer with its matrix `w`, over `io.rows`
/// inputs, with `scratch` the two `rows * ffn` f32 activation buffers.
/// The three in order compute `io.output = down · (silu(gate · x) ⊙ (up ·
/// x))`; each needs only its own matrix, so a streaming source can read
/// the matrices one at a time into slots a third the layer's size.
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_product<A: DramArena, C: Compute>(
    arena: &mut A,
    compute: &mut C,
    which: Product,
    w: &TensorRef,
    io: FfnIo,
    scratch: [Slot; 2],
    (hidden, ffn): (usize, usize),
    act: Gate,
) -> Result<(), EvalError> {
    let n = io.rows;
    let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
    let (table, mem) = arena.parts_mut();
    let ([g, u, o], sh) = split(table, mem, [scratch[0], scratch[1], io.output])?;
    let g = f32s_mut(g)?.get_mut(..n * ffn).ok_or(short)?;
    let u = f32s_mut(u)?.get_mut(..n * ffn).ok_or(short)?;
    let w = w.matrix(&sh)?;
    match which {
        Product::Gate | Product::Up => {
            let x = sh.f32s(io.input)?.get(..n * hidden).ok_or(short)?;
            let out = if which == Product::Gate {
                &mut *g
            } else {
                &mut *u
            };
            compute.matmul(&w, x, n, out).map_err(EvalError::compute)?;
            if which == Product::Up {
                match act {
                    Gate::Silu => compute.swiglu(g, u),
                    Gate::Gelu => compute.geglu(g, u),
                }
                .map_err(EvalError::compute)?;
            }
        }
        Product::Down => {
            let o = f32s_mut(o)?.get_mut(..n * hidden).ok_or(short)?;
            compute.matmul(&w, g, n, o).map_err(EvalError::compute)?;
        }
    }
    Ok(())
}

/// `io.output = down · (silu(gate · x) ⊙ (up · x))` over `io.rows` inputs:
/// the three [`dense_product`]s of a layer whose matrices are all at hand
/// (resident, or read together).
#[allow(clippy::too_many_arguments)]
pub(super) fn dense_products<A: DramArena, C: Compute>(
    arena: &mut A,
    compute: &mut C,
    l: &DenseLayer,
    io: FfnIo,
    scratch: [Slot; 2],
    shape: (usize, usize),
    act: Gate,
) -> Result<(), EvalError> {
    for which in Product::ALL {
        let w = match which {
            Product::Gate => &l.gate,
            Product::Up => &l.up,
            Product::Down => &l.down,
        };
        dense_product(arena, compute, which, w, io, scratch, shape, act)?;
    }
    Ok(())
}
