//! The architecture section (kind 11, since format 1.3): the attention
//! parameters of a model whose layers alternate sliding-window ("local")
//! and global attention, which the geometry section cannot hold.
//!
//! Gemma 3 is such a model: most layers attend to the last `window`
//! positions with a RoPE base of their own, every `period`-th layer to the
//! whole context with the geometry's `rope_base`. An image of architecture
//! [`SLIDING_WINDOW_ARCH`] must have this section and no other may (the
//! reader checks both), so a runtime never guesses the window.
//!
//! Checked when the image is opened: minor version at least 3, length 16,
//! `window` and `period` at least 1, the RoPE base finite and positive, no
//! unknown flag bits, and an `output.weight` tensor when the approximate
//! head flag is set.

use zerocopy::FromBytes;

use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::layout::{ArchRecord, ARCH_APPROX_HEAD, MINOR_ARCH};

/// The architecture tag whose images carry the architecture section.
pub const SLIDING_WINDOW_ARCH: &str = "gemma3";

const AT: Location = Location::Section(SectionKind::Arch);

fn malformed(detail: &'static str) -> ImageError {
    err(ErrorKind::Malformed, AT, detail)
}

/// A sliding-window model's attention parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchParams {
    /// Positions a local layer's query sees, itself included.
    pub window: u32,
    /// In each run of `period` layers the last attends globally, the
    /// others locally.
    pub period: u32,
    /// RoPE base of the local layers.
    pub local_rope_base: f32,
    /// The image's `output.weight` is its embedding table re-quantized to
    /// a narrower type (`lode pack --head`): an approximation of the tied
    /// head, whose largest logits a runtime may recompute from the table.
    pub approx_head: bool,
}

impl ArchParams {
    /// Parse and check an architecture section of an image with minor
    /// version `minor`.
    pub(crate) fn parse(bytes: &[u8], minor: u16) -> Result<Self, ImageError> {
        if minor < MINOR_ARCH {
            return Err(malformed(
                "architecture section in an image of minor version below 3",
            ));
        }
        let rec = ArchRecord::ref_from_bytes(bytes).map_err(|_| malformed("length is not 16"))?;
        let flags = rec.flags.get();
        if flags & !ARCH_APPROX_HEAD != 0 {
            return Err(malformed("unknown flag bits are set"));
        }
        let p = ArchParams {
            window: rec.window.get(),
            period: rec.period.get(),
            local_rope_base: f32::from_bits(rec.local_rope_base.get()),
            approx_head: flags & ARCH_APPROX_HEAD != 0,
        };
        if p.window == 0 || p.period == 0 {
            return Err(malformed("the window or its layer period is zero"));
        }
        if !(p.local_rope_base.is_finite() && p.local_rope_base > 0.0) {
            return Err(malformed("the local RoPE base is not finite and positive"));
        }
        Ok(p)
    }

    /// The section's 16 bytes.
    #[cfg(feature = "std")]
    pub(crate) fn encode(&self) -> [u8; 16] {
        use zerocopy::little_endian::U32;
        use zerocopy::IntoBytes;
        let rec = ArchRecord {
            window: U32::new(self.window),
            period: U32::new(self.period),
            local_rope_base: U32::new(self.local_rope_base.to_bits()),
            flags: U32::new(if self.approx_head {
                ARCH_APPROX_HEAD
            } else {
                0
            }),
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(rec.as_bytes());
        out
    }
}

/// Checks that an image of architecture `arch` has the section exactly when
/// its architecture needs it; parses it when present.
pub(crate) fn arch_params(
    bytes: Option<&[u8]>,
    arch: &str,
    minor: u16,
) -> Result<Option<ArchParams>, ImageError> {
    match (bytes, arch == SLIDING_WINDOW_ARCH) {
        (Some(b), true) => ArchParams::parse(b, minor).map(Some),
        (None, false) => Ok(None),
        (None, true) => Err(malformed(
            "a gemma3 image lacks its architecture section (the sliding window)",
        )),
        (Some(_), false) => Err(malformed(
            "architecture section in an image of an architecture without one",
        )),
    }
}
