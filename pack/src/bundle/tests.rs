//! Bundles written from a model's matrices: layouts, permutations and the
//! re-quantized down columns' error bounds.

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
