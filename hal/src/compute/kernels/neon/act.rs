//! Activation quantization to 8-bit blocks for the NEON kernels,
//! bit-identical to the scalar path.

#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::*;

// ---- activation quantization ----

#[target_feature(enable = "neon")]
pub(super) fn quantize_act(x: &[f32], out: &mut [ActBlock]) -> bool {
    let inf = vdupq_n_f32(f32::INFINITY);
    let mut ok = vdupq_n_u32(u32::MAX);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(32)) {
        let Ok(xs) = <&[f32; 32]>::try_from(xs) else {
            continue;
        };
        let v = [
            load_f32x4::<0, 32>(xs),
            load_f32x4::<4, 32>(xs),
            load_f32x4::<8, 32>(xs),
            load_f32x4::<12, 32>(xs),
            load_f32x4::<16, 32>(xs),
            load_f32x4::<20, 32>(xs),
            load_f32x4::<24, 32>(xs),
            load_f32x4::<28, 32>(xs),
        ];
        let mut m = vdupq_n_f32(0.0);
        for &vk in &v {
            let a = vabsq_f32(vk);
            // Less-than-infinity is false for ±inf and NaN.
            ok = vandq_u32(ok, vcltq_f32(a, inf));
            m = vmaxq_f32(m, a);
        }
        let (d, id) = scale_of(vmaxvq_f32(m));
        let idv = vdupq_n_f32(id);
        // fcvtns: round to nearest, ties to even, as `rint` does.
        let q = v.map(|vk| vcvtnq_s32_f32(vmulq_f32(vk, idv)));
        let narrow = |a: int32x4_t, b: int32x4_t, c: int32x4_t, e: int32x4_t| {
            let lo = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
            let hi = vcombine_s16(vqmovn_s32(c), vqmovn_s32(e));
            vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi))
        };
        let q0 = narrow(q[0], q[1], q[2], q[3]);
        let q1 = narrow(q[4], q[5], q[6], q[7]);
        let (first, second) = blk.qs.split_at_mut(16);
        // SAFETY: `split_at_mut(16)` of the 32-byte `qs` gives two 16-byte
        // halves we borrow mutably; byte stores have no alignment requirement.
        unsafe {
            vst1q_s8(first.as_mut_ptr(), q0);
            vst1q_s8(second.as_mut_ptr(), q1);
        }
        let s = vaddq_s32(
            vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
            vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])),
        );
        blk.d = d;
        blk.sum = vaddvq_s32(s);
        blk.ds = d * blk.sum as f32;
    }
    vminvq_u32(ok) != 0
}
