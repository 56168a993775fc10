//! Float rows (f32 and f16) times f32 vectors, and `y += alpha · x`,
//! for the AVX2 kernels.

use core::arch::x86_64::*;

use super::*;

// ---- float rows ----

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut rc = row.chunks_exact(128);
    let mut xc = x.chunks_exact(32);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 128]>::try_from(r), <&[f32; 32]>::try_from(v)) else {
            continue;
        };
        acc[0] = _mm256_fmadd_ps(
            load_f32x8_bytes::<0, 128>(r),
            load_f32x8::<0, 32>(v),
            acc[0],
        );
        acc[1] = _mm256_fmadd_ps(
            load_f32x8_bytes::<32, 128>(r),
            load_f32x8::<8, 32>(v),
            acc[1],
        );
        acc[2] = _mm256_fmadd_ps(
            load_f32x8_bytes::<64, 128>(r),
            load_f32x8::<16, 32>(v),
            acc[2],
        );
        acc[3] = _mm256_fmadd_ps(
            load_f32x8_bytes::<96, 128>(r),
            load_f32x8::<24, 32>(v),
            acc[3],
        );
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(s) + scalar::dot_f32_bytes(rc.remainder(), xc.remainder())
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut rc = row.chunks_exact(64);
    let mut xc = x.chunks_exact(32);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 64]>::try_from(r), <&[f32; 32]>::try_from(v)) else {
            continue;
        };
        acc[0] = _mm256_fmadd_ps(load_f16x8::<0, 64>(r), load_f32x8::<0, 32>(v), acc[0]);
        acc[1] = _mm256_fmadd_ps(load_f16x8::<16, 64>(r), load_f32x8::<8, 32>(v), acc[1]);
        acc[2] = _mm256_fmadd_ps(load_f16x8::<32, 64>(r), load_f32x8::<16, 32>(v), acc[2]);
        acc[3] = _mm256_fmadd_ps(load_f16x8::<48, 64>(r), load_f32x8::<24, 32>(v), acc[3]);
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(s) + scalar::dot_f16_bytes(rc.remainder(), xc.remainder())
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn matvec_float(half: bool, data: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = if half {
            dot_f16_bytes(row, x)
        } else {
            dot_f32_bytes(row, x)
        };
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut ac = a.chunks_exact(32);
    let mut bc = b.chunks_exact(32);
    for (x, y) in (&mut ac).zip(&mut bc) {
        let (Ok(x), Ok(y)) = (<&[f32; 32]>::try_from(x), <&[f32; 32]>::try_from(y)) else {
            continue;
        };
        acc[0] = _mm256_fmadd_ps(load_f32x8::<0, 32>(x), load_f32x8::<0, 32>(y), acc[0]);
        acc[1] = _mm256_fmadd_ps(load_f32x8::<8, 32>(x), load_f32x8::<8, 32>(y), acc[1]);
        acc[2] = _mm256_fmadd_ps(load_f32x8::<16, 32>(x), load_f32x8::<16, 32>(y), acc[2]);
        acc[3] = _mm256_fmadd_ps(load_f32x8::<24, 32>(x), load_f32x8::<24, 32>(y), acc[3]);
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(s) + scalar::dot_f32(ac.remainder(), bc.remainder())
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let av = _mm256_set1_ps(alpha);
    let mut yc = y.chunks_exact_mut(8);
    let mut xc = x.chunks_exact(8);
    for (o, v) in (&mut yc).zip(&mut xc) {
        let (Ok(o), Ok(v)) = (<&mut [f32; 8]>::try_from(o), <&[f32; 8]>::try_from(v)) else {
            continue;
        };
        let r = _mm256_fmadd_ps(av, load_f32x8::<0, 8>(v), load_f32x8::<0, 8>(o));
        store_f32x8::<0, 8>(o, r);
    }
    scalar::axpy_f32(alpha, xc.remainder(), yc.into_remainder());
}
