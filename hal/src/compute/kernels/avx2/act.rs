//! Activation quantization to 8-bit blocks for the AVX2 kernels,
//! bit-identical to the scalar path.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::*;

// ---- activation quantization ----

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn quantize_act(x: &[f32], out: &mut [ActBlock]) -> bool {
    let sign = _mm256_set1_ps(-0.0);
    let inf = _mm256_set1_ps(f32::INFINITY);
    let mut bad = _mm256_setzero_ps();
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(32)) {
        let Ok(xs) = <&[f32; 32]>::try_from(xs) else {
            continue;
        };
        let v = [
            load_f32x8::<0, 32>(xs),
            load_f32x8::<8, 32>(xs),
            load_f32x8::<16, 32>(xs),
            load_f32x8::<24, 32>(xs),
        ];
        let a = v.map(|v| _mm256_andnot_ps(sign, v));
        for &ak in &a {
            // Not-less-than-infinity, unordered: true for ±inf and NaN.
            bad = _mm256_or_ps(bad, _mm256_cmp_ps::<_CMP_NLT_UQ>(ak, inf));
        }
        let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let (d, id) = scale_of(_mm_cvtss_f32(m));
        let idv = _mm256_set1_ps(id);
        // Round to nearest even (the default MXCSR mode), as `rint` does.
        let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, idv)));
        let p = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        // The packs interleave 128-bit lanes; restore element order.
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `blk.qs` is 32 writable bytes we borrow mutably; `storeu`
        // has no alignment requirement.
        unsafe { _mm256_storeu_si256(blk.qs.as_mut_ptr().cast(), p) };
        blk.d = d;
        blk.sum = hsum_epi32(_mm256_add_epi32(
            _mm256_add_epi32(q[0], q[1]),
            _mm256_add_epi32(q[2], q[3]),
        ));
        blk.ds = d * blk.sum as f32;
    }
    _mm256_movemask_ps(bad) == 0
}
