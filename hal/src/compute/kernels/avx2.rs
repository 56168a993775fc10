//! x86_64 inner loops with AVX2, FMA and F16C.
//!
//! Every `#[target_feature]` function here is private; the only way in is a
//! method of [`Token`], and a `Token` exists only after the running CPU was
//! found to support all three extensions (and says whether AVX-512 VNNI is
//! there too, for the `vpdpbusd` flavour of the quantized products). That is
//! the whole safety argument for calling them. The remaining `unsafe` blocks are unaligned loads and
//! stores through pointers derived from fixed-size array references, with
//! offsets checked at compile time, so every access is in bounds, and two
//! register-only instructions in inline assembly (`vpdpbusd`, `vmovd`).
//!
//! Quantized products: the weights' 4/5/8-bit codes become 32 bytes, and
//! `maddubs` (u8 × i8 → pairs of i16) followed by `madd` with ones (→ 8 i32)
//! gives the block's integer dot product in 8 lanes, scaled and accumulated in
//! f32 lanes. No i16 pair can saturate: |pair| ≤ 2 · 128 · 127 = 32512.
//! With VNNI, `vpdpbusd` does both steps in one instruction.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{scalar, QType};

mod kquant;
mod kv;
use crate::compute::act::{scale_of, ActBlock};

/// Proof that the running CPU has AVX2, FMA and F16C, and whether it also
/// has AVX-512 VNNI (with VL) for the integer dot products.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    vnni: bool,
}

impl Token {
    /// A token when the CPU supports AVX2, FMA and F16C (run-time detection
    /// with `std`, the compile-time target features without).
    pub(crate) fn detect() -> Option<Token> {
        #[cfg(feature = "std")]
        let (ok, vnni) = (
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c"),
            std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx512vl"),
        );
        #[cfg(not(feature = "std"))]
        let (ok, vnni) = (
            cfg!(all(
                target_feature = "avx2",
                target_feature = "fma",
                target_feature = "f16c"
            )),
            cfg!(all(
                target_feature = "avx512vnni",
                target_feature = "avx512vl"
            )),
        );
        ok.then_some(Token { vnni })
    }

    /// Whether the VNNI flavour of the quantized products is used.
    pub(crate) fn has_vnni(self) -> bool {
        self.vnni
    }

    /// The plain AVX2 flavour of the same token (for tests that compare
    /// both flavours on one CPU, and for comparisons with AVX2-only builds
    /// of other engines).
    pub(crate) fn without_vnni(self) -> Token {
        Token { vnni: false }
    }

    /// See [`scalar::dot_q`].
    pub(crate) fn dot_q(self, t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
        if self.vnni {
            // SAFETY: `vnni` is set only when detection found AVX-512 VNNI
            // and VL besides AVX2, FMA and F16C (see `detect`).
            unsafe { vnni::dot_q(t, row, act) }
        } else {
            // SAFETY: a token proves AVX2, FMA and F16C (see `detect`), the
            // only requirement of the target-feature function.
            unsafe { plain::dot_q(t, row, act) }
        }
    }

    /// See [`scalar::matvec_q`].
    pub(crate) fn matvec_q(
        self,
        t: QType,
        data: &[u8],
        row_bytes: usize,
        act: &[ActBlock],
        out: &mut [f32],
    ) {
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::matvec_q(t, data, row_bytes, act, out) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::matvec_q(t, data, row_bytes, act, out) }
        }
    }

    /// See [`scalar::matvec_float`].
    pub(crate) fn matvec_float(
        self,
        half: bool,
        data: &[u8],
        row_bytes: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { matvec_float(half, data, row_bytes, x, out) }
    }

    /// See [`crate::compute::act::quantize_scalar`]; bit-identical results.
    pub(crate) fn quantize_act(self, x: &[f32], out: &mut [ActBlock]) -> bool {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { quantize_act(x, out) }
    }

    /// See [`scalar::dot_f32`].
    pub(crate) fn dot_f32(self, a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { dot_f32(a, b) }
    }

    /// See [`scalar::axpy_f32`].
    pub(crate) fn axpy_f32(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_f32(alpha, x, y) }
    }

    /// See [`scalar::axpy_q`].
    pub(crate) fn axpy_q(self, t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_q(t, row, alpha, y) }
    }

    /// See [`scalar::axpy4_q`].
    pub(crate) fn axpy4_q(self, t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy4_q(t, rows, alpha, y) }
    }

    /// See [`scalar::pair_map`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pair_map(
        self,
        t: QType,
        data: &[u8],
        stride: usize,
        rb: usize,
        act: &[ActBlock],
        out: &mut [f32],
        f: fn(f32, f32) -> f32,
    ) {
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::pair_map(t, data, stride, rb, act, out, f) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::pair_map(t, data, stride, rb, act, out, f) }
        }
    }

    /// See [`scalar::dot2_q`].
    pub(crate) fn dot2_q(self, t: QType, r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
        if self.vnni {
            // SAFETY: as in `dot_q`: `vnni` proves the VNNI features.
            unsafe { vnni::dot2_q(t, r0, r1, act) }
        } else {
            // SAFETY: as in `dot_q`: the token proves the target features.
            unsafe { plain::dot2_q(t, r0, r1, act) }
        }
    }

    /// See [`scalar::axpy_float`].
    pub(crate) fn axpy_float(self, half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
        // SAFETY: as in `dot_q`: the token proves the target features.
        unsafe { axpy_float(half, row, alpha, y) }
    }
}

// ---- loads and stores: the only pointer arithmetic in this module ----

/// Bytes between two prefetches: every cache line.
const PF_STRIDE: usize = 64;

/// Products over fewer bytes than this (the L1-sized tiles of a batched
/// product) are not prefetched: their rows are already in the cache.
const PF_MIN_BYTES: usize = 32 * 1024;

/// Starts fetching every 64-byte line of `b` into the cache.
///
/// A product walks two rows in lockstep; when rows are longer than a few
/// hundred bytes the two interleaved streams are too short for the hardware
/// prefetcher to learn before they end, and a cold matrix streamed at less
/// than half the bandwidth of a short-row one. Prefetching the next pair of
/// rows while this one is multiplied removes the difference.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch(b: &[u8]) {
    for line in b.chunks(PF_STRIDE) {
        // The pointer is inside `b`; a prefetch neither faults nor changes
        // any value the program can observe.
        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
    }
}

/// 16 bytes from `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x16<const N: usize>(b: &[u8; N], off: usize) -> __m128i {
    let src = b.get(off..off + 16).unwrap_or(&[0; 16]);
    // SAFETY: `src` is a 16-byte slice (a sub-slice of `b` or a zero
    // constant), and `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(src.as_ptr().cast()) }
}

/// 32 bytes at compile-time offset `K` of `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x32<const K: usize, const N: usize>(b: &[u8; N]) -> __m256i {
    const { assert!(K + 32 <= N) };
    // SAFETY: `K + 32 <= N` (checked at compile time), so the 32 bytes read
    // lie inside `b`; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().add(K).cast()) }
}

/// The 32 codes of an activation block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_act(a: &ActBlock) -> __m256i {
    // SAFETY: `a.qs` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.qs.as_ptr().cast()) }
}

/// Eight f32 at element offset `K` of `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32x8<const K: usize, const N: usize>(x: &[f32; N]) -> __m256 {
    const { assert!(K + 8 <= N) };
    // SAFETY: `K + 8 <= N` (compile time): the 8 floats lie inside `x`.
    unsafe { _mm256_loadu_ps(x.as_ptr().add(K)) }
}

/// Eight little-endian f32 at byte offset `K` of `b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32x8_bytes<const K: usize, const N: usize>(b: &[u8; N]) -> __m256 {
    const { assert!(K + 32 <= N) };
    // SAFETY: `K + 32 <= N` (compile time): the 32 bytes lie inside `b`;
    // `loadu_ps` has no alignment requirement.
    unsafe { _mm256_loadu_ps(b.as_ptr().add(K).cast()) }
}

/// Eight f16 at byte offset `K` of `b`, widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16x8<const K: usize, const N: usize>(b: &[u8; N]) -> __m256 {
    const { assert!(K + 16 <= N) };
    // SAFETY: `K + 16 <= N` (compile time): the 16 bytes lie inside `b`.
    let h = unsafe { _mm_loadu_si128(b.as_ptr().add(K).cast()) };
    _mm256_cvtph_ps(h)
}

/// Stores eight f32 at element offset `K` of `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_f32x8<const K: usize, const N: usize>(y: &mut [f32; N], v: __m256) {
    const { assert!(K + 8 <= N) };
    // SAFETY: `K + 8 <= N` (compile time): the 8 floats lie inside `y`,
    // which we borrow mutably.
    unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(K), v) }
}

// ---- helpers ----

/// Two f16 (little-endian, at `b[0..4]`) as f32: (first, second).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_pair(b: [u8; 4]) -> (f32, f32) {
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
fn f16_one(b: [u8; 2]) -> f32 {
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
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Horizontal sum of eight i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// 16 nibble bytes to 32 codes in element order: low nibbles (elements
/// 0..16) in the low 128 bits, high nibbles (16..32) in the high 128 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles<const N: usize>(b: &[u8; N], off: usize) -> __m256i {
    let v = load_u8x16(b, off);
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    _mm256_set_m128i(hi, lo)
}

/// Q5_1's fifth bits: byte `j` is `0x10` when bit `j` of `qh` is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bits(qh: u32) -> __m256i {
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
fn decode_q4_0(b: &[u8; 18]) -> (__m256i, f32, f32) {
    (nibbles(b, 2), f16_one([b[0], b[1]]), 0.0)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_q4_1(b: &[u8; 20]) -> (__m256i, f32, f32) {
    let (d, m) = f16_pair([b[0], b[1], b[2], b[3]]);
    (nibbles(b, 4), d, m)
}

/// Q5_0: unsigned codes 0..32 (the -16 is applied through `ActBlock::ds`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_q5_0(b: &[u8; 22]) -> (__m256i, f32, f32) {
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let d = f16_one([b[0], b[1]]);
    (_mm256_or_si256(nibbles(b, 6), fifth_bits(qh)), d, 0.0)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_q5_1(b: &[u8; 24]) -> (__m256i, f32, f32) {
    let (d, m) = f16_pair([b[0], b[1], b[2], b[3]]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (_mm256_or_si256(nibbles(b, 8), fifth_bits(qh)), d, m)
}

/// Q8_0: signed codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_q8_0(b: &[u8; 34]) -> (__m256i, f32, f32) {
    (load_u8x32::<2, 34>(b), f16_one([b[0], b[1]]), 0.0)
}

/// Per-block term outside the integer dot product: `-8 · d · Σa` for
/// Q4_0's offset codes, `m · Σa` for the types with a minimum, none for Q8_0.
#[inline(always)]
fn bias_q4_0(d: f32, _m: f32, a: &ActBlock) -> f32 {
    -8.0 * d * a.ds
}

#[inline(always)]
fn bias_q5_0(d: f32, _m: f32, a: &ActBlock) -> f32 {
    -16.0 * d * a.ds
}

#[inline(always)]
fn bias_min(_d: f32, m: f32, a: &ActBlock) -> f32 {
    m * a.ds
}

#[inline(always)]
fn bias_none(_d: f32, _m: f32, _a: &ActBlock) -> f32 {
    0.0
}

/// Quantized row · activation for one instruction flavour: the integer
/// block dot product is `$udot` (unsigned codes) or `$sdot` (signed codes).
/// Rows go two at a time so each activation block is loaded once for both
/// and the two accumulation chains overlap.
macro_rules! quant_kernels {
    ($name:ident, $feat:literal, $udot:ident, $sdot:ident) => {
        mod $name {
            use super::*;

            macro_rules! dots {
                ($one:ident, $two:ident, $n:literal, $decode:ident, $idot:ident, $bias:ident) => {
                    #[inline]
                    #[target_feature(enable = $feat)]
                    fn $one(row: &[u8], act: &[ActBlock]) -> f32 {
                        let mut acc = _mm256_setzero_ps();
                        let mut bias = 0.0f32;
                        for (blk, a) in row.chunks_exact($n).zip(act) {
                            let Ok(b) = <&[u8; $n]>::try_from(blk) else {
                                continue;
                            };
                            let (w, d, m) = $decode(b);
                            let p = _mm256_cvtepi32_ps($idot(w, load_act(a)));
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), p, acc);
                            bias += $bias(d, m, a);
                        }
                        hsum_ps(acc) + bias
                    }

                    #[inline]
                    #[target_feature(enable = $feat)]
                    fn $two(r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
                        let mut acc = [_mm256_setzero_ps(); 2];
                        let mut bias = [0.0f32; 2];
                        let blocks = r0.chunks_exact($n).zip(r1.chunks_exact($n));
                        for ((b0, b1), a) in blocks.zip(act) {
                            let (Ok(b0), Ok(b1)) =
                                (<&[u8; $n]>::try_from(b0), <&[u8; $n]>::try_from(b1))
                            else {
                                continue;
                            };
                            let av = load_act(a);
                            let (w0, d0, m0) = $decode(b0);
                            let (w1, d1, m1) = $decode(b1);
                            let p0 = _mm256_cvtepi32_ps($idot(w0, av));
                            let p1 = _mm256_cvtepi32_ps($idot(w1, av));
                            acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * a.d), p0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * a.d), p1, acc[1]);
                            bias[0] += $bias(d0, m0, a);
                            bias[1] += $bias(d1, m1, a);
                        }
                        (hsum_ps(acc[0]) + bias[0], hsum_ps(acc[1]) + bias[1])
                    }
                };
            }

            dots!(dot_q4_0, dot2_q4_0, 18, decode_q4_0, $udot, bias_q4_0);
            dots!(dot_q4_1, dot2_q4_1, 20, decode_q4_1, $udot, bias_min);
            dots!(dot_q5_0, dot2_q5_0, 22, decode_q5_0, $udot, bias_q5_0);
            dots!(dot_q5_1, dot2_q5_1, 24, decode_q5_1, $udot, bias_min);
            // Q4_K in this flavour; Q6_K has one (AVX2) loop for both.
            use super::kquant::$name::{dot2_q4_k, dot_q4_k};
            use super::kquant::{dot2_q6_k, dot_q6_k};
            dots!(dot_q8_0, dot2_q8_0, 34, decode_q8_0, $sdot, bias_none);

            #[target_feature(enable = $feat)]
            pub(super) fn dot_q(t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
                match t {
                    QType::Q4_0 => dot_q4_0(row, act),
                    QType::Q4_1 => dot_q4_1(row, act),
                    QType::Q5_0 => dot_q5_0(row, act),
                    QType::Q5_1 => dot_q5_1(row, act),
                    QType::Q8_0 => dot_q8_0(row, act),
                    QType::Q4_K => dot_q4_k(row, act),
                    QType::Q6_K => dot_q6_k(row, act),
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn dot2_q(t: QType, r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
                match t {
                    QType::Q4_0 => dot2_q4_0(r0, r1, act),
                    QType::Q4_1 => dot2_q4_1(r0, r1, act),
                    QType::Q5_0 => dot2_q5_0(r0, r1, act),
                    QType::Q5_1 => dot2_q5_1(r0, r1, act),
                    QType::Q8_0 => dot2_q8_0(r0, r1, act),
                    QType::Q4_K => dot2_q4_k(r0, r1, act),
                    QType::Q6_K => dot2_q6_k(r0, r1, act),
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn pair_map(
                t: QType,
                data: &[u8],
                stride: usize,
                rb: usize,
                act: &[ActBlock],
                out: &mut [f32],
                f: fn(f32, f32) -> f32,
            ) {
                // Bundles of a streamed or resident layer are cold: fetch the
                // next bundle's two rows while this one is multiplied, as
                // `matvec_q` does for row pairs.
                let far = data.len() >= PF_MIN_BYTES;
                macro_rules! pairs {
                    ($two:ident) => {{
                        let mut ahead = data.chunks_exact(stride).skip(1);
                        for (o, b) in out.iter_mut().zip(data.chunks_exact(stride)) {
                            if let Some(next) = ahead.next().filter(|_| far) {
                                prefetch(next.get(..2 * rb).unwrap_or(next));
                            }
                            let (r0, rest) = b.split_at(rb.min(b.len()));
                            let r1 = rest.get(..rb).unwrap_or(&[]);
                            let (y0, y1) = $two(r0, r1, act);
                            *o = f(y0, y1);
                        }
                    }};
                }
                match t {
                    QType::Q4_0 => pairs!(dot2_q4_0),
                    QType::Q4_1 => pairs!(dot2_q4_1),
                    QType::Q5_0 => pairs!(dot2_q5_0),
                    QType::Q5_1 => pairs!(dot2_q5_1),
                    QType::Q8_0 => pairs!(dot2_q8_0),
                    QType::Q4_K => pairs!(dot2_q4_k),
                    QType::Q6_K => pairs!(dot2_q6_k),
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn matvec_q(
                t: QType,
                data: &[u8],
                row_bytes: usize,
                act: &[ActBlock],
                out: &mut [f32],
            ) {
                // One loop per type so the dot products inline into it.
                macro_rules! rows {
                    ($one:ident, $two:ident) => {{
                        let mut outs = out.chunks_exact_mut(2);
                        let mut pairs = data.chunks_exact(2 * row_bytes);
                        // Small (cache-resident) tiles gain nothing from it.
                        let far = data.len() >= PF_MIN_BYTES;
                        let mut ahead = data.chunks_exact(2 * row_bytes).skip(1);
                        for (o, rr) in (&mut outs).zip(&mut pairs) {
                            if let Some(next) = ahead.next().filter(|_| far) {
                                prefetch(next);
                            }
                            let (r0, r1) = rr.split_at(row_bytes);
                            let (y0, y1) = $two(r0, r1, act);
                            if let [a, b] = o {
                                *a = y0;
                                *b = y1;
                            }
                        }
                        let rest = outs.into_remainder();
                        for (o, row) in rest
                            .iter_mut()
                            .zip(pairs.remainder().chunks_exact(row_bytes))
                        {
                            *o = $one(row, act);
                        }
                    }};
                }
                match t {
                    QType::Q4_0 => rows!(dot_q4_0, dot2_q4_0),
                    QType::Q4_1 => rows!(dot_q4_1, dot2_q4_1),
                    QType::Q5_0 => rows!(dot_q5_0, dot2_q5_0),
                    QType::Q5_1 => rows!(dot_q5_1, dot2_q5_1),
                    QType::Q8_0 => rows!(dot_q8_0, dot2_q8_0),
                    QType::Q4_K => rows!(dot_q4_k, dot2_q4_k),
                    QType::Q6_K => rows!(dot_q6_k, dot2_q6_k),
                }
            }
        }
    };
}

/// Eight i32 lanes of the block dot product of unsigned codes `w` (< 128)
/// with activation codes `a`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn udot_avx2(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

/// Eight i32 lanes of the block dot product of signed codes `w` with
/// activation codes `a`: |w| × (a · sign(w)) keeps `maddubs`' first operand
/// unsigned.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sdot_avx2(w: __m256i, a: __m256i) -> __m256i {
    udot_avx2(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

/// As [`udot_avx2`], in one `vpdpbusd`.
///
/// Inline assembly rather than `_mm256_dpbusd_epi32`, which is stable only
/// since Rust 1.89 (the workspace supports 1.86).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn udot_vnni(w: __m256i, a: __m256i) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    // SAFETY: `vpdpbusd` reads the two vectors and accumulates into `acc`,
    // all in registers the compiler assigned; it touches no memory, stack or
    // flags. The instruction exists: this function is reachable only through
    // a `Token` whose `vnni` flag detection set (AVX-512 VNNI and VL).
    unsafe {
        core::arch::asm!(
            "vpdpbusd {acc}, {w}, {a}",
            acc = inout(ymm_reg) acc,
            w = in(ymm_reg) w,
            a = in(ymm_reg) a,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// As [`sdot_avx2`], in one `vpdpbusd` (which cannot saturate).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn sdot_vnni(w: __m256i, a: __m256i) -> __m256i {
    udot_vnni(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
}

quant_kernels!(plain, "avx2,fma,f16c", udot_avx2, sdot_avx2);
quant_kernels!(
    vnni,
    "avx2,fma,f16c,avx512vnni,avx512vl",
    udot_vnni,
    sdot_vnni
);

// ---- float rows ----

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
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
fn dot_f16_bytes(row: &[u8], x: &[f32]) -> f32 {
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
fn matvec_float(half: bool, data: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = if half {
            dot_f16_bytes(row, x)
        } else {
            dot_f32_bytes(row, x)
        };
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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
fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
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

/// 32 code bytes as four vectors of eight f32 (`signed` selects sign or
/// zero extension).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_codes(codes: __m256i, signed: bool) -> [__m256; 4] {
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
fn abias_q4_0(alpha: f32, d: f32, _m: f32) -> f32 {
    -8.0 * alpha * d
}

#[inline(always)]
fn abias_q5_0(alpha: f32, d: f32, _m: f32) -> f32 {
    -16.0 * alpha * d
}

#[inline(always)]
fn abias_min(alpha: f32, _d: f32, m: f32) -> f32 {
    alpha * m
}

#[inline(always)]
fn abias_none(_alpha: f32, _d: f32, _m: f32) -> f32 {
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
fn axpy_q(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
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
fn axpy4_q(t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
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
fn axpy_float(half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
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

// ---- activation quantization ----

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_act(x: &[f32], out: &mut [ActBlock]) -> bool {
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
