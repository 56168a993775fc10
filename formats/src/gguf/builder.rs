//! A test-only GGUF writer: builds small files, valid or deliberately broken.
//!
//! Written independently of the reader (it shares no code with it) so the
//! reader's tests check it against a second account of the format.

extern crate std;

use std::string::String;
use std::vec;
use std::vec::Vec;

use crate::DType;

/// A metadata value to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Enc {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(u8),
    Str(String),
    /// Element type code, then elements (each must have that type).
    Arr(u32, Vec<Enc>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Enc {
    pub fn str(s: &str) -> Enc {
        Enc::Str(String::from(s))
    }

    pub fn code(&self) -> u32 {
        match self {
            Enc::U8(_) => 0,
            Enc::I8(_) => 1,
            Enc::U16(_) => 2,
            Enc::I16(_) => 3,
            Enc::U32(_) => 4,
            Enc::I32(_) => 5,
            Enc::F32(_) => 6,
            Enc::Bool(_) => 7,
            Enc::Str(_) => 8,
            Enc::Arr(..) => 9,
            Enc::U64(_) => 10,
            Enc::I64(_) => 11,
            Enc::F64(_) => 12,
        }
    }

    /// The value's bytes, without its type code.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Enc::U8(v) => out.push(*v),
            Enc::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::Bool(v) => out.push(*v),
            Enc::Str(s) => put_str(out, s),
            Enc::Arr(code, items) => {
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            Enc::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Enc::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// One tensor to write.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub dims: Vec<u64>,
    pub code: u32,
    pub data: Vec<u8>,
    /// Offset relative to the data section; `None` = next aligned position.
    pub offset: Option<u64>,
}

/// Where the parts of a built file are.
#[derive(Debug, Clone)]
pub struct Layout {
    pub bytes: Vec<u8>,
    /// Offset of the first tensor info.
    pub tensor_table: usize,
    /// Offset of the data section.
    pub data_start: usize,
}

#[derive(Debug, Clone)]
pub struct Builder {
    pub magic: [u8; 4],
    pub version: u32,
    /// Written as the first entry when set.
    pub alignment: Option<u32>,
    pub kvs: Vec<(String, Enc)>,
    pub tensors: Vec<Spec>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            magic: *b"GGUF",
            version: 3,
            alignment: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl Builder {
    pub fn kv(mut self, key: &str, value: Enc) -> Self {
        self.kvs.push((String::from(key), value));
        self
    }

    /// A tensor of a known type, its data generated from `seed`.
    pub fn tensor(self, name: &str, dims: &[u64], dtype: DType, seed: u64) -> Self {
        let elems: u64 = dims.iter().product();
        let len = dtype.row_bytes(elems).expect("whole blocks") as usize;
        let data = noise(seed, len, dtype);
        self.raw_tensor(name, dims, dtype.code(), data, None)
    }

    pub fn raw_tensor(
        mut self,
        name: &str,
        dims: &[u64],
        code: u32,
        data: Vec<u8>,
        offset: Option<u64>,
    ) -> Self {
        self.tensors.push(Spec {
            name: String::from(name),
            dims: dims.to_vec(),
            code,
            data,
            offset,
        });
        self
    }

    pub fn align(&self) -> u64 {
        u64::from(self.alignment.unwrap_or(32)).max(1)
    }

    pub fn build(&self) -> Vec<u8> {
        self.layout().bytes
    }

    pub fn layout(&self) -> Layout {
        let align = self.align();
        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let n_kv = self.kvs.len() + usize::from(self.alignment.is_some());
        out.extend_from_slice(&(n_kv as u64).to_le_bytes());
        if let Some(a) = self.alignment {
            put_str(&mut out, "general.alignment");
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&a.to_le_bytes());
        }
        for (key, value) in &self.kvs {
            put_str(&mut out, key);
            out.extend_from_slice(&value.code().to_le_bytes());
            value.encode(&mut out);
        }

        let tensor_table = out.len();
        let mut next = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            let off = t.offset.unwrap_or_else(|| next.div_ceil(align) * align);
            offsets.push(off);
            next = off + t.data.len() as u64;
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.code.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        if !self.tensors.is_empty() {
            out.resize(data_start as usize, 0);
        }
        for (t, off) in self.tensors.iter().zip(offsets) {
            if t.data.is_empty() {
                // Nothing to place (tests use this for offsets far outside).
                continue;
            }
            let at = (data_start + off) as usize;
            if out.len() < at + t.data.len() {
                out.resize(at + t.data.len(), 0);
            }
            out[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        Layout {
            bytes: out,
            tensor_table,
            data_start: data_start as usize,
        }
    }
}

/// Deterministic bytes for tensor data. Floats get finite values and the f16
/// scales of quantized blocks small finite ones, so decoded values are finite.
pub fn noise(seed: u64, len: usize, dtype: DType) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    let mut out = vec![0u8; len];
    match dtype {
        DType::F32 => {
            for c in out.chunks_exact_mut(4) {
                let x = (next() % 2000) as f32 / 1000.0 - 1.0;
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        DType::F16 => {
            for c in out.chunks_exact_mut(2) {
                let x = (next() % 2000) as f32 / 1000.0 - 1.0;
                c.copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
            }
        }
        _ => {
            for b in out.iter_mut() {
                *b = next() as u8;
            }
            let block = dtype.block_bytes();
            let halves = match dtype {
                DType::Q4_1 | DType::Q5_1 => 2,
                _ => 1,
            };
            for blk in out.chunks_exact_mut(block) {
                for h in 0..halves {
                    let x = (next() % 100) as f32 / 1000.0;
                    blk[2 * h..2 * h + 2].copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
                }
            }
        }
    }
    out
}

/// Hyper-parameters of the tiny llama model `llama_builder` writes.
pub const TINY_LAYERS: u32 = 2;
pub const TINY_EMBD: u64 = 64;
pub const TINY_FF: u64 = 96;
pub const TINY_HEADS: u32 = 4;
pub const TINY_KV_HEADS: u32 = 2;
pub const TINY_VOCAB: u64 = 8;

/// A small but complete llama model: every key `check_llama` wants, every
/// tensor with its shape, in SmolLM2's mix of types (F32 norms, Q8_0
/// embeddings, Q4_1 matrices), tied embeddings.
pub fn llama_builder() -> Builder {
    let tokens: Vec<Enc> = (0..TINY_VOCAB)
        .map(|i| Enc::Str(std::format!("tok{i}")))
        .collect();
    let mut b = Builder::default()
        .kv("general.architecture", Enc::str("llama"))
        .kv("general.name", Enc::str("tiny"))
        .kv("llama.block_count", Enc::U32(TINY_LAYERS))
        .kv("llama.context_length", Enc::U32(128))
        .kv("llama.embedding_length", Enc::U32(TINY_EMBD as u32))
        .kv("llama.feed_forward_length", Enc::U32(TINY_FF as u32))
        .kv("llama.attention.head_count", Enc::U32(TINY_HEADS))
        .kv("llama.attention.head_count_kv", Enc::U32(TINY_KV_HEADS))
        .kv("llama.rope.freq_base", Enc::F32(100_000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", Enc::F32(1e-5))
        .kv("llama.rope.dimension_count", Enc::U32(16))
        .kv("tokenizer.ggml.model", Enc::str("gpt2"))
        .kv("tokenizer.ggml.tokens", Enc::Arr(8, tokens))
        .kv(
            "tokenizer.ggml.token_type",
            Enc::Arr(5, (0..TINY_VOCAB).map(|_| Enc::I32(1)).collect()),
        )
        .kv("tokenizer.ggml.add_bos_token", Enc::Bool(0))
        .tensor(
            "token_embd.weight",
            &[TINY_EMBD, TINY_VOCAB],
            DType::Q8_0,
            1,
        );
    let kv = u64::from(TINY_KV_HEADS) * TINY_EMBD / u64::from(TINY_HEADS);
    for l in 0..TINY_LAYERS {
        let seed = 100 * u64::from(l);
        let n = |s: &str| std::format!("blk.{l}.{s}");
        b = b
            .tensor(&n("attn_norm.weight"), &[TINY_EMBD], DType::F32, seed + 1)
            .tensor(
                &n("ffn_down.weight"),
                &[TINY_FF, TINY_EMBD],
                DType::Q4_1,
                seed + 2,
            )
            .tensor(
                &n("ffn_gate.weight"),
                &[TINY_EMBD, TINY_FF],
                DType::Q4_1,
                seed + 3,
            )
            .tensor(
                &n("ffn_up.weight"),
                &[TINY_EMBD, TINY_FF],
                DType::Q4_1,
                seed + 4,
            )
            .tensor(&n("ffn_norm.weight"), &[TINY_EMBD], DType::F32, seed + 5)
            .tensor(&n("attn_k.weight"), &[TINY_EMBD, kv], DType::Q4_1, seed + 6)
            .tensor(
                &n("attn_output.weight"),
                &[TINY_EMBD, TINY_EMBD],
                DType::Q4_1,
                seed + 7,
            )
            .tensor(
                &n("attn_q.weight"),
                &[TINY_EMBD, TINY_EMBD],
                DType::Q4_1,
                seed + 8,
            )
            .tensor(&n("attn_v.weight"), &[TINY_EMBD, kv], DType::Q4_1, seed + 9);
    }
    b.tensor("output_norm.weight", &[TINY_EMBD], DType::F32, 999)
}
