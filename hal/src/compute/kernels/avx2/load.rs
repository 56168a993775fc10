//! Loads, stores and block decoding for the AVX2 kernels: the only
//! pointer arithmetic of [`super`] (each unsafe block says why it is in
//! bounds), and the quantized blocks' codes, scale and minimum as vectors.

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::*;

// ---- loads and stores: the only pointer arithmetic in this module ----

/// Bytes between two prefetches: every cache line.
pub(super) const PF_STRIDE: usize = 64;

/// Products over fewer bytes than this (the L1-sized tiles of a batched
/// product) are not prefetched: their rows are already in the cache.
pub(super) const PF_MIN_BYTES: usize = 32 * 1024;

/// Starts fetching every 64-byte line of `b` into the cache.
///
/// A product walks two rows in lockstep; when rows are longer than a few
/// hundred bytes the two interleaved streams are too short for the hardware
/// prefetcher to learn before they end, and a cold matrix streamed at less
/// than half the bandwidth of a short-row one. Prefetching the next pair of
/// rows while this one is multiplied removes the difference.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn prefetch(b: &[u8]) {
    for line in b.chunks(PF_STRIDE) {
        // The pointer is inside `b`; a prefetch neither faults nor changes
        // any value the program can observe.
        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
    }
}

/// 16 bytes from `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_u8x16<const N: usize>(b: &[u8; N], off: usize) -> __m128i {
    let src = b.get(off..off + 16).unwrap_or(&[0; 16]);
    // SAFETY: `src` is a 16-byte slice (a sub-slice of `b` or a zero
    // constant), and `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(src.as_ptr().cast()) }
}

/// 32 bytes at compile-time offset `K` of `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_u8x32<const K: usize, const N: usize>(b: &[u8; N]) -> __m256i {
    const { assert!(K + 32 <= N) };
    // SAFETY: `K + 32 <= N` (checked at compile time), so the 32 bytes read
    // lie inside `b`; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().add(K).cast()) }
}

/// The 32 codes of an activation block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_act(a: &ActBlock) -> __m256i {
    // SAFETY: `a.qs` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) }
}

/// Eight f32 at element offset `K` of `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_f32x8<const K: usize, const N: usize>(x: &[f32; N]) -> __m256 {
    const { assert!(K + 8 <= N) };
    // SAFETY: `K + 8 <= N` (compile time): the 8 floats lie inside `x`.
    unsafe { _mm256_loadu_ps(x.as_ptr().add(K)) }
}

/// Eight little-endian f32 at byte offset `K` of `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_f32x8_bytes<const K: usize, const N: usize>(b: &[u8; N]) -> __m256 {
    const { assert!(K + 32 <= N) };
    // SAFETY: `K + 32 <= N` (compile time): the 32 bytes lie inside `b`;
    // `loadu_ps` has no alignment requirement.
    unsafe { _mm256_loadu_ps(b.as_ptr().add(K).cast()) }
}

/// Eight f16 at byte offset `K` of `b`, widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load_f16x8<const K: usize, const N: usize>(b: &[u8; N]) -> __m256 {
    const { assert!(K + 16 <= N) };
    // SAFETY: `K + 16 <= N` (compile time): the 16 bytes lie inside `b`.
    let h = unsafe { _mm_loadu_si128(b.as_ptr().add(K).cast()) };
    _mm256_cvtph_ps(h)
}

/// Stores eight f32 at element offset `K` of `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn store_f32x8<const K: usize, const N: usize>(y: &mut [f32; N], v: __m256) {
    const { assert!(K + 8 <= N) };
    // SAFETY: `K + 8 <= N` (compile time): the 8 floats lie inside `y`,
    // which we borrow mutably.
    unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(K), v) }
}

// ---- helpers ----

/// Two f16 (little-endian, at `b[0..4]`) as f32: (first, second).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_pair(b: [u8; 4]) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(b)));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// One f16 as f32.
///
/// The f16 bits reach the vector register through `vmovd`, which writes
/// the whole register. Written as intrinsics, the compiler turned the
/// (zero-extended) move into `vpinsrw`, which merges into whatever register
/// it picks for the unused lanes, and it picked the loop's bias
/// accumulator: every block's scale decoding then waited for the previous
/// block's, halving the speed of the Q4_0, Q5_0 and Q8_0 products.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_one(b: [u8; 2]) -> f32 {
    let bits = u32::from(u16::from_le_bytes(b));
    let v: __m128i;
    // SAFETY: `vmovd` copies a general-purpose register into the low 32
    // bits of a vector register and zeroes the rest; it touches no memory,
    // stack or flags, and every x86_64 CPU with AVX (which the token
    // proves) has it.
    unsafe {
        core::arch::asm!(
            "vmovd {v}, {r:e}",
            v = out(xmm_reg) v,
            r = in(reg) bits,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    _mm_cvtss_f32(_mm_cvtph_ps(v))
}

/// Horizontal sum of eight f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Horizontal sum of eight i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// 16 nibble bytes to 32 codes in element order: low nibbles (elements
/// 0..16) in the low 128 bits, high nibbles (16..32) in the high 128 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles<const N: usize>(b: &[u8; N], off: usize) -> __m256i {
    let v = load_u8x16(b, off);
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    _mm256_set_m128i(hi, lo)
}

/// Q5_1's fifth bits: byte `j` is `0x10` when bit `j` of `qh` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fifth_bits(qh: u32) -> __m256i {
    let v = _mm256_set1_epi32(qh as i32);
    // Byte j takes byte j/8 of qh (the shuffle stays within 128-bit lanes,
    // and both lanes hold all four bytes of qh).
    let spread = _mm256_shuffle_epi8(
        v,
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let on = _mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel);
    _mm256_and_si256(on, _mm256_set1_epi8(0x10))
}

// ---- block decoders: (codes as bytes, scale, minimum or offset) ----

/// Q4_0: unsigned codes 0..16 (the -8 is applied through `ActBlock::ds`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q4_0(b: &[u8; 18]) -> (__m256i, f32, f32) {
    (nibbles(b, 2), f16_one([b[0], b[1]]), 0.0)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q4_1(b: &[u8; 20]) -> (__m256i, f32, f32) {
    let (d, m) = f16_pair([b[0], b[1], b[2], b[3]]);
    (nibbles(b, 4), d, m)
}

/// Q5_0: unsigned codes 0..32 (the -16 is applied through `ActBlock::ds`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q5_0(b: &[u8; 22]) -> (__m256i, f32, f32) {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let d = f16_one([b[0], b[1]]);
    (_mm256_or_si256(nibbles(b, 6), fifth_bits(qh)), d, 0.0)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q5_1(b: &[u8; 24]) -> (__m256i, f32, f32) {
    let (d, m) = f16_pair([b[0], b[1], b[2], b[3]]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (_mm256_or_si256(nibbles(b, 8), fifth_bits(qh)), d, m)
}

/// Q8_0: signed codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn decode_q8_0(b: &[u8; 34]) -> (__m256i, f32, f32) {
    (load_u8x32::<2, 34>(b), f16_one([b[0], b[1]]), 0.0)
}
