//! Helpers shared by this crate's tests: temporary files that remove
//! themselves, and deterministic file contents.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lode_kernel::rng::SplitMix64;

/// A file under `std::env::temp_dir()` with a name no other test (or test
/// process) uses, deleted when dropped.
pub(crate) struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Create the file holding `bytes`.
    pub(crate) fn with_bytes(tag: &str, bytes: &[u8]) -> io::Result<TempFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("lode-hal-linux-{tag}-{}-{n}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::write(&path, bytes)?;
        Ok(TempFile { path })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `len` pseudo-random bytes from `seed`, so a failing case replays.
pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}
