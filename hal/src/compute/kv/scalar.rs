//! The portable codec: one group at a time, one element at a time.
//!
//! It defines the results: the SIMD paths must match it bit for bit, and
//! use its per-channel functions for the channels left over after their
//! last whole vector.

use lode_kernel::compute::{ErrorKind, KvBits, KvGroups};

use super::super::math;
use super::{bits_of, group_bytes, head_of, params, GROUP, MAX_CHANNEL_GROUP};

/// Encodes a block whose shape the caller checked (`dst` is exactly the
/// packed length of `src` in `groups`).
pub(crate) fn quantize(
    src: &[f32],
    groups: KvGroups,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    match groups {
        KvGroups::PerToken => {
            let out = dst.chunks_exact_mut(group_bytes(GROUP, bits));
            for (x, enc) in src.chunks_exact(GROUP).zip(out) {
                encode_group(x, bits, enc)?;
            }
        }
        KvGroups::PerChannel { channels } => {
            for c in 0..channels {
                encode_channel(src, channels, c, bits, dst)?;
            }
        }
    }
    Ok(())
}

/// Decodes a block whose shape the caller checked.
pub(crate) fn dequantize(src: &[u8], groups: KvGroups, bits: KvBits, dst: &mut [f32]) {
    match groups {
        KvGroups::PerToken => {
            let encoded = src.chunks_exact(group_bytes(GROUP, bits));
            for (enc, y) in encoded.zip(dst.chunks_exact_mut(GROUP)) {
                decode_group(enc, bits, y);
            }
        }
        KvGroups::PerChannel { channels } => {
            for c in 0..channels {
                decode_channel(src, channels, c, bits, dst);
            }
        }
    }
}

/// Encodes channel `c` of the position-major block `src` into its group
/// of the block's encoding `dst`.
pub(crate) fn encode_channel(
    src: &[f32],
    channels: usize,
    c: usize,
    bits: KvBits,
    dst: &mut [u8],
) -> Result<(), ErrorKind> {
    let n = src.len() / channels.max(1);
    let gb = group_bytes(n, bits);
    let mut buf = [0.0f32; MAX_CHANNEL_GROUP];
    let x = buf.get_mut(..n).ok_or(ErrorKind::ShapeMismatch)?;
    for (v, row) in x.iter_mut().zip(src.chunks_exact(channels)) {
        *v = row.get(c).copied().unwrap_or(0.0);
    }
    let enc = dst
        .get_mut(c * gb..c * gb + gb)
        .ok_or(ErrorKind::ShapeMismatch)?;
    encode_group(x, bits, enc)
}

/// Decodes channel `c`'s group of the block's encoding `src` into the
/// position-major block `dst`.
pub(crate) fn decode_channel(src: &[u8], channels: usize, c: usize, bits: KvBits, dst: &mut [f32]) {
    let n = dst.len() / channels.max(1);
    let gb = group_bytes(n, bits);
    let mut buf = [0.0f32; MAX_CHANNEL_GROUP];
    let (Some(y), Some(enc)) = (buf.get_mut(..n), src.get(c * gb..c * gb + gb)) else {
        return;
    };
    decode_group(enc, bits, y);
    for (&v, row) in y.iter().zip(dst.chunks_exact_mut(channels)) {
        if let Some(o) = row.get_mut(c) {
            *o = v;
        }
    }
}

/// Encodes one group `x` into `g` (`group_bytes(x.len(), bits)` bytes).
fn encode_group(x: &[f32], bits: KvBits, g: &mut [u8]) -> Result<(), ErrorKind> {
    let nb = bits_of(bits);
    let levels = (1u32 << nb) - 1;
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    for &v in x {
        if !v.is_finite() {
            return Err(ErrorKind::NonFinite);
        }
        min = min.min(v);
        max = max.max(v);
    }
    let p = params(min, max, bits)?;
    let (head, codes) = g.split_at_mut(4);
    head.copy_from_slice(&p.head);
    codes.fill(0);
    for (j, &v) in x.iter().enumerate() {
        // `v >= m`, so the product is not negative, and `(max - m) · inv`
        // is at most `levels` plus rounding: the `min` only absorbs that.
        let q = (math::rint((v - p.m) * p.inv) as u32).min(levels);
        let bit = j * nb;
        if let Some(b) = codes.get_mut(bit / 8) {
            *b |= (q << (bit % 8)) as u8;
        }
    }
    Ok(())
}

/// Decodes one group `g` into `y`.
fn decode_group(g: &[u8], bits: KvBits, y: &mut [f32]) {
    let nb = bits_of(bits);
    let mask = (1u32 << nb) - 1;
    let (d, m) = head_of(g);
    let codes = g.get(4..).unwrap_or(&[]);
    for (j, o) in y.iter_mut().enumerate() {
        let bit = j * nb;
        let byte = codes.get(bit / 8).copied().unwrap_or(0);
        let q = (u32::from(byte) >> (bit % 8)) & mask;
        // A multiply then an add, never fused: every path rounds twice.
        *o = d * q as f32 + m;
    }
}
