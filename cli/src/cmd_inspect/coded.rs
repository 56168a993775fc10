//! What `lode inspect` says of coded tensors (format 1.4, chains 1.5, the
//! codec's version 2 units 1.6):
//! their share of the image, and with `--verify` that each decodes,
//! through the kernel's decoder with every unit's own CRC check, to
//! exactly its tensor's length.

use std::error::Error;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use lode_formats::image::{Image, TensorCodec};
use lode_kernel::codec::{decode_chain, split, Piece, Scratch, Verify, VERSION_1};

/// The tensor table's "stored" cell: `raw`, or `coded` (`coded in units`
/// for a chain of version 1 units, `coded v2` for codec 3) and the decoded
/// bytes.
pub(super) fn stored_as(codec: TensorCodec, decoded: u64) -> String {
    match codec {
        TensorCodec::Raw => "raw".into(),
        TensorCodec::Weights => format!("coded, {decoded} decoded"),
        TensorCodec::Chain => format!("coded in units, {decoded} decoded"),
        TensorCodec::ChainV2 => format!("coded v2, {decoded} decoded"),
    }
}

/// One line on the coded tensors, when there are any.
pub(super) fn summary(out: &mut dyn Write, image: &Image<'_>) -> std::io::Result<()> {
    let coded = image.tensors().filter(|t| t.codec != TensorCodec::Raw);
    let (mut n, mut stored, mut decoded) = (0usize, 0u64, 0u64);
    for t in coded {
        n += 1;
        stored += t.length;
        decoded += t.data_len();
    }
    if n == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "coded tensors  {n}: {stored} bytes stored for {decoded} decoded ({:.2}% fewer)",
        100.0 * (1.0 - stored as f64 / decoded.max(1) as f64)
    )
}

/// Decodes every coded tensor of the image in `file` and checks it yields
/// its tensor's decoded length; returns how many it decoded. Runs after
/// the data's CRCs passed, so a failure here is a unit its writer got
/// wrong, not a flipped bit.
pub(super) fn verify(file: &mut File, image: &Image<'_>) -> Result<usize, Box<dyn Error>> {
    let mut scratch = Box::<Scratch>::default();
    let (mut stored, mut out) = (Vec::new(), Vec::new());
    let mut n = 0;
    for t in image.tensors().filter(|t| t.codec != TensorCodec::Raw) {
        let bad = |why: String| format!("tensor {}: coded data {why}", t.name);
        stored.resize(usize::try_from(t.length)?, 0);
        out.resize(usize::try_from(t.data_len())?, 0);
        file.seek(SeekFrom::Start(t.offset))?;
        file.read_exact(&mut stored)?;
        let pieces = split(&stored, &mut out).map_err(|e| bad(format!("is not its units: {e}")))?;
        if pieces.iter().map(Piece::coded_len).sum::<usize>() != stored.len() {
            return Err(bad("has bytes after the units that fill the tensor".into()).into());
        }
        if t.codec == TensorCodec::Weights && pieces.len() != 1 {
            return Err(bad("is several units under the one-unit codec".into()).into());
        }
        if t.codec != TensorCodec::ChainV2 && pieces.iter().any(|p| p.version() != VERSION_1) {
            return Err(
                bad("holds version 2 units under a codec of version 1 units".into()).into(),
            );
        }
        drop(pieces);
        decode_chain(&mut scratch, Verify::Crc, &stored, &mut out)
            .map_err(|e| bad(format!("does not decode to its {} bytes: {e}", out.len())))?;
        n += 1;
    }
    Ok(n)
}
