//! A naive [`Compute`]: textbook arithmetic in f64, the reference's
//! arithmetic, so the kernel's loop is checked apart from its kernels.

use super::*;

/// Textbook arithmetic in f64.
pub(crate) struct Naive;

impl Compute for Naive {
    type Error = CK;
    fn matvec(&mut self, w: &QuantMatrix<'_>, x: &[f32], out: &mut [f32]) -> Result<(), CK> {
        w.check()?;
        if x.len() != w.cols || out.len() != w.rows {
            return Err(CK::ShapeMismatch);
        }
        let rb = w.row_bytes().ok_or(CK::ShapeMismatch)?;
        let mut row = vec![0f32; w.cols];
        for (o, r) in out.iter_mut().zip(w.data.chunks_exact(rb.max(1))) {
            dequantize_row(w.dtype, r, &mut row).map_err(|_| CK::UnsupportedType)?;
            *o = row
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32;
        }
        Ok(())
    }
    fn rms_norm(&mut self, x: &mut [f32], w: &[f32], eps: f32) -> Result<(), CK> {
        if x.len() != w.len() {
            return Err(CK::ShapeMismatch);
        }
        let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
        let k = 1.0 / (ms + eps as f64).sqrt();
        x.iter_mut()
            .zip(w)
            .for_each(|(v, &w)| *v = (*v as f64 * k * w as f64) as f32);
        Ok(())
    }
    fn rope(&mut self, x: &mut [f32], hd: usize, pos: u32, base: f32) -> Result<(), CK> {
        for head in x.chunks_exact_mut(hd) {
            for (i, p) in head.chunks_exact_mut(2).enumerate() {
                let th = pos as f64 * (base as f64).powf(-(2.0 * i as f64) / hd as f64);
                let (a, b) = (p[0] as f64, p[1] as f64);
                p[0] = (a * th.cos() - b * th.sin()) as f32;
                p[1] = (a * th.sin() + b * th.cos()) as f32;
            }
        }
        Ok(())
    }
    fn attention(
        &mut self,
        q: &[f32],
        kv: &[KvChunk<'_>],
        s: AttentionShape,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        let kvd = s.kv_heads * s.head_dim;
        let keys: Vec<&[f32]> = kv.iter().flat_map(|c| c.keys.chunks_exact(kvd)).collect();
        let vals: Vec<&[f32]> = kv.iter().flat_map(|c| c.values.chunks_exact(kvd)).collect();
        if scores.len() < keys.len() {
            return Err(CK::ScratchTooSmall);
        }
        let hd = s.head_dim;
        for h in 0..s.heads {
            let off = h / (s.heads / s.kv_heads) * hd;
            let qh = &q[h * hd..(h + 1) * hd];
            let sc: Vec<f64> = keys
                .iter()
                .map(|k| {
                    qh.iter()
                        .zip(&k[off..off + hd])
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                out[h * hd + d] = (e
                    .iter()
                    .zip(&vals)
                    .map(|(p, v)| p * v[off + d] as f64)
                    .sum::<f64>()
                    / z) as f32;
            }
        }
        Ok(())
    }
    fn gated_ffn(
        &mut self,
        x: &[f32],
        b: &Bundles<'_>,
        hid: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        let d = b.hidden;
        let rb = b.dtype.row_bytes(d as u64).ok_or(CK::ShapeMismatch)? as usize;
        let bb = Bundles::bundle_bytes(b.dtype, b.down_dtype, d).ok_or(CK::ShapeMismatch)?;
        if x.len() != d || out.len() != d || bb * b.count != b.data.len() {
            return Err(CK::ShapeMismatch);
        }
        let hid = hid.get_mut(..b.count).ok_or(CK::ScratchTooSmall)?;
        let (mut g, mut u, mut dn) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
        let dot = |w: &[f32]| {
            w.iter()
                .zip(x)
                .map(|(&a, &c)| a as f64 * c as f64)
                .sum::<f64>()
        };
        let mut acc: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        for (bundle, h) in b.data.chunks_exact(bb.max(1)).zip(hid.iter_mut()) {
            let bad = |_| CK::UnsupportedType;
            dequantize_row(b.dtype, &bundle[..rb], &mut g).map_err(bad)?;
            dequantize_row(b.dtype, &bundle[rb..2 * rb], &mut u).map_err(bad)?;
            dequantize_row(b.down_dtype, &bundle[2 * rb..], &mut dn).map_err(bad)?;
            let gv = dot(&g);
            let hv = gv / (1.0 + (-gv).exp()) * dot(&u);
            *h = hv as f32;
            acc.iter_mut()
                .zip(&dn)
                .for_each(|(a, &w)| *a += hv * w as f64);
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        Ok(())
    }
    fn axpy_columns(
        &mut self,
        dtype: DType,
        cols: &[&[u8]],
        w: &[f32],
        out: &mut [f32],
    ) -> Result<(), CK> {
        if cols.len() != w.len() {
            return Err(CK::ShapeMismatch);
        }
        let mut col = vec![0f32; out.len()];
        let mut acc: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        for (c, &a) in cols.iter().zip(w) {
            dequantize_row(dtype, c, &mut col).map_err(|_| CK::UnsupportedType)?;
            acc.iter_mut()
                .zip(&col)
                .for_each(|(s, &v)| *s += a as f64 * v as f64);
        }
        out.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
        Ok(())
    }
    fn swiglu(&mut self, g: &mut [f32], u: &[f32]) -> Result<(), CK> {
        g.iter_mut().zip(u).for_each(|(g, &u)| {
            let x = *g as f64;
            *g = (x / (1.0 + (-x).exp()) * u as f64) as f32;
        });
        Ok(())
    }
    fn geglu(&mut self, g: &mut [f32], u: &[f32]) -> Result<(), CK> {
        // The tanh approximation of GELU, as Gemma's GGUF runs it.
        g.iter_mut().zip(u).for_each(|(g, &u)| {
            let x = *g as f64;
            let t = (0.797_884_560_802_865_4 * (x + 0.044_715 * x * x * x)).tanh();
            *g = (0.5 * x * (1.0 + t) * u as f64) as f32;
        });
        Ok(())
    }
    fn kv_quantize(&mut self, _: &[f32], _: KvGroups, _: KvBits, _: &mut [u8]) -> Result<(), CK> {
        Err(CK::Other)
    }
    fn kv_dequantize(&mut self, _: &[u8], _: KvGroups, _: KvBits, _: &mut [f32]) -> Result<(), CK> {
        Err(CK::Other)
    }
}
