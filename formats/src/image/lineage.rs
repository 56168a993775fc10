//! The lineage section (kind 10, since format 1.2): which layers of which
//! model an image holds, for images with layers dropped (`lode prune`).
//!
//! A pruned image is an ordinary image of fewer layers (its geometry says
//! how many, its tensors are named `blk.0` up), so a runtime streams it
//! like any other. This section records where those layers came from: the
//! fingerprint and layer count of the unpruned model, and for each image
//! layer the index it had there. A tool that compares a pruned image with
//! its base (`lode prune --base`) checks the fingerprint before any work,
//! and `lode inspect` prints the kept layers.
//!
//! Checked when the image is opened: minor version at least 2, length
//! `16 + 4 * layers`, reserved bytes zero, and the source indices strictly
//! increasing and below `base_layers` (so no layer repeats and the base has
//! at least as many layers as the image).

use zerocopy::little_endian::U32;
use zerocopy::FromBytes;

use super::error::{err, ErrorKind, ImageError, Location, SectionKind};
use super::layout::{LineageRecord, MINOR_LINEAGE};

const AT: Location = Location::Section(SectionKind::Lineage);

fn malformed(detail: &'static str) -> ImageError {
    err(ErrorKind::Malformed, AT, detail)
}

/// Where a pruned image's layers came from.
#[derive(Debug, Clone, Copy)]
pub struct Lineage<'a> {
    base_fingerprint: u64,
    base_layers: u32,
    kept: &'a [U32],
}

impl<'a> Lineage<'a> {
    /// Parse and check a lineage section of an image with `layers` layers
    /// and minor version `minor`.
    pub(crate) fn parse(bytes: &'a [u8], layers: u32, minor: u16) -> Result<Self, ImageError> {
        if minor < MINOR_LINEAGE {
            return Err(malformed(
                "lineage section in an image of minor version below 2",
            ));
        }
        let (head, rest) = LineageRecord::ref_from_prefix(bytes)
            .map_err(|_| malformed("shorter than its 16-byte head"))?;
        let kept = <[U32]>::ref_from_bytes(rest)
            .map_err(|_| malformed("length is not 16 + 4 bytes a layer"))?;
        if kept.len() != layers as usize {
            return Err(malformed("entries differ from the geometry's layer count"));
        }
        if head.reserved.get() != 0 {
            return Err(malformed("reserved bytes are not zero"));
        }
        let base_layers = head.base_layers.get();
        let mut next = 0u32;
        for k in kept {
            let k = k.get();
            if k < next {
                return Err(malformed("source layers are not strictly increasing"));
            }
            if k >= base_layers {
                return Err(malformed(
                    "a source layer is not below the base's layer count",
                ));
            }
            next = k + 1;
        }
        Ok(Lineage {
            base_fingerprint: head.base_fingerprint.get(),
            base_layers,
            kept,
        })
    }

    /// Fingerprint of the model the layers were taken from.
    pub fn base_fingerprint(&self) -> u64 {
        self.base_fingerprint
    }

    /// Layers of that model.
    pub fn base_layers(&self) -> u32 {
        self.base_layers
    }

    /// The source layer of each image layer, in order (strictly increasing).
    pub fn kept(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.kept.iter().map(|k| k.get())
    }

    /// The source layer of image layer `layer`.
    pub fn source_layer(&self, layer: usize) -> Option<u32> {
        self.kept.get(layer).map(|k| k.get())
    }

    /// The base's layers this image does not hold, lowest first.
    pub fn dropped(&self) -> impl Iterator<Item = u32> + 'a {
        let kept = self.kept;
        (0..self.base_layers).filter(move |l| !kept.iter().any(|k| k.get() == *l))
    }
}

/// The bytes of a lineage section: `base_fingerprint`, `base_layers` and the
/// source layer of each image layer.
#[cfg(feature = "std")]
pub(crate) fn encode(base_fingerprint: u64, base_layers: u32, kept: &[u32]) -> std::vec::Vec<u8> {
    use zerocopy::little_endian::U64;
    use zerocopy::IntoBytes;
    let head = LineageRecord {
        base_fingerprint: U64::new(base_fingerprint),
        base_layers: U32::new(base_layers),
        reserved: U32::new(0),
    };
    let mut out = head.as_bytes().to_vec();
    for &k in kept {
        out.extend_from_slice(&k.to_le_bytes());
    }
    out
}
