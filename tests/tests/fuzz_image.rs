//! Fuzzing the image reader: [`ImageHeader::parse`], [`Image::parse`] on
//! whole files and on their metadata prefix, every accessor of an image
//! that opens, data verification (whole, in chunks of every size, per
//! tensor and per bundle), the tokenizer section's GGUF, and
//! [`read_prefix`] from a reader.
//!
//! Inputs: valid images (two layouts, with and without a tokenizer, stride
//! padding, a dense empty region) mutated by bit flips, byte changes,
//! truncation, insertion, removal, copies and length, count and offset
//! fields set to extreme values; half of them with every checksum
//! recomputed afterwards ([`reseal_checksums`]) so the mutation reaches the
//! structural checks behind the CRCs; and random or spliced bytes.
//!
//! Asserted for every input: no panic; every error an [`ImageError`]
//! with a message; each case done within the harness's time limit; and
//! **no allocation at all** by the reader and the verifiers (they are
//! `no_std` and zero-copy), and at most `4 * input + 128 KiB` bytes by
//! `read_prefix` (which copies the prefix, at most what the input holds).
//!
//! A CI run gives this 10,000 cases. A longer run by hand, in release mode:
//!
//! ```text
//! LODE_FUZZ_CASES=1000000 cargo test --release -p lode-tests --test fuzz_image -- --nocapture
//! ```
//!
//! (`LODE_FUZZ_SEED=<n>` repeats the run a report line names.)

mod fuzz;

use std::sync::Arc;

use lode_formats::gguf::{tokenizer_only, Gguf};
use lode_formats::image::{
    read_prefix, reseal_checksums, ArchTag, BundleParts, Image, ImageBuilder, ImageError,
    ImageHeader, LayerSpec, ModelGeometry, StoredCostModel,
};
use lode_formats::DType;
use lode_tests::CountingAlloc;
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Bytes `read_prefix` may allocate for an input of `len` bytes.
fn prefix_bound(len: usize) -> u64 {
    4 * len as u64 + (128 << 10)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A tokenizer section: the architecture, four tokens and one merge, as
/// `lode pack` writes it.
fn tokenizer_section() -> Vec<u8> {
    let mut src = b"GGUF".to_vec();
    src.extend_from_slice(&3u32.to_le_bytes());
    src.extend_from_slice(&0u64.to_le_bytes());
    src.extend_from_slice(&4u64.to_le_bytes());
    for (key, value) in [
        ("general.architecture", "llama"),
        ("tokenizer.ggml.model", "gpt2"),
    ] {
        put_str(&mut src, key);
        src.extend_from_slice(&8u32.to_le_bytes());
        put_str(&mut src, value);
    }
    for (key, items) in [
        ("tokenizer.ggml.tokens", &["a", "b", "ab", "<s>"][..]),
        ("tokenizer.ggml.merges", &["a b"][..]),
    ] {
        put_str(&mut src, key);
        src.extend_from_slice(&9u32.to_le_bytes());
        src.extend_from_slice(&8u32.to_le_bytes());
        src.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for t in items {
            put_str(&mut src, t);
        }
    }
    tokenizer_only(&Gguf::parse(&src).expect("GGUF")).expect("tokenizer section")
}

/// A 1.1 image with a tokenizer, a cost model, a split-style down-only
/// region with stride padding, a bundled region with a permutation and an
/// empty (dense) region.
fn varied_image() -> Vec<u8> {
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").expect("arch"),
        layers: 3,
        hidden: 32,
        ffn: 4,
        heads: 2,
        kv_heads: 1,
        head_dim: 16,
        vocab: 4,
        context: 64,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        fingerprint: 0xF022,
    };
    let q = Some(DType::Q8_0);
    let mut b = ImageBuilder::new(geometry);
    b.block_size(512)
        .cost_model(Some(StoredCostModel {
            command_ns: 40_000,
            bytes_per_sec: 1 << 30,
            queue_depth: 4,
        }))
        .tokenizer_gguf(tokenizer_section());
    b.add_tensor(
        "blk.0.ffn_gate.weight",
        DType::Q4_1,
        &[32, 4],
        vec![3u8; 80],
    )
    .expect("tensor");
    b.add_tensor("output_norm.weight", DType::F16, &[32], vec![1u8; 64])
        .expect("tensor");
    let down = BundleParts {
        gate: None,
        up: None,
        down: q,
    };
    b.add_layer(LayerSpec::new(down, vec![9u8; 4 * 34], vec![3, 1, 0, 2]).with_stride(40));
    let all = BundleParts {
        gate: Some(DType::Q4_0),
        up: Some(DType::Q4_0),
        down: q,
    };
    let bundles: Vec<u8> = (0..4 * (18 + 18 + 34)).map(|i| i as u8).collect();
    b.add_layer(LayerSpec::new(all, bundles, vec![0, 1, 2, 3]));
    b.add_layer(LayerSpec::new(down, Vec::new(), Vec::new()));
    b.to_bytes().expect("image")
}

fn seeds() -> Arc<Vec<Vec<u8>>> {
    Arc::new(vec![lode_tests::small_image(2, 5, 512), varied_image()])
}

/// Recomputes every checksum of a mutated image, so structural checks
/// behind them run.
fn reseal(bytes: &mut [u8]) {
    let _ = reseal_checksums(bytes);
}

/// The bytes of `[offset, offset + len)` of `bytes`, if they are there.
fn extent(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Every accessor of an opened image, and every check of its data that
/// the input holds. Returns the first data error.
fn walk(image: &Image<'_>, file: &[u8]) -> Result<(), ImageError> {
    let _ = (image.geometry(), image.cost_model(), image.total_bundles());
    if let Some(t) = image.tokenizer_gguf() {
        // The reader checked the section is a GGUF file it accepts.
        assert!(Gguf::parse(t).is_ok(), "tokenizer section does not parse");
    }
    for (i, t) in image.tensors().enumerate() {
        assert_eq!(image.tensor_by_name(t.name).map(|(j, _)| j), Some(i));
        if let Some(data) = extent(file, t.offset, t.length) {
            image.verify_tensor(i, data)?;
        }
    }
    for region in image.layers() {
        let l = region.layer;
        let placement = image.placement(l).expect("placement of a layer");
        assert_eq!(placement.len(), region.count as usize);
        let tags = image.codec_tags(l).expect("codec tags of a layer");
        assert!(
            tags.iter().all(|&t| t == 0),
            "an unknown codec was accepted"
        );
        for pos in 0..region.count {
            let n = placement.neuron_at(pos).expect("neuron");
            assert_eq!(placement.position_of(n), Some(pos));
            let at = region.bundle_offset(pos).expect("bundle offset");
            if let Some(b) = extent(file, at, u64::from(region.bundle_size)) {
                image.verify_bundle(l, pos, b)?;
            }
        }
    }
    let meta = usize::try_from(image.header().meta_len).unwrap_or(usize::MAX);
    let Some(data) = file.get(meta..) else {
        return Ok(());
    };
    let whole = image.verify_data(data);
    // The streaming verifier fed in chunks gives the same answer.
    let chunk = 1 + file.len() % 509;
    let mut v = image.data_verifier();
    let chunked = data
        .chunks(chunk)
        .try_for_each(|c| v.update(c))
        .and_then(|()| v.finish());
    assert_eq!(whole.is_ok(), chunked.is_ok(), "chunks of {chunk}");
    whole
}

/// Everything the reader does with `bytes`; `true` when the image opened
/// and its data verified.
fn read_all(bytes: &[u8]) -> Result<bool, ImageError> {
    let header = ImageHeader::parse(bytes)?;
    let meta = usize::try_from(header.meta_len).unwrap_or(usize::MAX);
    if let Some(prefix) = bytes.get(..meta) {
        let from_prefix = Image::parse(prefix).map(|i| *i.header());
        assert_eq!(from_prefix, Image::parse(bytes).map(|i| *i.header()));
    }
    let image = Image::parse(bytes)?;
    walk(&image, bytes)?;
    Ok(true)
}

#[test]
fn fuzz_image_reader() {
    fuzz::run(
        "image reader",
        fuzz::inputs(seeds(), reseal, 4096),
        |input| {
            let bytes = &input.bytes;
            let result = fuzz::read_without_allocating(|| read_all(bytes))?;
            let (prefix, used) = CountingAlloc::measure(|| read_prefix(&mut &bytes[..]));
            prop_assert!(
                used.bytes <= prefix_bound(bytes.len()),
                "read_prefix allocated {} bytes for a {}-byte input",
                used.bytes,
                bytes.len()
            );
            // The file reader and the slice reader open the same inputs.
            prop_assert_eq!(prefix.is_ok(), Image::parse(bytes).is_ok());
            Ok(result.unwrap_or(false))
        },
    );
}

/// Found by this fuzz test: a header whose metadata and file lengths were
/// multiplied (checksums fixed) made `read_prefix` allocate the whole
/// declared prefix (up to 256 MiB) for a file of a few KiB before finding
/// it truncated. The fuzzer's input, shrunk: the two length fields of the
/// header shifted left by 7 and by 16.
#[test]
fn regression_read_prefix_allocates_what_the_file_holds() {
    for shift in [7u32, 16] {
        let mut bytes = varied_image();
        for at in [16, 24] {
            let v = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            bytes[at..at + 8].copy_from_slice(&(v << shift).to_le_bytes());
        }
        reseal(&mut bytes);
        assert!(ImageHeader::parse(&bytes).is_ok());
        let (result, used) = CountingAlloc::measure(|| read_prefix(&mut &bytes[..]));
        assert!(result.is_err());
        assert!(
            used.bytes <= prefix_bound(bytes.len()),
            "{} bytes for {}",
            used.bytes,
            bytes.len()
        );
    }
}
