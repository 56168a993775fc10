//! The tiny random model the tests run: its configuration and its
//! tensors in memory.

use super::*;

pub(super) fn tiny(tied: bool) -> LlamaConfig {
    LlamaConfig {
        layers: 2,
        hidden: 64,
        ffn: 96,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        vocab: 50,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 64,
        tied_embeddings: tied,
    }
}

/// A named tensor stored in memory.
pub(super) struct T {
    pub(super) name: String,
    pub(super) dtype: DType,
    pub(super) dims: Vec<u64>,
    pub(super) data: Vec<u8>,
    /// The values as f32 (for the reference).
    pub(super) values: Vec<f32>,
}

/// A model's tensors in memory.
pub(super) struct Src(pub(super) Vec<T>);

impl TensorSource for Src {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
        Ok(self.0.iter().find(|t| t.name == name).map(|t| RawTensor {
            dtype: t.dtype,
            dims: Dims::new(&t.dims).unwrap(),
            data: &t.data,
        }))
    }
}

impl Src {
    pub(super) fn get(&self, name: &str) -> &[f32] {
        &self.0.iter().find(|t| t.name == name).unwrap().values
    }
    pub(super) fn find_mut(&mut self, name: &str) -> &mut T {
        self.0.iter_mut().find(|t| t.name == name).unwrap()
    }
}

pub(super) fn f32_tensor(
    name: String,
    dims: &[u64],
    rng: &mut SplitMix64,
    scale: f32,
    offset: f32,
) -> T {
    let n: u64 = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| offset + scale * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0))
        .collect();
    T {
        name,
        dtype: DType::F32,
        dims: dims.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        values,
    }
}

/// A Q8_0 tensor with scale 1/16 and random codes: exactly representable.
pub(super) fn q8_tensor(name: String, dims: &[u64], rng: &mut SplitMix64) -> T {
    let n: u64 = dims.iter().product();
    let mut data = Vec::new();
    let mut values = Vec::new();
    for _ in 0..n / 32 {
        data.extend_from_slice(&0x2C00u16.to_le_bytes()); // f16 0.0625
        for _ in 0..32 {
            let q = (rng.next_u64() % 61) as i8 - 30;
            data.push(q as u8);
            values.push(q as f32 * 0.0625);
        }
    }
    T {
        name,
        dtype: DType::Q8_0,
        dims: dims.to_vec(),
        data,
        values,
    }
}

pub(super) fn model_src(c: &LlamaConfig, seed: u64) -> Src {
    let mut r = SplitMix64::new(seed);
    let (h, f, v, kvd) = (
        c.hidden as u64,
        c.ffn as u64,
        c.vocab as u64,
        c.kv_dim() as u64,
    );
    let mut t = vec![
        q8_tensor("token_embd.weight".into(), &[h, v], &mut r),
        f32_tensor("output_norm.weight".into(), &[h], &mut r, 0.2, 1.0),
    ];
    if !c.tied_embeddings {
        t.push(f32_tensor(
            "output.weight".into(),
            &[h, v],
            &mut r,
            0.3,
            0.0,
        ));
    }
    for l in 0..c.layers {
        let n = |s: &str| std::format!("blk.{l}.{s}");
        let s = 1.0 / (c.hidden as f32).sqrt();
        t.push(f32_tensor(n("attn_norm.weight"), &[h], &mut r, 0.2, 1.0));
        t.push(f32_tensor(
            n("attn_q.weight"),
            &[h, h],
            &mut r,
            2.0 * s,
            0.0,
        ));
        t.push(f32_tensor(
            n("attn_k.weight"),
            &[h, kvd],
            &mut r,
            2.0 * s,
            0.0,
        ));
        t.push(f32_tensor(n("attn_v.weight"), &[h, kvd], &mut r, s, 0.0));
        t.push(f32_tensor(n("attn_output.weight"), &[h, h], &mut r, s, 0.0));
        t.push(f32_tensor(n("ffn_norm.weight"), &[h], &mut r, 0.2, 1.0));
        t.push(f32_tensor(n("ffn_gate.weight"), &[h, f], &mut r, s, 0.0));
        t.push(f32_tensor(n("ffn_up.weight"), &[h, f], &mut r, s, 0.0));
        t.push(f32_tensor(
            n("ffn_down.weight"),
            &[f, h],
            &mut r,
            1.0 / (c.ffn as f32).sqrt(),
            0.0,
        ));
    }
    Src(t)
}
