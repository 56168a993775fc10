//! The Q5_0, Q4_K and Q6_K products on Gemma 3 270M's own tensors, and a
//! short timing of them against the 32-element types.
//!
//! The model is `models/gemma-3-270m-Q4_K_M.gguf` at the workspace root
//! (`scripts/fetch-model gemma3-270m`), or the file `LODE_GEMMA_GGUF`
//! names; without it the test prints a note and passes.

use std::path::PathBuf;
use std::time::Instant;

use lode_kernel::compute::{Compute, DType, QuantMatrix};
use lode_kernel::formats::gguf::Gguf;
use lode_kernel::rng::SplitMix64;

use super::tests_kquant::{cpu, dequant, min_term_mag, rand_blocks, NEW_TYPES};
use super::testutil::{dot_and_bound, rand_matrix, rand_vec};
use super::{CpuCompute, CpuConfig};

/// Rows of each tensor multiplied (the first ones; all of a small tensor).
const MAX_ROWS: usize = 256;

fn model() -> Option<PathBuf> {
    let p = std::env::var_os("LODE_GEMMA_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-Q4_K_M.gguf")
        });
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: {} is absent (scripts/fetch-model gemma3-270m, or set LODE_GEMMA_GGUF)",
            p.display()
        );
        None
    }
}

/// For two tensors of each new type (the first and the last in the file):
/// `matvec` of a random vector, scalar and SIMD, within the
/// activation-rounding bound of the exact product of the reference
/// dequantized rows (see `tests_kquant`'s tolerances).
#[test]
fn gemma_tensors_match_the_dequantized_product() {
    let Some(path) = model() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let mut r = SplitMix64::new(270);
    for dtype in NEW_TYPES {
        let all: Vec<_> = gguf
            .tensors()
            .filter(|t| t.dtype == dtype && t.dims.len() == 2)
            .collect();
        assert!(!all.is_empty(), "no 2-D {dtype:?} tensor in the model");
        for info in [all[0], all[all.len() - 1]] {
            let cols = info.dims.row_len() as usize;
            let rb = info.row_bytes() as usize;
            let rows = (info.dims.rows().unwrap() as usize).min(MAX_ROWS);
            let data = &gguf.data(&info).unwrap()[..rows * rb];
            let w = QuantMatrix {
                dtype,
                rows,
                cols,
                data,
            };
            let dq = dequant(dtype, data, cols);
            let x = rand_vec(&mut r, cols, 1.0);
            let mut worst = 0.0f64;
            for scalar in [true, false] {
                let mut out = vec![f32::NAN; rows];
                cpu(1, scalar).matvec(&w, &x, &mut out).unwrap();
                for (i, &o) in out.iter().enumerate() {
                    let (exact, bound) = dot_and_bound(&dq[i * cols..][..cols], &x, true);
                    let bound = bound + 2e-5 * min_term_mag(dtype, &data[i * rb..][..rb], &x);
                    let err = (f64::from(o) - exact).abs();
                    assert!(
                        err <= bound,
                        "{} row {i}: {o} vs {exact} (bound {bound}), scalar {scalar}",
                        info.name
                    );
                    worst = worst.max(err / bound);
                }
            }
            println!(
                "{} ({dtype:?}, {rows}x{cols}): worst error {:.2} of its bound",
                info.name, worst
            );
        }
    }
}

/// µs per single-threaded `matvec` of a 640 × 2048 matrix (Gemma's
/// `ffn_down` shape) in Q4_0, Q4_1, Q5_1, Q5_0, Q8_0, Q4_K and Q6_K: scalar, SIMD
/// without VNNI, and SIMD as detected; the best of eight runs of 100.
/// Run it optimized: `cargo test -p lode-hal --release --lib -- --ignored
/// --nocapture kquant_speed` (`LODE_SPEED_ONLY=q4_k` for one type).
#[test]
#[ignore = "timing, not a check; run with --release --ignored"]
fn kquant_speed() {
    let (rows, cols) = (640, 2048);
    let mut r = SplitMix64::new(1);
    let x = rand_vec(&mut r, cols, 1.0);
    let only = std::env::var("LODE_SPEED_ONLY").ok();
    for dtype in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_1,
        DType::Q5_0,
        DType::Q8_0,
        DType::Q4_K,
        DType::Q6_K,
    ] {
        if only.as_deref().is_some_and(|o| o != dtype.name()) {
            continue;
        }
        let data = if matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q5_1 | DType::Q8_0) {
            rand_matrix(&mut r, dtype, rows, cols, true)
        } else {
            rand_blocks(&mut r, dtype, rows, cols)
        };
        let w = QuantMatrix {
            dtype,
            rows,
            cols,
            data: &data,
        };
        let mut line = format!("{dtype:?} {rows}x{cols}:");
        for (scalar, no_vnni) in [(true, false), (false, true), (false, false)] {
            let cfg = CpuConfig::new(cols)
                .with_force_scalar(scalar)
                .with_no_vnni(no_vnni);
            let mut c = CpuCompute::new(cfg).unwrap();
            let mut out = vec![0.0f32; rows];
            for _ in 0..20 {
                c.matvec(&w, &x, &mut out).unwrap();
            }
            // The best of several short runs: the machine may be shared.
            let n = 100;
            let mut us = f64::INFINITY;
            for _ in 0..8 {
                let t0 = Instant::now();
                for _ in 0..n {
                    c.matvec(&w, &x, &mut out).unwrap();
                }
                us = us.min(t0.elapsed().as_secs_f64() * 1e6 / f64::from(n));
            }
            line += &format!(" {:?} {us:.1} µs", c.isa());
        }
        println!("{line}");
    }
}
