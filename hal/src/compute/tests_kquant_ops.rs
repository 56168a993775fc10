//! The Q5_0, Q4_K and Q6_K row types through the other `Compute`
//! operations that take a weight type: the gated FFN's gate and up rows,
//! `axpy_columns`' down columns, and the shape checks every entry point
//! makes (module `tests_kquant` has the products and the tolerances).

use lode_kernel::compute::{Bundles, Compute, DType, ErrorKind, QuantMatrix};
use lode_kernel::rng::SplitMix64;

use super::tests_kquant::{col_choices, cpu, dequant, rand_blocks, NEW_TYPES};
use super::testutil::rand_vec;

/// The gated FFN over bundles whose gate and up rows are the new types
/// (Q8_0 down columns): the activation `silu(g·x)·(u·x)` takes the same row
/// products as `matvec`, and the sum over bundles matches an f64 one.
#[test]
fn gated_ffn_over_new_row_types() {
    let mut r = SplitMix64::new(24);
    for dtype in NEW_TYPES {
        let dim = 512;
        let count = 6;
        let rows = rand_blocks(&mut r, dtype, 2 * count, dim);
        let rb = rows.len() / (2 * count);
        let mut downs = vec![0u8; count * 544];
        let dn = rand_vec(&mut r, count * dim, 1.0);
        super::quant::quantize_row(DType::Q8_0, &dn, &mut downs).unwrap();
        let dq_down = dequant(DType::Q8_0, &downs, dim);
        let mut data = Vec::new();
        for i in 0..count {
            data.extend_from_slice(&rows[2 * i * rb..(2 * i + 2) * rb]);
            data.extend_from_slice(&downs[i * 544..(i + 1) * 544]);
        }
        let x = rand_vec(&mut r, dim, 1.0);
        let bundles = Bundles {
            dtype,
            down_dtype: DType::Q8_0,
            hidden: dim,
            count,
            data: &data,
        };
        for scalar in [true, false] {
            let mut c = cpu(2, scalar);
            let mut gu = vec![0.0f32; 2 * count];
            let w = QuantMatrix {
                dtype,
                rows: 2 * count,
                cols: dim,
                data: &rows,
            };
            c.matvec(&w, &x, &mut gu).unwrap();
            let mut hidden = vec![0.0f32; count];
            let mut out = vec![0.0f32; dim];
            c.gated_ffn(&x, &bundles, &mut hidden, &mut out).unwrap();
            for i in 0..count {
                let want = super::math::silu(gu[2 * i]) * gu[2 * i + 1];
                assert_eq!(hidden[i], want, "{dtype:?} bundle {i} scalar {scalar}");
            }
            for j in 0..dim {
                let want: f64 = (0..count)
                    .map(|i| f64::from(hidden[i]) * f64::from(dq_down[i * dim + j]))
                    .sum();
                let scale: f64 = 1.0
                    + (0..count)
                        .map(|i| (f64::from(hidden[i]) * f64::from(dq_down[i * dim + j])).abs())
                        .sum::<f64>();
                assert!(
                    (f64::from(out[j]) - want).abs() <= 1e-5 * scale,
                    "{dtype:?} [{j}]"
                );
            }
        }
    }
}

/// Down columns of the new types accumulate as their dequantized values.
#[test]
fn axpy_columns_of_new_types() {
    let mut r = SplitMix64::new(25);
    for dtype in NEW_TYPES {
        let dim = col_choices(dtype)[1];
        for count in [1usize, 4, 7] {
            let cols = rand_blocks(&mut r, dtype, count, dim);
            let cb = cols.len() / count;
            let dq = dequant(dtype, &cols, dim);
            let w = rand_vec(&mut r, count, 2.0);
            let out0 = rand_vec(&mut r, dim, 1.0);
            let refs: Vec<&[u8]> = cols.chunks_exact(cb).collect();
            for scalar in [true, false] {
                let mut out = out0.clone();
                cpu(1, scalar)
                    .axpy_columns(dtype, &refs, &w, &mut out)
                    .unwrap();
                for j in 0..dim {
                    let terms = (0..count).map(|i| f64::from(w[i]) * f64::from(dq[i * dim + j]));
                    let want = f64::from(out0[j]) + terms.clone().sum::<f64>();
                    let scale = 1.0 + terms.map(f64::abs).sum::<f64>();
                    assert!(
                        (f64::from(out[j]) - want).abs() <= 1e-5 * scale,
                        "{dtype:?} [{j}] {} vs {want}",
                        out[j]
                    );
                }
            }
        }
    }
}

/// Rows that are not whole super-blocks (Gemma's hidden 640 for a K-quant)
/// or whole Q5_0 blocks are shape errors on every entry point, never panics.
#[test]
fn partial_blocks_are_shape_errors() {
    let mut c = cpu(2, false);
    for (dtype, cols) in [(DType::Q4_K, 640), (DType::Q6_K, 320), (DType::Q5_0, 48)] {
        let data = vec![0u8; 4 * 1024];
        let x = vec![0.5f32; cols];
        let mut out = [0.0f32; 2];
        let w = QuantMatrix {
            dtype,
            rows: 2,
            cols,
            data: &data[..2 * 440],
        };
        assert_eq!(c.matvec(&w, &x, &mut out), Err(ErrorKind::ShapeMismatch));
        let mut o2 = [0.0f32; 4];
        let xs = vec![0.5f32; 2 * cols];
        assert_eq!(c.matmul(&w, &xs, 2, &mut o2), Err(ErrorKind::ShapeMismatch));
        let mut y = vec![0.0f32; cols];
        let col: &[u8] = &data[..440];
        assert_eq!(
            c.axpy_columns(dtype, &[col], &[1.0], &mut y),
            Err(ErrorKind::ShapeMismatch)
        );
        for (rows_t, down_t) in [(dtype, DType::Q8_0), (DType::Q8_0, dtype)] {
            let b = Bundles {
                dtype: rows_t,
                down_dtype: down_t,
                hidden: cols,
                count: 1,
                data: &data,
            };
            let mut h = [0.0f32; 1];
            assert_eq!(
                c.gated_ffn(&x, &b, &mut h, &mut y),
                Err(ErrorKind::ShapeMismatch),
                "{rows_t:?}/{down_t:?}"
            );
        }
    }
    // A whole-super-block matrix with too few bytes is refused too.
    let data = vec![0u8; 143];
    let w = QuantMatrix {
        dtype: DType::Q4_K,
        rows: 1,
        cols: 256,
        data: &data,
    };
    assert_eq!(
        c.matvec(&w, &[0.0; 256], &mut [0.0]),
        Err(ErrorKind::ShapeMismatch)
    );
}

/// The reference quantizer has no encoder for the new types (lode reads
/// them from GGUF files, never writes them): a clean refusal.
#[test]
fn the_quantizer_refuses_the_new_types() {
    for dtype in NEW_TYPES {
        let n = dtype.block_elems();
        let mut dst = vec![0u8; dtype.block_bytes()];
        assert_eq!(
            super::quant::quantize_row(dtype, &vec![0.5; n], &mut dst),
            Err(ErrorKind::UnsupportedType),
            "{dtype:?}"
        );
    }
}
