//! Float rows (f32 and f16) times f32 vectors, and `y += alpha · x`,
//! for the NEON kernels.

use core::arch::aarch64::*;

use super::*;

// ---- float rows ----

/// Four f16 (as u16 lanes) to f32, exactly: the magnitude bits shifted into
/// f32 position and scaled by 2^112 re-bias normals and subnormals alike;
/// infinities and NaNs get an all-ones exponent.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn f16x4_to_f32(h: uint32x4_t) -> float32x4_t {
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    let mag = vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff)));
    let scaled = vreinterpretq_u32_f32(vmulq_f32(
        vreinterpretq_f32_u32(mag),
        vdupq_n_f32(f32::from_bits((127 + 112) << 23)),
    ));
    let special = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
    let inf_nan = vorrq_u32(mag, vdupq_n_u32(0x7f80_0000));
    vreinterpretq_f32_u32(vorrq_u32(vbslq_u32(special, inf_nan, scaled), sign))
}

/// Eight f16 from 16 bytes at `K` of `b` as two f32x4.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_f16x8<const K: usize, const N: usize>(
    b: &[u8; N],
) -> (float32x4_t, float32x4_t) {
    let h = vreinterpretq_u16_u8(load_u8x16::<K, N>(b));
    (
        f16x4_to_f32(vmovl_u16(vget_low_u16(h))),
        f16x4_to_f32(vmovl_high_u16(h)),
    )
}

/// Four little-endian f32 from 16 bytes at `K` of `b`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn load_f32x4_bytes<const K: usize, const N: usize>(b: &[u8; N]) -> float32x4_t {
    vreinterpretq_f32_u8(load_u8x16::<K, N>(b))
}

#[target_feature(enable = "neon")]
pub(super) fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut rc = row.chunks_exact(64);
    let mut xc = x.chunks_exact(16);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 64]>::try_from(r), <&[f32; 16]>::try_from(v)) else {
            continue;
        };
        acc[0] = vfmaq_f32(acc[0], load_f32x4_bytes::<0, 64>(r), load_f32x4::<0, 16>(v));
        acc[1] = vfmaq_f32(
            acc[1],
            load_f32x4_bytes::<16, 64>(r),
            load_f32x4::<4, 16>(v),
        );
        acc[2] = vfmaq_f32(
            acc[2],
            load_f32x4_bytes::<32, 64>(r),
            load_f32x4::<8, 16>(v),
        );
        acc[3] = vfmaq_f32(
            acc[3],
            load_f32x4_bytes::<48, 64>(r),
            load_f32x4::<12, 16>(v),
        );
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f32_bytes(rc.remainder(), xc.remainder())
}

#[target_feature(enable = "neon")]
pub(super) fn dot_f16_bytes(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut rc = row.chunks_exact(32);
    let mut xc = x.chunks_exact(16);
    for (r, v) in (&mut rc).zip(&mut xc) {
        let (Ok(r), Ok(v)) = (<&[u8; 32]>::try_from(r), <&[f32; 16]>::try_from(v)) else {
            continue;
        };
        let (h0, h1) = load_f16x8::<0, 32>(r);
        let (h2, h3) = load_f16x8::<16, 32>(r);
        acc[0] = vfmaq_f32(acc[0], h0, load_f32x4::<0, 16>(v));
        acc[1] = vfmaq_f32(acc[1], h1, load_f32x4::<4, 16>(v));
        acc[2] = vfmaq_f32(acc[2], h2, load_f32x4::<8, 16>(v));
        acc[3] = vfmaq_f32(acc[3], h3, load_f32x4::<12, 16>(v));
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f16_bytes(rc.remainder(), xc.remainder())
}

#[target_feature(enable = "neon")]
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut ac = a.chunks_exact(16);
    let mut bc = b.chunks_exact(16);
    for (x, y) in (&mut ac).zip(&mut bc) {
        let (Ok(x), Ok(y)) = (<&[f32; 16]>::try_from(x), <&[f32; 16]>::try_from(y)) else {
            continue;
        };
        acc[0] = vfmaq_f32(acc[0], load_f32x4::<0, 16>(x), load_f32x4::<0, 16>(y));
        acc[1] = vfmaq_f32(acc[1], load_f32x4::<4, 16>(x), load_f32x4::<4, 16>(y));
        acc[2] = vfmaq_f32(acc[2], load_f32x4::<8, 16>(x), load_f32x4::<8, 16>(y));
        acc[3] = vfmaq_f32(acc[3], load_f32x4::<12, 16>(x), load_f32x4::<12, 16>(y));
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + scalar::dot_f32(ac.remainder(), bc.remainder())
}

#[target_feature(enable = "neon")]
pub(super) fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let av = vdupq_n_f32(alpha);
    let mut yc = y.chunks_exact_mut(4);
    let mut xc = x.chunks_exact(4);
    for (o, v) in (&mut yc).zip(&mut xc) {
        let (Ok(o), Ok(v)) = (<&mut [f32; 4]>::try_from(o), <&[f32; 4]>::try_from(v)) else {
            continue;
        };
        let r = vfmaq_f32(load_f32x4::<0, 4>(o), av, load_f32x4::<0, 4>(v));
        store_f32x4::<0, 4>(o, r);
    }
    scalar::axpy_f32(alpha, xc.remainder(), yc.into_remainder());
}

#[target_feature(enable = "neon")]
pub(super) fn matvec_float(half: bool, data: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = if half {
            dot_f16_bytes(row, x)
        } else {
            dot_f32_bytes(row, x)
        };
    }
}
