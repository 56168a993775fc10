//! Tests of the Q5_0, Q4_K and Q6_K products: every kernel path against the
//! reference dequantizer (`lode_formats::gguf::dequantize_row`) followed by
//! an f64 dot product, on random blocks (random bytes everywhere except
//! sane, finite f16 scales), through the kernels and through `Compute`;
//! then on Gemma 3 270M's real tensors when the model is present.
//!
//! Tolerances, from first principles:
//! - Against the *quantized* activation the integer block sums are exact,
//!   so a path's only error is f32 rounding: each per-block term takes at
//!   most four roundings and the row sum one more per term, i.e. under
//!   `(4 + terms) · 2⁻²⁴` of `Σ |term|`, which is at most `mag` below
//!   (`Σ |w·xq|`, plus, for Q4_K, twice `Σ dmin·m·|xq|`: its scale and
//!   minimum terms can each exceed the element products they cancel into).
//!   With at most 64 terms per row that is below 4.2e-6 · mag; the tests
//!   allow 1e-5 · mag.
//! - Against the original `x`, add the activation rounding: half a step
//!   (`max|x_block| / 254`) per element, times `Σ |w|` (`dot_and_bound`).

use lode_kernel::compute::{Compute, DType, QuantMatrix};
use lode_kernel::formats::gguf::dequantize_row;
use lode_kernel::rng::SplitMix64;

use super::act::ActBlock;
use super::f16::f32_to_f16;
use super::kernels::scalar::kquant::Q4kScales;
use super::kernels::{Kernels, QType, RowType};
use super::testutil::{dot_and_bound, rand_vec};
use super::{CpuCompute, CpuConfig};

/// The types these tests cover.
pub(super) const NEW_TYPES: [DType; 3] = [DType::Q5_0, DType::Q4_K, DType::Q6_K];

fn qtype(dtype: DType) -> QType {
    match RowType::of(dtype) {
        Some(RowType::Quant(t)) => t,
        other => panic!("{dtype:?} is not a quantized row type: {other:?}"),
    }
}

pub(super) fn cpu(threads: usize, force_scalar: bool) -> CpuCompute<'static> {
    let cfg = CpuConfig {
        min_work_per_chunk: 1,
        spin_micros: 50,
        ..CpuConfig::new(2048)
            .with_threads(threads)
            .with_force_scalar(force_scalar)
    };
    CpuCompute::new(cfg).unwrap()
}

/// Every kernel set this CPU can run: scalar, the detected SIMD one, and
/// its other flavour (AVX2 without VNNI, NEON without `sdot`).
fn paths() -> Vec<Kernels> {
    let mut v = vec![Kernels::Scalar];
    let k = Kernels::detect(false);
    if !matches!(k, Kernels::Scalar) {
        v.push(k);
        v.push(k.without_vnni());
    }
    #[cfg(target_arch = "aarch64")]
    if let Kernels::Neon(t) = k {
        v.push(Kernels::Neon(t.without_dotprod()));
    }
    v
}

/// Row lengths to test: whole blocks of `dtype`, up to three super-blocks.
pub(super) fn col_choices(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q5_0 => &[32, 96, 640],
        _ => &[256, 512, 768],
    }
}

fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
}

/// `rows × cols` of `dtype`: random bytes, with random finite f16 scales
/// (`d`, and Q4_K's `dmin`) of a size that keeps values near unit scale.
pub(super) fn rand_blocks(r: &mut SplitMix64, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut data: Vec<u8> = (0..rows * rb).map(|_| r.next_u64() as u8).collect();
    for blk in data.chunks_exact_mut(dtype.block_bytes()) {
        match dtype {
            DType::Q5_0 => put_f16(blk, 0, (r.unit_f64() * 0.1) as f32),
            DType::Q4_K => {
                put_f16(blk, 0, (r.unit_f64() * 0.01) as f32);
                put_f16(blk, 2, (r.unit_f64() * 0.02) as f32);
            }
            DType::Q6_K => put_f16(blk, 208, (r.unit_f64() * 0.002) as f32),
            _ => unreachable!(),
        }
    }
    data
}

pub(super) fn dequant(dtype: DType, data: &[u8], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len() / dtype.row_bytes(cols as u64).unwrap() as usize * cols];
    dequantize_row(dtype, data, &mut out).unwrap();
    out
}

/// `Σ dmin·m_j·Σ_{i∈j}|v_i|` over a Q4_K row: the size of the minimum
/// terms, which the element products do not bound (0 for other types).
pub(super) fn min_term_mag(dtype: DType, row: &[u8], v: &[f32]) -> f64 {
    if dtype != DType::Q4_K {
        return 0.0;
    }
    let mut mag = 0.0f64;
    for (blk, vs) in row.chunks_exact(144).zip(v.chunks_exact(256)) {
        let s = Q4kScales::of(blk.try_into().unwrap());
        for (j, sub) in vs.chunks_exact(32).enumerate() {
            let abs: f64 = sub.iter().map(|x| f64::from(x.abs())).sum();
            mag += f64::from(s.dm[j]) * abs;
        }
    }
    mag
}

/// The quantized activation as floats.
fn dequant_act(act: &[ActBlock]) -> Vec<f32> {
    act.iter()
        .flat_map(|a| a.qs.iter().map(move |&q| f32::from(q) * a.d))
        .collect()
}

/// Every path's row · activation equals the dequantized row · quantized
/// activation within f32 rounding (module docs), on every code pattern;
/// `dot_q` and the paired-row `matvec_q` agree exactly on each path.
#[test]
fn every_path_matches_the_dequantized_reference() {
    let mut r = SplitMix64::new(20);
    for dtype in NEW_TYPES {
        let t = qtype(dtype);
        for &cols in col_choices(dtype) {
            for _ in 0..20 {
                let rows = 5;
                let data = rand_blocks(&mut r, dtype, rows, cols);
                let rb = data.len() / rows;
                let x = rand_vec(&mut r, cols, 3.0);
                let mut act = vec![ActBlock::ZERO; cols / 32];
                assert!(Kernels::Scalar.quantize_act(&x, &mut act));
                let xq = dequant_act(&act);
                let w = dequant(dtype, &data, cols);
                for k in paths() {
                    let mut out = vec![f32::NAN; rows];
                    k.matvec_q(t, &data, rb, &act, &mut out);
                    for (i, row) in data.chunks_exact(rb).enumerate() {
                        let wr = &w[i * cols..(i + 1) * cols];
                        let exact: f64 = wr
                            .iter()
                            .zip(&xq)
                            .map(|(a, b)| f64::from(*a) * f64::from(*b))
                            .sum();
                        let mag: f64 = wr
                            .iter()
                            .zip(&xq)
                            .map(|(a, b)| (f64::from(*a) * f64::from(*b)).abs())
                            .sum::<f64>()
                            + 2.0 * min_term_mag(dtype, row, &xq);
                        let got = out[i];
                        assert!(
                            (f64::from(got) - exact).abs() <= 1e-5 * mag + 1e-6,
                            "{dtype:?} cols {cols} {:?}: {got} vs {exact} (mag {mag})",
                            k.isa()
                        );
                        assert_eq!(k.dot_q(t, row, &act).to_bits(), got.to_bits());
                    }
                }
            }
        }
    }
}

/// NEON computes the scalar path's integer sums and float operations in
/// the same order: bit-identical results in both flavours.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_kquant_flavours_are_bit_identical_to_scalar() {
    let mut r = SplitMix64::new(21);
    for dtype in NEW_TYPES {
        let t = qtype(dtype);
        for &cols in col_choices(dtype) {
            let rows = 7;
            let data = rand_blocks(&mut r, dtype, rows, cols);
            let rb = data.len() / rows;
            let x = rand_vec(&mut r, cols, 3.0);
            let mut act = vec![ActBlock::ZERO; cols / 32];
            assert!(Kernels::Scalar.quantize_act(&x, &mut act));
            let mut want = vec![0.0f32; rows];
            Kernels::Scalar.matvec_q(t, &data, rb, &act, &mut want);
            for k in paths() {
                let mut got = vec![0.0f32; rows];
                k.matvec_q(t, &data, rb, &act, &mut got);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{dtype:?} {:?}", k.isa());
            }
        }
    }
}

/// AVX2 and AVX-512 VNNI flavours agree exactly (Q5_0's integer lanes are
/// the same; the K-quants run one code path).
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_kquant_flavours_agree_exactly() {
    let k = Kernels::detect(false);
    let mut r = SplitMix64::new(22);
    for dtype in NEW_TYPES {
        let t = qtype(dtype);
        let cols = col_choices(dtype)[1];
        let data = rand_blocks(&mut r, dtype, 9, cols);
        let x = rand_vec(&mut r, cols, 3.0);
        let mut act = vec![ActBlock::ZERO; cols / 32];
        assert!(k.quantize_act(&x, &mut act));
        let (mut a, mut b) = (vec![0.0f32; 9], vec![0.0f32; 9]);
        k.matvec_q(t, &data, data.len() / 9, &act, &mut a);
        k.without_vnni()
            .matvec_q(t, &data, data.len() / 9, &act, &mut b);
        assert_eq!(a, b, "{dtype:?}");
    }
}

/// Through `Compute`: `matvec` within the activation-rounding bound of the
/// exact product with the original `x` on every path, threads changing
/// nothing, and `matmul` exactly `matvec` per vector.
#[test]
fn matvec_and_matmul_through_the_trait() {
    let mut r = SplitMix64::new(23);
    for dtype in NEW_TYPES {
        for &cols in col_choices(dtype) {
            let rows = 37;
            let data = rand_blocks(&mut r, dtype, rows, cols);
            let rb = data.len() / rows;
            let w = QuantMatrix {
                dtype,
                rows,
                cols,
                data: &data,
            };
            let dq = dequant(dtype, &data, cols);
            let x = rand_vec(&mut r, cols, 2.0);
            let mut outs = Vec::new();
            for (threads, scalar) in [(1, true), (1, false), (2, false), (2, true)] {
                let mut out = vec![f32::NAN; rows];
                cpu(threads, scalar).matvec(&w, &x, &mut out).unwrap();
                for (i, &o) in out.iter().enumerate() {
                    let wr = &dq[i * cols..(i + 1) * cols];
                    let (exact, bound) = dot_and_bound(wr, &x, true);
                    let bound = bound + 2e-5 * min_term_mag(dtype, &data[i * rb..][..rb], &x);
                    assert!(
                        (f64::from(o) - exact).abs() <= bound,
                        "{dtype:?} row {i}: {o} vs {exact} (bound {bound}), scalar {scalar}"
                    );
                }
                outs.push(out);
            }
            assert_eq!(outs[0], outs[3], "{dtype:?}: threads change nothing");
            assert_eq!(outs[1], outs[2], "{dtype:?}: threads change nothing");

            let n = 5;
            let xs = rand_vec(&mut r, n * cols, 2.0);
            let mut c = cpu(2, false);
            let mut want = vec![0.0f32; n * rows];
            for (xi, oi) in xs.chunks_exact(cols).zip(want.chunks_exact_mut(rows)) {
                c.matvec(&w, xi, oi).unwrap();
            }
            let mut got = vec![f32::NAN; n * rows];
            c.matmul(&w, &xs, n, &mut got).unwrap();
            assert_eq!(got, want, "{dtype:?}: matmul is matvec per vector");
        }
    }
}

/// The kernels' branch-free unpacking of Q4_K's twelve scale bytes agrees
/// with the format's definition (`q4_k_scale_min`) on random bytes.
#[test]
fn q4_k_scale_unpacking_matches_the_format() {
    use lode_kernel::formats::gguf::kquants::q4_k_scale_min;
    let mut r = SplitMix64::new(26);
    for _ in 0..200 {
        let blk = rand_blocks(&mut r, DType::Q4_K, 1, 256);
        let b: &[u8; 144] = blk.as_slice().try_into().unwrap();
        let s = Q4kScales::of(b);
        let d = super::f16::f16_le([b[0], b[1]]);
        let dmin = super::f16::f16_le([b[2], b[3]]);
        let packed: [u8; 12] = b[4..16].try_into().unwrap();
        for j in 0..8 {
            let (sc, m) = q4_k_scale_min(&packed, j);
            assert_eq!(s.dsc[j], d * f32::from(sc), "scale {j}");
            assert_eq!(s.dm[j], dmin * f32::from(m), "min {j}");
        }
    }
}
