//! `y += alpha · dequantize(row)` for quantized rows and float rows, for
//! the NEON kernels.

use core::arch::aarch64::*;

use super::*;

/// `y[i] = (y[i] + bias) + scale · q[i]` for four widened codes at `K`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn axpy4<const K: usize>(
    q: int32x4_t,
    scale: float32x4_t,
    bias: float32x4_t,
    y: &mut [f32; 32],
) {
    let r = vfmaq_f32(
        vaddq_f32(load_f32x4::<K, 32>(y), bias),
        scale,
        vcvtq_f32_s32(q),
    );
    store_f32x4::<K, 32>(y, r);
}

/// `y += scale · codes + bias` for 32 codes (elements 0..16, 16..32) that
/// are signed (`signed`) or unsigned bytes.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn axpy_codes(
    codes: (int8x16_t, int8x16_t),
    signed: bool,
    scale: f32,
    bias: f32,
    y: &mut [f32; 32],
) {
    let s = vdupq_n_f32(scale);
    let b = vdupq_n_f32(bias);
    let widen16 = |v: int8x16_t| -> (int16x8_t, int16x8_t) {
        if signed {
            (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v))
        } else {
            let u = vreinterpretq_u8_s8(v);
            (
                vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(u))),
                vreinterpretq_s16_u16(vmovl_high_u8(u)),
            )
        }
    };
    let (a, b16) = widen16(codes.0);
    let (c, d) = widen16(codes.1);
    axpy4::<0>(vmovl_s16(vget_low_s16(a)), s, b, y);
    axpy4::<4>(vmovl_high_s16(a), s, b, y);
    axpy4::<8>(vmovl_s16(vget_low_s16(b16)), s, b, y);
    axpy4::<12>(vmovl_high_s16(b16), s, b, y);
    axpy4::<16>(vmovl_s16(vget_low_s16(c)), s, b, y);
    axpy4::<20>(vmovl_high_s16(c), s, b, y);
    axpy4::<24>(vmovl_s16(vget_low_s16(d)), s, b, y);
    axpy4::<28>(vmovl_high_s16(d), s, b, y);
}

#[target_feature(enable = "neon")]
pub(super) fn axpy_q(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
    if matches!(t, QType::Q4_K | QType::Q6_K) {
        return scalar::axpy_q(t, row, alpha, y);
    }
    for (ys, blk) in y
        .chunks_exact_mut(32)
        .zip(row.chunks_exact(t.block_bytes()))
    {
        let Ok(ys) = <&mut [f32; 32]>::try_from(ys) else {
            continue;
        };
        let d = f16_at(blk, 0);
        match t {
            QType::Q8_0 => {
                let Ok(b) = <&[u8; 34]>::try_from(blk) else {
                    continue;
                };
                let w0 = vreinterpretq_s8_u8(load_u8x16::<2, 34>(b));
                let w1 = vreinterpretq_s8_u8(load_u8x16::<18, 34>(b));
                axpy_codes((w0, w1), true, alpha * d, 0.0, ys);
            }
            QType::Q4_0 => {
                let Ok(b) = <&[u8; 18]>::try_from(blk) else {
                    continue;
                };
                let ad = alpha * d;
                axpy_codes(nibbles::<2, 18>(b), false, ad, -8.0 * ad, ys);
            }
            QType::Q5_0 => {
                let Ok(b) = <&[u8; 22]>::try_from(blk) else {
                    continue;
                };
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                let (l, h) = nibbles::<6, 22>(b);
                let (hl, hh) = fifth_bits(qh);
                let ad = alpha * d;
                let w = (vorrq_s8(l, hl), vorrq_s8(h, hh));
                axpy_codes(w, false, ad, -16.0 * ad, ys);
            }
            QType::Q4_1 => {
                let Ok(b) = <&[u8; 20]>::try_from(blk) else {
                    continue;
                };
                let m = f16_at(b, 2);
                axpy_codes(nibbles::<4, 20>(b), false, alpha * d, alpha * m, ys);
            }
            QType::Q5_1 => {
                let Ok(b) = <&[u8; 24]>::try_from(blk) else {
                    continue;
                };
                let m = f16_at(b, 2);
                let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                let (l, h) = nibbles::<8, 24>(b);
                let (hl, hh) = fifth_bits(qh);
                let w = (vorrq_s8(l, hl), vorrq_s8(h, hh));
                axpy_codes(w, false, alpha * d, alpha * m, ys);
            }
            // Routed to the scalar decoder above.
            QType::Q4_K | QType::Q6_K => {}
        }
    }
}

#[target_feature(enable = "neon")]
pub(super) fn axpy_float(half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
    let av = vdupq_n_f32(alpha);
    let mut yc = y.chunks_exact_mut(8);
    let mut rc = row.chunks_exact(if half { 16 } else { 32 });
    for (o, r) in (&mut yc).zip(&mut rc) {
        let Ok(o) = <&mut [f32; 8]>::try_from(o) else {
            continue;
        };
        let (v0, v1) = if half {
            match <&[u8; 16]>::try_from(r) {
                Ok(r) => load_f16x8::<0, 16>(r),
                Err(_) => continue,
            }
        } else {
            match <&[u8; 32]>::try_from(r) {
                Ok(r) => (load_f32x4_bytes::<0, 32>(r), load_f32x4_bytes::<16, 32>(r)),
                Err(_) => continue,
            }
        };
        let r0 = vfmaq_f32(load_f32x4::<0, 8>(o), av, v0);
        let r1 = vfmaq_f32(load_f32x4::<4, 8>(o), av, v1);
        store_f32x4::<0, 8>(o, r0);
        store_f32x4::<4, 8>(o, r1);
    }
    scalar::axpy_float(half, rc.remainder(), alpha, yc.into_remainder());
}
