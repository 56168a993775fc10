//! A small GGUF writer for the fuzz tests' seed files, written here from
//! the format's description (`formats/GGUF.md`) so the seeds do not come
//! from the code under test.

use lode_formats::DType;

/// A metadata value.
#[derive(Debug, Clone)]
pub enum V {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type code and elements (all of that type).
    Arr(u32, Vec<V>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl V {
    /// The GGUF type code.
    fn code(&self) -> u32 {
        match self {
            V::U8(_) => 0,
            V::I8(_) => 1,
            V::U16(_) => 2,
            V::I16(_) => 3,
            V::U32(_) => 4,
            V::I32(_) => 5,
            V::F32(_) => 6,
            V::Bool(_) => 7,
            V::Str(_) => 8,
            V::Arr(..) => 9,
            V::U64(_) => 10,
            V::I64(_) => 11,
            V::F64(_) => 12,
        }
    }

    /// A string value.
    pub fn s(text: &str) -> V {
        V::Str(text.to_string())
    }

    /// An array of strings.
    pub fn strs<T: AsRef<str>>(items: &[T]) -> V {
        V::Arr(8, items.iter().map(|t| V::s(t.as_ref())).collect())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends `v`'s encoding (without its type code).
fn put_value(out: &mut Vec<u8>, v: &V) {
    match v {
        V::U8(x) => out.push(*x),
        V::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::Bool(x) => out.push(u8::from(*x)),
        V::Str(s) => put_str(out, s),
        V::Arr(elem, items) => {
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        V::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// A tensor of a seed file.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    /// Innermost first.
    pub dims: Vec<u64>,
    pub dtype: DType,
    pub data: Vec<u8>,
}

impl Tensor {
    /// A tensor whose data is `dims`' worth of bytes counting up from `fill`.
    pub fn new(name: &str, dtype: DType, dims: &[u64], fill: u8) -> Tensor {
        let row = dtype.row_bytes(dims[0]).expect("whole blocks") as usize;
        let rows: u64 = dims[1..].iter().product();
        let len = row * rows as usize;
        Tensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            data: (0..len)
                .map(|i| fill.wrapping_add((i % 61) as u8))
                .collect(),
        }
    }
}

/// A GGUF file of `version` with metadata `kvs` and `tensors`, its data
/// aligned to `alignment` (which a `general.alignment` entry among `kvs`
/// must then state, unless it is 32).
pub fn file(version: u32, kvs: &[(&str, V)], tensors: &[Tensor], alignment: usize) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        put_str(&mut out, key);
        out.extend_from_slice(&value.code().to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.dtype.code().to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).next_multiple_of(alignment);
    }
    for t in tensors {
        out.resize(out.len().next_multiple_of(alignment), 0);
        out.extend_from_slice(&t.data);
    }
    out.resize(out.len().next_multiple_of(alignment), 0);
    out
}

/// Token texts of a small byte-level BPE vocabulary: three control
/// tokens, the 256 byte characters, and what `MERGES` make.
pub fn vocab_tokens() -> Vec<String> {
    let mut t: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    t.extend((0..=255u8).map(|b| lode_tokenizer::bytes::byte_to_char(b).to_string()));
    for m in MERGES {
        t.push(m.replace(' ', ""));
    }
    t
}

/// Merge rules of [`vocab_tokens`], in rank order.
pub const MERGES: [&str; 8] = ["Ġ t", "h e", "Ġt he", "i n", "in g", "Ġ a", "e r", "Ġ 1"];

/// The metadata of that vocabulary, as a GGUF model carries it (model,
/// pre-tokenizer, tokens, types, merges, special ids, BOS policy, chat
/// template), under architecture `arch`.
pub fn vocab_metadata(arch: &str) -> Vec<(&'static str, V)> {
    let tokens = vocab_tokens();
    let mut types = vec![V::I32(3); 3];
    types.extend((3..tokens.len()).map(|_| V::I32(1)));
    vec![
        ("general.architecture", V::s(arch)),
        ("tokenizer.ggml.model", V::s("gpt2")),
        ("tokenizer.ggml.pre", V::s("smollm")),
        ("tokenizer.ggml.tokens", V::strs(&tokens)),
        ("tokenizer.ggml.token_type", V::Arr(5, types)),
        ("tokenizer.ggml.merges", V::strs(&MERGES)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
        ("tokenizer.ggml.padding_token_id", V::U32(0)),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
        (
            "tokenizer.chat_template",
            V::s(
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
                 message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if \
                 add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
            ),
        ),
    ]
}

/// The vocabulary alone: a GGUF v3 file with no tensors.
pub fn vocab_file() -> Vec<u8> {
    file(3, &vocab_metadata("llama"), &[], 32)
}

/// Normal tokens of [`spm_vocab_metadata`] with their scores (higher joins
/// first); `▁` stands for a space.
pub const SPM_PIECES: [(&str, f32); 14] = [
    ("\u{2581}", -1.0),
    ("\u{2581}t", -2.0),
    ("he", -3.0),
    ("\u{2581}the", -4.0),
    ("in", -5.0),
    ("ing", -6.0),
    ("\u{2581}a", -7.0),
    ("er", -8.0),
    ("t", -9.0),
    ("h", -9.0),
    ("e", -9.0),
    ("a", -9.0),
    ("1", -9.0),
    ("é", -9.0),
];

/// A small SentencePiece vocabulary as Gemma's GGUF carries one: control
/// tokens, user-defined `\n` and two spaces, the 256 `<0xXX>` byte
/// tokens, then [`SPM_PIECES`]; `add_space_prefix` as given.
pub fn spm_vocab_metadata(add_space_prefix: bool) -> Vec<(&'static str, V)> {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut types = vec![V::I32(3); tokens.len()];
    let mut scores = vec![V::F32(-1000.0); tokens.len()];
    for t in ["\n", "  "] {
        tokens.push(t.to_string());
        types.push(V::I32(4));
        scores.push(V::F32(-1000.0));
    }
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(V::I32(6));
        scores.push(V::F32(0.0));
    }
    for (t, s) in SPM_PIECES {
        tokens.push(t.to_string());
        types.push(V::I32(1));
        scores.push(V::F32(s));
    }
    vec![
        ("general.architecture", V::s("gemma3")),
        ("tokenizer.ggml.model", V::s("llama")),
        ("tokenizer.ggml.pre", V::s("default")),
        ("tokenizer.ggml.tokens", V::strs(&tokens)),
        ("tokenizer.ggml.scores", V::Arr(6, scores)),
        ("tokenizer.ggml.token_type", V::Arr(5, types)),
        ("tokenizer.ggml.bos_token_id", V::U32(2)),
        ("tokenizer.ggml.eos_token_id", V::U32(1)),
        ("tokenizer.ggml.unknown_token_id", V::U32(3)),
        ("tokenizer.ggml.padding_token_id", V::U32(0)),
        ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        ("tokenizer.ggml.add_space_prefix", V::Bool(add_space_prefix)),
    ]
}

/// That vocabulary alone, without a space prefix (so text round-trips).
pub fn spm_vocab_file() -> Vec<u8> {
    file(3, &spm_vocab_metadata(false), &[], 32)
}
