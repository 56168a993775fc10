//! The codes, flags and structures of `include/lode_runtime.h`, laid out
//! as C lays them out (the C example asserts the sizes).

use std::ffi::{c_char, c_int, c_void};

/// Success.
pub const LODE_RT_OK: c_int = 0;
/// A required pointer was NULL.
pub const LODE_RT_ERR_NULL: c_int = -1;
/// Not an open session or context.
pub const LODE_RT_ERR_BAD_HANDLE: c_int = -2;
/// An option out of range, bad UTF-8, a wrong size field.
pub const LODE_RT_ERR_INVALID: c_int = -3;
/// A file could not be read.
pub const LODE_RT_ERR_IO: c_int = -4;
/// Not a model lode can run, or corrupt data.
pub const LODE_RT_ERR_BAD_MODEL: c_int = -5;
/// The DRAM budget or the arena is too small.
pub const LODE_RT_ERR_NO_MEMORY: c_int = -6;
/// The flash device failed a read.
pub const LODE_RT_ERR_DEVICE: c_int = -7;
/// Empty, or longer than the context's room.
pub const LODE_RT_ERR_BAD_PROMPT: c_int = -8;
/// The context has no room left.
pub const LODE_RT_ERR_CONTEXT_FULL: c_int = -9;
/// An internal bug, caught at the boundary.
pub const LODE_RT_ERR_PANIC: c_int = -10;
/// Anything else.
pub const LODE_RT_ERR_OTHER: c_int = -11;

/// Skip checking an image's data against its CRCs.
pub const LODE_RT_NO_VERIFY: u32 = 1;
/// Sparse runs without the neuron cache.
pub const LODE_RT_NO_NEURON_CACHE: u32 = 2;

/// `struct lode_rt_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LodeRtOptions {
    /// `sizeof(struct lode_rt_options)`.
    pub size: u32,
    /// Positions one context may reach; 0: 512.
    pub max_context: u32,
    /// Contexts whose KV the budget reserves; 0: 1.
    pub contexts: u32,
    /// Compute threads; 0: every core.
    pub threads: u32,
    /// Prompt positions per pass; 0: 64.
    pub batch: u32,
    /// `LODE_RT_*` flags.
    pub flags: u32,
    /// FFN neurons skipped per token.
    pub sparsity: f32,
    /// Zero.
    pub reserved: u32,
    /// NULL, or a budget such as "33%".
    pub dram_budget: *const c_char,
    /// NULL, or "file:<path>" / "fake:<profile>".
    pub device: *const c_char,
}

impl LodeRtOptions {
    /// Every field zero (its default), the size set: what NULL options mean.
    pub const DEFAULT: LodeRtOptions = LodeRtOptions {
        size: size_of::<LodeRtOptions>() as u32,
        max_context: 0,
        contexts: 0,
        threads: 0,
        batch: 0,
        flags: 0,
        sparsity: 0.0,
        reserved: 0,
        dram_budget: std::ptr::null(),
        device: std::ptr::null(),
    };
}

/// `struct lode_rt_generate`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LodeRtGenerate {
    /// `sizeof(struct lode_rt_generate)`.
    pub size: u32,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0: greedy.
    pub temperature: f32,
    /// 0: no limit.
    pub top_k: u32,
    /// 1 (or 0): no limit.
    pub top_p: f32,
    /// Zero.
    pub reserved: u32,
    /// The sampler's seed.
    pub seed: u64,
}

/// `struct lode_rt_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct LodeRtStats {
    /// `sizeof(struct lode_rt_stats)`, set by the caller.
    pub size: u32,
    /// `LODE_RT_STOP_*`.
    pub stop: u32,
    /// Tokens evaluated before the first sample.
    pub prompt_tokens: u32,
    /// Tokens handed to the callback.
    pub generated_tokens: u32,
    /// Positions the context holds now.
    pub context_tokens: u32,
    /// Zero.
    pub reserved: u32,
    /// Prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Decode tokens per second.
    pub decode_tokens_per_s: f64,
    /// Seconds the session took to load.
    pub load_seconds: f64,
    /// Bytes read from flash per pass.
    pub bytes_read_per_token: f64,
    /// The arena's capacity.
    pub arena_bytes: u64,
    /// Its peak use.
    pub peak_arena_bytes: u64,
}

/// `lode_rt_token_fn`.
pub type LodeRtTokenFn = Option<
    unsafe extern "C" fn(user: *mut c_void, id: u32, piece: *const c_char, len: usize) -> c_int,
>;

/// `struct lode_rt_service_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LodeRtServiceOptions {
    /// `sizeof(struct lode_rt_service_options)`.
    pub size: u32,
    /// Most conversations held at once; 0: 16.
    pub max_contexts: u32,
    /// Mean bits per KV value of idle conversations (2 to 8); 0: 4;
    /// negative: kept exact (f32).
    pub kv_bits: f32,
    /// Zero.
    pub reserved: u32,
    /// Swap area: NULL for none, `file:<path>` or `fake:<profile>`.
    pub swap: *const c_char,
    /// Bytes of a swap file made now (or of a fake device); 0: 1 GiB.
    pub swap_size: u64,
}

impl LodeRtServiceOptions {
    /// Every field at its default.
    pub const DEFAULT: LodeRtServiceOptions = LodeRtServiceOptions {
        size: size_of::<LodeRtServiceOptions>() as u32,
        max_contexts: 0,
        kv_bits: 0.0,
        reserved: 0,
        swap: std::ptr::null(),
        swap_size: 0,
    };
}
