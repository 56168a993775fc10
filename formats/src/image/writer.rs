//! Writing an image (feature `std`).
//!
//! [`ImageBuilder`] collects the geometry, tensors and per-layer bundles,
//! then lays the image out in one linear pass: tensors sorted by name, each
//! extent at the next block boundary, every CRC computed once. Before a byte
//! is written, the finished metadata prefix is opened with
//! [`Image::parse`], so the writer cannot emit an image the reader would
//! refuse. Data is borrowed (or owned) through `Cow`, never copied into one
//! big buffer, so packing a large model costs its metadata in memory plus
//! whatever the caller holds.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::string::String;
use std::vec::Vec;

use zerocopy::little_endian::U32;

use crate::DType;

mod coded;
mod plan;
mod prefix;

use super::arch::ArchParams;
use super::codec::TensorCodec;
use super::error::{err, ErrorKind, ImageError, Location};
use super::header::align_up;
use super::layout::{DEFAULT_BLOCK_SIZE, PART_ABSENT, VERSION_MINOR};
use super::model::{BundleParts, ModelGeometry, Shape, StoredCostModel};
use super::reader::Image;

/// Why an image could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// The builder's contents break a rule of the format.
    Invalid(ImageError),
    /// The output failed.
    Io(io::Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Invalid(e) => write!(f, "invalid image contents: {e}"),
            WriteError::Io(e) => write!(f, "writing the image failed: {e}"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Invalid(e) => Some(e),
            WriteError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<ImageError> for WriteError {
    fn from(e: ImageError) -> Self {
        WriteError::Invalid(e)
    }
}

fn invalid(kind: ErrorKind, at: Location, detail: &'static str) -> WriteError {
    WriteError::Invalid(err(kind, at, detail))
}

/// One tensor to store.
#[derive(Debug, Clone)]
struct TensorSpec<'d> {
    name: String,
    dtype: DType,
    shape: Shape,
    data: Cow<'d, [u8]>,
    codec: TensorCodec,
}

/// One layer's FFN neuron bundles, already in placement order.
#[derive(Debug, Clone)]
pub struct LayerSpec<'d> {
    /// What each bundle holds; its size follows from these and the hidden width.
    pub parts: BundleParts,
    /// Bundle contents back to back, in placement order (no padding):
    /// position `p` holds neuron `perm[p]`.
    pub bundles: Cow<'d, [u8]>,
    /// The placement: `perm[p]` is the neuron stored at position `p`.
    pub perm: Vec<u32>,
    /// Codec tag per position; empty means all raw (0).
    pub codec_tags: Vec<u8>,
    /// Distance between bundles in the file; `None` means the bundle size.
    pub stride: Option<u32>,
}

impl<'d> LayerSpec<'d> {
    /// Raw, unpadded bundles in placement `perm`.
    pub fn new(parts: BundleParts, bundles: impl Into<Cow<'d, [u8]>>, perm: Vec<u32>) -> Self {
        LayerSpec {
            parts,
            bundles: bundles.into(),
            perm,
            codec_tags: Vec::new(),
            stride: None,
        }
    }

    /// Pad every bundle to `stride` bytes (for example to keep bundles from
    /// straddling flash pages).
    pub fn with_stride(mut self, stride: u32) -> Self {
        self.stride = Some(stride);
        self
    }

    /// Tag each bundle with a codec (one byte per position).
    pub fn with_codec_tags(mut self, tags: Vec<u8>) -> Self {
        self.codec_tags = tags;
        self
    }
}

/// Collects a model's parts and writes them as a lode image.
#[derive(Debug, Clone)]
pub struct ImageBuilder<'d> {
    block_size: u32,
    geometry: ModelGeometry,
    tensors: Vec<TensorSpec<'d>>,
    layers: Vec<LayerSpec<'d>>,
    cost: Option<StoredCostModel>,
    tokenizer: Option<Cow<'d, [u8]>>,
    lineage: Option<Vec<u8>>,
    arch: Option<ArchParams>,
}

/// A layer after checking, with the values the layout needs.
struct PlannedLayer {
    count: u32,
    bundle_size: u32,
    stride: u32,
    inverse: Vec<u32>,
}

/// Where everything goes: offsets of sections and data extents.
struct Plan {
    meta_len: u64,
    file_len: u64,
    /// Tensor indices in name order.
    order: Vec<usize>,
    tensor_offsets: Vec<u64>,
    layer_offsets: Vec<u64>,
    layers: Vec<PlannedLayer>,
}

fn part_code(part: Option<DType>) -> U32 {
    U32::new(part.map_or(PART_ABSENT, DType::code))
}

fn usize_to_u64(x: usize) -> u64 {
    x as u64
}

impl<'d> ImageBuilder<'d> {
    /// An empty image for a model of shape `geometry`, with the default
    /// 4096-byte block size and no cost model.
    pub fn new(geometry: ModelGeometry) -> Self {
        ImageBuilder {
            block_size: DEFAULT_BLOCK_SIZE,
            geometry,
            tensors: Vec::new(),
            layers: Vec::new(),
            cost: None,
            tokenizer: None,
            lineage: None,
            arch: None,
        }
    }

    /// Align data to `block_size` bytes (a power of two, 512 to 1 MiB).
    pub fn block_size(&mut self, block_size: u32) -> &mut Self {
        self.block_size = block_size;
        self
    }

    /// Store (or, with `None`, do not store) a device cost model.
    pub fn cost_model(&mut self, cost: Option<StoredCostModel>) -> &mut Self {
        self.cost = cost;
        self
    }

    /// Store the model's tokenizer: a GGUF v3 file with zero tensors holding
    /// `general.architecture` and the `tokenizer.*` metadata, as
    /// `lode_formats::gguf::tokenizer_only` writes it. The image then has
    /// the tokenizer section (kind 9) and minor version 1. The bytes are
    /// checked with the rest of the metadata when the image is written.
    pub fn tokenizer_gguf(&mut self, bytes: impl Into<Cow<'d, [u8]>>) -> &mut Self {
        self.tokenizer = Some(bytes.into());
        self
    }

    /// Record that the image's layers are layers `kept` (strictly
    /// increasing, one per image layer) of a model of `base_layers` layers
    /// fingerprinted `base_fingerprint`: the lineage section (kind 10),
    /// minor version 2. Checked with the rest of the metadata when written.
    pub fn lineage(&mut self, base_fingerprint: u64, base_layers: u32, kept: &[u32]) -> &mut Self {
        self.lineage = Some(super::lineage::encode(base_fingerprint, base_layers, kept));
        self
    }

    /// Store a sliding-window model's attention parameters: the
    /// architecture section (kind 11), minor version 3. An image of
    /// architecture [`SLIDING_WINDOW_ARCH`](super::SLIDING_WINDOW_ARCH)
    /// needs it and no other may have it; checked when written.
    pub fn arch_params(&mut self, params: ArchParams) -> &mut Self {
        self.arch = Some(params);
        self
    }

    /// Add a tensor: `dims` innermost first (GGML order), `data` exactly the
    /// size the dtype and shape imply.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        dims: &[u64],
        data: impl Into<Cow<'d, [u8]>>,
    ) -> Result<&mut Self, WriteError> {
        self.push_tensor(name.into(), dtype, dims, data.into(), TensorCodec::Raw)
    }

    pub(super) fn push_tensor(
        &mut self,
        name: String,
        dtype: DType,
        dims: &[u64],
        data: Cow<'d, [u8]>,
        codec: TensorCodec,
    ) -> Result<&mut Self, WriteError> {
        let at = Location::Tensor(self.tensors.len());
        if !super::tables::in_image(dtype, VERSION_MINOR) {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "element type not defined for lode images",
            ));
        }
        let shape = Shape::new(dims).ok_or(invalid(
            ErrorKind::Malformed,
            at,
            "shape needs 1 to 4 non-zero dimensions",
        ))?;
        self.tensors.push(TensorSpec {
            name,
            dtype,
            shape,
            data,
            codec,
        });
        Ok(self)
    }

    /// Add the next layer's bundle region.
    pub fn add_layer(&mut self, layer: LayerSpec<'d>) -> &mut Self {
        self.layers.push(layer);
        self
    }
}

impl ImageBuilder<'_> {
    /// Write the image to `out` and return its length in bytes.
    ///
    /// Bundles with a stride larger than their size are written as many
    /// small pieces: give a buffered writer (`std::io::BufWriter`).
    pub fn write_to<W: Write + ?Sized>(&self, out: &mut W) -> Result<u64, WriteError> {
        let plan = self.plan()?;
        let prefix = self.prefix(&plan)?;
        // The writer's own output must open; this catches any rule the
        // builder did not check itself (shape/length, duplicate names, ...).
        Image::parse(&prefix)?;
        out.write_all(&prefix)?;
        let block = u64::from(self.block_size);
        let mut written = plan.meta_len;
        for &i in &plan.order {
            let Some(t) = self.tensors.get(i) else {
                continue;
            };
            out.write_all(&t.data)?;
            written += usize_to_u64(t.data.len());
            written = pad_to(out, written, block)?;
        }
        for (spec, p) in self.layers.iter().zip(&plan.layers) {
            let pad = u64::from(p.stride.saturating_sub(p.bundle_size));
            for bundle in spec.bundles.chunks_exact(p.bundle_size.max(1) as usize) {
                out.write_all(bundle)?;
                write_zeros(out, pad)?;
                written += u64::from(p.stride);
            }
            written = pad_to(out, written, block)?;
        }
        if written != plan.file_len {
            return Err(invalid(
                ErrorKind::Malformed,
                Location::Offset(written),
                "wrote a different length than planned",
            ));
        }
        Ok(written)
    }

    /// The whole image in memory.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }
}

fn write_zeros<W: Write + ?Sized>(out: &mut W, mut n: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(ZEROS.get(..k).unwrap_or_default())?;
        n -= k as u64;
    }
    Ok(())
}

/// Write zeros from `at` to the next multiple of `block`; returns the new
/// position.
fn pad_to<W: Write + ?Sized>(out: &mut W, at: u64, block: u64) -> Result<u64, WriteError> {
    let end = align_up(at, block).ok_or(invalid(
        ErrorKind::OutOfRange,
        Location::Offset(at),
        "image size overflows",
    ))?;
    write_zeros(out, end - at)?;
    Ok(end)
}
