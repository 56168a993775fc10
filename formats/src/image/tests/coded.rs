//! Coded tensors (1.4): written by `ImageBuilder::add_coded_tensor`, read
//! back with their codec and both lengths, and every rule of FORMAT.md's
//! tensor table for them refused.

use super::*;

/// A weight-codec unit header naming `blocks` Q4_1 blocks, `len` bytes in
/// all (the rest filler: the image format checks the header only).
fn unit(blocks: u32, len: u32) -> Vec<u8> {
    unit_v(1, blocks, len)
}

/// [`unit`] of the codec's version `version`.
fn unit_v(version: u8, blocks: u32, len: u32) -> Vec<u8> {
    let mut u = b"LQBC".to_vec();
    u.extend_from_slice(&[version, DType::Q4_1.code() as u8, 3, 0]);
    u.extend_from_slice(&blocks.to_le_bytes());
    u.extend_from_slice(&len.to_le_bytes());
    u.resize(len as usize, 0x5A);
    u
}

/// [`small_builder`] plus a coded 32 x 4 Q4_1 tensor (4 blocks, 80 bytes
/// decoded) stored in 47 bytes.
fn coded_image() -> Vec<u8> {
    let mut b = small_builder(None);
    b.add_coded_tensor("blk.0.attn_q.weight", DType::Q4_1, &[32, 4], unit(4, 47))
        .unwrap();
    b.to_bytes().unwrap()
}

#[test]
fn a_coded_tensor_is_read_back_with_its_codec_and_both_lengths() {
    let bytes = coded_image();
    open_and_verify(&bytes).unwrap();
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.header().minor, 4);
    let (_, t) = image.tensor_by_name("blk.0.attn_q.weight").unwrap();
    assert_eq!(t.codec, TensorCodec::Weights);
    assert_eq!((t.length, t.data_len()), (47, 80));
    let at = t.offset as usize;
    assert_eq!(&bytes[at..at + 47], &unit(4, 47)[..]);
    let (_, raw) = image.tensor_by_name("token_embd.weight").unwrap();
    assert_eq!(
        (raw.codec, raw.length, raw.data_len()),
        (TensorCodec::Raw, 102, 102)
    );
    // Without a coded tensor the image stays 1.0.
    assert_eq!(Image::parse(&small_image()).unwrap().header().minor, 0);
}

#[test]
fn the_writer_refuses_a_unit_that_does_not_hold_the_tensor() {
    let mut b = small_builder(None);
    let name = "blk.0.attn_q.weight";
    let bad = [
        (DType::Q4_1, unit(3, 47)),                // 3 blocks for a tensor of 4
        (DType::Q4_1, unit(4, 48)[..47].to_vec()), // length field says 48
        (DType::Q8_0, unit(4, 47)),                // header names Q4_1
        (DType::F32, unit(4, 47)),                 // a type the codec does not take
    ];
    for (dtype, u) in bad {
        let e = b.add_coded_tensor(name, dtype, &[32, 4], u).unwrap_err();
        assert!(e.to_string().contains("coded units"), "{e}");
    }
    let mut not_a_unit = unit(4, 47);
    not_a_unit[0] = b'X';
    assert!(b
        .add_coded_tensor(name, DType::Q4_1, &[32, 4], not_a_unit)
        .is_err());
}

/// The coded tensor's record, with the index `Image` gives it.
fn coded_index(bytes: &[u8]) -> usize {
    let image = Image::parse(bytes).unwrap();
    image.tensor_by_name("blk.0.attn_q.weight").unwrap().0
}

#[test]
fn readers_refuse_unknown_codecs_and_coded_tensors_they_cannot_hold() {
    let bytes = coded_image();
    let i = coded_index(&bytes);
    let q41 = DType::Q4_1.code();
    let with_dtype = |field: u32| {
        reopened_with(bytes.clone(), &move |b| {
            tensor_record(b, i).dtype = U32::new(field);
        })
        .map_err(|e| e.kind())
    };
    assert_eq!(with_dtype(q41 | 1 << 16), Ok(()));
    // Codec 2, a chain, needs 1.5: this image is 1.4.
    assert_eq!(with_dtype(q41 | 2 << 16), Err(ErrorKind::Malformed));
    // Codec 3, version 2 units, needs 1.6.
    assert_eq!(with_dtype(q41 | 3 << 16), Err(ErrorKind::Malformed));
    assert_eq!(with_dtype(q41 | 4 << 16), Err(ErrorKind::UnsupportedCodec));
    assert_eq!(with_dtype(q41 | 1 << 24), Err(ErrorKind::UnsupportedCodec));
    // Q4_K blocks are not the codec's (and Q4_K needs 1.3, which 1.4 has).
    let q4k = DType::Q4_K.code();
    assert_eq!(with_dtype(q4k | 1 << 16), Err(ErrorKind::Malformed));
    // Raw, its length would have to be the 80 decoded bytes.
    assert_eq!(with_dtype(q41), Err(ErrorKind::Malformed));
    // A coded tensor in an image claiming 1.3: no 1.3 writer made it.
    let older = reopened_with(bytes.clone(), &|b| set_minor(b, 3));
    assert_eq!(older.map_err(|e| e.kind()), Err(ErrorKind::Malformed));
    // Shorter than a unit header.
    let short = reopened_with(bytes, &move |b| {
        tensor_record(b, i).length = U64::new(19);
    });
    assert_eq!(short.map_err(|e| e.kind()), Err(ErrorKind::Malformed));
}

/// [`small_builder`]'s image plus a 32 x 4 Q4_1 tensor stored as `chain`,
/// checked whole as a reader opens it.
fn with_chain(chain: &[u8]) -> Vec<u8> {
    let mut b = small_builder(None);
    b.add_coded_tensor("blk.0.attn_q.weight", DType::Q4_1, &[32, 4], chain.to_vec())
        .unwrap();
    let bytes = b.to_bytes().unwrap();
    open_and_verify(&bytes).unwrap();
    bytes
}

/// A tensor coded as a chain of units (1.5): written with codec 2 and
/// minor 5, read back whole; chains that do not fill the tensor with its
/// type's blocks, or have too many units, are refused by the writer.
#[test]
fn a_chain_of_units_is_codec_two_in_a_1_5_image() {
    let name = "blk.0.attn_q.weight";
    let chain = [unit(1, 30), unit(3, 41)].concat();
    let bytes = with_chain(&chain);
    let image = Image::parse(&bytes).unwrap();
    assert_eq!(image.header().minor, 5);
    let (_, t) = image.tensor_by_name(name).unwrap();
    assert_eq!(
        (t.codec, t.length, t.data_len()),
        (TensorCodec::Chain, 71, 80)
    );
    assert_eq!(&bytes[t.offset as usize..][..71], &chain[..]);

    let mut b = small_builder(None);
    let sixteen_blocks = [32, 16];
    let bad = [
        [unit(1, 30), unit(2, 41)].concat(), // 3 blocks of 4
        [unit(1, 30), unit(3, 41), unit(0, 20)].concat()[..90].to_vec(), // cut short
        [unit(1, 30), unit(3, 41), vec![0; 4]].concat(), // bytes after the last unit
    ];
    for u in bad {
        assert!(b.add_coded_tensor(name, DType::Q4_1, &[32, 4], u).is_err());
    }
    let seventeen = [unit(0, 20).repeat(1), unit(1, 20).repeat(16)].concat();
    assert!(b
        .add_coded_tensor(name, DType::Q4_1, &sixteen_blocks, seventeen)
        .is_err());
    let sixteen = unit(1, 20).repeat(16);
    assert!(b
        .add_coded_tensor(name, DType::Q4_1, &sixteen_blocks, sixteen)
        .is_ok());
}

/// Units of the codec's version 2 (1.6): any chain holding one is codec 3
/// in a 1.6 image, even a chain of one unit; version 1 units alone keep
/// codecs 1 and 2; a unit of a version the writer does not know is
/// refused.
#[test]
fn version_2_units_are_codec_three_in_a_1_6_image() {
    let name = "blk.0.attn_q.weight";
    for chain in [unit_v(2, 4, 47), [unit(1, 30), unit_v(2, 3, 41)].concat()] {
        let bytes = with_chain(&chain);
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.header().minor, 6);
        let (_, t) = image.tensor_by_name(name).unwrap();
        assert_eq!(t.codec, TensorCodec::ChainV2);
        assert_eq!(&bytes[t.offset as usize..][..chain.len()], &chain[..]);
        // The same tensor in an image claiming 1.5: no 1.5 writer made it.
        let older = reopened_with(bytes.clone(), &|b| set_minor(b, 5));
        assert_eq!(older.map_err(|e| e.kind()), Err(ErrorKind::Malformed));
    }
    let mut b = small_builder(None);
    assert!(b
        .add_coded_tensor(name, DType::Q4_1, &[32, 4], unit_v(3, 4, 47))
        .is_err());
}
