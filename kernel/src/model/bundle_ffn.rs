//! An FFN computed over neuron bundles held in arena slots.
//!
//! Streaming reads the FFN as bundles (gate row, up row, down column of one
//! neuron, see [`Bundles`]), so the arithmetic over bundles has to match the
//! dense FFN before any neuron is skipped. [`BundleFfn`] keeps every
//! layer's bundles resident and runs [`Compute::gated_ffn`] over all of
//! them: the dense-over-bundles baseline that sparse selection and flash
//! reads build on. The bundles are written by the caller (an offline
//! re-layout of GGUF matrices, or an image's bundle region) straight into
//! the slots, so loading copies nothing twice.

use crate::arena::{DramArena, Slot, SlotKind};
use crate::compute::{Bundles, Compute, DType};

use super::config::{Limits, LlamaConfig, LlamaConfigExt, MAX_LAYERS};
use super::error::{EvalError, LoadError};
use super::ffn::{checked_call, FfnIo, FfnSource};
use super::view::{f32s_mut, split};
use super::weights::{aligned, ALIGN};

/// Element types of a layer's bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleTypes {
    /// Gate and up rows.
    pub rows: DType,
    /// Down column.
    pub down: DType,
}

/// Every layer's bundles resident; each call multiplies all of them.
#[derive(Debug, Clone)]
pub struct BundleFfn {
    layers: heapless::Vec<Slot, MAX_LAYERS>,
    /// `ffn` f32: the activation of each bundle for one input row.
    act: Slot,
    types: BundleTypes,
    hidden: usize,
    ffn: usize,
    max_rows: usize,
}

impl BundleFfn {
    /// Bytes of one layer's `cfg.ffn` bundles.
    pub fn layer_bytes(cfg: &LlamaConfig, types: BundleTypes) -> Result<usize, LoadError> {
        Bundles::bundle_bytes(types.rows, types.down, cfg.hidden)
            .and_then(|b| b.checked_mul(cfg.ffn))
            .ok_or(LoadError::Config(
                "hidden is not whole blocks of the bundle types",
            ))
    }

    /// Arena bytes and slots [`BundleFfn::load`] allocates (each slot
    /// rounded up to the model's alignment).
    pub fn arena_bytes(cfg: &LlamaConfig, types: BundleTypes) -> Result<(usize, usize), LoadError> {
        let layer = aligned(Self::layer_bytes(cfg, types)?);
        let act = aligned(act_len(cfg)?);
        let bytes = layer
            .checked_mul(cfg.layers)
            .and_then(|b| b.checked_add(act))
            .ok_or(LoadError::Config("FFN bundles overflow"))?;
        Ok((bytes, cfg.layers + 1))
    }

    /// Allocates every layer's bundle slot and has `fill(layer, bytes)`
    /// write that layer's [`layer_bytes`](Self::layer_bytes) bundles into
    /// it, neuron `i` at bundle `i`; then the activation scratch.
    pub fn load<A: DramArena>(
        cfg: &LlamaConfig,
        limits: &Limits,
        types: BundleTypes,
        arena: &mut A,
        mut fill: impl FnMut(usize, &mut [u8]) -> Result<(), LoadError>,
    ) -> Result<BundleFfn, LoadError> {
        cfg.validate()?;
        limits.validate(cfg)?;
        let len = Self::layer_bytes(cfg, types)?;
        let mut layers: heapless::Vec<Slot, MAX_LAYERS> = heapless::Vec::new();
        for layer in 0..cfg.layers {
            let slot = arena
                .alloc(len, ALIGN, SlotKind::Resident)
                .map_err(LoadError::arena)?;
            let bytes = arena.bytes_mut(slot).map_err(LoadError::arena)?;
            fill(layer, bytes)?;
            layers
                .push(slot)
                .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
        }
        let act = arena
            .alloc(act_len(cfg)?, ALIGN, SlotKind::Scratch)
            .map_err(LoadError::arena)?;
        Ok(BundleFfn {
            layers,
            act,
            types,
            hidden: cfg.hidden,
            ffn: cfg.ffn,
            max_rows: limits.max_batch,
        })
    }

    /// The bundles' element types.
    pub fn types(&self) -> BundleTypes {
        self.types
    }
}

/// Bytes of the activation scratch: one f32 per neuron.
fn act_len(cfg: &LlamaConfig) -> Result<usize, LoadError> {
    cfg.ffn
        .checked_mul(4)
        .ok_or(LoadError::Config("ffn overflows"))
}

impl FfnSource for BundleFfn {
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), EvalError> {
        let slot = checked_call(&self.layers, layer, &io, self.max_rows)?;
        let (table, mem) = arena.parts_mut();
        let ([h, o], sh) = split(table, mem, [self.act, io.output])?;
        let bundles = Bundles {
            dtype: self.types.rows,
            down_dtype: self.types.down,
            hidden: self.hidden,
            count: self.ffn,
            data: sh.get(slot)?,
        };
        ffn_rows(
            compute,
            &bundles,
            sh.f32s(io.input)?,
            h,
            o,
            io.rows,
            self.ffn,
        )
    }
}

/// `o[r] = ffn(x[r])` over `bundles` for the first `rows` rows of `x`,
/// with `h` (at least `ffn` floats) as the activation scratch: the shared
/// tail of every bundle-based FFN source.
pub(crate) fn ffn_rows<C: Compute>(
    compute: &mut C,
    bundles: &Bundles<'_>,
    x: &[f32],
    h: &mut [u8],
    o: &mut [u8],
    rows: usize,
    ffn: usize,
) -> Result<(), EvalError> {
    let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
    let hidden = bundles.hidden;
    let x = x.get(..rows * hidden).ok_or(short)?;
    let h = f32s_mut(h)?.get_mut(..ffn).ok_or(short)?;
    let o = f32s_mut(o)?.get_mut(..rows * hidden).ok_or(short)?;
    o.fill(0.0);
    if hidden == 0 {
        return Ok(());
    }
    for (xr, or) in x.chunks_exact(hidden).zip(o.chunks_exact_mut(hidden)) {
        compute
            .gated_ffn(xr, bundles, h, or)
            .map_err(EvalError::compute)?;
    }
    Ok(())
}
