//! What the CLI's tests share.

use std::path::PathBuf;

/// The real model (`LODE_MODEL`, else where `scripts/fetch-model` puts it),
/// or `None` with a note when it is absent: tests that need it then pass
/// without checking.
pub fn real_model() -> Option<PathBuf> {
    let p = std::env::var_os("LODE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
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
