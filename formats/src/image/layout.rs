//! The fixed byte layouts of a lode image (version 1.1), as zerocopy records.
//!
//! These structs *are* the format: every field is little-endian and every
//! struct is `Unaligned`, so a record can be viewed in place in any byte slice
//! (a read buffer need not be aligned for the reader to work). `FORMAT.md`
//! documents the same layouts byte by byte; the size assertions at the bottom
//! of this file keep the two from drifting apart silently.

use zerocopy::little_endian::{F32, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The eight bytes every image starts with.
///
/// - `0x8A`: a byte with the high bit set, so a transfer that strips the 8th
///   bit changes the magic, and no tool mistakes the file for ASCII text.
/// - `LODE`: the name, for people reading a hex dump.
/// - `\r\n`: a DOS line ending; a text-mode copy that converts CR-LF to LF
///   (or LF to CR-LF) changes it.
/// - `0x1A`: Ctrl-Z, which stops `type` on DOS and Windows from printing
///   the binary that follows.
pub const MAGIC: [u8; 8] = [0x8A, b'L', b'O', b'D', b'E', b'\r', b'\n', 0x1A];

/// Major version this reader understands. A different major is refused:
/// a major change may move any field.
pub const VERSION_MAJOR: u16 = 1;

/// Newest minor version this code reads and writes. A reader accepts any
/// minor of its major; a newer minor may only add sections of new kinds,
/// which older readers skip.
///
/// A writer emits the lowest minor whose sections the image uses, so an
/// image without the 1.1 tokenizer section is byte for byte a 1.0 image.
pub const VERSION_MINOR: u16 = MINOR_CODEC_V2;

/// Minor version of the first format with the tokenizer section (kind 9).
/// An image with that section and an older minor is refused: no writer of
/// the older minor could have made it.
pub const MINOR_TOKENIZER: u16 = 1;

/// Minor version of the first format with the lineage section (kind 10):
/// the layers a pruned image kept, and of which model.
pub const MINOR_LINEAGE: u16 = 2;

/// Minor version of the first format with the architecture section (kind
/// 11, a sliding-window model's attention parameters) and the element types
/// Q5_0, Q4_K and Q6_K (Gemma 3's).
pub const MINOR_ARCH: u16 = 3;

/// Minor version of the first format whose tensors may be coded (the
/// tensor table's `dtype` field carries a codec in bits 16 to 23).
pub const MINOR_CODED: u16 = 4;

/// Minor version of the first format whose coded tensors may be chains
/// of several units (tensor codec 2), each decoding on its own thread.
pub const MINOR_CHAIN: u16 = 5;

/// Minor version of the first format whose coded tensors may hold units
/// of the weight codec's version 2 (tensor codec 3), whose codebooks decode
/// in one table lookup.
pub const MINOR_CODEC_V2: u16 = 6;

/// Most units a chain-coded tensor may have; a reader refuses more.
pub const MAX_CHAIN_UNITS: usize = 16;

/// Bit position of a tensor's codec in the tensor table's `dtype` field
/// (since 1.4); the element type is the low 16 bits.
pub const TENSOR_CODEC_SHIFT: u32 = 16;

/// Minor version of an image that uses only the 1.0 sections.
pub const MINOR_BASE: u16 = 0;

/// Bytes of the fixed header at offset 0.
pub const HEADER_LEN: usize = 64;

/// Bytes of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 24;

/// Sections start at multiples of this, so their records can be viewed as
/// naturally aligned words by readers that care.
pub const SECTION_ALIGN: u64 = 8;

/// Smallest block size an image may declare (a disk sector).
pub const MIN_BLOCK_SIZE: u32 = 512;

/// Largest block size an image may declare. A limit keeps every padding run
/// small and every block addressable as a `usize` on 32-bit targets.
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;

/// Block size a writer uses unless told otherwise: the page and flash-page
/// size of the devices lode targets.
pub const DEFAULT_BLOCK_SIZE: u32 = 4096;

/// Most entries the section table may hold (nine are defined in 1.1; the
/// rest leave room for minor versions).
pub const MAX_SECTIONS: u32 = 64;

/// Longest tensor name in bytes.
pub const MAX_NAME_LEN: u32 = 1024;

/// Most dimensions of a tensor.
pub const MAX_DIMS: usize = 4;

/// Bytes of the architecture tag in the geometry section.
pub const ARCH_LEN: usize = 16;

/// Dtype code of a bundle part that the bundles do not contain.
pub const PART_ABSENT: u32 = u32::MAX;

/// Codec tag of a bundle stored uncompressed.
pub const CODEC_RAW: u8 = 0;

/// The fixed header, at offset 0 (64 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HeaderRecord {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Major version; see [`VERSION_MAJOR`].
    pub major: U16,
    /// Minor version; see [`VERSION_MINOR`].
    pub minor: U16,
    /// Alignment of every data extent: a power of two in
    /// [`MIN_BLOCK_SIZE`]..=[`MAX_BLOCK_SIZE`].
    pub block_size: U32,
    /// Length of the metadata prefix (header, section table, sections,
    /// padding): a multiple of `block_size`. Data starts here.
    pub meta_len: U64,
    /// Length of the whole image: a multiple of `block_size`.
    pub file_len: U64,
    /// Entries in the section table.
    pub section_count: U32,
    /// CRC32C of the section table's bytes.
    pub table_crc: U32,
    /// Feature flags; none are defined in 1.0, so this must be zero.
    pub flags: U32,
    /// Must be zero.
    pub reserved: [u8; 16],
    /// CRC32C of bytes 0..60 of the header.
    pub header_crc: U32,
}

/// One section-table entry (24 bytes). The table follows the header.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SectionEntry {
    /// What the section holds; see [`SectionKind`](super::SectionKind).
    pub kind: U32,
    /// CRC32C of the section's bytes.
    pub crc: U32,
    /// Absolute byte offset of the section (inside the metadata prefix).
    pub offset: U64,
    /// Length of the section in bytes.
    pub length: U64,
}

/// The model geometry section (64 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GeometryRecord {
    /// Architecture tag: printable ASCII, padded with zero bytes.
    pub arch: [u8; ARCH_LEN],
    /// Transformer layers.
    pub layers: U32,
    /// Hidden (embedding) width.
    pub hidden: U32,
    /// FFN neurons per layer.
    pub ffn: U32,
    /// Attention (query) heads.
    pub heads: U32,
    /// Key/value heads.
    pub kv_heads: U32,
    /// Elements per head.
    pub head_dim: U32,
    /// Vocabulary size.
    pub vocab: U32,
    /// Trained context length in tokens.
    pub context: U32,
    /// RoPE frequency base.
    pub rope_base: F32,
    /// RMSNorm epsilon.
    pub rms_eps: F32,
    /// Identity of the model's weights, so files derived from another model
    /// (traces, KV swap areas) can be refused.
    pub fingerprint: U64,
}

/// One tensor-table entry (72 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TensorRecord {
    /// Offset of the name in the string section.
    pub name_offset: U32,
    /// Length of the name in bytes.
    pub name_len: U32,
    /// Element type: a `DType` code.
    pub dtype: U32,
    /// Dimensions used, 1..=4.
    pub n_dims: U32,
    /// Dimensions, innermost (row length) first; unused ones are zero.
    pub dims: [U64; MAX_DIMS],
    /// Absolute offset of the tensor's data (block-aligned).
    pub offset: U64,
    /// Length of the tensor's data in bytes.
    pub length: U64,
    /// CRC32C of the tensor's data.
    pub crc: U32,
    /// Must be zero.
    pub reserved: U32,
}

/// One layer's bundle region (48 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LayerRecord {
    /// Absolute offset of the region (block-aligned).
    pub offset: U64,
    /// Length of the region: `count * stride`.
    pub length: U64,
    /// Index of this layer's first bundle among all bundles of the image:
    /// where its entries start in the per-bundle sections.
    pub first_bundle: U64,
    /// Bundles in the region (one per FFN neuron).
    pub count: U32,
    /// Bytes of one bundle's content.
    pub bundle_size: U32,
    /// Distance between consecutive bundles (at least `bundle_size`).
    pub stride: U32,
    /// Dtype codes of the gate row, up row and down column, in that order;
    /// [`PART_ABSENT`] for a part the bundles do not hold.
    pub parts: [U32; 3],
}

/// The cost-model section (24 bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CostRecord {
    /// 1 when a model is stored, 0 when not (then every other field is zero).
    pub present: U32,
    /// Fixed cost of one read command, in nanoseconds.
    pub command_ns: U32,
    /// Sequential read bandwidth in bytes per second.
    pub bytes_per_sec: U64,
    /// Commands that overlap their fixed cost.
    pub queue_depth: U16,
    /// Must be zero.
    pub reserved: [u8; 6],
}

/// The fixed head of the lineage section (16 bytes); one `U32` per image
/// layer follows it (the source layer that image layer is).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LineageRecord {
    /// Fingerprint of the model the layers were taken from.
    pub base_fingerprint: U64,
    /// Layers of that model.
    pub base_layers: U32,
    /// Must be zero.
    pub reserved: U32,
}

/// The architecture section (16 bytes): the attention parameters of a
/// model whose layers alternate local (sliding-window) and global
/// attention, which the geometry cannot hold.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ArchRecord {
    /// Positions a local layer's query sees, itself included.
    pub window: U32,
    /// In each run of `period` layers the last is global, the rest local.
    pub period: U32,
    /// f32 bits: the local layers' RoPE base (the geometry's `rope_base`
    /// is the global layers').
    pub local_rope_base: U32,
    /// Bit 0: `output.weight` is the embedding table re-quantized (an
    /// approximate tied head). Other bits must be zero.
    pub flags: U32,
}

/// [`ArchRecord::flags`] bit 0: the image's `output.weight` is its
/// `token_embd.weight` re-quantized to a narrower type.
pub const ARCH_APPROX_HEAD: u32 = 1;

// The documented sizes; FORMAT.md relies on them.
const _: () = assert!(core::mem::size_of::<HeaderRecord>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<SectionEntry>() == SECTION_ENTRY_LEN);
const _: () = assert!(core::mem::size_of::<GeometryRecord>() == 64);
const _: () = assert!(core::mem::size_of::<TensorRecord>() == 72);
const _: () = assert!(core::mem::size_of::<LayerRecord>() == 48);
const _: () = assert!(core::mem::size_of::<CostRecord>() == 24);
const _: () = assert!(core::mem::size_of::<LineageRecord>() == 16);
const _: () = assert!(core::mem::size_of::<ArchRecord>() == 16);

/// Offset of `header_crc` in the header: the CRC covers the bytes before it.
pub const HEADER_CRC_OFFSET: usize = 60;
const _: () = assert!(core::mem::offset_of!(HeaderRecord, header_crc) == HEADER_CRC_OFFSET);
