//! The lode image: a self-describing, checksummed container of a model laid out for flash.
//!
//! An image has two parts (byte layout in `formats/FORMAT.md`):
//!
//! - the **metadata prefix** at offset 0: the fixed [header](ImageHeader), a
//!   section table, and the metadata sections (geometry, tensor table, bundle
//!   regions, placements, per-bundle checksums and codec tags, cost model,
//!   and since format 1.1 optionally the model's tokenizer as a GGUF file
//!   without tensors, [`Image::tokenizer_gguf`]; since 1.2, for a pruned
//!   image, which layers of which model it kept, [`Image::lineage`]; since
//!   1.3, a sliding-window model's attention parameters,
//!   [`Image::arch_params`]). It is small next to the
//!   weights (13 bytes per FFN neuron, plus the tokenizer: 1.8 MB for
//!   SmolLM2's 49k-token vocabulary), so a reader loads it whole and
//!   [`Image::parse`] checks every byte of it;
//! - the **data**: tensor data and one bundle region per layer, each at a
//!   block boundary so it can be read with direct I/O, and read piecewise
//!   through a flash device, never all at once.
//!
//! Opening an image is two reads: one block for [`ImageHeader::parse`],
//! which says how long the prefix is ([`ImageHeader::meta_len`]), then the
//! prefix for [`Image::parse`]. Data is checked as it is read
//! ([`Image::verify_tensor`], [`Image::verify_bundle`]) or in one streaming
//! pass ([`DataVerifier`]). Every failure is an [`ImageError`]; nothing in
//! here panics on bad input.
//!
//! The writer, `ImageBuilder`, needs the `std` feature.
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use lode_formats::image::{ArchTag, BundleParts, Image, ImageBuilder, ImageHeader, LayerSpec, ModelGeometry};
//! use lode_formats::DType;
//!
//! let geometry = ModelGeometry {
//!     arch: ArchTag::new("llama").unwrap(),
//!     layers: 1, hidden: 32, ffn: 2, heads: 1, kv_heads: 1, head_dim: 32,
//!     vocab: 16, context: 64, rope_base: 10_000.0, rms_eps: 1e-5, fingerprint: 7,
//! };
//! let q = Some(DType::Q8_0);
//! let parts = BundleParts { gate: q, up: q, down: q }; // 3 x 34 bytes per bundle
//! let mut builder = ImageBuilder::new(geometry);
//! builder.add_tensor("output_norm.weight", DType::F32, &[32], vec![0u8; 128])?;
//! // Neuron 1 is stored first, neuron 0 second.
//! builder.add_layer(LayerSpec::new(parts, vec![1u8; 2 * 102], vec![1, 0]));
//! let file = builder.to_bytes()?;
//!
//! // Open: the first block gives the prefix length, the prefix gives the tables.
//! let header = ImageHeader::parse(&file[..512])?;
//! let image = Image::parse(&file[..header.meta_len as usize])?;
//! let region = image.bundle_region(0).unwrap();
//! assert_eq!(image.placement(0).unwrap().position_of(0), Some(1));
//! let at = region.bundle_offset(1).unwrap() as usize;
//! image.verify_bundle(0, 1, &file[at..at + region.bundle_size as usize])?;
//! image.verify_data(&file[header.meta_len as usize..])?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arch;
mod bundles;
mod codec;
mod data_cursor;
mod error;
mod header;
pub mod layout;
mod lineage;
mod model;
mod patch;
#[cfg(feature = "std")]
mod prefix;
mod reader;
mod sections;
mod tables;
mod tokenizer;
mod verify;
#[cfg(feature = "std")]
mod writer;

#[cfg(all(test, feature = "std"))]
mod tests;

pub use crate::checksum::crc32c;
pub use arch::{ArchParams, SLIDING_WINDOW_ARCH};
pub use codec::TensorCodec;
pub use error::{ErrorKind, ImageError, Location, SectionKind};
pub use header::{Container, ImageHeader};
pub use lineage::Lineage;
pub use model::{
    ArchTag, BundleParts, BundleRegion, GeometryTooLarge, ModelGeometry, Placement, Shape,
    StoredCostModel, TensorInfo,
};
pub use patch::{reseal_checksums, set_cost_model};
#[cfg(feature = "std")]
pub use prefix::{read_file_prefix, read_prefix, PrefixError, MAX_PREFIX};
pub use reader::Image;
pub use verify::DataVerifier;
#[cfg(feature = "std")]
pub use writer::{ImageBuilder, LayerSpec, WriteError};
