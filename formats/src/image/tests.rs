//! Whole-image tests: write then read, every single-byte corruption, every
//! truncation, and one crafted image per error kind.

use std::borrow::Cow;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::FromBytes;

use crate::DType;

use super::layout::{HeaderRecord, LayerRecord, SectionEntry, TensorRecord, HEADER_LEN};
use super::*;

mod arch;
mod coded;
mod lineage;

/// A small deterministic generator (SplitMix64), so one `u64` from proptest
/// describes a whole random image.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Everything an image was built from, to compare with what is read back.
#[derive(Debug, Clone)]
struct Spec {
    block_size: u32,
    geometry: ModelGeometry,
    cost: Option<StoredCostModel>,
    tensors: Vec<(String, DType, Vec<u64>, Vec<u8>)>,
    layers: Vec<LayerSpec<'static>>,
    tokenizer: Option<Vec<u8>>,
}

const DTYPES: [DType; 6] = [
    DType::F32,
    DType::F16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_1,
    DType::Q8_0,
];

fn random_spec(seed: u64, max_block: u32) -> Spec {
    let mut r = Rng(seed);
    let block_size = r.pick(&[512u32, 1024, 4096]).min(max_block);
    let hidden = 32 * (1 + r.below(2) as u32);
    let n_layers = r.below(4) as u32;
    let geometry = ModelGeometry {
        arch: ArchTag::new(r.pick(&["llama", "opt", "x"])).unwrap(),
        layers: n_layers,
        hidden,
        ffn: r.below(7) as u32,
        heads: r.below(16) as u32,
        kv_heads: r.below(16) as u32,
        head_dim: r.below(128) as u32,
        vocab: r.below(50_000) as u32,
        context: r.below(10_000) as u32,
        rope_base: 10_000.0 + r.below(100) as f32,
        rms_eps: 1e-5,
        fingerprint: r.next(),
    };
    let cost = (r.below(2) == 1).then(|| StoredCostModel {
        command_ns: r.next() as u32,
        bytes_per_sec: 1 + r.below(u64::MAX - 1),
        queue_depth: 1 + r.below(64) as u16,
    });
    let mut tensors = Vec::new();
    let mut names = Vec::new();
    for _ in 0..r.below(5) {
        let name = std::format!("blk.{}.w{}", r.below(100), r.below(10));
        if names.contains(&name) {
            continue;
        }
        names.push(name.clone());
        let dtype = r.pick(&DTYPES);
        let mut dims = vec![dtype.block_elems() as u64 * (1 + r.below(3))];
        for _ in 0..r.below(4) {
            dims.push(1 + r.below(3));
        }
        let shape = Shape::new(&dims).unwrap();
        let len = shape.byte_len(dtype).unwrap() as usize;
        tensors.push((name, dtype, dims, r.bytes(len)));
    }
    let mut layers = Vec::new();
    for _ in 0..n_layers {
        let part = |r: &mut Rng| (r.below(4) != 0).then(|| r.pick(&DTYPES));
        let mut parts = BundleParts {
            gate: part(&mut r),
            up: part(&mut r),
            down: part(&mut r),
        };
        if parts.up.is_none() {
            parts.up = Some(DType::Q4_1);
        }
        let size = parts.bundle_bytes(hidden).unwrap() as usize;
        let count = r.below(7) as usize;
        let mut perm: Vec<u32> = (0..count as u32).collect();
        for i in (1..count).rev() {
            perm.swap(i, r.below(i as u64 + 1) as usize);
        }
        let mut spec = LayerSpec::new(parts, r.bytes(count * size), perm);
        if r.below(2) == 1 {
            spec = spec.with_stride((size + r.below(40) as usize) as u32);
        }
        if r.below(2) == 1 {
            // Every tag raw, the only codec there is (others are refused).
            // The random tags once used here are still drawn, so the rest
            // of a seed's image stays what it was.
            let drawn = r.bytes(count);
            spec = spec.with_codec_tags(vec![layout::CODEC_RAW; drawn.len()]);
        }
        layers.push(spec);
    }
    // Drawn last, so the rest of a seed's image is what it was before the
    // tokenizer section existed.
    let tokenizer = (r.below(2) == 1).then(|| {
        let tokens: Vec<String> = (0..1 + r.below(6))
            .map(|i| std::format!("t{i}{}", r.below(1000)))
            .collect();
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        tokenizer_file(&refs)
    });
    Spec {
        block_size,
        geometry,
        cost,
        tensors,
        layers,
        tokenizer,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF value: its type code and the bytes after it.
type Enc = (u32, Vec<u8>);

fn enc_str(s: &str) -> Enc {
    let mut out = Vec::new();
    put_str(&mut out, s);
    (8, out)
}

fn enc_array(elem: u32, len: usize, items: Vec<u8>) -> Enc {
    let mut out = elem.to_le_bytes().to_vec();
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&items);
    (9, out)
}

fn enc_strs(items: &[&str]) -> Enc {
    let mut out = Vec::new();
    for s in items {
        put_str(&mut out, s);
    }
    enc_array(8, items.len(), out)
}

/// A GGUF v3 file with no tensors holding `entries`, without padding.
fn raw_gguf(entries: &[(&str, Enc)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, (code, value)) in entries {
        put_str(&mut out, key);
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// `bytes` with zeros up to the next multiple of 32 (GGUF's alignment).
fn padded(mut bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.len().next_multiple_of(32);
    bytes.resize(end, 0);
    bytes
}

/// A model's metadata: architecture, a name, a tokenizer model and `tokens`.
fn gguf_source(tokens: &[&str]) -> Vec<u8> {
    raw_gguf(&[
        ("general.architecture", enc_str("llama")),
        ("general.name", enc_str("tiny")),
        ("tokenizer.ggml.model", enc_str("gpt2")),
        ("tokenizer.ggml.tokens", enc_strs(tokens)),
    ])
}

/// A tokenizer section as `lode pack` makes one.
fn tokenizer_file(tokens: &[&str]) -> Vec<u8> {
    let src = gguf_source(tokens);
    crate::gguf::tokenizer_only(&crate::gguf::Gguf::parse(&src).unwrap()).unwrap()
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut b = ImageBuilder::new(spec.geometry);
    b.block_size(spec.block_size).cost_model(spec.cost);
    for (name, dtype, dims, data) in &spec.tensors {
        b.add_tensor(name.clone(), *dtype, dims, data.as_slice())
            .unwrap();
    }
    for layer in &spec.layers {
        b.add_layer(layer.clone());
    }
    if let Some(t) = &spec.tokenizer {
        b.tokenizer_gguf(t.as_slice());
    }
    b.to_bytes().unwrap()
}

/// Open `bytes` and check all of its data, as `lode inspect --verify` does.
fn open_and_verify(bytes: &[u8]) -> Result<(), ImageError> {
    let image = Image::parse(bytes)?;
    let data = bytes
        .get(image.header().meta_len as usize..)
        .unwrap_or_default();
    image.verify_data(data)
}

fn slice(bytes: &[u8], offset: u64, len: u64) -> &[u8] {
    &bytes[offset as usize..(offset + len) as usize]
}

fn check_round_trip(spec: &Spec, bytes: &[u8]) {
    let image = Image::parse(bytes).unwrap();
    let h = image.header();
    assert_eq!(h.file_len, bytes.len() as u64);
    assert_eq!(h.block_size, spec.block_size);
    let minor = if spec.tokenizer.is_some() { 1 } else { 0 };
    assert_eq!((h.major, h.minor), (1, minor));
    assert_eq!(h.section_count, 8 + u32::from(minor));
    assert_eq!(image.tokenizer_gguf(), spec.tokenizer.as_deref());
    assert_eq!(image.geometry(), spec.geometry);
    assert_eq!(image.cost_model(), spec.cost);

    let mut sorted = spec.tensors.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(image.tensor_count(), sorted.len());
    let read: Vec<TensorInfo<'_>> = image.tensors().collect();
    assert_eq!(read.len(), sorted.len());
    for (i, (t, (name, dtype, dims, data))) in read.iter().zip(&sorted).enumerate() {
        assert_eq!(t.name, name);
        assert_eq!(t.dtype, *dtype);
        assert_eq!(t.shape.dims(), dims.as_slice());
        assert_eq!(t.offset % u64::from(spec.block_size), 0);
        assert_eq!(slice(bytes, t.offset, t.length), data.as_slice());
        assert_eq!(image.verify_tensor(i, data), Ok(()));
        assert_eq!(image.tensor_by_name(name).map(|(j, _)| j), Some(i));
    }
    assert_eq!(image.tensor_by_name("no.such.tensor"), None);

    assert_eq!(image.layer_count(), spec.layers.len());
    for (l, (region, layer)) in image.layers().zip(&spec.layers).enumerate() {
        let count = layer.perm.len() as u32;
        let size = layer.parts.bundle_bytes(spec.geometry.hidden).unwrap();
        assert_eq!(region.layer, l);
        assert_eq!(region.parts, layer.parts);
        assert_eq!(region.count, count);
        assert_eq!(region.bundle_size, size);
        assert_eq!(region.stride, layer.stride.unwrap_or(size));
        assert_eq!(region.offset % u64::from(spec.block_size), 0);
        assert_eq!(image.bundle_region(l), Some(region));

        let placement = image.placement(l).unwrap();
        let perm: Vec<u32> = placement.perm().iter().map(|v| v.get()).collect();
        assert_eq!(perm, layer.perm);
        for pos in 0..count {
            let neuron = placement.neuron_at(pos).unwrap();
            assert_eq!(placement.position_of(neuron), Some(pos));
            let want_tag = layer.codec_tags.get(pos as usize).copied().unwrap_or(0);
            assert_eq!(image.codec_tag(l, pos), Some(want_tag));
            let content = &layer.bundles[(pos * size) as usize..((pos + 1) * size) as usize];
            let at = region.bundle_offset(pos).unwrap();
            assert_eq!(slice(bytes, at, u64::from(size)), content);
            assert_eq!(image.verify_bundle(l, pos, content), Ok(()));
        }
        assert_eq!(image.codec_tag(l, count), None);
        assert_eq!(
            placement.is_identity(),
            layer.perm.iter().enumerate().all(|(i, &n)| i as u32 == n)
        );
    }
    assert_eq!(image.bundle_region(spec.layers.len()), None);
    assert_eq!(image.placement(spec.layers.len()), None);
    assert_eq!(open_and_verify(bytes), Ok(()));
}

/// Recompute every CRC of a (patched) image's metadata, so a test can make
/// a structurally wrong image whose checksums are right.
fn reseal(bytes: &mut [u8]) {
    reseal_checksums(bytes).unwrap();
}

/// `bytes` changed by `patch`, every checksum resealed, opened and
/// verified: what a reader says of an image whose only defect is the patch.
fn reopened_with(mut bytes: Vec<u8>, patch: &dyn Fn(&mut Vec<u8>)) -> Result<(), ImageError> {
    patch(&mut bytes);
    reseal(&mut bytes);
    open_and_verify(&bytes)
}

/// Sets the header's minor version (checksums not resealed).
fn set_minor(bytes: &mut [u8], minor: u16) {
    HeaderRecord::mut_from_prefix(bytes).unwrap().0.minor = U16::new(minor);
}

/// The byte range of section `kind`.
fn section(bytes: &[u8], kind: SectionKind) -> core::ops::Range<usize> {
    let (header, _) = HeaderRecord::ref_from_prefix(bytes).unwrap();
    let count = header.section_count.get() as usize;
    let entries =
        <[SectionEntry]>::ref_from_bytes(&bytes[HEADER_LEN..HEADER_LEN + count * 24]).unwrap();
    let e = entries
        .iter()
        .find(|e| e.kind.get() == kind.code())
        .unwrap();
    e.offset.get() as usize..(e.offset.get() + e.length.get()) as usize
}

fn tensor_record(bytes: &mut [u8], index: usize) -> &mut TensorRecord {
    let range = section(bytes, SectionKind::Tensors);
    let table = <[TensorRecord]>::mut_from_bytes(&mut bytes[range]).unwrap();
    &mut table[index]
}

fn layer_record(bytes: &mut [u8], layer: usize) -> &mut LayerRecord {
    let range = section(bytes, SectionKind::Layers);
    let table = <[LayerRecord]>::mut_from_bytes(&mut bytes[range]).unwrap();
    &mut table[layer]
}

fn kind_of(bytes: &[u8]) -> Result<(), ErrorKind> {
    open_and_verify(bytes).map_err(|e| e.kind())
}

fn geometry(layers: u32, hidden: u32) -> ModelGeometry {
    ModelGeometry {
        arch: ArchTag::new("llama").unwrap(),
        layers,
        hidden,
        ffn: 4,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 49152,
        context: 8192,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        fingerprint: 0xC0FF_EE00_1234_5678,
    }
}

/// The geometry record holds a model shape's numbers: converting to a
/// shape and back is the identity, and a number too wide for its 32-bit
/// field is named.
#[test]
fn geometry_converts_to_and_from_a_model_shape() {
    let g = geometry(30, 576);
    let shape = g.shape(true);
    assert_eq!((shape.layers, shape.hidden, shape.ffn), (30, 576, 4));
    assert_eq!((shape.heads, shape.kv_heads, shape.head_dim), (9, 3, 64));
    assert_eq!((shape.vocab, shape.context), (49152, 8192));
    assert!(shape.tied_embeddings);
    assert_eq!(ModelGeometry::new(g.arch, &shape, g.fingerprint), Ok(g));
    #[cfg(target_pointer_width = "64")]
    {
        let wide = crate::ModelShape {
            vocab: 1 << 32,
            ..shape
        };
        let err = ModelGeometry::new(g.arch, &wide, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model vocabulary 4294967296 does not fit an image"
        );
    }
}

/// A fixed small image: two tensors, two layers (one with stride padding
/// and a non-identity placement), a cost model, 512-byte blocks: a 1.0
/// image.
fn small_image() -> Vec<u8> {
    small_image_with(None)
}

/// The tokens of [`small_image_tok`]'s tokenizer.
const SMALL_TOKENS: [&str; 4] = ["<|im_start|>", "a", "b", "ab"];

/// [`small_image`] with a tokenizer section: a 1.1 image.
fn small_image_tok() -> Vec<u8> {
    small_image_with(Some(tokenizer_file(&SMALL_TOKENS)))
}

fn small_image_with(tokenizer: Option<Vec<u8>>) -> Vec<u8> {
    small_builder(tokenizer).to_bytes().unwrap()
}

/// The builder of [`small_image_with`], for tests that add to it.
fn small_builder(tokenizer: Option<Vec<u8>>) -> ImageBuilder<'static> {
    let q = Some(DType::Q4_1);
    let parts = BundleParts {
        gate: q,
        up: q,
        down: q,
    };
    // hidden 32: each Q4_1 row is 20 bytes, a bundle 60.
    let bundles: Vec<u8> = (0..4 * 60).map(|i| (i * 7 + 3) as u8).collect();
    let mut b = ImageBuilder::new(geometry(2, 32));
    b.block_size(512).cost_model(Some(StoredCostModel {
        command_ns: 50_000,
        bytes_per_sec: 1_280_000_000,
        queue_depth: 4,
    }));
    b.add_tensor(
        "token_embd.weight",
        DType::Q8_0,
        &[32, 3],
        vec![5u8; 3 * 34],
    )
    .unwrap();
    b.add_tensor("output_norm.weight", DType::F32, &[32], vec![1u8; 128])
        .unwrap();
    b.add_layer(LayerSpec::new(parts, bundles.clone(), vec![2, 0, 3, 1]).with_stride(64));
    b.add_layer(LayerSpec::new(parts, bundles, vec![0, 1, 2, 3]).with_codec_tags(vec![0; 4]));
    if let Some(t) = tokenizer {
        b.tokenizer_gguf(t);
    }
    b
}

#[test]
fn small_image_round_trips() {
    let bytes = small_image();
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.tensor_count(), 2);
    // Sorted by name.
    assert_eq!(image.tensor(0).unwrap().name, "output_norm.weight");
    assert_eq!(image.placement(0).map(|p| p.is_identity()), Some(false));
    assert_eq!(image.placement(1).map(|p| p.is_identity()), Some(true));
    assert_eq!(image.codec_tag(1, 2), Some(0));
    assert_eq!(image.total_bundles(), 8);
    assert_eq!(open_and_verify(&bytes), Ok(()));
}

#[test]
fn every_single_byte_corruption_is_detected() {
    every_single_byte_corruption_of(&small_image());
}

#[test]
fn every_single_byte_corruption_is_detected_with_a_tokenizer() {
    every_single_byte_corruption_of(&small_image_tok());
}

fn every_single_byte_corruption_of(bytes: &[u8]) {
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0xFF] {
            let mut bad = bytes.to_vec();
            bad[i] ^= flip;
            assert!(
                open_and_verify(&bad).is_err(),
                "byte {i} ^ {flip:#04x} was accepted"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    every_truncation_of(&small_image());
}

#[test]
fn every_truncation_is_an_error_with_a_tokenizer() {
    every_truncation_of(&small_image_tok());
}

fn every_truncation_of(bytes: &[u8]) {
    for len in 0..bytes.len() {
        assert!(
            open_and_verify(&bytes[..len]).is_err(),
            "length {len} accepted"
        );
    }
    let meta = Image::parse(bytes).unwrap().header().meta_len as usize;
    for len in 0..meta {
        assert_eq!(
            Image::parse(&bytes[..len])
                .map(|_| ())
                .map_err(|e| e.kind()),
            Err(ErrorKind::Truncated),
            "prefix length {len}"
        );
    }
    let image = Image::parse(bytes).unwrap();
    let e = image
        .verify_data(&bytes[meta..bytes.len() - 1])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated);
    let mut longer = bytes[meta..].to_vec();
    longer.push(0);
    assert_eq!(
        image.verify_data(&longer).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );
}

#[test]
fn wrong_versions() {
    let mut bytes = small_image();
    HeaderRecord::mut_from_prefix(&mut bytes[..])
        .unwrap()
        .0
        .major = U16::new(2);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::UnsupportedVersion));

    // A newer minor of the same major is read.
    let mut bytes = small_image();
    HeaderRecord::mut_from_prefix(&mut bytes[..])
        .unwrap()
        .0
        .minor = U16::new(9);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Ok(()));
    assert_eq!(Image::parse(&bytes).unwrap().header().minor, 9);
}

#[test]
fn bad_magic() {
    let mut bytes = small_image();
    bytes[5] = b'\n'; // a CR-LF to LF translation
    assert_eq!(kind_of(&bytes), Err(ErrorKind::BadMagic));
    assert_eq!(kind_of(b"GGUF"), Err(ErrorKind::BadMagic));
    assert_eq!(kind_of(b""), Err(ErrorKind::Truncated));
}

#[test]
fn misaligned_offsets() {
    let mut bytes = small_image();
    let rec = tensor_record(&mut bytes, 1);
    rec.offset = U64::new(rec.offset.get() + 8);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Misaligned));

    let mut bytes = small_image();
    let rec = layer_record(&mut bytes, 0);
    rec.offset = U64::new(rec.offset.get() + 1);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Misaligned));

    let mut bytes = small_image();
    let (h, _) = HeaderRecord::mut_from_prefix(&mut bytes[..]).unwrap();
    h.file_len = U64::new(h.file_len.get() - 1);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Misaligned));
}

#[test]
fn out_of_range_offsets() {
    let len = small_image().len() as u64;
    for far in [len, len + 512, u64::MAX - 511] {
        let mut bytes = small_image();
        layer_record(&mut bytes, 1).offset = U64::new(far);
        reseal(&mut bytes);
        assert_eq!(kind_of(&bytes), Err(ErrorKind::OutOfRange), "offset {far}");
    }
    let mut bytes = small_image();
    tensor_record(&mut bytes, 0).offset = U64::new(len);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::OutOfRange));

    let mut bytes = small_image();
    tensor_record(&mut bytes, 0).name_offset = U32::new(1 << 20);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::OutOfRange));

    // A section reaching past the metadata prefix.
    let mut bytes = small_image();
    let at = HEADER_LEN + 7 * 24;
    let (e, _) = SectionEntry::mut_from_prefix(&mut bytes[at..]).unwrap();
    e.length = U64::new(1 << 40);
    reseal_table_only(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::OutOfRange));
}

/// Recompute only the table and header CRCs (the section bodies are not
/// where the table now says).
fn reseal_table_only(bytes: &mut [u8]) {
    let (header, _) = HeaderRecord::ref_from_prefix(&*bytes).unwrap();
    let table_end = HEADER_LEN + header.section_count.get() as usize * 24;
    let table_crc = crc32c(&bytes[HEADER_LEN..table_end]);
    let (header, _) = HeaderRecord::mut_from_prefix(&mut *bytes).unwrap();
    header.table_crc = U32::new(table_crc);
    let crc = crc32c(&zerocopy::IntoBytes::as_bytes(&*header)[..60]);
    header.header_crc = U32::new(crc);
}

fn placement_words(bytes: &mut [u8]) -> &mut [U32] {
    let range = section(bytes, SectionKind::Placement);
    <[U32]>::mut_from_bytes(&mut bytes[range]).unwrap()
}

#[test]
fn broken_permutations() {
    // Layer 0: perm at words 0..4, inverse at 4..8.
    let mut bytes = small_image();
    placement_words(&mut bytes).swap(0, 1);
    reseal(&mut bytes);
    let e = open_and_verify(&bytes).unwrap_err();
    assert_eq!(
        (e.kind(), e.location()),
        (ErrorKind::Malformed, Location::Layer(0))
    );

    let mut bytes = small_image();
    placement_words(&mut bytes)[2] = U32::new(4);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed));

    // A consistent swap of perm and inverse entries is a valid placement.
    let mut bytes = small_image();
    let words = placement_words(&mut bytes);
    let (a, b) = (words[0].get(), words[1].get());
    words.swap(0, 1);
    words.swap(4 + a as usize, 4 + b as usize);
    reseal(&mut bytes);
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.placement(0).unwrap().neuron_at(0), Some(b));
}

#[test]
fn checksums_and_padding_of_data() {
    let bytes = small_image();
    let image = Image::parse(&bytes).unwrap();
    let t = image.tensor(1).unwrap();
    let mut bad = bytes.clone();
    bad[t.offset as usize + 3] ^= 0x10;
    let e = open_and_verify(&bad).unwrap_err();
    assert_eq!(
        (e.kind(), e.location()),
        (ErrorKind::ChecksumMismatch, Location::Tensor(1))
    );
    let data = slice(&bad, t.offset, t.length);
    assert_eq!(
        image.verify_tensor(1, data).map_err(|e| e.kind()),
        Err(ErrorKind::ChecksumMismatch)
    );
    assert_eq!(
        image.verify_tensor(1, &data[1..]).map_err(|e| e.kind()),
        Err(ErrorKind::Truncated)
    );
    assert_eq!(
        image.verify_tensor(9, data).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );

    let r = image.bundle_region(0).unwrap();
    let at = r.bundle_offset(2).unwrap();
    let mut bad = bytes.clone();
    bad[at as usize] ^= 1;
    let e = open_and_verify(&bad).unwrap_err();
    assert_eq!(
        (e.kind(), e.location()),
        (
            ErrorKind::ChecksumMismatch,
            Location::Bundle { layer: 0, pos: 2 }
        )
    );
    let content = slice(&bytes, at, u64::from(r.bundle_size));
    assert_eq!(image.verify_bundle(0, 2, content), Ok(()));
    assert_eq!(
        image.verify_bundle(0, 1, content).map_err(|e| e.kind()),
        Err(ErrorKind::ChecksumMismatch)
    );
    assert_eq!(
        image.verify_bundle(0, 4, content).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );
    assert_eq!(
        image.verify_bundle(2, 0, content).map_err(|e| e.kind()),
        Err(ErrorKind::OutOfRange)
    );

    // Stride padding (layer 0 pads 60-byte bundles to 64) must be zero.
    let pad = at + u64::from(r.bundle_size) + 1;
    let mut bad = bytes.clone();
    bad[pad as usize] = 0x40;
    let e = open_and_verify(&bad).unwrap_err();
    assert_eq!(
        (e.kind(), e.location()),
        (ErrorKind::NonZeroPadding, Location::Offset(pad))
    );

    // So must the metadata padding, found at open time.
    let mut bad = bytes.clone();
    let meta = image.header().meta_len as usize;
    bad[meta - 1] = 1;
    assert_eq!(
        Image::parse(&bad).map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::NonZeroPadding)
    );
}

#[test]
fn inconsistent_tables_are_malformed() {
    // Tensor length that disagrees with its shape.
    let mut bytes = small_image();
    let rec = tensor_record(&mut bytes, 1);
    rec.dims[1] = U64::new(4);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed));

    // Unknown dtype.
    let mut bytes = small_image();
    tensor_record(&mut bytes, 0).dtype = U32::new(4);
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed));

    // Bundle size that disagrees with its parts.
    let mut bytes = small_image();
    layer_record(&mut bytes, 1).parts[0] = U32::new(DType::Q8_0.code());
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed));

    // Layer count that disagrees with the geometry.
    let mut bytes = small_image();
    let range = section(&bytes, SectionKind::Geometry);
    bytes[range.start + 16] = 3;
    reseal(&mut bytes);
    assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed));
}

/// FORMAT.md: a reader must not use a bundle whose codec it does not know.
/// Refusing the image when it is opened, naming the bundle, is how this
/// reader makes sure nothing reads such a bundle as raw weights.
#[test]
fn unknown_codec_tags_are_refused_naming_the_bundle() {
    for tag in [1u8, 2, 0x80, 0xFF] {
        let mut bytes = small_image();
        let range = section(&bytes, SectionKind::CodecTags);
        // Layer 0 holds bundles 0..4, layer 1 bundles 4..8.
        bytes[range.start + 4 + 2] = tag;
        reseal(&mut bytes);
        let e = Image::parse(&bytes).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsupportedCodec, "tag {tag}");
        assert_eq!(e.location(), Location::Bundle { layer: 1, pos: 2 });
        assert_eq!(
            e.to_string(),
            "unsupported codec in layer 1 bundle 2: codec tag is not 0 (raw), the only codec \
             this reader decodes"
        );
    }
    // The first unknown tag in file order is the one named.
    let mut bytes = small_image();
    let range = section(&bytes, SectionKind::CodecTags);
    bytes[range.start + 3] = 9;
    bytes[range.start + 5] = 9;
    reseal(&mut bytes);
    let e = Image::parse(&bytes).unwrap_err();
    assert_eq!(e.location(), Location::Bundle { layer: 0, pos: 3 });
}

#[test]
fn the_writer_refuses_unknown_codec_tags() {
    let q = Some(DType::Q4_1);
    let parts = BundleParts {
        gate: q,
        up: q,
        down: q,
    };
    let mut b = ImageBuilder::new(geometry(1, 32));
    b.add_layer(LayerSpec::new(parts, vec![0u8; 120], vec![0, 1]).with_codec_tags(vec![0, 1]));
    match b.to_bytes() {
        Err(WriteError::Invalid(e)) => {
            assert_eq!(e.kind(), ErrorKind::UnsupportedCodec);
            assert_eq!(e.location(), Location::Bundle { layer: 0, pos: 1 });
        }
        other => panic!("{other:?}"),
    }
}

/// Every field the format reserves (must be zero) or whose unknown values
/// it leaves undefined is refused when set, with every checksum right.
/// (The header's flags and reserved bytes: `header.rs`.)
#[test]
fn reserved_fields_and_unknown_flags_are_refused() {
    let detail = |bytes: &[u8]| {
        Image::parse(bytes)
            .map(|_| ())
            .map_err(|e| (e.kind(), e.detail()))
    };
    // A tensor entry's reserved word.
    let mut bytes = small_image();
    tensor_record(&mut bytes, 1).reserved = U32::new(1);
    reseal(&mut bytes);
    assert_eq!(
        detail(&bytes),
        Err((ErrorKind::Malformed, "reserved field is set"))
    );
    // The cost model's reserved bytes and its present flag.
    for (at, value, want) in [
        (18, 1u8, "reserved bytes are set"),
        (23, 0x80, "reserved bytes are set"),
        (0, 2, "present flag is neither 0 nor 1"),
        (3, 1, "present flag is neither 0 nor 1"),
    ] {
        let mut bytes = small_image();
        let range = section(&bytes, SectionKind::CostModel);
        bytes[range.start + at] = value;
        reseal(&mut bytes);
        assert_eq!(
            detail(&bytes),
            Err((ErrorKind::Malformed, want)),
            "byte {at}"
        );
    }
    // The architecture tag's zero padding.
    let mut bytes = small_image();
    let range = section(&bytes, SectionKind::Geometry);
    bytes[range.start + 15] = b'x';
    reseal(&mut bytes);
    assert_eq!(
        detail(&bytes),
        Err((
            ErrorKind::Malformed,
            "architecture tag is not printable ASCII padded with zeros"
        ))
    );
    // A bundle part's dtype: a code outside the table, not "absent".
    let mut bytes = small_image();
    layer_record(&mut bytes, 0).parts[1] = U32::new(0xFFFF_FFFE);
    reseal(&mut bytes);
    assert_eq!(
        detail(&bytes),
        Err((
            ErrorKind::Malformed,
            "bundle part dtype code unknown in this image's version"
        ))
    );
}

#[test]
fn writer_refuses_bad_input() {
    let q = Some(DType::Q4_1);
    let parts = BundleParts {
        gate: q,
        up: q,
        down: q,
    };
    let kind = |b: &ImageBuilder<'_>| match b.to_bytes() {
        Err(WriteError::Invalid(e)) => Some(e.kind()),
        _ => None,
    };
    let mut b = ImageBuilder::new(geometry(1, 32));
    b.add_layer(LayerSpec::new(parts, vec![0u8; 120], vec![0, 0]));
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    let mut b = ImageBuilder::new(geometry(1, 32));
    b.add_layer(LayerSpec::new(parts, vec![0u8; 119], vec![0, 1]));
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    let mut b = ImageBuilder::new(geometry(0, 32));
    b.add_tensor("a", DType::F32, &[4], vec![0u8; 16]).unwrap();
    b.add_tensor("a", DType::F32, &[4], vec![0u8; 16]).unwrap();
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    let mut b = ImageBuilder::new(geometry(0, 32));
    b.add_tensor("a", DType::F32, &[4], vec![0u8; 15]).unwrap();
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    let mut b = ImageBuilder::new(geometry(0, 32));
    assert!(b.add_tensor("a", DType::F32, &[], vec![]).is_err());
    b.block_size(3000);
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));
    b.block_size(256);
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    // Geometry with one layer but no layer added.
    let b = ImageBuilder::new(geometry(1, 32));
    assert_eq!(kind(&b), Some(ErrorKind::Malformed));

    let b = ImageBuilder::new(geometry(0, 32));
    let bytes = b.to_bytes().unwrap();
    assert_eq!(bytes.len(), 4096);
    assert_eq!(open_and_verify(&bytes), Ok(()));
}

#[test]
fn error_messages_name_the_problem() {
    let mut bytes = small_image();
    bytes[HEADER_LEN + 3] ^= 1;
    let msg = open_and_verify(&bytes).unwrap_err().to_string();
    assert_eq!(
        msg,
        "checksum mismatch in section table: section table CRC32C differs"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn write_then_read_gives_back_the_tables(seed in any::<u64>()) {
        let spec = random_spec(seed, 4096);
        let bytes = build(&spec);
        check_round_trip(&spec, &bytes);
    }

    #[test]
    fn chunked_verification_equals_whole(seed in any::<u64>(), cuts in proptest::collection::vec(1usize..700, 1..20), flip in any::<Option<prop::sample::Index>>()) {
        let spec = random_spec(seed, 512);
        let mut bytes = build(&spec);
        if let Some(i) = flip {
            let i = i.index(bytes.len());
            bytes[i] ^= 0x20;
        }
        let whole = open_and_verify(&bytes);
        if let Ok(image) = Image::parse(&bytes) {
            let mut data = &bytes[image.header().meta_len as usize..];
            let mut v = image.data_verifier();
            let mut result = Ok(());
            for &n in cuts.iter().cycle() {
                if data.is_empty() || result.is_err() {
                    break;
                }
                let (head, tail) = data.split_at(n.min(data.len()));
                result = v.update(head);
                data = tail;
            }
            let chunked = result.and_then(|()| v.finish());
            prop_assert_eq!(chunked, whole);
        }
    }

    #[test]
    fn random_single_byte_corruptions_are_detected(seed in any::<u64>(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let spec = random_spec(seed, 512);
        let mut bytes = build(&spec);
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(open_and_verify(&bytes).is_err(), "byte {} ^ {:#x} accepted", i, flip);
    }

    #[test]
    fn garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = layout::MAGIC.to_vec();
        bytes.extend_from_slice(&tail);
        let _ = open_and_verify(&bytes);
        let _ = ImageHeader::parse(&tail);
    }

    #[test]
    fn patched_headers_never_panic(seed in any::<u64>(), field in 8usize..60, value in any::<u64>()) {
        // Valid CRCs over arbitrary header values: the checks behind the CRC
        // must hold on their own.
        let spec = random_spec(seed, 512);
        let mut bytes = build(&spec);
        let end = (field + 8).min(60);
        bytes[field..end].copy_from_slice(&value.to_le_bytes()[..end - field]);
        let crc = crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        let _ = open_and_verify(&bytes);
    }
}

#[test]
fn inspect_style_two_step_open() {
    // Header from the first block, then exactly the prefix.
    let bytes = small_image();
    let header = ImageHeader::parse(&bytes[..512]).unwrap();
    let prefix = &bytes[..header.meta_len as usize];
    let image = Image::parse(prefix).unwrap();
    assert_eq!(*image.header(), header);
    let data: Cow<'_, [u8]> = Cow::Borrowed(&bytes[prefix.len()..]);
    assert_eq!(image.verify_data(&data), Ok(()));
}

/// Lengths and CRC32Cs of images the 1.0 writer made (before the tokenizer
/// section existed): an image without a tokenizer must stay byte for byte
/// a 1.0 image. (Since unknown codec tags are refused, the test images
/// carry raw tags where they once had random ones: the CRCs of those four
/// changed then, their lengths did not.)
#[test]
fn images_without_a_tokenizer_are_unchanged_1_0_images() {
    let a = small_image();
    assert_eq!((a.len(), crc32c(&a)), (3072, 0x5888_8c34));
    for (seed, len, crc) in [
        (1u64, 20480, 0xd3db_2442),
        (2, 8192, 0xd72c_e354),
        (3, 2560, 0x26ee_8487),
        (42, 3072, 0x3e4e_3948),
        (1234, 7168, 0x155a_2cd3),
    ] {
        let mut spec = random_spec(seed, 4096);
        spec.tokenizer = None;
        let b = build(&spec);
        assert_eq!((b.len(), crc32c(&b)), (len, crc), "seed {seed}");
    }
}

#[test]
fn tokenizer_section_round_trips_in_a_1_1_image() {
    let plain = small_image();
    let bytes = small_image_tok();
    let image = Image::parse(&bytes).unwrap();
    let h = image.header();
    assert_eq!((h.major, h.minor, h.section_count), (1, 1, 9));
    let stored = image.tokenizer_gguf().unwrap();
    assert_eq!(stored, tokenizer_file(&SMALL_TOKENS).as_slice());
    let file = crate::gguf::Gguf::parse(stored).unwrap();
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.get_str("tokenizer.ggml.model"), Ok("gpt2"));
    assert!(file.get("general.name").is_none());
    let tokens: Vec<&str> = file
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .strings()
        .unwrap()
        .collect();
    assert_eq!(tokens, SMALL_TOKENS);
    // Kind 9 comes last, after the cost model.
    let range = section(&bytes, SectionKind::Tokenizer);
    assert_eq!(range.len(), stored.len());
    assert!(range.start >= section(&bytes, SectionKind::CostModel).end);
    assert_eq!(open_and_verify(&bytes), Ok(()));

    // The same model without it: a 1.0 image, identical data after the prefix.
    let old = Image::parse(&plain).unwrap();
    assert_eq!(old.tokenizer_gguf(), None);
    assert_eq!((old.header().minor, old.header().section_count), (0, 8));
    assert_eq!(old.geometry(), image.geometry());
    assert_eq!(old.total_bundles(), image.total_bundles());
    assert_eq!(
        &bytes[h.meta_len as usize..],
        &plain[old.header().meta_len as usize..]
    );
}

#[test]
fn a_tokenizer_section_needs_minor_1() {
    let set_minor = |minor: u16| {
        let mut bytes = small_image_tok();
        HeaderRecord::mut_from_prefix(&mut bytes[..])
            .unwrap()
            .0
            .minor = U16::new(minor);
        reseal(&mut bytes);
        open_and_verify(&bytes)
    };
    let e = set_minor(0).unwrap_err();
    assert_eq!(
        (e.kind(), e.location()),
        (
            ErrorKind::Malformed,
            Location::Section(SectionKind::Tokenizer)
        )
    );
    assert_eq!(set_minor(1), Ok(()));
    assert_eq!(set_minor(7), Ok(()));
}

#[test]
fn tokenizer_bytes_must_be_a_tokenizer_gguf() {
    let write = |t: Vec<u8>| -> Result<(), ImageError> {
        let mut b = ImageBuilder::new(geometry(0, 32));
        b.tokenizer_gguf(t);
        match b.to_bytes() {
            Ok(bytes) => open_and_verify(&bytes),
            Err(WriteError::Invalid(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    };
    let refused = |t: Vec<u8>| {
        let e = write(t).unwrap_err();
        assert_eq!(e.location(), Location::Section(SectionKind::Tokenizer));
        (e.kind(), e.detail())
    };
    let good = tokenizer_file(&["a", "bc"]);
    assert_eq!(write(good.clone()), Ok(()));
    // The chosen tokens leave padding before the 32-byte data offset.
    assert_eq!(good.last(), Some(&0));

    let malformed = |detail| (ErrorKind::Malformed, detail);
    assert_eq!(refused(Vec::new()), malformed("not a GGUF file lode reads"));
    assert_eq!(
        refused(b"GGUF\x03\0\0\0 junk".to_vec()),
        malformed("not a GGUF file lode reads")
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert_eq!(refused(v2), malformed("GGUF version is not 3"));

    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 32]);
    assert_eq!(
        refused(longer),
        malformed("length is not the GGUF file's data offset")
    );
    let mut dirty = good.clone();
    *dirty.last_mut().unwrap() = 1;
    assert_eq!(
        refused(dirty),
        (
            ErrorKind::NonZeroPadding,
            "padding after the GGUF metadata is not zero"
        )
    );

    // A file with a tensor: one f32 tensor of 8 elements at offset 0.
    let mut with_tensor = gguf_source(&["a"]);
    with_tensor[8] = 1;
    put_str(&mut with_tensor, "w");
    with_tensor.extend_from_slice(&1u32.to_le_bytes());
    with_tensor.extend_from_slice(&8u64.to_le_bytes());
    with_tensor.extend_from_slice(&0u32.to_le_bytes());
    with_tensor.extend_from_slice(&0u64.to_le_bytes());
    let mut with_tensor = padded(with_tensor);
    with_tensor.extend_from_slice(&[0; 32]);
    assert_eq!(refused(with_tensor), malformed("GGUF file holds tensors"));

    // Metadata without what a tokenizer reader needs.
    let model = ("tokenizer.ggml.model", enc_str("gpt2"));
    let arch = ("general.architecture", enc_str("llama"));
    let tokens = ("tokenizer.ggml.tokens", enc_strs(&["a"]));
    assert_eq!(
        write(padded(raw_gguf(&[arch.clone(), tokens.clone()]))),
        Ok(())
    );
    assert_eq!(
        refused(padded(raw_gguf(&[model.clone(), tokens.clone()]))),
        malformed("GGUF file has no general.architecture string")
    );
    let arch_number = ("general.architecture", (4, 7u32.to_le_bytes().to_vec()));
    assert_eq!(
        refused(padded(raw_gguf(&[arch_number, tokens]))),
        malformed("GGUF file has no general.architecture string")
    );
    let no_tokens = malformed("GGUF file has no tokenizer.ggml.tokens string array");
    assert_eq!(refused(padded(raw_gguf(&[arch.clone(), model]))), no_tokens);
    let int_tokens = (
        "tokenizer.ggml.tokens",
        enc_array(5, 1, 7i32.to_le_bytes().to_vec()),
    );
    assert_eq!(refused(padded(raw_gguf(&[arch, int_tokens]))), no_tokens);
}

/// GGUF's Q5_0, Q4_K and Q6_K are element types of 1.3 images only: a
/// reader refuses an image of an older minor claiming them (a tensor's
/// dtype or a bundle part), checksums intact or not.
#[test]
fn k_quant_types_need_minor_3() {
    for d in [DType::Q5_0, DType::Q4_K, DType::Q6_K] {
        assert!(!super::tables::in_image(d, 2));
        assert!(super::tables::in_image(d, 3));
    }
    for code in [6u32, 12, 14] {
        let mut bytes = small_image();
        tensor_record(&mut bytes, 1).dtype = U32::new(code);
        reseal(&mut bytes);
        assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed), "code {code}");
        let mut bytes = small_image();
        layer_record(&mut bytes, 0).parts[2] = U32::new(code);
        reseal(&mut bytes);
        assert_eq!(kind_of(&bytes), Err(ErrorKind::Malformed), "part {code}");
    }
}
