//! The KV-block codec with AVX2 ([`crate::compute::kv`]), bit-identical to
//! the scalar codec.
//!
//! Per token, a group's 32 elements are four vectors. Per channel, eight
//! adjacent channels share a vector (channels are contiguous within a
//! position), so each position is one load and the min/max, the codes and
//! the decoding are vertical operations; each lane then collects its
//! channel's codes into 32-bit words, which are written to the eight
//! channels' groups word by word. That is the transpose, at the cost of
//! one shift and one OR per position and eight 4-byte stores per word.
//!
//! The per-group parameters come from the scalar [`params`], and the codes
//! are the scalar ones: `(v - m) · inv` (a subtraction then a multiply),
//! rounded to nearest even (`_MM_FROUND_TO_NEAREST_INT`, as `rint`), then
//! clamped to `0..=levels`. Decoding is a multiply then an add, not an FMA,
//! as in the scalar code.

use core::arch::x86_64::*;

use lode_kernel::compute::{ErrorKind, KvBits, KvGroups};

use super::{load_f32x8, load_u8x32, store_f32x8, Token};
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
        // SAFETY: a token proves AVX2, FMA and F16C (see `Token::detect`),
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
        // SAFETY: as in `kv_quantize`: the token proves the target features.
        unsafe {
            match groups {
                KvGroups::PerToken => dequantize_tokens(src, bits, dst),
                KvGroups::PerChannel { channels } => dequantize_channels(src, channels, bits, dst),
            }
        }
    }
}

/// Channels per vector.
const LANES: usize = 8;

/// Per-token groups: four vectors each.
#[target_feature(enable = "avx2,fma,f16c")]
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
            load_f32x8::<0, GROUP>(x),
            load_f32x8::<8, GROUP>(x),
            load_f32x8::<16, GROUP>(x),
            load_f32x8::<24, GROUP>(x),
        ];
        let bad = v.map(|v| not_finite(v));
        let bad = _mm256_or_ps(_mm256_or_ps(bad[0], bad[1]), _mm256_or_ps(bad[2], bad[3]));
        if _mm256_movemask_ps(bad) != 0 {
            return Err(ErrorKind::NonFinite);
        }
        let lo = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
        let hi = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
        let p = params(hmin(lo), hmax(hi), bits)?;
        let (head, codes) = enc.split_at_mut(4);
        head.copy_from_slice(&p.head);
        let (m, inv) = (_mm256_set1_ps(p.m), _mm256_set1_ps(p.inv));
        let q = v.map(|v| codes_of(v, m, inv, levels));
        // 32 codes as bytes in element order (the packs work within 128-bit
        // lanes; the permutation restores the order).
        let b = _mm256_packus_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        match bits {
            KvBits::B8 => put_at(codes, 0, bytes32(b)),
            KvBits::B4 => {
                // Byte k = q[2k] + 16 q[2k+1] (≤ 255, so `packus` keeps it).
                let p = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001));
                let p =
                    _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
                put_at(codes, 0, bytes16(p));
            }
            KvBits::B2 => {
                // q[2k] + 4 q[2k+1] in i16 lanes, then pairs of those
                // combined with weights 1 and 16 in i32 lanes: byte k.
                let p = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x0401));
                let p = _mm256_madd_epi16(p, _mm256_set1_epi32(0x0010_0001));
                let p =
                    _mm_packs_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256::<1>(p));
                let p = _mm_packus_epi16(p, p);
                put_at(codes, 0, (_mm_cvtsi128_si64(p) as u64).to_le_bytes());
            }
        }
    }
    Ok(())
}

/// Per-token groups: 32 codes to four vectors of floats.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_tokens(src: &[u8], bits: KvBits, dst: &mut [f32]) {
    for (enc, y) in src
        .chunks_exact(group_bytes(GROUP, bits))
        .zip(dst.chunks_exact_mut(GROUP))
    {
        let Ok(y) = <&mut [f32; GROUP]>::try_from(y) else {
            continue;
        };
        let (d, m) = head_of(enc);
        let (d, m) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
        let codes = enc.get(4..).unwrap_or(&[]);
        let q: [__m256i; 4] = match bits {
            KvBits::B8 => {
                let v = match <&[u8; 32]>::try_from(codes) {
                    Ok(c) => load_u8x32::<0, 32>(c),
                    Err(_) => _mm256_setzero_si256(),
                };
                let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                [
                    _mm256_cvtepu8_epi32(lo),
                    _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(lo)),
                    _mm256_cvtepu8_epi32(hi),
                    _mm256_cvtepu8_epi32(_mm_srli_si128::<8>(hi)),
                ]
            }
            // Elements 8t..8t + 8 are the `nb` bytes at `nb · t`: lane i
            // shifts element 8t + i's bits down.
            KvBits::B4 => {
                let sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
                core::array::from_fn(|t| field(le32(codes, 4 * t), sh, 0xf))
            }
            KvBits::B2 => {
                let sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
                core::array::from_fn(|t| field(le32(codes, 2 * t), sh, 0x3))
            }
        };
        let f = |q| _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m);
        store_f32x8::<0, GROUP>(y, f(q[0]));
        store_f32x8::<8, GROUP>(y, f(q[1]));
        store_f32x8::<16, GROUP>(y, f(q[2]));
        store_f32x8::<24, GROUP>(y, f(q[3]));
    }
}

/// Per-channel groups, eight channels at a time.
#[target_feature(enable = "avx2,fma,f16c")]
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
        let mut lo = _mm256_set1_ps(f32::INFINITY);
        let mut hi = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut bad = _mm256_setzero_ps();
        for row in src.chunks_exact(channels) {
            let v = load_at(row, c0);
            bad = _mm256_or_ps(bad, not_finite(v));
            lo = _mm256_min_ps(lo, v);
            hi = _mm256_max_ps(hi, v);
        }
        if _mm256_movemask_ps(bad) != 0 {
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
        let (m, inv) = (load_f32x8::<0, LANES>(&m), load_f32x8::<0, LANES>(&inv));
        let mut acc = _mm256_setzero_si256();
        for (j, row) in src.chunks_exact(channels).enumerate() {
            let q = codes_of(load_at(row, c0), m, inv, levels);
            let s = _mm_cvtsi32_si128(((j % per_word) * nb) as i32);
            acc = _mm256_or_si256(acc, _mm256_sll_epi32(q, s));
            if (j + 1) % per_word == 0 || j + 1 == n {
                // Word w of each lane's codes: bytes 4w.. of its codes,
                // fewer than 4 when the codes end inside it.
                let off = 4 * (j / per_word);
                let len = (n * nb / 8).saturating_sub(off).min(4);
                for (i, w) in lanes_u32(acc).into_iter().enumerate() {
                    let at = (c0 + i) * gb + 4 + off;
                    let word = w.to_le_bytes();
                    if len == 4 {
                        put_at(dst, at, word);
                    } else {
                        put(dst.get_mut(at..at + len).unwrap_or(&mut []), &word);
                    }
                }
                acc = _mm256_setzero_si256();
            }
        }
        c0 += LANES;
    }
    for c in c0..channels {
        scalar::encode_channel(src, channels, c, bits, dst)?;
    }
    Ok(())
}

/// Per-channel groups, eight channels at a time.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_channels(src: &[u8], channels: usize, bits: KvBits, dst: &mut [f32]) {
    let n = dst.len() / channels.max(1);
    let nb = bits_of(bits);
    let gb = group_bytes(n, bits);
    let per_word = 32 / nb;
    let mask = _mm256_set1_epi32((1 << nb) - 1);
    let mut c0 = 0;
    while c0 + LANES <= channels {
        // The eight heads as (d, m) u16 pairs, widened by F16C (exact, as
        // the scalar `head_of`): even lanes are steps, odd lanes minimums.
        let head = |i: usize| le32(src, (c0 + i) * gb) as i32;
        let lo = _mm256_cvtph_ps(_mm_setr_epi32(head(0), head(1), head(2), head(3)));
        let hi = _mm256_cvtph_ps(_mm_setr_epi32(head(4), head(5), head(6), head(7)));
        // Deinterleave: d of lanes 0..8, then m of lanes 0..8.
        let idx_d = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let idx_m = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
        let pick = |idx| {
            let a = _mm256_permutevar8x32_ps(lo, idx);
            let b = _mm256_permutevar8x32_ps(hi, idx);
            _mm256_permute2f128_ps::<0x20>(a, b)
        };
        let (d, m) = (pick(idx_d), pick(idx_m));
        let mut words = _mm256_setzero_si256();
        for (j, row) in dst.chunks_exact_mut(channels).enumerate() {
            let s = (j % per_word) * nb;
            if s == 0 {
                // Word j / per_word of each lane's codes. Past the codes'
                // end it reads the next group's bytes (or zeros), bits that
                // no position below `n` extracts.
                let at = |i: usize| le32(src, (c0 + i) * gb + 4 + 4 * (j / per_word)) as i32;
                words = _mm256_setr_epi32(at(0), at(1), at(2), at(3), at(4), at(5), at(6), at(7));
            }
            let q = _mm256_and_si256(_mm256_srl_epi32(words, _mm_cvtsi32_si128(s as i32)), mask);
            let y = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q)), m);
            if let Some(Ok(o)) = row
                .get_mut(c0..c0 + LANES)
                .map(<&mut [f32; LANES]>::try_from)
            {
                store_f32x8::<0, LANES>(o, y);
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
#[target_feature(enable = "avx2,fma,f16c")]
fn levels_of(bits: KvBits) -> __m256 {
    _mm256_set1_ps(((1u32 << bits_of(bits)) - 1) as f32)
}

/// All-ones lanes where `v` is ±∞ or NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn not_finite(v: __m256) -> __m256 {
    let a = _mm256_andnot_ps(_mm256_set1_ps(-0.0), v);
    // Not-less-than-infinity, unordered: true for ±inf and NaN.
    _mm256_cmp_ps::<_CMP_NLT_UQ>(a, _mm256_set1_ps(f32::INFINITY))
}

/// The codes of `v`: `rint((v - m) · inv)` clamped to `0..=levels`, as the
/// scalar code computes them (its `as u32` saturates below at 0, and no
/// operand is NaN, so clamping in f32 before converting is the same).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn codes_of(v: __m256, m: __m256, inv: __m256, levels: __m256) -> __m256i {
    let t = _mm256_mul_ps(_mm256_sub_ps(v, m), inv);
    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
    let r = _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), levels);
    _mm256_cvttps_epi32(r)
}

/// Lane `i` = bits `sh[i]..sh[i] + width` of `w`, `mask` = `2^width - 1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn field(w: u32, sh: __m256i, mask: i32) -> __m256i {
    let v = _mm256_srlv_epi32(_mm256_set1_epi32(w as i32), sh);
    _mm256_and_si256(v, _mm256_set1_epi32(mask))
}

/// Smallest lane of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmin(v: __m256) -> f32 {
    let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)))
}

/// Largest lane of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// Eight floats at element `c0` of `row` (zeros if `row` is too short,
/// which the callers' shape checks rule out).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_at(row: &[f32], c0: usize) -> __m256 {
    match row.get(c0..c0 + LANES).map(<&[f32; LANES]>::try_from) {
        Some(Ok(x)) => load_f32x8::<0, LANES>(x),
        _ => _mm256_setzero_ps(),
    }
}

/// The lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes_f32(v: __m256) -> [f32; LANES] {
    let mut a = [0.0f32; LANES];
    store_f32x8::<0, LANES>(&mut a, v);
    a
}

/// The i32 lanes of `v`, as u32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lanes_u32(v: __m256i) -> [u32; LANES] {
    lanes_f32(_mm256_castsi256_ps(v)).map(f32::to_bits)
}

/// The bytes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes32(v: __m256i) -> [u8; 32] {
    let mut a = [0u8; 32];
    // SAFETY: `a` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) };
    a
}

/// The bytes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes16(v: __m128i) -> [u8; 16] {
    let mut a = [0u8; 16];
    // SAFETY: `a` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(a.as_mut_ptr().cast(), v) };
    a
}
