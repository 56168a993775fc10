//! Decoded, typed views of an image's tables: what callers work with instead
//! of the raw little-endian records.

use core::fmt;

use crate::{DType, ModelShape};

pub use super::bundles::{BundleParts, BundleRegion, Placement};
use super::codec::TensorCodec;
use super::layout::{ARCH_LEN, MAX_DIMS};

/// An architecture tag: 1 to 16 printable ASCII bytes (`llama`, `opt`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ArchTag {
    bytes: [u8; ARCH_LEN],
    len: u8,
}

impl ArchTag {
    /// The tag for `name`, or `None` when it is empty, longer than 16 bytes
    /// or not printable ASCII (no spaces).
    pub fn new(name: &str) -> Option<ArchTag> {
        let src = name.as_bytes();
        if src.is_empty() || src.len() > ARCH_LEN || !src.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut bytes = [0u8; ARCH_LEN];
        bytes.get_mut(..src.len())?.copy_from_slice(src);
        Some(ArchTag {
            bytes,
            len: src.len() as u8,
        })
    }

    /// Decode the stored field: printable ASCII, then zero bytes only.
    pub fn from_field(field: &[u8; ARCH_LEN]) -> Option<ArchTag> {
        let len = field.iter().position(|&b| b == 0).unwrap_or(ARCH_LEN);
        let (name, rest) = field.split_at(len);
        if rest.iter().any(|&b| b != 0) {
            return None;
        }
        ArchTag::new(core::str::from_utf8(name).ok()?)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        let name = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        core::str::from_utf8(name).unwrap_or_default()
    }

    /// The 16-byte stored field.
    pub fn field(&self) -> [u8; ARCH_LEN] {
        self.bytes
    }
}

/// The shape of the model the image holds: the image's geometry record,
/// decoded. Its numbers are a [`ModelShape`]'s in the record's 32-bit
/// fields ([`ModelGeometry::new`], [`ModelGeometry::shape`] convert), with
/// the format's own architecture tag and fingerprint; whether the output
/// head is tied is not recorded (it is whether the image holds an
/// `output.weight` tensor).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelGeometry {
    /// Architecture.
    pub arch: ArchTag,
    /// Transformer layers (the image has one bundle region per layer).
    pub layers: u32,
    /// Hidden width; every bundle part is a row of this many elements.
    pub hidden: u32,
    /// FFN neurons per layer.
    pub ffn: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads.
    pub kv_heads: u32,
    /// Elements per head.
    pub head_dim: u32,
    /// Vocabulary size.
    pub vocab: u32,
    /// Trained context length.
    pub context: u32,
    /// RoPE frequency base (finite, positive).
    pub rope_base: f32,
    /// RMSNorm epsilon (finite, positive).
    pub rms_eps: f32,
    /// Identity of the model's weights, chosen by the packer; files derived
    /// from a model (traces, KV swap areas) carry it so a mismatch is refused.
    pub fingerprint: u64,
}

impl ModelGeometry {
    /// The geometry of a model of shape `shape`, architecture `arch` and
    /// identity `fingerprint`; an error names the first number too large
    /// for its 32-bit field.
    pub fn new(
        arch: ArchTag,
        shape: &ModelShape,
        fingerprint: u64,
    ) -> Result<ModelGeometry, GeometryTooLarge> {
        let field = |value: usize, field: &'static str| {
            u32::try_from(value).map_err(|_| GeometryTooLarge { field, value })
        };
        Ok(ModelGeometry {
            arch,
            layers: field(shape.layers, "layers")?,
            hidden: field(shape.hidden, "hidden size")?,
            ffn: field(shape.ffn, "FFN size")?,
            heads: field(shape.heads, "heads")?,
            kv_heads: field(shape.kv_heads, "KV heads")?,
            head_dim: field(shape.head_dim, "head size")?,
            vocab: field(shape.vocab, "vocabulary")?,
            context: field(shape.context, "context")?,
            rope_base: shape.rope_base,
            rms_eps: shape.rms_eps,
            fingerprint,
        })
    }

    /// The model's shape, its output head tied to the token embeddings when
    /// `tied_embeddings` (the geometry does not record it).
    pub fn shape(&self, tied_embeddings: bool) -> ModelShape {
        let n = |v: u32| v as usize;
        ModelShape {
            layers: n(self.layers),
            hidden: n(self.hidden),
            ffn: n(self.ffn),
            heads: n(self.heads),
            kv_heads: n(self.kv_heads),
            head_dim: n(self.head_dim),
            vocab: n(self.vocab),
            rope_base: self.rope_base,
            rms_eps: self.rms_eps,
            context: n(self.context),
            tied_embeddings,
        }
    }
}

/// A model number too large for the image's 32-bit geometry field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeometryTooLarge {
    /// Which number (`"hidden size"`, `"vocabulary"`, ...).
    pub field: &'static str,
    /// Its value.
    pub value: usize,
}

impl fmt::Display for GeometryTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model {} {} does not fit an image",
            self.field, self.value
        )
    }
}

/// A tensor's dimensions, innermost (row length) first, as in GGML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    dims: [u64; MAX_DIMS],
    len: u8,
}

impl Shape {
    /// A shape of 1 to 4 dimensions, each at least 1.
    pub fn new(dims: &[u64]) -> Option<Shape> {
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return None;
        }
        let mut all = [0u64; MAX_DIMS];
        all.get_mut(..dims.len())?.copy_from_slice(dims);
        Some(Shape {
            dims: all,
            len: dims.len() as u8,
        })
    }

    /// The dimensions used.
    pub fn dims(&self) -> &[u64] {
        self.dims.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The four stored dimensions, unused ones zero.
    pub fn padded(&self) -> [u64; MAX_DIMS] {
        self.dims
    }

    /// Bytes of a tensor of this shape and `dtype`: rows of `dims[0]`
    /// elements, `None` when a row is not a whole number of blocks or the
    /// size overflows.
    pub fn byte_len(&self, dtype: DType) -> Option<u64> {
        let (&row, rest) = self.dims().split_first()?;
        let mut bytes = dtype.row_bytes(row)?;
        for &d in rest {
            bytes = bytes.checked_mul(d)?;
        }
        Some(bytes)
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorInfo<'a> {
    /// Name (unique; the table is sorted by it).
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Shape,
    /// Absolute offset of the data (block-aligned).
    pub offset: u64,
    /// Bytes of data as stored (the coded unit's for a coded tensor).
    pub length: u64,
    /// CRC32C of the stored data.
    pub crc: u32,
    /// How the data is stored.
    pub codec: TensorCodec,
}

impl TensorInfo<'_> {
    /// Bytes of the tensor's blocks once decoded (`length` for a raw one).
    pub fn data_len(&self) -> u64 {
        self.shape.byte_len(self.dtype).unwrap_or(self.length)
    }
}

/// A device cost model stored in the image (mirrors
/// `lode_kernel::cost::CostModel`; formats cannot depend on the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoredCostModel {
    /// Fixed cost of one read command, in nanoseconds.
    pub command_ns: u32,
    /// Sequential read bandwidth in bytes per second (at least 1).
    pub bytes_per_sec: u64,
    /// Commands that overlap their fixed cost (at least 1).
    pub queue_depth: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::little_endian::U32;

    #[test]
    fn arch_tags() {
        let t = ArchTag::new("llama");
        assert_eq!(t.map(|t| t.as_str().len()), Some(5));
        let t = t.into_iter().next();
        assert_eq!(t.and_then(|t| ArchTag::from_field(&t.field())), t);
        assert_eq!(ArchTag::new(""), None);
        assert_eq!(ArchTag::new("has space"), None);
        assert_eq!(ArchTag::new("seventeen-bytes!!"), None);
        assert!(ArchTag::new("sixteen-bytes!!!").is_some());
        let mut field = *b"llama\0\0\0\0\0\0\0\0\0\0\0";
        assert!(ArchTag::from_field(&field).is_some());
        field[9] = b'x';
        assert_eq!(ArchTag::from_field(&field), None);
        assert_eq!(ArchTag::from_field(&[0; ARCH_LEN]), None);
    }

    #[test]
    fn shapes() {
        let s = Shape::new(&[576, 1536]);
        assert_eq!(s.map(|s| s.byte_len(DType::Q4_1)), Some(Some(360 * 1536)));
        assert_eq!(s.map(|s| s.padded()), Some([576, 1536, 0, 0]));
        assert_eq!(Shape::new(&[]), None);
        assert_eq!(Shape::new(&[1, 2, 3, 4, 5]), None);
        assert_eq!(Shape::new(&[3, 0]), None);
        let odd = Shape::new(&[33]);
        assert_eq!(odd.map(|s| s.byte_len(DType::Q8_0)), Some(None));
        let huge = Shape::new(&[u64::MAX / 2, 4]);
        assert_eq!(huge.map(|s| s.byte_len(DType::F32)), Some(None));
    }

    #[test]
    fn bundle_sizes() {
        let q = Some(DType::Q4_1);
        let swiglu = BundleParts {
            gate: q,
            up: q,
            down: q,
        };
        assert_eq!(swiglu.bundle_bytes(576), Some(1080));
        let relu = BundleParts {
            gate: None,
            up: q,
            down: Some(DType::Q8_0),
        };
        assert_eq!(relu.bundle_bytes(576), Some(360 + 612));
        let none = BundleParts {
            gate: None,
            up: None,
            down: None,
        };
        assert_eq!(none.bundle_bytes(576), None);
        assert_eq!(swiglu.bundle_bytes(577), None);
        assert_eq!(swiglu.bundle_bytes(0), None);
    }

    #[test]
    fn placement_queries() {
        let perm = [U32::new(2), U32::new(0), U32::new(1)];
        let inv = [U32::new(1), U32::new(2), U32::new(0)];
        let p = Placement::new(&perm, &inv);
        assert_eq!(p.neuron_at(0), Some(2));
        assert_eq!(p.position_of(2), Some(0));
        assert_eq!(p.neuron_at(3), None);
        assert!(!p.is_identity());
        assert_eq!(p.moved(), 3);
        let id = [U32::new(0), U32::new(1)];
        assert!(Placement::new(&id, &id).is_identity());
    }

    #[test]
    fn bundle_offsets() {
        let r = BundleRegion {
            layer: 0,
            offset: 8192,
            length: 3 * 1088,
            count: 3,
            bundle_size: 1080,
            stride: 1088,
            parts: BundleParts {
                gate: None,
                up: None,
                down: None,
            },
            first_bundle: 0,
        };
        assert_eq!(r.bundle_offset(2), Some(8192 + 2 * 1088));
        assert_eq!(r.bundle_offset(3), None);
    }
}
