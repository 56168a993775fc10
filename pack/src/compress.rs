//! `lode pack --compress`: which of an image's tensors are stored coded
//! by the weight codec, and how much of them.
//!
//! Only a dense layer's FFN matrices (`blk.{L}.ffn_gate`, `ffn_up`,
//! `ffn_down`) are coded: they are most of what a small budget streams
//! every token, and each streams as a unit of its own, which the runtime
//! decodes as the ring hands it out (or once, at load, when the layer stays
//! resident). Attention spans several tensors a unit and is left raw for
//! now; the token embedding and a separate head are read by rows (a row a
//! token, the refined head rows), which a coded unit cannot serve; the
//! norms are f32, which the codec does not take.

use lode_formats::image::{ImageBuilder, TensorCodec, WriteError};

use crate::codec::{encode_with, Coding};

/// What `--compress` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Compress {
    /// Nothing: every tensor raw (the default).
    None,
    /// The f16 scales and minimums; the quantized values raw (the fast
    /// end: about 9% fewer bytes for SmolLM2's FFN, decoded at about 1.5
    /// GB/s a core).
    Floats,
    /// Every field that codes smaller (about 12% fewer, decoded at about
    /// 0.4 GB/s a core).
    All,
}

/// What coding an image's tensors did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coded {
    /// Tensors coded.
    pub tensors: usize,
    /// Their bytes raw.
    pub raw_bytes: u64,
    /// Their bytes coded.
    pub coded_bytes: u64,
}

impl Coded {
    /// Fraction of the coded tensors' raw bytes saved.
    pub fn saved(&self) -> f64 {
        1.0 - self.coded_bytes as f64 / self.raw_bytes.max(1) as f64
    }
}

/// Whether `--compress` codes tensor `name`: a dense layer's FFN matrix
/// (the caller packs dense layers only).
pub fn is_coded_tensor(name: &str) -> bool {
    name.starts_with("blk.")
        && [".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Codes the tensors of `b` that `how` selects; a tensor that would not
/// shrink stays raw.
pub fn compress(b: &mut ImageBuilder<'_>, how: Compress) -> Result<Coded, WriteError> {
    let coding = match how {
        Compress::None => return Ok(Coded::default()),
        Compress::Floats => Coding::FloatsOnly,
        Compress::All => Coding::Smallest,
    };
    let mut tensors = 0;
    let (raw_bytes, coded_bytes) = b.code_tensors(|name, dtype, data| {
        if !is_coded_tensor(name) || !TensorCodec::takes(dtype) {
            return None;
        }
        let e = encode_with(dtype, data, coding).ok()?;
        (e.bytes.len() < data.len()).then(|| {
            tensors += 1;
            e.bytes
        })
    })?;
    Ok(Coded {
        tensors,
        raw_bytes,
        coded_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_formats::image::{ArchTag, Image, ModelGeometry};
    use lode_formats::DType;
    use lode_kernel::codec::decode;
    use lode_kernel::rng::SplitMix64;

    fn q4_1_blocks(blocks: usize, seed: u64) -> Vec<u8> {
        let mut r = SplitMix64::new(seed);
        let mut out = vec![0u8; blocks * 20];
        for b in out.chunks_exact_mut(20) {
            // Scales and minimums from a narrow range, as a model's are.
            let d = 0x2400u16 + (r.next_u64() % 40) as u16;
            let m = 0xA400u16 + (r.next_u64() % 30) as u16;
            b[..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&m.to_le_bytes());
            for v in &mut b[4..] {
                *v = r.next_u64() as u8;
            }
        }
        out
    }

    /// `--compress floats` codes an FFN matrix and leaves the embedding,
    /// a norm, attention and `--compress none` alone; the coded tensor decodes to the
    /// raw bytes.
    #[test]
    fn layer_matrices_are_coded_and_decode_back() {
        let (attn, embd) = (q4_1_blocks(64 * 8, 1), q4_1_blocks(64 * 8, 2));
        let build = |how| {
            let mut b = ImageBuilder::new(ModelGeometry {
                arch: ArchTag::new("llama").unwrap(),
                layers: 0,
                hidden: 2048,
                ffn: 4,
                heads: 1,
                kv_heads: 1,
                head_dim: 64,
                vocab: 8,
                context: 64,
                rope_base: 10_000.0,
                rms_eps: 1e-5,
                fingerprint: 1,
            });
            b.add_tensor("blk.0.ffn_up.weight", DType::Q4_1, &[2048, 8], attn.clone())
                .unwrap();
            b.add_tensor("token_embd.weight", DType::Q4_1, &[2048, 8], embd.clone())
                .unwrap();
            b.add_tensor("blk.0.attn_norm.weight", DType::F32, &[4], vec![0u8; 16])
                .unwrap();
            b.add_tensor("blk.0.attn_q.weight", DType::Q4_1, &[2048, 8], embd.clone())
                .unwrap();
            let c = compress(&mut b, how).unwrap();
            (b.to_bytes().unwrap(), c)
        };
        let (plain, none) = build(Compress::None);
        assert_eq!(none, Coded::default());
        assert_eq!(Image::parse(&plain).unwrap().header().minor, 0);
        let (bytes, c) = build(Compress::Floats);
        assert_eq!(c.tensors, 1);
        assert!(c.saved() > 0.05, "{c:?}");
        let img = Image::parse(&bytes).unwrap();
        for t in img.tensors() {
            let coded = t.name == "blk.0.ffn_up.weight";
            assert_eq!(t.codec == TensorCodec::Weights, coded, "{}", t.name);
        }
        let (_, t) = img.tensor_by_name("blk.0.ffn_up.weight").unwrap();
        assert_eq!(t.length, c.coded_bytes);
        let at = t.offset as usize;
        let mut out = vec![0u8; attn.len()];
        decode(&bytes[at..at + t.length as usize], &mut out).unwrap();
        assert_eq!(out, attn);
    }
}
