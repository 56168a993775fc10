//! Offline re-layout of a layer's FFN matrices into neuron bundles.
//!
//! A streaming FFN reads, for each active neuron `n`, one contiguous bundle:
//! gate row `n`, up row `n` and down column `n` (see
//! [`Bundles`](lode_kernel::compute::Bundles)). GGUF stores gate and up as
//! `[ffn] x [hidden]` matrices, so their rows are copied as stored. The
//! down matrix is `[hidden] x [ffn]`, quantized along the neuron axis: a
//! neuron's column is one element of every row, spread over `hidden` blocks.
//! So the down matrix is decoded once and each column re-quantized on its
//! own, to a type the caller picks (Q8_0 keeps the loss under 1%, Q4_1
//! costs about 7% perplexity on SmolLM2: see DESIGN.md).

use alloc::vec;
use alloc::vec::Vec;

use alloc::format;

use lode_kernel::compute::{Bundles, DType, ErrorKind, QuantMatrix};
use lode_kernel::model::{BundleTypes, LlamaConfig, ModelError, TensorSource};

use crate::compute::quant::{dequantize_row, quantize_row};

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
    down.check()?;
    let rb = gate.row_bytes().ok_or(ErrorKind::ShapeMismatch)?;
    let bb =
        Bundles::bundle_bytes(gate.dtype, down_dtype, hidden).ok_or(ErrorKind::ShapeMismatch)?;
    if bb.checked_mul(order.len()) != Some(out.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    let dense = decode(down)?;
    let mut col = vec![0.0f32; hidden];
    for (&n, dst) in order.iter().zip(out.chunks_exact_mut(bb)) {
        let n = usize::try_from(n).map_err(|_| ErrorKind::ShapeMismatch)?;
        if n >= ffn {
            return Err(ErrorKind::ShapeMismatch);
        }
        let (g, u) = (
            gate.data.get(n * rb..(n + 1) * rb),
            up.data.get(n * rb..(n + 1) * rb),
        );
        let (Some(g), Some(u)) = (g, u) else {
            return Err(ErrorKind::ShapeMismatch);
        };
        let (dg, rest) = dst.split_at_mut(rb);
        let (du, dd) = rest.split_at_mut(rb);
        dg.copy_from_slice(g);
        du.copy_from_slice(u);
        for (c, r) in col.iter_mut().zip(dense.chunks_exact(ffn)) {
            *c = r.get(n).copied().ok_or(ErrorKind::ShapeMismatch)?;
        }
        quantize_row(down_dtype, &col, dd)?;
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
) -> Result<[QuantMatrix<'s>; 3], ModelError> {
    let get = |part: &str, rows: usize, cols: usize| {
        let name = format!("blk.{layer}.{part}.weight");
        let t = src
            .tensor(&name)?
            .ok_or_else(|| ModelError::tensor(&name, "missing"))?;
        let m = QuantMatrix {
            dtype: t.dtype,
            rows,
            cols,
            data: t.data,
        };
        m.check()
            .map_err(|_| ModelError::tensor(&name, "bytes do not match the FFN shape"))?;
        Ok::<_, ModelError>(m)
    };
    Ok([
        get("ffn_gate", cfg.ffn, cfg.hidden)?,
        get("ffn_up", cfg.ffn, cfg.hidden)?,
        get("ffn_down", cfg.hidden, cfg.ffn)?,
    ])
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
) -> Result<(), ModelError> {
    let [gate, up, down] = layer_matrices(src, cfg, layer)?;
    if gate.dtype != types.rows {
        return Err(ModelError::Config(
            "the bundle row type differs from the stored gate/up type",
        ));
    }
    let identity: Vec<u32>;
    let order = match order {
        Some(o) => o,
        None => {
            let n = u32::try_from(cfg.ffn).map_err(|_| ModelError::Config("ffn too large"))?;
            identity = (0..n).collect();
            &identity
        }
    };
    write_layer_bundles(&gate, &up, &down, types.down, order, out).map_err(ModelError::compute)
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
        dequantize_row(m.dtype, src, dst)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::quant::block_error_bound;
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
        fn write(&self, down_dtype: DType, order: &[u32]) -> Result<Vec<u8>, ErrorKind> {
            let bb = Bundles::bundle_bytes(DType::Q4_1, down_dtype, self.hidden).unwrap();
            let mut out = vec![0u8; bb * order.len()];
            write_layer_bundles(
                &self.m(&self.gate, self.ffn, self.hidden),
                &self.m(&self.up, self.ffn, self.hidden),
                &self.m(&self.down, self.hidden, self.ffn),
                down_dtype,
                order,
                &mut out,
            )?;
            Ok(out)
        }
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
            t in 0usize..3,
            reverse in any::<bool>(),
        ) {
            let hidden = blocks * 32;
            // The down matrix's rows are `ffn` long: whole blocks of 32.
            let ffn = ffn.div_ceil(32) * 32;
            let down_dtype = [DType::Q8_0, DType::Q5_1, DType::Q4_1][t];
            let l = Layer::new(seed, ffn, hidden);
            let mut order: Vec<u32> = (0..ffn as u32).collect();
            if reverse {
                order.reverse();
            }
            let out = l.write(down_dtype, &order).unwrap();
            let rb = 20 * blocks;
            let cb = down_dtype.row_bytes(hidden as u64).unwrap() as usize;
            let dense = decode(&l.m(&l.down, hidden, ffn)).unwrap();
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
    }

    #[test]
    fn bad_shapes_are_errors() {
        let l = Layer::new(1, 32, 64);
        // A neuron past the end.
        assert_eq!(l.write(DType::Q8_0, &[32]), Err(ErrorKind::ShapeMismatch));
        // Output of the wrong length.
        let mut out = vec![0u8; 10];
        let g = l.m(&l.gate, 32, 64);
        let d = l.m(&l.down, 64, 32);
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
}
