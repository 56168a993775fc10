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
mod tests {
    use super::*;
    use lode_hal::compute::quant::block_error_bound;
    use lode_kernel::formats::gguf::Dims;
    use lode_kernel::model::RawTensor;
    use lode_kernel::rng::SplitMix64;
    use proptest::prelude::*;

    fn rand_f32s(r: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (r.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }

    fn encode(dtype: DType, x: &[f32], cols: usize) -> Vec<u8> {
        let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
        let mut out = vec![0u8; x.len() / cols * rb];
        for (s, d) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rb)) {
            quantize_row(dtype, s, d).unwrap();
        }
        out
    }

    struct Layer {
        gate: Vec<u8>,
        up: Vec<u8>,
        down: Vec<u8>,
        ffn: usize,
        hidden: usize,
    }

    impl Layer {
        fn new(seed: u64, ffn: usize, hidden: usize) -> Layer {
            let mut r = SplitMix64::new(seed);
            Layer {
                gate: encode(DType::Q4_1, &rand_f32s(&mut r, ffn * hidden), hidden),
                up: encode(DType::Q4_1, &rand_f32s(&mut r, ffn * hidden), hidden),
                down: encode(DType::Q4_1, &rand_f32s(&mut r, hidden * ffn), ffn),
                ffn,
                hidden,
            }
        }
        fn m<'a>(&self, data: &'a [u8], rows: usize, cols: usize) -> QuantMatrix<'a> {
            QuantMatrix {
                dtype: DType::Q4_1,
                rows,
                cols,
                data,
            }
        }
        fn gate_m(&self) -> QuantMatrix<'_> {
            self.m(&self.gate, self.ffn, self.hidden)
        }
        fn down_m(&self) -> QuantMatrix<'_> {
            self.m(&self.down, self.hidden, self.ffn)
        }
        fn write(&self, down_dtype: DType, order: &[u32]) -> Result<Vec<u8>, ErrorKind> {
            let bb = Bundles::bundle_bytes(DType::Q4_1, down_dtype, self.hidden).unwrap();
            let mut out = vec![0u8; bb * order.len()];
            write_layer_bundles(
                &self.gate_m(),
                &self.m(&self.up, self.ffn, self.hidden),
                &self.down_m(),
                down_dtype,
                order,
                &mut out,
            )?;
            Ok(out)
        }
        fn columns(&self, down_dtype: DType, order: &[u32]) -> Result<Vec<u8>, ErrorKind> {
            let cb = down_dtype.row_bytes(self.hidden as u64).unwrap() as usize;
            let mut out = vec![0u8; cb * order.len()];
            write_down_columns(&self.down_m(), down_dtype, order, &mut out)?;
            Ok(out)
        }
    }

    /// Layer 0 of a one-layer model, as a GGUF would hand it out.
    impl TensorSource for Layer {
        fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
            let (data, dims) = match name {
                "blk.0.ffn_gate.weight" => (&self.gate, [self.hidden, self.ffn]),
                "blk.0.ffn_up.weight" => (&self.up, [self.hidden, self.ffn]),
                "blk.0.ffn_down.weight" => (&self.down, [self.ffn, self.hidden]),
                _ => return Ok(None),
            };
            Ok(Some(RawTensor {
                dtype: DType::Q4_1,
                dims: Dims::new(&[dims[0] as u64, dims[1] as u64]).unwrap(),
                data,
            }))
        }
    }

    fn cfg(ffn: usize, hidden: usize) -> LlamaConfig {
        LlamaConfig {
            layers: 1,
            hidden,
            ffn,
            heads: 1,
            kv_heads: 1,
            head_dim: hidden,
            vocab: 4,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            context: 16,
            tied_embeddings: true,
        }
    }

    /// An order of `ffn` neurons from `seed`: a shuffle, with repeats and
    /// omissions when `subset` (the writers accept any list of neurons).
    fn order_of(seed: u64, ffn: usize, subset: bool) -> Vec<u32> {
        let mut r = SplitMix64::new(seed ^ 0x5151);
        if subset {
            let len = (r.next_u64() % (2 * ffn as u64)) as usize;
            return (0..len)
                .map(|_| (r.next_u64() % ffn as u64) as u32)
                .collect();
        }
        let mut o: Vec<u32> = (0..ffn as u32).collect();
        for i in (1..o.len()).rev() {
            o.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
        }
        o
    }

    /// The down types `lode pack` offers.
    fn down_types() -> impl Strategy<Value = DType> {
        prop::sample::select(vec![DType::Q8_0, DType::Q5_1, DType::Q4_1])
    }

    proptest! {
        /// Each bundle holds its neuron's gate and up rows byte for byte,
        /// and a down column that decodes to the dense down column within
        /// the re-quantization bound.
        #[test]
        fn bundle_matches_dense_columns(
            seed in any::<u64>(),
            ffn in 1usize..70,
            blocks in 1usize..4,
            down_dtype in down_types(),
            reverse in any::<bool>(),
        ) {
            let hidden = blocks * 32;
            // The down matrix's rows are `ffn` long: whole blocks of 32.
            let ffn = ffn.div_ceil(32) * 32;
            let l = Layer::new(seed, ffn, hidden);
            let mut order: Vec<u32> = (0..ffn as u32).collect();
            if reverse {
                order.reverse();
            }
            let out = l.write(down_dtype, &order).unwrap();
            let rb = 20 * blocks;
            let cb = down_dtype.row_bytes(hidden as u64).unwrap() as usize;
            let dense = decode(&l.down_m()).unwrap();
            for (i, b) in out.chunks_exact(2 * rb + cb).enumerate() {
                let n = order[i] as usize;
                prop_assert_eq!(&b[..rb], &l.gate[n * rb..(n + 1) * rb]);
                prop_assert_eq!(&b[rb..2 * rb], &l.up[n * rb..(n + 1) * rb]);
                let mut got = vec![0.0f32; hidden];
                dequantize_row(down_dtype, &b[2 * rb..], &mut got).unwrap();
                let want: Vec<f32> = (0..hidden).map(|h| dense[h * ffn + n]).collect();
                for (blk_g, blk_w) in got.chunks(32).zip(want.chunks(32)) {
                    let bound = block_error_bound(down_dtype, blk_w);
                    for (g, w) in blk_g.iter().zip(blk_w) {
                        prop_assert!((g - w).abs() <= bound, "{g} vs {w} (bound {bound})");
                    }
                }
            }
        }

        /// The split layout's pieces are the bundled layout's, cut apart:
        /// permuted gate/up row `i` is bundle `i`'s gate/up part and down
        /// column `i` is bundle `i`'s down part, byte for byte, for any
        /// order (shuffles, repeats, omissions).
        #[test]
        fn split_pieces_equal_the_bundle_parts(
            seed in any::<u64>(),
            ffn32 in 1usize..3,
            blocks in 1usize..4,
            down_dtype in down_types(),
            subset in any::<bool>(),
        ) {
            let (ffn, hidden) = (ffn32 * 32, blocks * 32);
            let l = Layer::new(seed, ffn, hidden);
            let order = order_of(seed, ffn, subset);
            let bundles = l.write(down_dtype, &order).unwrap();
            let rb = 20 * blocks;
            let cb = down_dtype.row_bytes(hidden as u64).unwrap() as usize;
            let types = BundleTypes { rows: DType::Q4_1, down: down_dtype };
            let s = split_layer(&l, &cfg(ffn, hidden), types, 0, &order).unwrap();
            prop_assert_eq!(s.gate.len(), order.len() * rb);
            prop_assert_eq!(s.down.len(), order.len() * cb);
            prop_assert_eq!(&s.down, &l.columns(down_dtype, &order).unwrap());
            for (i, b) in bundles.chunks_exact(2 * rb + cb).enumerate() {
                prop_assert_eq!(&b[..rb], &s.gate[i * rb..(i + 1) * rb]);
                prop_assert_eq!(&b[rb..2 * rb], &s.up[i * rb..(i + 1) * rb]);
                prop_assert_eq!(&b[2 * rb..], &s.down[i * cb..(i + 1) * cb]);
            }
        }

        /// Row `i` of a permuted matrix is row `order[i]` of the source.
        #[test]
        fn permuted_rows_are_source_rows(
            seed in any::<u64>(),
            rows in 1usize..50,
            blocks in 1usize..4,
            subset in any::<bool>(),
        ) {
            let cols = blocks * 32;
            let data = encode(DType::Q4_1, &rand_f32s(&mut SplitMix64::new(seed), rows * cols), cols);
            let m = QuantMatrix { dtype: DType::Q4_1, rows, cols, data: &data };
            let rb = 20 * blocks;
            let order = order_of(seed, rows, subset);
            let mut out = vec![0u8; rb * order.len()];
            write_rows_permuted(&m, &order, &mut out).unwrap();
            for (i, &n) in order.iter().enumerate() {
                let n = n as usize;
                prop_assert_eq!(&out[i * rb..(i + 1) * rb], &data[n * rb..(n + 1) * rb]);
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let l = Layer::new(1, 32, 64);
        // A neuron past the end.
        assert_eq!(l.write(DType::Q8_0, &[32]), Err(ErrorKind::ShapeMismatch));
        // Output of the wrong length.
        let mut out = vec![0u8; 10];
        let g = l.gate_m();
        let d = l.down_m();
        assert_eq!(
            write_layer_bundles(&g, &g, &d, DType::Q8_0, &[0], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        // Down with the wrong orientation.
        let bb = Bundles::bundle_bytes(DType::Q4_1, DType::Q8_0, 64).unwrap();
        let mut out = vec![0u8; bb];
        let d_wrong = l.m(&l.down, 32, 64);
        assert_eq!(
            write_layer_bundles(&g, &g, &d_wrong, DType::Q8_0, &[0], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        // Gate and up of different types.
        let up_f = QuantMatrix {
            dtype: DType::F32,
            data: &[0u8; 32 * 64 * 4],
            ..g
        };
        assert_eq!(
            write_layer_bundles(&g, &up_f, &d, DType::Q8_0, &[0], &mut out),
            Err(ErrorKind::UnsupportedType)
        );
        // Truncated matrix bytes.
        let g_short = l.m(&l.gate[..l.gate.len() - 1], 32, 64);
        assert_eq!(
            write_layer_bundles(&g_short, &g, &d, DType::Q8_0, &[0], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        assert!(l.write(DType::Q8_0, &[31, 0, 5]).is_ok());
    }

    #[test]
    fn bad_split_pieces_are_errors() {
        let l = Layer::new(2, 32, 64);
        let (g, d) = (l.gate_m(), l.down_m());
        // Down columns: a neuron past the end, output of the wrong length,
        // truncated bytes.
        assert_eq!(l.columns(DType::Q8_0, &[32]), Err(ErrorKind::ShapeMismatch));
        let mut out = vec![0u8; 68 + 1];
        assert_eq!(
            write_down_columns(&d, DType::Q8_0, &[0], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        let d_short = l.m(&l.down[..l.down.len() - 1], 64, 32);
        assert_eq!(
            write_down_columns(&d_short, DType::Q8_0, &[0], &mut out[..68]),
            Err(ErrorKind::ShapeMismatch)
        );
        // Permuted rows: a row past the end, output of the wrong length,
        // rows of no bytes.
        let mut out = vec![0u8; 40];
        assert_eq!(
            write_rows_permuted(&g, &[32], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        assert_eq!(
            write_rows_permuted(&g, &[0, 1], &mut out),
            Err(ErrorKind::ShapeMismatch)
        );
        let empty = QuantMatrix {
            dtype: DType::Q4_1,
            rows: 3,
            cols: 0,
            data: &[],
        };
        assert_eq!(
            write_rows_permuted(&empty, &[0, 1], &mut []),
            Err(ErrorKind::ShapeMismatch)
        );
        // The split layer: a row type other than the stored one, a neuron
        // past the end, a layer the source lacks.
        let c = cfg(32, 64);
        let q8 = BundleTypes {
            rows: DType::Q8_0,
            down: DType::Q8_0,
        };
        assert!(matches!(
            split_layer(&l, &c, q8, 0, &[0]),
            Err(LoadError::Config(_))
        ));
        let types = BundleTypes {
            rows: DType::Q4_1,
            down: DType::Q8_0,
        };
        assert!(matches!(
            split_layer(&l, &c, types, 0, &[32]),
            Err(LoadError::Compute(ErrorKind::ShapeMismatch))
        ));
        assert!(matches!(
            split_layer(&l, &c, types, 1, &[0]),
            Err(LoadError::Tensor { .. })
        ));
        assert!(split_layer(&l, &c, types, 0, &[]).is_ok());
    }
}
