//! KV-block quantization to 8, 4 or 2 bits per element.
//!
//! LLMS-style tolerance-aware compression stores each KV chunk at a bit
//! width picked per chunk; this module is the codec. Values are quantized
//! asymmetrically (a step and a minimum per group), grouped as
//! [`KvGroups`] says: per token (32 consecutive elements) or per channel
//! (one channel over the block's positions, KIVI's choice for keys).
//!
//! # Byte layout
//!
//! A block is `rows` positions of `channels` f32 values, position-major.
//! It is split into groups (per token: elements `32g..32g + 32` in order;
//! per channel: channel `c`'s values of positions `0..rows`, channels in
//! order), and each group of `n` elements is stored as, little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | `d`: f16 step |
//! | 2 | 2 | `m`: f16 minimum |
//! | 4 | `n · bits / 8` | codes `q_j`, `bits` each, packed LSB-first: element `j` of the group occupies bits `(j · bits) % 8 ..` of byte `j · bits / 8` |
//!
//! so a 32-element group is 36 (8-bit), 20 (4-bit) or 12 (2-bit) bytes, a
//! 16-position channel 20, 12 or 8, and element `j` decodes as
//! `d · q_j + m`.
//!
//! The encoder rounds `m` down and `d` up to f16 before computing codes, so
//! no code needs clamping and every value decodes within `d / 2` of the
//! original (plus f32 rounding).
//!
//! # Instruction sets
//!
//! [`CpuCompute`](super::CpuCompute) runs the codec with its kernels (AVX2,
//! NEON or scalar, [`quantize_with`]); every path writes the same bytes and
//! decodes the same floats. The per-group parameters ([`params`]) are
//! computed by one scalar function on every path, since there are only two
//! per group; the SIMD paths vectorize the min/max, the codes, the packing
//! and the decoding (per token across a group's elements, per channel
//! across channels, which are contiguous within a position).

use lode_kernel::compute::{ErrorKind, KvBits, KvGroups};

use super::f16::{f16_round_down, f16_round_up_nonneg, f16_to_f32};
use super::kernels::Kernels;

pub(crate) mod scalar;
#[cfg(test)]
mod tests;

/// Elements per per-token group.
pub const GROUP: usize = 32;

/// Most positions a per-channel group may span (a gather buffer on the
/// stack): 16 in a KV chunk.
pub const MAX_CHANNEL_GROUP: usize = 256;

/// Bits per element of `bits`.
pub const fn bits_of(bits: KvBits) -> usize {
    bits.bits() as usize
}

/// Bytes of one encoded group of `n` elements.
pub const fn group_bytes(n: usize, bits: KvBits) -> usize {
    4 + n * bits_of(bits) / 8
}

/// Encoded size of a block of `elems` values, `None` when it does not
/// split into `groups` (see [`KvGroups::packed_len`]).
pub const fn packed_len(elems: usize, groups: KvGroups, bits: KvBits) -> Option<usize> {
    groups.packed_len(elems, bits)
}

/// Elements per group, checked against the gather buffer.
fn group_of(elems: usize, groups: KvGroups) -> Result<usize, ErrorKind> {
    match (groups.group_len(elems), groups) {
        (Some(g), KvGroups::PerChannel { .. }) if g > MAX_CHANNEL_GROUP => {
            Err(ErrorKind::ShapeMismatch)
        }
        (Some(g), _) => Ok(g),
        (None, _) => Err(ErrorKind::ShapeMismatch),
    }
}

/// A group's stored parameters and what the encoder derives from them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// The group's header: f16 step and f16 minimum, little-endian.
    pub head: [u8; 4],
    /// The minimum as stored (rounded down to f16).
    pub m: f32,
    /// `1 / d` for the stored step `d`, 0 when `d == 0` (a constant group:
    /// every code is 0).
    pub inv: f32,
}

/// The parameters of a group whose finite values span `min..=max`.
///
/// Every path calls this with its own min and max, which agree except for
/// the sign of a zero: `min(-0.0, 0.0)` may be either zero depending on
/// the instruction and the operand order. Adding `+0.0` turns `-0.0` into
/// `+0.0` (and changes nothing else), so the stored minimum and step do
/// not depend on it.
///
/// Errors: `NonFinite` when the minimum or the step does not fit f16.
pub(crate) fn params(min: f32, max: f32, bits: KvBits) -> Result<Params, ErrorKind> {
    let (min, max) = (min + 0.0, max + 0.0);
    let levels = ((1u32 << bits_of(bits)) - 1) as f32;
    let m16 = f16_round_down(min).ok_or(ErrorKind::NonFinite)?;
    let m = f16_to_f32(m16);
    let d16 = f16_round_up_nonneg((max - m) / levels).ok_or(ErrorKind::NonFinite)?;
    let d = f16_to_f32(d16);
    let [d0, d1] = d16.to_le_bytes();
    let [m0, m1] = m16.to_le_bytes();
    Ok(Params {
        head: [d0, d1, m0, m1],
        m,
        inv: if d > 0.0 { 1.0 / d } else { 0.0 },
    })
}

/// The step and minimum stored in a group's header (`g` at least 4 bytes).
pub(crate) fn head_of(g: &[u8]) -> (f32, f32) {
    match g {
        [d0, d1, m0, m1, ..] => (
            f16_to_f32(u16::from_le_bytes([*d0, *d1])),
            f16_to_f32(u16::from_le_bytes([*m0, *m1])),
        ),
        _ => (0.0, 0.0),
    }
}

/// Copies the start of `src` over the start of `dst` (as many bytes as the
/// shorter holds).
#[inline]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn put(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

/// Writes `v` at byte `at` of `dst` (nothing if it does not fit): a store
/// of a length known at compile time, where [`put`]'s is a `memcpy` call.
#[inline]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn put_at<const N: usize>(dst: &mut [u8], at: usize, v: [u8; N]) {
    if let Some(Ok(d)) = dst.get_mut(at..at + N).map(<&mut [u8; N]>::try_from) {
        *d = v;
    }
}

/// The little-endian u32 at byte `i` of `b`, zero-padded past its end.
#[inline]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn le32(b: &[u8], i: usize) -> u32 {
    if let Some(&[b0, b1, b2, b3]) = b.get(i..i + 4) {
        return u32::from_le_bytes([b0, b1, b2, b3]);
    }
    let mut w = [0u8; 4];
    put(&mut w, b.get(i..).unwrap_or(&[]));
    u32::from_le_bytes(w)
}

/// Encodes `src` into `dst` (exactly [`packed_len`] bytes) with the scalar
/// code; [`quantize_with`] gives the same bytes faster.
///
/// Errors: `ShapeMismatch` for lengths that do not match, `NonFinite` when a
/// value is NaN or ±∞ or a group's range does not fit f16 (|x| ≳ 65504).
/// On error `dst` holds unspecified bytes.
pub fn quantize(
    src: &[f32],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    quantize_with(Kernels::Scalar, src, groups, bits, dst)
}

/// [`quantize`] with `kernels`' instruction set: the same bytes, or the
/// same error.
pub(crate) fn quantize_with(
    kernels: Kernels,
    src: &[f32],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    group_of(src.len(), groups)?;
    if packed_len(src.len(), groups, bits) != Some(dst.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    kernels.kv_quantize(src, groups, bits, dst)
}

/// Decodes `src` (exactly [`packed_len`]`(dst.len())` bytes) into `dst`
/// with the scalar code; [`dequantize_with`] gives the same floats faster.
///
/// Errors: `ShapeMismatch` for lengths that do not match.
pub fn dequantize(
    src: &[u8],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [f32],
) -> Result<(), ErrorKind> {
    dequantize_with(Kernels::Scalar, src, groups, bits, dst)
}

/// [`dequantize`] with `kernels`' instruction set: the same floats.
pub(crate) fn dequantize_with(
    kernels: Kernels,
    src: &[u8],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [f32],
) -> Result<(), ErrorKind> {
    group_of(dst.len(), groups)?;
    if packed_len(dst.len(), groups, bits) != Some(src.len()) {
        return Err(ErrorKind::ShapeMismatch);
    }
    kernels.kv_dequantize(src, groups, bits, dst);
    Ok(())
}
