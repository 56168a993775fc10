//! How a [`CpuCompute`](super::CpuCompute) is built: its scratch size,
//! threads, instruction-set overrides and work split, in one value a caller
//! fills once.

/// How to build a [`CpuCompute`](super::CpuCompute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuConfig {
    /// Widest input vector of a quantized product or FFN (the activation
    /// scratch holds `max_cols / 32` blocks). SmolLM2-135M needs 1536.
    pub max_cols: usize,
    /// Threads one operation may use, the caller's included (`std` only;
    /// at most [`MAX_THREADS`](super::MAX_THREADS)). 1 means no worker pool.
    pub threads: usize,
    /// Use the portable scalar loops even where SIMD is available.
    pub force_scalar: bool,
    /// On x86_64, use plain AVX2 products even where AVX-512 VNNI is
    /// present (to compare with engines built for AVX2 only).
    pub no_vnni: bool,
    /// Smallest multiply-add count worth a separate chunk of work: products
    /// below it stay on the calling thread, larger ones are cut into a few
    /// chunks per thread that idle threads claim.
    pub min_work_per_chunk: usize,
    /// How long idle workers spin for the next job before sleeping, in µs.
    pub spin_micros: u32,
}

impl CpuConfig {
    /// Single-threaded, SIMD where available, scratch for `max_cols`.
    pub const fn new(max_cols: usize) -> CpuConfig {
        CpuConfig {
            max_cols,
            threads: 1,
            force_scalar: false,
            no_vnni: false,
            min_work_per_chunk: 32 * 1024,
            spin_micros: 300,
        }
    }

    /// The same with `threads` threads.
    pub const fn with_threads(self, threads: usize) -> CpuConfig {
        CpuConfig { threads, ..self }
    }

    /// The same, forced onto the scalar path or not.
    pub const fn with_force_scalar(self, force_scalar: bool) -> CpuConfig {
        CpuConfig {
            force_scalar,
            ..self
        }
    }

    /// The same, without AVX-512 VNNI or not.
    pub const fn with_no_vnni(self, no_vnni: bool) -> CpuConfig {
        CpuConfig { no_vnni, ..self }
    }

    /// The same, with `LODE_FORCE_SCALAR=1` in the environment forcing the
    /// scalar path and `LODE_NO_VNNI=1` the plain AVX2 one (for comparing
    /// paths on a real model).
    #[cfg(feature = "std")]
    pub fn with_env(self) -> CpuConfig {
        let set = |k: &str| std::env::var(k).is_ok_and(|v| v.trim() == "1");
        CpuConfig {
            force_scalar: self.force_scalar || set("LODE_FORCE_SCALAR"),
            no_vnni: self.no_vnni || set("LODE_NO_VNNI"),
            ..self
        }
    }
}
