//! The device a swap area lives on: a file (created at the size asked
//! for when it does not exist), a block device, or the fake flash.

use std::fs::OpenOptions;
use std::path::PathBuf;

use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal_linux::{BlockFlash, BlockFlashOptions};

use crate::device::AnyDevice;

/// Where the swap area is: `file:<path>` or `fake:<profile>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapSpec {
    /// A file or a block device (a raw partition).
    File(PathBuf),
    /// The deterministic fake flash, in process memory (lost at exit:
    /// for tests and benchmarks).
    Fake(&'static Profile),
}

impl SwapSpec {
    /// Parses `file:<path>` or `fake:<profile>`.
    pub fn parse(s: &str) -> Result<SwapSpec, String> {
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(SwapSpec::File(PathBuf::from(path)));
        }
        if let Some(name) = s.strip_prefix("fake:") {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name).collect();
            return Profile::by_name(name).map(SwapSpec::Fake).ok_or_else(|| {
                format!("unknown fake profile `{name}`; known: {}", names.join(", "))
            });
        }
        Err(format!(
            "swap device `{s}` must be file:<path> or fake:<profile>"
        ))
    }
}

impl std::fmt::Display for SwapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapSpec::File(p) => write!(f, "file:{}", p.display()),
            SwapSpec::Fake(p) => write!(f, "fake:{}", p.name),
        }
    }
}

/// Bounce memory of a swap file: reads are at most one f32 chunk (under
/// 1 MiB for the models lode runs) or one context record.
const SWAP_BOUNCE: usize = 2 << 20;

/// Opens `spec` for reading and writing. A regular file that does not
/// exist is created with `size` bytes; an existing one keeps its size.
pub fn open_swap_device(spec: &SwapSpec, size: u64) -> Result<AnyDevice, String> {
    match spec {
        SwapSpec::File(path) => {
            let exists = path.exists();
            if !exists {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                f.set_len(size)
                    .map_err(|e| format!("{}: sizing to {size} bytes: {e}", path.display()))?;
            }
            let opts = BlockFlashOptions {
                bounce_bytes: SWAP_BOUNCE,
                writable: true,
                ..BlockFlashOptions::default()
            };
            let dev =
                BlockFlash::open(path, opts).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(AnyDevice::File(dev))
        }
        SwapSpec::Fake(profile) => {
            let bytes = usize::try_from(size)
                .map_err(|_| format!("a fake swap area of {size} bytes does not fit in memory"))?;
            Ok(AnyDevice::Fake(FakeFlash::new(
                vec![0u8; bytes],
                profile,
                FaultPlan::default(),
            )))
        }
    }
}
