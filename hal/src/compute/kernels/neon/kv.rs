//! The KV-block codec with NEON ([`crate::compute::kv`]), bit-identical to
//! the scalar codec.
//!
//! The same scheme as the AVX2 codec with four lanes: per token, a group is
//! eight vectors; per channel, four adjacent channels share a vector and
//! each lane collects its channel's codes into 32-bit words, written to the
//! four channels' groups word by word (no transpose). Group parameters come
//! from the scalar [`params`]; codes are `(v - m) · inv` rounded to nearest
//! even (`vrndnq_f32`, as `rint`) and clamped to `0..=levels`; decoding is
//! a multiply then an add (`vmulq` + `vaddq`, not `vfmaq`), as in the
//! scalar code.

use core::arch::aarch64::*;

use lode_kernel::compute::{ErrorKind, KvBits, KvGroups};

use super::{load_f32x4, store_f32x4, Token};
use crate::compute::kv::{bits_of, group_bytes, head_of, le32, params, put, put_at, scalar, GROUP};

impl Token {
    /// See [`scalar::quantize`]: the same bytes, or the same error.
    pub(crate) fn kv_quantize(
        self,
        src: &[f32],
        groups: KvGroups,
        bits: KvBits,
        dst: &mut [u8],
    ) -> Result<(), ErrorKind> {
        // SAFETY: a token exists only on NEON targets (`Token::detect`),
        // the only requirement of the target-feature functions.
        unsafe {
            match groups {
                KvGroups::PerToken => quantize_tokens(src, bits, dst),
                KvGroups::PerChannel { channels } => quantize_channels(src, channels, bits, dst),
            }
        }
    }

    /// See [`scalar::dequantize`]: the same floats.
    pub(crate) fn kv_dequantize(self, src: &[u8], groups: KvGroups, bits: KvBits, dst: &mut [f32]) {
        // SAFETY: a token exists only on NEON targets (`Token::detect`).
        unsafe {
            match groups {
                KvGroups::PerToken => dequantize_tokens(src, bits, dst),
                KvGroups::PerChannel { channels } => dequantize_channels(src, channels, bits, dst),
            }
        }
    }
}

/// Channels per vector.
const LANES: usize = 4;

/// Per-token groups: eight vectors each.
#[target_feature(enable = "neon")]
fn quantize_tokens(src: &[f32], bits: KvBits, dst: &mut [u8]) -> Result<(), ErrorKind> {
    let levels = levels_of(bits);
    for (x, enc) in src
        .chunks_exact(GROUP)
        .zip(dst.chunks_exact_mut(group_bytes(GROUP, bits)))
    {
        let Ok(x) = <&[f32; GROUP]>::try_from(x) else {
            continue;
        };
        let v = [
            load_f32x4::<0, GROUP>(x),
            load_f32x4::<4, GROUP>(x),
            load_f32x4::<8, GROUP>(x),
            load_f32x4::<12, GROUP>(x),
            load_f32x4::<16, GROUP>(x),
            load_f32x4::<20, GROUP>(x),
            load_f32x4::<24, GROUP>(x),
            load_f32x4::<28, GROUP>(x),
        ];
        let (mut ok, mut lo, mut hi) = (vdupq_n_u32(u32::MAX), v[0], v[0]);
        for &vk in &v {
            ok = vandq_u32(ok, finite(vk));
            lo = vminq_f32(lo, vk);
            hi = vmaxq_f32(hi, vk);
        }
        if vminvq_u32(ok) == 0 {
            return Err(ErrorKind::NonFinite);
        }
        let p = params(vminvq_f32(lo), vmaxvq_f32(hi), bits)?;
        let (head, codes) = enc.split_at_mut(4);
        head.copy_from_slice(&p.head);
        let (m, inv) = (vdupq_n_f32(p.m), vdupq_n_f32(p.inv));
        let q = v.map(|v| codes_of(v, m, inv, levels));
        // The 32 codes as bytes in element order.
        let h = |a, b| vcombine_u16(vmovn_u32(a), vmovn_u32(b));
        let b0 = vcombine_u8(vmovn_u16(h(q[0], q[1])), vmovn_u16(h(q[2], q[3])));
        let b1 = vcombine_u8(vmovn_u16(h(q[4], q[5])), vmovn_u16(h(q[6], q[7])));
        match bits {
            KvBits::B8 => {
                put_at(codes, 0, bytes16(b0));
                put_at(codes, 16, bytes16(b1));
            }
            KvBits::B4 => put_at(codes, 0, bytes16(vcombine_u8(pair::<4>(b0), pair::<4>(b1)))),
            KvBits::B2 => {
                let nibbles = vcombine_u8(pair::<2>(b0), pair::<2>(b1));
                put_at(codes, 0, bytes8(pair::<4>(nibbles)));
            }
        }
    }
    Ok(())
}

/// Per-token groups: 32 codes to eight vectors of floats.
#[target_feature(enable = "neon")]
fn dequantize_tokens(src: &[u8], bits: KvBits, dst: &mut [f32]) {
    let nb = bits_of(bits);
    let mask = vdupq_n_u32((1 << nb) - 1);
    // Elements 4t..4t + 4 are the `nb / 2` bytes at `t · nb / 2`: lane i
    // shifts element 4t + i's bits down (a negative left shift).
    let n = -(nb as i32);
    let sh = s32x4([0, n, 2 * n, 3 * n]);
    for (enc, y) in src
        .chunks_exact(group_bytes(GROUP, bits))
        .zip(dst.chunks_exact_mut(GROUP))
    {
        let Ok(y) = <&mut [f32; GROUP]>::try_from(y) else {
            continue;
        };
        let (d, m) = head_of(enc);
        let (d, m) = (vdupq_n_f32(d), vdupq_n_f32(m));
        let codes = enc.get(4..).unwrap_or(&[]);
        let f = |t: usize| {
            let w = vdupq_n_u32(le32(codes, t * nb / 2));
            let q = vandq_u32(vshlq_u32(w, sh), mask);
            vaddq_f32(vmulq_f32(d, vcvtq_f32_u32(q)), m)
        };
        store_f32x4::<0, GROUP>(y, f(0));
        store_f32x4::<4, GROUP>(y, f(1));
        store_f32x4::<8, GROUP>(y, f(2));
        store_f32x4::<12, GROUP>(y, f(3));
        store_f32x4::<16, GROUP>(y, f(4));
        store_f32x4::<20, GROUP>(y, f(5));
        store_f32x4::<24, GROUP>(y, f(6));
        store_f32x4::<28, GROUP>(y, f(7));
    }
}

/// Per-channel groups, four channels at a time.
#[target_feature(enable = "neon")]
fn quantize_channels(
    src: &[f32],
    channels: usize,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    let n = src.len() / channels.max(1);
    let nb = bits_of(bits);
    let gb = group_bytes(n, bits);
    let per_word = 32 / nb;
    let levels = levels_of(bits);
    let mut c0 = 0;
    while c0 + LANES <= channels {
        let mut lo = vdupq_n_f32(f32::INFINITY);
        let mut hi = vdupq_n_f32(f32::NEG_INFINITY);
        let mut ok = vdupq_n_u32(u32::MAX);
        for row in src.chunks_exact(channels) {
            let v = load_at(row, c0);
            ok = vandq_u32(ok, finite(v));
            lo = vminq_f32(lo, v);
            hi = vmaxq_f32(hi, v);
        }
        if vminvq_u32(ok) == 0 {
            return Err(ErrorKind::NonFinite);
        }
        let (lo, hi) = (lanes_f32(lo), lanes_f32(hi));
        let mut m = [0.0f32; LANES];
        let mut inv = [0.0f32; LANES];
        for i in 0..LANES {
            let p = params(lo[i], hi[i], bits)?;
            (m[i], inv[i]) = (p.m, p.inv);
            put_at(dst, (c0 + i) * gb, p.head);
        }
        let (m, inv) = (load_f32x4::<0, LANES>(&m), load_f32x4::<0, LANES>(&inv));
        let mut acc = vdupq_n_u32(0);
        for (j, row) in src.chunks_exact(channels).enumerate() {
            let q = codes_of(load_at(row, c0), m, inv, levels);
            let s = vdupq_n_s32(((j % per_word) * nb) as i32);
            acc = vorrq_u32(acc, vshlq_u32(q, s));
            if (j + 1) % per_word == 0 || j + 1 == n {
                // Word w of each lane's codes: bytes 4w.. of its codes,
                // fewer than 4 when the codes end inside it.
                let off = 4 * (j / per_word);
                let len = (n * nb / 8).saturating_sub(off).min(4);
                let words = lanes_f32(vreinterpretq_f32_u32(acc)).map(f32::to_bits);
                for (i, w) in words.into_iter().enumerate() {
                    let at = (c0 + i) * gb + 4 + off;
                    put(
                        dst.get_mut(at..at + len).unwrap_or(&mut []),
                        &w.to_le_bytes(),
                    );
                }
                acc = vdupq_n_u32(0);
            }
        }
        c0 += LANES;
    }
    for c in c0..channels {
        scalar::encode_channel(src, channels, c, bits, dst)?;
    }
    Ok(())
}

/// Per-channel groups, four channels at a time.
#[target_feature(enable = "neon")]
fn dequantize_channels(src: &[u8], channels: usize, bits: KvBits, dst: &mut [f32]) {
    let n = dst.len() / channels.max(1);
    let nb = bits_of(bits);
    let gb = group_bytes(n, bits);
    let per_word = 32 / nb;
    let mask = vdupq_n_u32((1 << nb) - 1);
    let mut c0 = 0;
    while c0 + LANES <= channels {
        let mut d = [0.0f32; LANES];
        let mut m = [0.0f32; LANES];
        for i in 0..LANES {
            (d[i], m[i]) = head_of(src.get((c0 + i) * gb..).unwrap_or(&[]));
        }
        let (d, m) = (load_f32x4::<0, LANES>(&d), load_f32x4::<0, LANES>(&m));
        let mut words = vdupq_n_u32(0);
        for (j, row) in dst.chunks_exact_mut(channels).enumerate() {
            let s = (j % per_word) * nb;
            if s == 0 {
                // Word j / per_word of each lane's codes. Past the codes'
                // end it reads the next group's bytes (or zeros), bits that
                // no position below `n` extracts.
                let at = |i: usize| le32(src, (c0 + i) * gb + 4 + 4 * (j / per_word));
                words = u32x4([at(0), at(1), at(2), at(3)]);
            }
            let q = vandq_u32(vshlq_u32(words, vdupq_n_s32(-(s as i32))), mask);
            let y = vaddq_f32(vmulq_f32(d, vcvtq_f32_u32(q)), m);
            if let Some(Ok(o)) = row
                .get_mut(c0..c0 + LANES)
                .map(<&mut [f32; LANES]>::try_from)
            {
                store_f32x4::<0, LANES>(o, y);
            }
        }
        c0 += LANES;
    }
    for c in c0..channels {
        scalar::decode_channel(src, channels, c, bits, dst);
    }
}

// ---- helpers ----

/// The largest code of `bits`, as f32 lanes.
#[inline]
#[target_feature(enable = "neon")]
fn levels_of(bits: KvBits) -> float32x4_t {
    vdupq_n_f32(((1u32 << bits_of(bits)) - 1) as f32)
}

/// All-ones lanes where `v` is finite (NaN compares false).
#[inline]
#[target_feature(enable = "neon")]
fn finite(v: float32x4_t) -> uint32x4_t {
    vcleq_f32(vabsq_f32(v), vdupq_n_f32(f32::MAX))
}

/// The codes of `v`: `rint((v - m) · inv)` clamped to `0..=levels`, as the
/// scalar code computes them (its `as u32` saturates below at 0, and no
/// operand is NaN, so clamping in f32 before converting is the same).
#[inline]
#[target_feature(enable = "neon")]
fn codes_of(v: float32x4_t, m: float32x4_t, inv: float32x4_t, levels: float32x4_t) -> uint32x4_t {
    let t = vmulq_f32(vsubq_f32(v, m), inv);
    let r = vminq_f32(vmaxq_f32(vrndnq_f32(t), vdupq_n_f32(0.0)), levels);
    vcvtq_u32_f32(r)
}

/// Byte k = `b[2k] | b[2k + 1] << S` (every byte of `b` below `2^S`): the
/// high byte of each u16 shifted down next to the low one, then narrowed.
#[inline]
#[target_feature(enable = "neon")]
fn pair<const S: i32>(b: uint8x16_t) -> uint8x8_t {
    let x = vreinterpretq_u16_u8(b);
    let shifted = match S {
        2 => vshrq_n_u16::<6>(x),
        _ => vshrq_n_u16::<4>(x),
    };
    vmovn_u16(vorrq_u16(x, shifted))
}

/// Four floats at element `c0` of `row` (zeros if `row` is too short,
/// which the callers' shape checks rule out).
#[inline]
#[target_feature(enable = "neon")]
fn load_at(row: &[f32], c0: usize) -> float32x4_t {
    match row.get(c0..c0 + LANES).map(<&[f32; LANES]>::try_from) {
        Some(Ok(x)) => load_f32x4::<0, LANES>(x),
        _ => vdupq_n_f32(0.0),
    }
}

/// The lanes of `v`.
#[inline]
#[target_feature(enable = "neon")]
fn lanes_f32(v: float32x4_t) -> [f32; LANES] {
    let mut a = [0.0f32; LANES];
    store_f32x4::<0, LANES>(&mut a, v);
    a
}

/// A vector of the four values of `a`.
#[inline]
#[target_feature(enable = "neon")]
fn u32x4(a: [u32; 4]) -> uint32x4_t {
    // SAFETY: `a` is four readable, u32-aligned u32.
    unsafe { vld1q_u32(a.as_ptr()) }
}

/// A vector of the four values of `a`.
#[inline]
#[target_feature(enable = "neon")]
fn s32x4(a: [i32; 4]) -> int32x4_t {
    // SAFETY: `a` is four readable, i32-aligned i32.
    unsafe { vld1q_s32(a.as_ptr()) }
}

/// The bytes of `v`.
#[inline]
#[target_feature(enable = "neon")]
fn bytes16(v: uint8x16_t) -> [u8; 16] {
    let mut a = [0u8; 16];
    // SAFETY: `a` is 16 writable bytes; byte stores have no alignment
    // requirement.
    unsafe { vst1q_u8(a.as_mut_ptr(), v) };
    a
}

/// The bytes of `v`.
#[inline]
#[target_feature(enable = "neon")]
fn bytes8(v: uint8x8_t) -> [u8; 8] {
    let mut a = [0u8; 8];
    // SAFETY: `a` is 8 writable bytes; byte stores have no alignment
    // requirement.
    unsafe { vst1_u8(a.as_mut_ptr(), v) };
    a
}
