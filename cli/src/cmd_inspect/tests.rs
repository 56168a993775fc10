use super::*;
use lode_formats::image::{
    ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry, StoredCostModel,
};
use lode_formats::DType;

/// A scratch file under the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("lode-inspect-{}-{name}.lode", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn image_bytes() -> Vec<u8> {
    image_bytes_with(None)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A tokenizer section for a byte-level BPE vocabulary of the 256 byte
/// characters, no merges, pre-tokenizer `pre`.
fn tokenizer_section(pre: &str) -> Vec<u8> {
    let mut src = b"GGUF".to_vec();
    src.extend_from_slice(&3u32.to_le_bytes());
    src.extend_from_slice(&0u64.to_le_bytes());
    src.extend_from_slice(&6u64.to_le_bytes());
    for (key, value) in [
        ("general.architecture", "llama"),
        ("general.name", "bytes"),
        ("tokenizer.ggml.model", "gpt2"),
        ("tokenizer.ggml.pre", pre),
    ] {
        put_str(&mut src, key);
        src.extend_from_slice(&8u32.to_le_bytes());
        put_str(&mut src, value);
    }
    for (key, items) in [
        (
            "tokenizer.ggml.tokens",
            (0..=255u8)
                .map(|b| lode_tokenizer::bytes::byte_to_char(b).to_string())
                .collect::<Vec<_>>(),
        ),
        ("tokenizer.ggml.merges", Vec::new()),
    ] {
        put_str(&mut src, key);
        src.extend_from_slice(&9u32.to_le_bytes());
        src.extend_from_slice(&8u32.to_le_bytes());
        src.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for t in &items {
            put_str(&mut src, t);
        }
    }
    let file = lode_formats::gguf::Gguf::parse(&src).unwrap();
    lode_formats::gguf::tokenizer_only(&file).unwrap()
}

fn image_bytes_with(tokenizer: Option<Vec<u8>>) -> Vec<u8> {
    let q = Some(DType::Q4_1);
    let parts = BundleParts {
        gate: q,
        up: q,
        down: q,
    };
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").unwrap(),
        layers: 2,
        hidden: 32,
        ffn: 3,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 49152,
        context: 8192,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        fingerprint: 0xFEED_5EED,
    };
    let bundles: Vec<u8> = (0..180u32).map(|i| (i * 13 + 1) as u8).collect();
    let mut b = ImageBuilder::new(geometry);
    b.block_size(512).cost_model(Some(StoredCostModel {
        command_ns: 50_000,
        bytes_per_sec: 1_280_000_000,
        queue_depth: 4,
    }));
    b.add_tensor("token_embd.weight", DType::Q8_0, &[32, 2], vec![7u8; 68])
        .unwrap();
    b.add_tensor("output_norm.weight", DType::F32, &[32], vec![0u8; 128])
        .unwrap();
    b.add_layer(LayerSpec::new(parts, bundles.clone(), vec![1, 2, 0]).with_stride(64));
    b.add_layer(LayerSpec::new(parts, bundles, vec![0, 1, 2]).with_codec_tags(vec![0; 3]));
    if let Some(t) = tokenizer {
        b.tokenizer_gguf(t);
    }
    b.to_bytes().unwrap()
}

fn inspect(path: &Path, verify: bool) -> (Result<(), Box<dyn Error>>, String) {
    let args = InspectArgs {
        image: path.to_path_buf(),
        verify,
    };
    let mut out = Vec::new();
    let result = run(&args, &mut out);
    (result, String::from_utf8(out).unwrap())
}

fn rejected_kind(result: &Result<(), Box<dyn Error>>) -> Option<ErrorKind> {
    let err = result.as_ref().err()?;
    err.downcast_ref::<ImageRejected>().map(|r| r.error.kind())
}

#[test]
fn prints_header_tensors_and_regions() {
    let file = TempFile::new("good", &image_bytes());
    let (result, text) = inspect(&file.0, true);
    assert!(result.is_ok(), "{result:?}");
    for want in [
        "format       1.0",
        "block size   512 bytes",
        "architecture llama",
        "heads        9 (kv heads 3, head dim 64)",
        "rms eps      1e-5",
        "fingerprint  00000000feed5eed",
        "50000 ns per command, 1280000000 bytes/s, queue depth 4",
        "tensors (2)",
        "output_norm.weight",
        "[32, 2]",
        "q8_0",
        // 3 bundles of 60 bytes a layer, one layer at a stride of 64: 372
        // bytes against 360 for the three q4_1 matrices.
        "ffn layout     bundles in 2 layers",
        "the three matrices at q4_1 are 0.0 MiB (1.03x)",
        "bundle regions (2)",
        "q4_1/q4_1/q4_1",
        "permuted (3 of 3 moved)",
        "identity",
        "raw",
        "tokenizer      not stored (packed before format 1.1)",
        "verify: ok",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Sorted by name: output_norm before token_embd.
    let a = text.find("output_norm.weight");
    let b = text.find("token_embd.weight");
    assert!(a < b);
}

#[test]
fn prints_the_tokenizer_section() {
    let section = tokenizer_section("gpt2");
    let file = TempFile::new("tok", &image_bytes_with(Some(section.clone())));
    let (result, text) = inspect(&file.0, true);
    assert!(result.is_ok(), "{result:?}");
    let want = format!(
        "tokenizer      {} bytes, 256 tokens, 0 merges, Gpt2 pre-tokenizer",
        section.len()
    );
    assert!(text.contains("format       1.1"), "{text}");
    assert!(text.contains("(9 sections)"), "{text}");
    assert!(text.contains(&want), "missing {want:?} in:\n{text}");

    // A vocabulary lode cannot build is reported, not a defect.
    // (dbrx has Llama 3's split rule but not its whole-word lookup.)
    let section = tokenizer_section("dbrx");
    let file = TempFile::new("tok-dbrx", &image_bytes_with(Some(section.clone())));
    let (result, text) = inspect(&file.0, true);
    assert!(result.is_ok(), "{result:?}");
    let want = format!(
        "tokenizer      {} bytes, 256 tokens, unusable: image tokenizer: pre-tokenizer \"dbrx\"",
        section.len()
    );
    assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    assert!(text.contains("verify: ok"), "{text}");
}

#[test]
fn rejects_corrupt_metadata_with_a_message() {
    let mut bytes = image_bytes();
    bytes[100] ^= 0x04; // inside the section table
    let file = TempFile::new("bad-table", &bytes);
    let (result, text) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::ChecksumMismatch));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("section table"), "{msg}");
    assert!(msg.contains("bad-table"), "{msg}");
    assert!(text.is_empty());
}

#[test]
fn data_corruption_needs_verify() {
    let bytes = image_bytes();
    let image = Image::parse(&bytes).unwrap();
    let (index, t) = image.tensor_by_name("token_embd.weight").unwrap();
    let mut bad = bytes.clone();
    bad[t.offset as usize + 5] ^= 0xFF;
    let file = TempFile::new("bad-data", &bad);
    let (result, _) = inspect(&file.0, false);
    assert!(result.is_ok());
    let (result, text) = inspect(&file.0, true);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::ChecksumMismatch));
    assert!(text.contains("tensors (2)"));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains(&format!("tensor {index}")), "{msg}");
    assert!(msg.contains("`token_embd.weight`"), "{msg}");
}

#[test]
fn rejects_wrong_lengths_and_foreign_files() {
    let bytes = image_bytes();
    let meta = lode_formats::image::ImageHeader::parse(&bytes)
        .unwrap()
        .meta_len as usize;

    let file = TempFile::new("short", &bytes[..bytes.len() - 512]);
    let (result, _) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::Truncated));

    let file = TempFile::new("short-meta", &bytes[..meta - 1]);
    let (result, _) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::Truncated));

    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 512]);
    let file = TempFile::new("long", &long);
    let (result, _) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::OutOfRange));

    let file = TempFile::new("gguf", b"GGUF\x03\0\0\0 not a lode image");
    let (result, _) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::BadMagic));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("not a lode image"), "{msg}");

    let file = TempFile::new("empty", b"");
    let (result, _) = inspect(&file.0, false);
    assert_eq!(rejected_kind(&result), Some(ErrorKind::Truncated));

    let missing = std::env::temp_dir().join("lode-inspect-does-not-exist.lode");
    let (result, _) = inspect(&missing, false);
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("cannot open"), "{msg}");
}

/// A bundle whose codec lode does not know must not be read as raw
/// weights: `inspect` refuses the image as `run` does (both open it
/// through the same reader), naming the bundle.
#[test]
fn refuses_an_unknown_codec_tag_naming_the_bundle() {
    let mut bytes = image_bytes();
    let meta = lode_formats::image::ImageHeader::parse(&bytes)
        .unwrap()
        .meta_len as usize;
    // The codec tags: one byte per bundle, layer 1's after layer 0's 3.
    let tags_at = {
        let image = Image::parse(&bytes).unwrap();
        let tags = image.codec_tags(1).unwrap();
        tags.as_ptr() as usize - bytes.as_ptr() as usize
    };
    bytes[tags_at + 1] = 3;
    lode_formats::image::reseal_checksums(&mut bytes[..meta]).unwrap();
    let file = TempFile::new("codec", &bytes);
    for verify in [false, true] {
        let (result, text) = inspect(&file.0, verify);
        assert_eq!(rejected_kind(&result), Some(ErrorKind::UnsupportedCodec));
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("layer 1 bundle 1"), "{msg}");
        assert!(text.is_empty(), "{text}");
    }
}

/// `lode inspect` and `lode run` (the runtime's `ImageFile::open`)
/// accept and refuse the same files, for the same reason.
#[test]
fn inspect_and_run_agree_on_lengths_and_codecs() {
    let bytes = image_bytes();
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 512]);
    let mut one_more = bytes.clone();
    one_more.push(0);
    let mut unknown_codec = bytes.clone();
    let meta = lode_formats::image::ImageHeader::parse(&bytes)
        .unwrap()
        .meta_len as usize;
    let tags_at = {
        let image = Image::parse(&bytes).unwrap();
        let tags = image.codec_tags(0).unwrap();
        tags.as_ptr() as usize - bytes.as_ptr() as usize
    };
    unknown_codec[tags_at] = 1;
    lode_formats::image::reseal_checksums(&mut unknown_codec[..meta]).unwrap();
    for (name, file, want) in [
        ("exact", bytes.clone(), None),
        ("long", long, Some(ErrorKind::OutOfRange)),
        ("one-more", one_more, Some(ErrorKind::OutOfRange)),
        (
            "short",
            bytes[..bytes.len() - 512].to_vec(),
            Some(ErrorKind::Truncated),
        ),
        ("codec", unknown_codec, Some(ErrorKind::UnsupportedCodec)),
    ] {
        let f = TempFile::new(&format!("agree-{name}"), &file);
        let (result, _) = inspect(&f.0, false);
        let inspect_kind = rejected_kind(&result);
        assert_eq!(inspect_kind, want, "{name}: {result:?}");
        let run_kind = match lode_runtime::image_file::ImageFile::open(&f.0) {
            Ok(_) => None,
            Err(lode_runtime::image_file::ImageFileError::Format(e)) => Some(e.kind()),
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(run_kind, inspect_kind, "{name}");
    }
}

#[test]
fn every_byte_flip_is_refused_with_verify() {
    let bytes = image_bytes();
    let file = TempFile::new("flip", &bytes);
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        std::fs::write(&file.0, &bad).unwrap();
        let (result, _) = inspect(&file.0, true);
        assert!(result.is_err(), "byte {i} accepted");
    }
}

#[test]
fn summaries() {
    assert_eq!(codec_summary(&[]), "-");
    assert_eq!(codec_summary(&[0, 0]), "raw");
    assert_eq!(codec_summary(&[0, 2, 2]), "raw 1, tag2 2");
    assert_eq!(codec_summary(&[5]), "tag5 1");
    assert_eq!(placement_summary(None), "-");
}

/// An image with one coded tensor, `unit` as its stored bytes.
fn coded_image(unit: Vec<u8>) -> Vec<u8> {
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").unwrap(),
        layers: 0,
        hidden: 64,
        ffn: 3,
        heads: 1,
        kv_heads: 1,
        head_dim: 64,
        vocab: 8,
        context: 64,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        fingerprint: 7,
    };
    let mut b = ImageBuilder::new(geometry);
    b.block_size(512);
    b.add_coded_tensor("blk.0.attn_q.weight", DType::Q4_1, &[64, 64], unit)
        .unwrap();
    b.to_bytes().unwrap()
}

/// `--verify` decodes a coded tensor: a good unit passes and is counted;
/// one whose stored CRC is right (the writer computed it over the bytes
/// given) but whose unit is broken is refused, naming the tensor.
#[test]
fn verify_decodes_coded_tensors() {
    let blocks: Vec<u8> = (0..128 * 20u32).map(|i| (i * 31 % 251) as u8).collect();
    let unit = lode_pack::codec::encode(DType::Q4_1, &blocks)
        .unwrap()
        .bytes;
    let good = TempFile::new("coded-good", &coded_image(unit.clone()));
    let (result, text) = inspect(&good.0, true);
    result.unwrap();
    assert!(text.contains("coded v2, 2560 decoded"), "{text}");
    assert!(text.contains("coded tensors  1:"), "{text}");
    assert!(text.contains("1 coded tensors decoded"), "{text}");
    let mut broken = unit;
    let last = broken.len() - 1;
    broken[last] ^= 0x40;
    let bad = TempFile::new("coded-bad", &coded_image(broken));
    let (result, _) = inspect(&bad.0, true);
    let e = result.unwrap_err().to_string();
    assert!(
        e.contains("tensor blk.0.attn_q.weight: coded data does not decode"),
        "{e}"
    );
    // Without --verify the table opens (its bytes are not read).
    inspect(&bad.0, false).0.unwrap();
}
