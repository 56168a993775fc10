//! Offline re-layout of a layer's FFN matrices into neuron bundles.
//!
//! A streaming FFN reads, for each active neuron `n`, one contiguous bundle:
//! gate row `n`, up row `n` and down column `n` (see
//! [`Bundles`]). GGUF stores gate and up as
//! `[ffn] x [hidden]` matrices, so their rows are copied as stored. The
//! down matrix is `[hidden] x [ffn]`, quantized along the neuron axis: a
//! neuron's column is one element of every row, spread over `hidden` blocks.
//! So the down matrix is decoded once and each column re-quantized on its
//! own, to a type the caller picks (Q8_0 keeps the loss under 1%, Q4_1
//! costs about 7% perplexity on SmolLM2: see DESIGN.md).
//!
//! Two layouts are written from the same pieces (see
//! [`FfnLayout`](crate::image::FfnLayout) in `image`): whole bundles
//! ([`write_layer_bundles`]), or the split layout's gate and up matrices
//! with their rows reordered ([`write_rows_permuted`]) next to bundles of
//! the down column alone ([`write_down_columns`]). Every down column, in
//! either layout, comes out of one re-quantizer (`DownColumns`), so the
//! two layouts hold the same column bytes for a neuron.

use std::format;
use std::vec;
use std::vec::Vec;

use lode_kernel::compute::{Bundles, DType, ErrorKind, QuantMatrix};
use lode_kernel::model::{BundleTypes, LlamaConfig, LoadError, TensorSource};

use lode_formats::gguf::dequantize_row;
use lode_hal::compute::quant::quantize_row;

/// Row `n` of `m`, whose rows are `rb` bytes: a neuron's gate or up row.
/// `ShapeMismatch` when `n` is past the last row.
fn row<'a>(m: &QuantMatrix<'a>, rb: usize, n: u32) -> Result<&'a [u8], ErrorKind> {
    let n = usize::try_from(n).map_err(|_| ErrorKind::ShapeMismatch)?;
    if n >= m.rows {
        return Err(ErrorKind::ShapeMismatch);
    }
    let start = n.checked_mul(rb).ok_or(ErrorKind::ShapeMismatch)?;
    let end = start.checked_add(rb).ok_or(ErrorKind::ShapeMismatch)?;
    m.data.get(start..end).ok_or(ErrorKind::ShapeMismatch)
}

/// Bytes of one row of `m`; a row of zero bytes is refused (it would hold
/// no weights, and zero-sized chunks cannot be walked).
fn nonzero_row_bytes(m: &QuantMatrix<'_>) -> Result<usize, ErrorKind> {
    match m.row_bytes() {
        Some(0) | None => Err(ErrorKind::ShapeMismatch),
        Some(rb) => Ok(rb),
    }
}

/// A down matrix decoded once, from which each neuron's column is
/// re-quantized on demand: the one place down columns are made, for both
/// layouts.
struct DownColumns {
    /// The `[hidden] x [ffn]` matrix as f32, row-major.
    dense: Vec<f32>,
    /// Neurons: the length of a dense row.
    ffn: usize,
    /// Scratch for one column (`hidden` values).
    col: Vec<f32>,
    /// The type columns are re-quantized to.
    dtype: DType,
    /// Bytes of one re-quantized column.
    bytes: usize,
}

impl DownColumns {
    /// Decodes `down` (`[hidden] x [ffn]`); columns will be `dtype`.
    fn new(down: &QuantMatrix<'_>, dtype: DType) -> Result<DownColumns, ErrorKind> {
        down.check()?;
        let hidden = down.rows;
        let bytes = dtype
            .row_bytes(hidden as u64)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|&b| b > 0)
            .ok_or(ErrorKind::ShapeMismatch)?;
        Ok(DownColumns {
            dense: decode(down)?,
            ffn: down.cols,
            col: vec![0.0f32; hidden],
            dtype,
            bytes,
        })
    }

    /// Writes neuron `n`'s column, re-quantized, into `out` (exactly
    /// `self.bytes` long). `ShapeMismatch` when `n` is past the last neuron.
    fn write(&mut self, n: u32, out: &mut [u8]) -> Result<(), ErrorKind> {
        let n = usize::try_from(n).map_err(|_| ErrorKind::ShapeMismatch)?;
        if n >= self.ffn {
            return Err(ErrorKind::ShapeMismatch);
        }
        for (c, r) in self.col.iter_mut().zip(self.dense.chunks_exact(self.ffn)) {
            *c = r.get(n).copied().ok_or(ErrorKind::ShapeMismatch)?;
        }
        quantize_row(self.dtype, &self.col, out)
    }
}

/// Writes one layer's bundles into `out`, bundle `i` holding neuron
/// `order[i]`.
///
/// `gate` and `up` are `[ffn] x [hidden]` (rows are neurons), `down` is
/// `[hidden] x [ffn]`; the down column is re-quantized to `down_dtype`.
/// `out` must be exactly `order.len()` bundles of
/// [`Bundles::bundle_bytes`]`(gate.dtype, down_dtype, hidden)`.
///
/// Errors: `ShapeMismatch` when the shapes disagree, a matrix's bytes do
/// not match its shape, `out` has the wrong length or `order` names a
/// neuron past `ffn`; `UnsupportedType` when gate and up differ in type or a
/// type cannot be decoded/encoded; `NonFinite` for a non-finite down value.
pub fn write_layer_bundles(
    gate: &QuantMatrix<'_>,
    up: &QuantMatrix<'_>,
    down: &QuantMatrix<'_>,
    down_dtype: DType,
    order: &[u32],
    out: &mut [u8],
) -> Result<(), ErrorKind> {
    let (ffn, hidden) = (gate.rows, gate.cols);
    if up.rows != ffn || up.cols != hidden || down.rows != hidden || down.cols != ffn {
        return Err(ErrorKind::ShapeMismatch);
    }
    if up.dtype != gate.dtype {
        return Err(ErrorKind::UnsupportedType);
    }
    gate.check()?;
    up.check()?;
    let rb = nonzero_row_bytes(gate)?;
    let bb =
        Bundles::bundle_bytes(gate.dtype, down_dtype, hidden).ok_or(ErrorKind::ShapeMismatch)?;
    if bb.checked_mul(order.len()) != Some(out.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    let mut cols = DownColumns::new(down, down_dtype)?;
    for (&n, dst) in order.iter().zip(out.chunks_exact_mut(bb)) {
        let (dg, rest) = dst
            .split_at_mut_checked(rb)
            .ok_or(ErrorKind::ShapeMismatch)?;
        let (du, dd) = rest
            .split_at_mut_checked(rb)
            .ok_or(ErrorKind::ShapeMismatch)?;
        dg.copy_from_slice(row(gate, rb, n)?);
        du.copy_from_slice(row(up, rb, n)?);
        cols.write(n, dd)?;
    }
    Ok(())
}

/// Writes the down column of each neuron of `order` into `out`, column `i`
/// holding neuron `order[i]` re-quantized to `down_dtype`: the split
/// layout's down-only bundles, byte for byte the third part of the
/// bundles [`write_layer_bundles`] writes for the same `order`.
///
/// `down` is `[hidden] x [ffn]`; `out` must be exactly `order.len()`
/// columns of `down_dtype.row_bytes(hidden)`. Errors as
/// [`write_layer_bundles`]'s for the down matrix.
pub fn write_down_columns(
    down: &QuantMatrix<'_>,
    down_dtype: DType,
    order: &[u32],
    out: &mut [u8],
) -> Result<(), ErrorKind> {
    let mut cols = DownColumns::new(down, down_dtype)?;
    if cols.bytes.checked_mul(order.len()) != Some(out.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    for (&n, dst) in order.iter().zip(out.chunks_exact_mut(cols.bytes)) {
        cols.write(n, dst)?;
    }
    Ok(())
}

/// Writes the rows of `m` in `order` into `out`, row `i` holding row
/// `order[i]` of `m` byte for byte: the split layout's gate and up matrices
/// with their neurons in placement order, so activation `i` of the runtime
/// lines up with down bundle `i` without a lookup.
///
/// `out` must be exactly `order.len()` rows. Errors: `ShapeMismatch` when
/// `m`'s bytes do not match its shape, its rows are empty, `out` has the
/// wrong length or `order` names a row past the end.
pub fn write_rows_permuted(
    m: &QuantMatrix<'_>,
    order: &[u32],
    out: &mut [u8],
) -> Result<(), ErrorKind> {
    m.check()?;
    let rb = nonzero_row_bytes(m)?;
    if rb.checked_mul(order.len()) != Some(out.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    for (&n, dst) in order.iter().zip(out.chunks_exact_mut(rb)) {
        dst.copy_from_slice(row(m, rb, n)?);
    }
    Ok(())
}

/// Layer `layer`'s gate, up and down matrices from `src` (GGUF names), with
/// the shapes `cfg` gives them; errors name a tensor that is missing or
/// whose bytes do not match that shape.
pub fn layer_matrices<'s, S: TensorSource>(
    src: &'s S,
    cfg: &LlamaConfig,
    layer: usize,
) -> Result<[QuantMatrix<'s>; 3], LoadError> {
    let get = |part: &str, rows: usize, cols: usize| {
        let name = format!("blk.{layer}.{part}.weight");
        let t = src
            .tensor(&name)?
            .ok_or_else(|| LoadError::tensor(&name, "missing"))?;
        let m = QuantMatrix {
            dtype: t.dtype,
            rows,
            cols,
            data: t.data,
        };
        m.check()
            .map_err(|_| LoadError::tensor(&name, "bytes do not match the FFN shape"))?;
        Ok::<_, LoadError>(m)
    };
    Ok([
        get("ffn_gate", cfg.ffn, cfg.hidden)?,
        get("ffn_up", cfg.ffn, cfg.hidden)?,
        get("ffn_down", cfg.hidden, cfg.ffn)?,
    ])
}

/// Layer `layer`'s matrices, with gate and up checked to be `types.rows`
/// (the bundle row type is the stored type: rows are copied, never
/// re-quantized).
fn typed_layer_matrices<'s, S: TensorSource>(
    src: &'s S,
    cfg: &LlamaConfig,
    types: BundleTypes,
    layer: usize,
) -> Result<[QuantMatrix<'s>; 3], LoadError> {
    let [gate, up, down] = layer_matrices(src, cfg, layer)?;
    if gate.dtype != types.rows || up.dtype != types.rows {
        return Err(LoadError::Config(
            "the bundle row type differs from the stored gate/up type",
        ));
    }
    Ok([gate, up, down])
}

/// Writes layer `layer`'s bundles from `src` into `out` in `order` (every
/// neuron in index order when `None`): what
/// [`BundleFfn::load`](lode_kernel::model::BundleFfn::load)'s `fill` and
/// `lode pack` call. The gate/up type must be `types.rows`, as stored.
pub fn fill_layer<S: TensorSource>(
    src: &S,
    cfg: &LlamaConfig,
    types: BundleTypes,
    layer: usize,
    order: Option<&[u32]>,
    out: &mut [u8],
) -> Result<(), LoadError> {
    let [gate, up, down] = typed_layer_matrices(src, cfg, types, layer)?;
    let identity: Vec<u32>;
    let order = match order {
        Some(o) => o,
        None => {
            let n = u32::try_from(cfg.ffn).map_err(|_| LoadError::Config("ffn too large"))?;
            identity = (0..n).collect();
            &identity
        }
    };
    write_layer_bundles(&gate, &up, &down, types.down, order, out).map_err(LoadError::compute)
}

/// One layer in the split layout (see [`split_layer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLayer {
    /// The gate matrix, row `i` = the stored row of neuron `order[i]`.
    pub gate: Vec<u8>,
    /// The up matrix, row `i` = the stored row of neuron `order[i]`.
    pub up: Vec<u8>,
    /// Down-only bundles: column `i` = neuron `order[i]`'s down column,
    /// re-quantized to `types.down`.
    pub down: Vec<u8>,
}

/// Layer `layer` of `src` in the split layout, neurons in `order`: the
/// gate and up rows copied as stored (they must be `types.rows`) but
/// reordered, and the down columns re-quantized as [`fill_layer`] does.
/// `order` may be any list of neurons (`lode pack` passes a permutation).
pub fn split_layer<S: TensorSource>(
    src: &S,
    cfg: &LlamaConfig,
    types: BundleTypes,
    layer: usize,
    order: &[u32],
) -> Result<SplitLayer, LoadError> {
    let [gate, up, down] = typed_layer_matrices(src, cfg, types, layer)?;
    let too_big = || LoadError::Config("the split layer's size overflows");
    let rows_len = gate
        .row_bytes()
        .and_then(|rb| rb.checked_mul(order.len()))
        .ok_or_else(too_big)?;
    let down_len = types
        .down
        .row_bytes(cfg.hidden as u64)
        .and_then(|b| usize::try_from(b).ok())
        .and_then(|b| b.checked_mul(order.len()))
        .ok_or_else(too_big)?;
    let mut s = SplitLayer {
        gate: vec![0u8; rows_len],
        up: vec![0u8; rows_len],
        down: vec![0u8; down_len],
    };
    write_rows_permuted(&gate, order, &mut s.gate).map_err(LoadError::compute)?;
    write_rows_permuted(&up, order, &mut s.up).map_err(LoadError::compute)?;
    write_down_columns(&down, types.down, order, &mut s.down).map_err(LoadError::compute)?;
    Ok(s)
}

/// All of `m` as f32, row-major.
fn decode(m: &QuantMatrix<'_>) -> Result<Vec<f32>, ErrorKind> {
    let rb = m.row_bytes().ok_or(ErrorKind::ShapeMismatch)?;
    let len = m.rows.checked_mul(m.cols).ok_or(ErrorKind::ShapeMismatch)?;
    let mut out = vec![0.0f32; len];
    if m.cols == 0 {
        return Ok(out);
    }
    for (dst, src) in out.chunks_exact_mut(m.cols).zip(m.data.chunks_exact(rb)) {
        // `rb` bytes encode `cols` elements (`row_bytes` above), so only a
        // matrix that is not whole blocks per row fails here.
        dequantize_row(m.dtype, src, dst).map_err(|_| ErrorKind::ShapeMismatch)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
