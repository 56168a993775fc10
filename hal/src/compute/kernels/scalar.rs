//! Portable inner loops: the reference the SIMD paths are tested against,
//! and the path on targets without SIMD (or with `force_scalar`).
//!
//! Quantized dot products compute each block's integer sum exactly, then
//! accumulate `scale · sum` in f32 in block order; the NEON path does the same
//! operations in the same order, so it matches this one bit for bit, while
//! AVX2 accumulates lanes in a different order (equal up to float rounding).

pub(crate) mod kquant;

use super::QType;
use crate::compute::act::ActBlock;
use crate::compute::f16::f16_le;
use crate::compute::quant::{f16_at, QK};

/// Integer dot product of 32 codes with a block's codes (a plain loop the
/// compiler vectorizes with whatever the baseline target offers).
#[inline(always)]
fn idot(w: &[i8; QK], a: &ActBlock) -> i32 {
    let mut s = 0i32;
    for (&x, &y) in w.iter().zip(&a.qs) {
        s += i32::from(x) * i32::from(y);
    }
    s
}

/// 16 nibble bytes as 32 codes (low nibbles are elements 0..16), plus
/// `16 · bit_j(qh)` for Q5_0's and Q5_1's fifth bits.
#[inline(always)]
fn unpack(qs: &[u8; 16], qh: u32) -> [i8; QK] {
    let mut w = [0i8; QK];
    let (lo, hi) = w.split_at_mut(16);
    for (j, ((l, h), &b)) in lo.iter_mut().zip(hi).zip(qs).enumerate() {
        *l = ((b & 0x0f) | ((((qh >> j) & 1) as u8) << 4)) as i8;
        *h = ((b >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4)) as i8;
    }
    w
}

/// The `N` bytes of `blk` at `off`, if there are that many.
#[inline(always)]
fn arr<const N: usize>(blk: &[u8], off: usize) -> Option<&[u8; N]> {
    blk.get(off..off + N)
        .and_then(|s| <&[u8; N]>::try_from(s).ok())
}

/// One block's contribution to a quantized row · activation dot product
/// (32-element types; the K-quants are in [`kquant`]).
#[inline(always)]
pub(crate) fn block_dot(t: QType, blk: &[u8], a: &ActBlock) -> f32 {
    let d = f16_at(blk, 0) * a.d;
    match t {
        QType::Q8_0 => {
            let Some(qs) = arr::<QK>(blk, 2) else {
                return 0.0;
            };
            let w = qs.map(|b| b as i8);
            d * idot(&w, a) as f32
        }
        QType::Q4_0 => {
            let Some(qs) = arr::<16>(blk, 2) else {
                return 0.0;
            };
            let s = idot(&unpack(qs, 0), a);
            d * (s - 8 * a.sum) as f32
        }
        QType::Q5_0 => {
            let (Some(qh), Some(qs)) = (arr::<4>(blk, 2), arr::<16>(blk, 6)) else {
                return 0.0;
            };
            let s = idot(&unpack(qs, u32::from_le_bytes(*qh)), a);
            d * (s - 16 * a.sum) as f32
        }
        QType::Q4_1 => {
            let Some(qs) = arr::<16>(blk, 4) else {
                return 0.0;
            };
            let m = f16_at(blk, 2);
            d * idot(&unpack(qs, 0), a) as f32 + m * a.ds
        }
        QType::Q5_1 => {
            let (Some(qh), Some(qs)) = (arr::<4>(blk, 4), arr::<16>(blk, 8)) else {
                return 0.0;
            };
            let m = f16_at(blk, 2);
            let w = unpack(qs, u32::from_le_bytes(*qh));
            d * idot(&w, a) as f32 + m * a.ds
        }
        // Whole super-blocks go through `dot_q`; a lone 32-element block of
        // a K-quant means nothing.
        QType::Q4_K | QType::Q6_K => 0.0,
    }
}

/// Quantized row (whole blocks) · quantized activation.
pub(crate) fn dot_q(t: QType, row: &[u8], act: &[ActBlock]) -> f32 {
    match t {
        QType::Q4_K => return kquant::dot_q4_k(row, act),
        QType::Q6_K => return kquant::dot_q6_k(row, act),
        _ => {}
    }
    let mut acc = 0.0f32;
    for (blk, a) in row.chunks_exact(t.block_bytes()).zip(act) {
        acc += block_dot(t, blk, a);
    }
    acc
}

/// Two quantized rows · the same activation.
pub(crate) fn dot2_q(t: QType, r0: &[u8], r1: &[u8], act: &[ActBlock]) -> (f32, f32) {
    (dot_q(t, r0, act), dot_q(t, r1, act))
}

/// For consecutive records of `stride` bytes that start with two rows of
/// `rb` bytes: `out[i] = f(row0_i · act, row1_i · act)`.
pub(crate) fn pair_map(
    t: QType,
    data: &[u8],
    stride: usize,
    rb: usize,
    act: &[ActBlock],
    out: &mut [f32],
    f: fn(f32, f32) -> f32,
) {
    for (o, b) in out.iter_mut().zip(data.chunks_exact(stride)) {
        let (r0, rest) = b.split_at(rb.min(b.len()));
        let r1 = rest.get(..rb).unwrap_or(&[]);
        let (y0, y1) = dot2_q(t, r0, r1, act);
        *o = f(y0, y1);
    }
}

/// `out[r] = row_r · act` over consecutive rows of `row_bytes`.
pub(crate) fn matvec_q(t: QType, data: &[u8], row_bytes: usize, act: &[ActBlock], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = dot_q(t, row, act);
    }
}

/// Sum of eight lanes, pairwise.
#[inline(always)]
fn hsum8(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// `Σ elem(row, k) · x[k]` with eight independent accumulators (a shape the
/// compiler vectorizes), `elem` decoding element `k` of an 8-element group.
#[inline(always)]
fn dot_groups<const B: usize>(row: &[u8], x: &[f32], elem: impl Fn(&[u8], usize) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut rc = row.chunks_exact(8 * B);
    let mut xc = x.chunks_exact(8);
    for (r, v) in (&mut rc).zip(&mut xc) {
        for (k, (a, &xv)) in acc.iter_mut().zip(v).enumerate() {
            *a += elem(r, k) * xv;
        }
    }
    let mut tail = 0.0f32;
    for (k, (_, &xv)) in rc
        .remainder()
        .chunks_exact(B)
        .zip(xc.remainder())
        .enumerate()
    {
        tail += elem(rc.remainder(), k) * xv;
    }
    hsum8(acc) + tail
}

/// Element `k` of little-endian f32 bytes.
#[inline(always)]
fn f32_elem(r: &[u8], k: usize) -> f32 {
    match r.get(4 * k..4 * k + 4) {
        Some(&[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        _ => 0.0,
    }
}

/// Element `k` of little-endian f16 bytes.
#[inline(always)]
fn f16_elem(r: &[u8], k: usize) -> f32 {
    match r.get(2 * k..2 * k + 2) {
        Some(&[a, b]) => f16_le([a, b]),
        _ => 0.0,
    }
}

/// Little-endian f32 row bytes · `x`.
pub(crate) fn dot_f32_bytes(row: &[u8], x: &[f32]) -> f32 {
    dot_groups::<4>(row, x, f32_elem)
}

/// Little-endian f16 row bytes · `x`.
pub(crate) fn dot_f16_bytes(row: &[u8], x: &[f32]) -> f32 {
    dot_groups::<2>(row, x, f16_elem)
}

/// `out[r] = row_r · x` for f32 (`half == false`) or f16 rows.
pub(crate) fn matvec_float(half: bool, data: &[u8], row_bytes: usize, x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
        *o = if half {
            dot_f16_bytes(row, x)
        } else {
            dot_f32_bytes(row, x)
        };
    }
}

/// `a · b` over the shorter length.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (x, y) in (&mut ac).zip(&mut bc) {
        for ((s, &p), &q) in acc.iter_mut().zip(x).zip(y) {
            *s += p * q;
        }
    }
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(p, q)| p * q)
        .sum();
    hsum8(acc) + tail
}

/// `y += alpha · x`.
pub(crate) fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += alpha * v;
    }
}

/// `y += alpha · dequantize(row)` for a quantized row of `y.len()` elements.
pub(crate) fn axpy_q(t: QType, row: &[u8], alpha: f32, y: &mut [f32]) {
    if matches!(t, QType::Q4_K | QType::Q6_K) {
        return kquant::axpy_k(t, row, alpha, y);
    }
    for (ys, blk) in y
        .chunks_exact_mut(QK)
        .zip(row.chunks_exact(t.block_bytes()))
    {
        let ad = alpha * f16_at(blk, 0);
        let (w, bias) = match t {
            QType::Q8_0 => match arr::<QK>(blk, 2) {
                Some(qs) => (qs.map(|b| b as i8), 0.0),
                None => continue,
            },
            QType::Q4_0 => match arr::<16>(blk, 2) {
                Some(qs) => (unpack(qs, 0), -8.0 * ad),
                None => continue,
            },
            QType::Q5_0 => match (arr::<4>(blk, 2), arr::<16>(blk, 6)) {
                (Some(qh), Some(qs)) => (unpack(qs, u32::from_le_bytes(*qh)), -16.0 * ad),
                _ => continue,
            },
            QType::Q4_1 => match arr::<16>(blk, 4) {
                Some(qs) => (unpack(qs, 0), alpha * f16_at(blk, 2)),
                None => continue,
            },
            QType::Q5_1 => match (arr::<4>(blk, 4), arr::<16>(blk, 8)) {
                (Some(qh), Some(qs)) => {
                    (unpack(qs, u32::from_le_bytes(*qh)), alpha * f16_at(blk, 2))
                }
                _ => continue,
            },
            QType::Q4_K | QType::Q6_K => continue,
        };
        for (o, &q) in ys.iter_mut().zip(&w) {
            *o += ad * f32::from(q) + bias;
        }
    }
}

/// `y += Σ_r alpha[r] · dequantize(rows[r])`, row by row.
pub(crate) fn axpy4_q(t: QType, rows: [&[u8]; 4], alpha: [f32; 4], y: &mut [f32]) {
    for (row, a) in rows.into_iter().zip(alpha) {
        axpy_q(t, row, a, y);
    }
}

/// `y += alpha · row` for an f32 (`half == false`) or f16 row.
pub(crate) fn axpy_float(half: bool, row: &[u8], alpha: f32, y: &mut [f32]) {
    if half {
        for (o, b) in y.iter_mut().zip(row.chunks_exact(2)) {
            *o += alpha * f16_le([b[0], b[1]]);
        }
    } else {
        for (o, b) in y.iter_mut().zip(row.chunks_exact(4)) {
            *o += alpha * f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}
