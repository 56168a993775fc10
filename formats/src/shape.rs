//! The hyper-parameters of a model: one struct that the GGUF reader fills
//! ([`gguf::LlamaParams`](crate::gguf::LlamaParams)), the image geometry
//! converts to and from ([`image::ModelGeometry`](crate::image::ModelGeometry)),
//! and the kernel runs (its `LlamaConfig` is this type).
//!
//! Plain numbers: whether a forward pass can run them is the kernel's
//! question, not the format's.

/// The hyper-parameters of a dense llama-architecture model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelShape {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden (embedding) size.
    pub hidden: usize,
    /// FFN inner size.
    pub ffn: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Elements per head (`heads * head_dim == hidden`).
    pub head_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Context length the model was trained for.
    pub context: usize,
    /// The output head reuses the token embedding matrix.
    pub tied_embeddings: bool,
}

impl ModelShape {
    /// Elements of one position's keys (and of its values).
    pub const fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}
