//! `y += alpha · dequantize(row)` for quantized rows (one or four at a
//! time) and float rows, for the AVX2 kernels.

use core::arch::x86_64::*;

use super::*;

/// 32 code bytes as four vectors of eight f32 (`signed` selects sign or
/// zero extension).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn widen_codes(codes: __m256i, signed: bool) -> [__m256; 4] {
    let lo = _mm256_castsi256_si128(codes);
    let hi = _mm256_extracti128_si256::<1>(codes);
    let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
    parts.map(|p| {
        if signed {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(p))
        } else {
            _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(p))
        }
    })
}

/// Per-block constant of `alpha · dequantize(block)`: `-8·alpha·d` for
/// Q4_0's offset codes, `alpha·m` for the types with a minimum.
#[inline(always)]
pub(super) fn abias_q4_0(alpha: f32, d: f32, _m: f32) -> f32 {
    -8.0 * alpha * d
}

#[inline(always)]
pub(super) fn abias_q5_0(alpha: f32, d: f32, _m: f32) -> f32 {
    -16.0 * alpha * d
}

#[inline(always)]
pub(super) fn abias_min(alpha: f32, _d: f32, m: f32) -> f32 {
    alpha * m
}

#[inline(always)]
pub(super) fn abias_none(_alpha: f32, _d: f32, _m: f32) -> f32 {
    0.0
}

/// `y += Σ_r alpha[r] · dequantize(rows[r])` over `R` rows of one type,
/// one pass over `y`: each 32-element block of `y` is loaded and stored once
/// for all `R` rows.
macro_rules! axpy_rows {
    ($name:ident, $n:literal, $decode:ident, $signed:literal, $bias:ident) => {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name<const R: usize>(rows: [&[u8]; R], alpha: [f32; R], y: &mut [f32]) {
            for (bi, ys) in y.chunks_exact_mut(32).enumerate() {
                let Ok(ys) = <&mut [f32; 32]>::try_from(ys) else {
                    continue;
                };
                let mut v = [
                    load_f32x8::<0, 32>(ys),
                    load_f32x8::<8, 32>(ys),
                    load_f32x8::<16, 32>(ys),
                    load_f32x8::<24, 32>(ys),
                ];
                let mut bias = 0.0f32;
                for r in 0..R {
                    let blk = rows[r].get(bi * $n..(bi + 1) * $n);
                    let Some(Ok(b)) = blk.map(<&[u8; $n]>::try_from) else {
                        continue;
                    };
                    let (w, d, m) = $decode(b);
                    let f = widen_codes(w, $signed);
                    let sv = _mm256_set1_ps(alpha[r] * d);
                    v[0] = _mm256_fmadd_ps(sv, f[0], v[0]);
                    v[1] = _mm256_fmadd_ps(sv, f[1], v[1]);
                    v[2] = _mm256_fmadd_ps(sv, f[2], v[2]);
                    v[3] = _mm256_fmadd_ps(sv, f[3], v[3]);
                    bias += $bias(alpha[r], d, m);
                }
                let bv = _mm256_set1_ps(bias);
                store_f32x8::<0, 32>(ys, _mm256_add_ps(v[0], bv));
                store_f32x8::<8, 32>(ys, _mm256_add_ps(v[1], bv));
                store_f32x8::<16, 32>(ys, _mm256_add_ps(v[2], bv));
                store_f32x8::<24, 32>(ys, _mm256_add_ps(v[3], bv));
            }
        }
    };
}

axpy_rows!(axpy_rows_q4_0, 18, decode_q4_0, false, abias_q4_0);
axpy_rows!(axpy_rows_q4_1, 20, decode_q4_1, false, abias_min);
axpy_rows!(axpy_rows_q5_0, 22, decode_q5_0, false, abias_q5_0);
axpy_rows!(axpy_rows_q5_1, 24, decode_q5_1, false, abias_min);
axpy_rows!(axpy_rows_q8_0, 34, decode_q8_0, true, abias_none);

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn axpy_q(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
    match t {
        QType::Q4_0 => axpy_rows_q4_0([row], [alpha], y),
        QType::Q4_1 => axpy_rows_q4_1([row], [alpha], y),
        QType::Q5_0 => axpy_rows_q5_0([row], [alpha], y),
        QType::Q5_1 => axpy_rows_q5_1([row], [alpha], y),
        QType::Q8_0 => axpy_rows_q8_0([row], [alpha], y),
        QType::Q4_K | QType::Q6_K => scalar::axpy_q(t, row, alpha, y),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn axpy4_q(t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
    match t {
        QType::Q4_0 => axpy_rows_q4_0(rows, alpha, y),
        QType::Q4_1 => axpy_rows_q4_1(rows, alpha, y),
        QType::Q5_0 => axpy_rows_q5_0(rows, alpha, y),
        QType::Q5_1 => axpy_rows_q5_1(rows, alpha, y),
        QType::Q8_0 => axpy_rows_q8_0(rows, alpha, y),
        QType::Q4_K | QType::Q6_K => scalar::axpy4_q(t, rows, alpha, y),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn axpy_float(half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
    let av = _mm256_set1_ps(alpha);
    let step = if half { 16 } else { 32 };
    let mut yc = y.chunks_exact_mut(8);
    let mut rc = row.chunks_exact(step);
    for (o, r) in (&mut yc).zip(&mut rc) {
        let Ok(o) = <&mut [f32; 8]>::try_from(o) else {
            continue;
        };
        let v = if half {
            match <&[u8; 16]>::try_from(r) {
                Ok(r) => load_f16x8::<0, 16>(r),
                Err(_) => continue,
            }
        } else {
            match <&[u8; 32]>::try_from(r) {
                Ok(r) => load_f32x8_bytes::<0, 32>(r),
                Err(_) => continue,
            }
        };
        store_f32x8::<0, 8>(o, _mm256_fmadd_ps(av, v, load_f32x8::<0, 8>(o)));
    }
    scalar::axpy_float(half, rc.remainder(), alpha, yc.into_remainder());
}
