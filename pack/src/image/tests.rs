//! The layouts packed from a tiny synthetic GGUF, checked against the GGUF
//! and against each other.

use std::string::String;
use std::vec;
use std::vec::Vec;

use lode_formats::gguf::Gguf;
use lode_formats::image::{BundleParts, Image};
use lode_formats::DType;
use lode_kernel::model::{BundleTypes, LlamaConfig, LoadError};
use lode_kernel::rng::SplitMix64;
use proptest::prelude::*;

use super::readback::{layer_bundles, layer_bundles_len, layer_layout};
use super::{build_image, FfnLayout, PackSummary};
use lode_hal::compute::quant::quantize_row;

const HIDDEN: usize = 64;
const FFN: usize = 96;
const LAYERS: usize = 2;
const VOCAB: usize = 4;

fn cfg() -> LlamaConfig {
    LlamaConfig {
        layers: LAYERS,
        hidden: HIDDEN,
        ffn: FFN,
        heads: 2,
        kv_heads: 1,
        head_dim: HIDDEN / 2,
        vocab: VOCAB,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 64,
        tied_embeddings: true,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `rows` rows of `cols` random values in [-1, 1), encoded as `dtype`.
fn matrix(r: &mut SplitMix64, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut out = vec![0u8; rows * rb];
    let mut x = vec![0.0f32; cols];
    for dst in out.chunks_exact_mut(rb) {
        for v in x.iter_mut() {
            *v = (r.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
        quantize_row(dtype, &x, dst).unwrap();
    }
    out
}

/// A GGUF v3 llama file with just what `build_image` reads: the
/// architecture, four token texts, an embedding, the output norm and per
/// layer a norm and Q4_1 gate, up and down matrices (weights from `seed`).
/// Written here, independently of any reader, so the test does not trust
/// the code it checks.
fn tiny_gguf(seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let (h, f) = (HIDDEN as u64, FFN as u64);
    let mut tensors: Vec<(String, Vec<u64>, DType, Vec<u8>)> = vec![
        (
            "token_embd.weight".into(),
            vec![h, VOCAB as u64],
            DType::F32,
            matrix(&mut r, DType::F32, VOCAB, HIDDEN),
        ),
        (
            "output_norm.weight".into(),
            vec![h],
            DType::F32,
            matrix(&mut r, DType::F32, 1, HIDDEN),
        ),
    ];
    for l in 0..LAYERS {
        let n = |part: &str| format!("blk.{l}.{part}.weight");
        tensors.push((
            n("attn_norm"),
            vec![h],
            DType::F32,
            matrix(&mut r, DType::F32, 1, HIDDEN),
        ));
        for part in ["ffn_gate", "ffn_up"] {
            let m = matrix(&mut r, DType::Q4_1, FFN, HIDDEN);
            tensors.push((n(part), vec![h, f], DType::Q4_1, m));
        }
        let m = matrix(&mut r, DType::Q4_1, HIDDEN, FFN);
        tensors.push((n("ffn_down"), vec![f, h], DType::Q4_1, m));
    }

    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&2u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    put_str(&mut out, "llama");
    put_str(&mut out, "tokenizer.ggml.tokens");
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(VOCAB as u64).to_le_bytes());
    for t in ["a", "b", "c", "d"] {
        put_str(&mut out, t);
    }
    let mut offset = 0u64;
    for (name, dims, dtype, data) in &tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&dtype.code().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + data.len() as u64).div_ceil(32) * 32;
    }
    for (_, _, _, data) in &tensors {
        out.resize(out.len().div_ceil(32) * 32, 0);
        out.extend_from_slice(data);
    }
    out
}

/// A permutation of the FFN's neurons from `seed` (layer-dependent).
fn perm(seed: u64, layer: usize) -> Vec<u32> {
    let mut r = SplitMix64::new(seed ^ (layer as u64 + 1).wrapping_mul(0x9E37_79B9));
    let mut p: Vec<u32> = (0..FFN as u32).collect();
    for i in (1..p.len()).rev() {
        p.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
    }
    p
}

/// `gguf` packed in `layout` with `perm(seed, layer)`: the image's bytes
/// and the summary.
fn pack(gguf: &[u8], layout: FfnLayout, down: DType, seed: u64) -> (Vec<u8>, PackSummary) {
    let file = Gguf::parse(gguf).unwrap();
    let mut seen = Vec::new();
    let (b, sum) = build_image(
        &file,
        &cfg(),
        7,
        down,
        layout,
        512,
        |l| perm(seed, l),
        |l| seen.push(l),
    )
    .unwrap();
    assert_eq!(seen, (0..LAYERS).collect::<Vec<_>>());
    (b.to_bytes().unwrap(), sum)
}

/// Parses and fully verifies an image.
fn open(bytes: &[u8]) -> Image<'_> {
    let img = Image::parse(bytes).unwrap();
    img.verify_data(&bytes[img.header().meta_len as usize..])
        .unwrap();
    img
}

/// The GGUF data of tensor `name`.
fn gguf_data<'a>(file: &Gguf<'a>, name: &str) -> &'a [u8] {
    file.data(&file.tensor(name).unwrap()).unwrap()
}

/// The image data of tensor `name`.
fn image_data<'a>(img: &Image<'_>, bytes: &'a [u8], name: &str) -> &'a [u8] {
    let (_, t) = img.tensor_by_name(name).unwrap();
    &bytes[t.offset as usize..(t.offset + t.length) as usize]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The split image holds the bundled image's bytes, cut apart: gate and
    /// up row `p` are the GGUF's rows of neuron `perm[p]` (and the bundled
    /// bundle `p`'s first two parts), down bundle `p` is the bundled bundle
    /// `p`'s third part; the regions are down-only, the FFN tensors other
    /// than the permuted gate and up are gone, both images verify, and the
    /// split layer read back is the bundled region byte for byte.
    #[test]
    fn split_is_bundled_cut_apart(
        seed in any::<u64>(),
        down in prop::sample::select(vec![DType::Q8_0, DType::Q5_1, DType::Q4_1]),
    ) {
        let gguf = tiny_gguf(seed);
        let file = Gguf::parse(&gguf).unwrap();
        let (bundled, bsum) = pack(&gguf, FfnLayout::Bundled, down, seed);
        let (split, ssum) = pack(&gguf, FfnLayout::Split, down, seed);
        let (bi, si) = (open(&bundled), open(&split));
        let rb = 20 * HIDDEN / 32;
        let cb = down.row_bytes(HIDDEN as u64).unwrap() as usize;
        let types = BundleTypes { rows: DType::Q4_1, down };

        prop_assert_eq!(ssum.bundle_bytes, cb);
        prop_assert_eq!(bsum.bundle_bytes, 2 * rb + cb);
        prop_assert_eq!(ssum.layer_bytes, FFN * cb);
        prop_assert_eq!(bsum.layer_bytes, FFN * (2 * rb + cb));
        prop_assert_eq!(ssum.split_tensor_bytes, (LAYERS * 2 * FFN * rb) as u64);
        prop_assert_eq!(bsum.split_tensor_bytes, 0);
        prop_assert_eq!(ssum.tensor_bytes, bsum.tensor_bytes);
        prop_assert_eq!((ssum.layout, ssum.types), (FfnLayout::Split, types));
        prop_assert_eq!(si.tensor_count(), bi.tensor_count() + 2 * LAYERS);

        for l in 0..LAYERS {
            let p = perm(seed, l);
            let (br, sr) = (bi.bundle_region(l).unwrap(), si.bundle_region(l).unwrap());
            prop_assert_eq!(
                sr.parts,
                BundleParts { gate: None, up: None, down: Some(down) }
            );
            prop_assert_eq!((sr.count, sr.bundle_size as usize), (FFN as u32, cb));
            let placement = si.placement(l).unwrap();
            for (pos, &n) in p.iter().enumerate() {
                prop_assert_eq!(placement.neuron_at(pos as u32), Some(n));
            }
            let down_name = format!("blk.{l}.ffn_down.weight");
            prop_assert!(si.tensor_by_name(&down_name).is_none());
            for (k, part) in ["ffn_gate", "ffn_up"].into_iter().enumerate() {
                let name = format!("blk.{l}.{part}.weight");
                prop_assert!(bi.tensor_by_name(&name).is_none());
                let (_, info) = si.tensor_by_name(&name).unwrap();
                prop_assert_eq!(info.dtype, DType::Q4_1);
                prop_assert_eq!(info.shape.dims(), &[HIDDEN as u64, FFN as u64][..]);
                let rows = image_data(&si, &split, &name);
                let src = gguf_data(&file, &name);
                for (pos, &n) in p.iter().enumerate() {
                    let n = n as usize;
                    let row = &rows[pos * rb..(pos + 1) * rb];
                    prop_assert_eq!(row, &src[n * rb..(n + 1) * rb]);
                    let at = br.bundle_offset(pos as u32).unwrap() as usize + k * rb;
                    prop_assert_eq!(row, &bundled[at..at + rb]);
                }
            }
            for pos in 0..FFN as u32 {
                let b = br.bundle_offset(pos).unwrap() as usize + 2 * rb;
                let s = sr.bundle_offset(pos).unwrap() as usize;
                prop_assert_eq!(&split[s..s + cb], &bundled[b..b + cb]);
            }

            prop_assert_eq!(layer_layout(&si, l).unwrap(), (FfnLayout::Split, types));
            prop_assert_eq!(layer_layout(&bi, l).unwrap(), (FfnLayout::Bundled, types));
            let len = layer_bundles_len(&si, l).unwrap();
            prop_assert_eq!(len, bsum.layer_bytes);
            let (mut from_split, mut from_bundled) = (vec![0u8; len], vec![0u8; len]);
            layer_bundles(&si, &split, l, &mut from_split).unwrap();
            layer_bundles(&bi, &bundled, l, &mut from_bundled).unwrap();
            let region = &bundled[br.offset as usize..(br.offset + br.length) as usize];
            prop_assert_eq!(&from_bundled[..], region);
            prop_assert_eq!(&from_split[..], region);
        }
    }
}

#[test]
fn a_placement_of_the_wrong_size_is_an_error() {
    let gguf = tiny_gguf(3);
    let file = Gguf::parse(&gguf).unwrap();
    for layout in [FfnLayout::Bundled, FfnLayout::Split] {
        let build = |perm: Vec<u32>| {
            build_image(
                &file,
                &cfg(),
                1,
                DType::Q8_0,
                layout,
                512,
                |_| perm.clone(),
                |_| {},
            )
            .err()
            .unwrap()
        };
        let err = build((0..FFN as u32 - 1).collect());
        assert!(err.contains("placement of 95 neurons"), "{err}");
        // A neuron past the FFN is caught by the re-layout.
        let err = build((1..=FFN as u32).collect());
        assert!(err.contains("layer 0"), "{err}");
    }
}

#[test]
fn a_corrupt_or_incomplete_split_image_is_refused_on_readback() {
    let gguf = tiny_gguf(5);
    let (mut split, sum) = pack(&gguf, FfnLayout::Split, DType::Q8_0, 5);
    let mut out = vec![0u8; layer_bundles_len(&open(&split), 1).unwrap()];
    // A buffer of the wrong size.
    assert!(matches!(
        layer_bundles(&open(&split), &split, 1, &mut out[1..]),
        Err(LoadError::Config(_))
    ));
    // A truncated file.
    let meta = open(&split).header().meta_len as usize;
    assert!(layer_bundles(&open(&split), &split[..meta], 1, &mut out).is_err());
    // A layer that does not exist.
    assert!(layer_layout(&open(&split), LAYERS).is_err());
    // One flipped bit in layer 1's up tensor, then in a down bundle: the
    // table still parses (data CRCs are checked when read) and readback
    // reports the CRC.
    let up = Image::parse(&split)
        .unwrap()
        .tensor_by_name("blk.1.ffn_up.weight")
        .unwrap()
        .1
        .offset as usize;
    split[up + 3] ^= 1;
    assert!(matches!(
        layer_bundles(&Image::parse(&split).unwrap(), &split, 1, &mut out),
        Err(LoadError::Image(_))
    ));
    split[up + 3] ^= 1;
    let r = Image::parse(&split).unwrap().bundle_region(1).unwrap();
    let at = r.bundle_offset(9).unwrap() as usize;
    split[at] ^= 0x80;
    assert!(matches!(
        layer_bundles(&Image::parse(&split).unwrap(), &split, 1, &mut out),
        Err(LoadError::Image(_))
    ));
    split[at] ^= 0x80;
    layer_bundles(&open(&split), &split, 1, &mut out).unwrap();
    assert_eq!(out.len(), FFN * (2 * 40 + 68));
    assert_eq!(sum.layer_bytes, FFN * 68);
}

#[test]
fn a_down_only_region_without_its_tensors_has_no_layout() {
    // An image whose layer 0 is down-only but lacks the gate/up tensors:
    // built by hand, since `build_image` never writes one.
    use lode_formats::image::{ImageBuilder, LayerSpec};
    let gguf = tiny_gguf(8);
    let file = Gguf::parse(&gguf).unwrap();
    let (b, _) = build_image(
        &file,
        &cfg(),
        1,
        DType::Q8_0,
        FfnLayout::Bundled,
        512,
        |_| (0..FFN as u32).collect(),
        |_| {},
    )
    .unwrap();
    let img_bytes = b.to_bytes().unwrap();
    let geometry = Image::parse(&img_bytes).unwrap().geometry();
    let mut b = ImageBuilder::new(geometry);
    b.block_size(512);
    let parts = FfnLayout::Split.parts(BundleTypes {
        rows: DType::Q4_1,
        down: DType::Q8_0,
    });
    b.add_layer(LayerSpec::new(
        parts,
        vec![0u8; FFN * 68],
        (0..FFN as u32).collect(),
    ));
    b.add_layer(LayerSpec::new(parts, Vec::new(), Vec::new()));
    let bytes = b.to_bytes().unwrap();
    let img = open(&bytes);
    assert!(matches!(
        layer_layout(&img, 0),
        Err(LoadError::Tensor { .. })
    ));
    // A layer of no neurons still needs its (empty) tensors to be split.
    assert!(layer_layout(&img, 1).is_err());
}

#[test]
fn the_dense_layout_copies_the_ffn_matrices_and_has_no_bundles() {
    let gguf = tiny_gguf(9);
    let file = Gguf::parse(&gguf).unwrap();
    let identity = |_| (0..FFN as u32).collect::<Vec<u32>>();
    // `down` is ignored: the down matrix keeps the source's type.
    let (b, sum) = build_image(
        &file,
        &cfg(),
        7,
        DType::Q8_0,
        FfnLayout::Dense,
        512,
        identity,
        |_| {},
    )
    .unwrap();
    let bytes = b.to_bytes().unwrap();
    let img = open(&bytes);
    let down_type = file.tensor("blk.0.ffn_down.weight").unwrap().dtype;
    assert_eq!((sum.bundle_bytes, sum.layer_bytes), (0, 0));
    assert_eq!(sum.types.down, down_type);
    let mut ffn_bytes = 0u64;
    for l in 0..LAYERS {
        for part in ["ffn_gate", "ffn_up", "ffn_down"] {
            let name = format!("blk.{l}.{part}.weight");
            assert_eq!(image_data(&img, &bytes, &name), gguf_data(&file, &name));
            ffn_bytes += gguf_data(&file, &name).len() as u64;
        }
        let r = img.bundle_region(l).unwrap();
        assert_eq!((r.count, r.length), (0, 0));
        assert_eq!(layer_layout(&img, l).unwrap().0, FfnLayout::Dense);
        // Nothing to read back as bundles.
        assert!(matches!(
            layer_bundles_len(&img, l),
            Err(LoadError::Config(_))
        ));
    }
    assert_eq!(sum.split_tensor_bytes, ffn_bytes);
    // The dense layout keeps the source's neuron order.
    let err = build_image(
        &file,
        &cfg(),
        7,
        DType::Q8_0,
        FfnLayout::Dense,
        512,
        |_| perm(3, 0),
        |_| {},
    )
    .err()
    .unwrap();
    assert!(err.contains("identity placement"), "{err}");
}

/// `gguf` with the bytes at offset `at` of tensor `name`'s data replaced.
fn poisoned(gguf: &[u8], name: &str, at: usize, bytes: &[u8]) -> Vec<u8> {
    let start = Gguf::parse(gguf).unwrap().tensor(name).unwrap().offset as usize + at;
    let mut out = gguf.to_vec();
    out[start..start + bytes.len()].copy_from_slice(bytes);
    out
}

/// A NaN or an infinity anywhere in a tensor the image would hold (a
/// copied f32 norm, a quantized block's f16 scale or minimum in a gate, up
/// or down matrix) is refused in every layout, naming the tensor and the
/// element, before the builder holds anything to write.
#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let gguf = tiny_gguf(5);
    let f16_nan = [0x00, 0x7E];
    let f16_inf = [0x00, 0x7C];
    // Q4_1 block of 32: f16 scale, f16 minimum, 16 bytes; a row of 64 is
    // two blocks (40 bytes).
    for (name, at, bytes, want) in [
        (
            "output_norm.weight",
            4 * 5,
            f32::NAN.to_le_bytes().to_vec(),
            "holds NaN at row 0, element 5",
        ),
        (
            "token_embd.weight",
            4 * (64 + 3),
            f32::NEG_INFINITY.to_le_bytes().to_vec(),
            "holds -inf at row 1, element 3",
        ),
        (
            "blk.1.ffn_up.weight",
            40 * 7 + 20,
            f16_nan.to_vec(),
            "holds NaN at row 7, element 32",
        ),
        (
            "blk.0.ffn_gate.weight",
            2,
            f16_inf.to_vec(),
            "at row 0, element 0",
        ),
        (
            "blk.0.ffn_down.weight",
            0,
            f16_inf.to_vec(),
            "holds inf at row 0, element 0",
        ),
    ] {
        let bad = poisoned(&gguf, name, at, &bytes);
        let file = Gguf::parse(&bad).unwrap();
        for layout in [FfnLayout::Bundled, FfnLayout::Split, FfnLayout::Dense] {
            let err = build_image(
                &file,
                &cfg(),
                7,
                DType::Q8_0,
                layout,
                512,
                |_| (0..FFN as u32).collect(),
                |_| {},
            )
            .err()
            .unwrap_or_else(|| panic!("{name} {layout:?}: packed"));
            assert!(err.contains(&format!("tensor `{name}`")), "{err}");
            assert!(err.contains(want), "{name}: {err}");
        }
    }
    // The untouched model packs.
    pack(&gguf, FfnLayout::Bundled, DType::Q8_0, 5);
}
