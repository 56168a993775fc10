//! What the CLI's tests share.

use std::path::PathBuf;

/// The real model (`LODE_MODEL`, else where `scripts/fetch-model` puts it),
/// or `None` with a note when it is absent: tests that need it then pass
/// without checking.
pub fn real_model() -> Option<PathBuf> {
    model_at("LODE_MODEL", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Gemma 3 270M (`LODE_GEMMA_MODEL`, else where `scripts/fetch-model
/// gemma3-270m` puts it), or `None` with a note.
pub fn gemma_model() -> Option<PathBuf> {
    model_at("LODE_GEMMA_MODEL", "gemma-3-270m-Q4_K_M.gguf")
}

fn model_at(var: &str, file: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file)
    });
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "note: {} is absent (run scripts/fetch-model); skipping.",
            p.display()
        );
        None
    }
}

/// Runs `f` on a thread with the stack `lode`'s main thread has on Linux
/// (8 MiB), not a test thread's 2 MiB: an unoptimized streaming run keeps
/// several copies of its 128-layer tables in its frames and needs about
/// 1.5 MiB, too close to a test thread's limit.
pub fn with_main_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .expect("a test thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
