//! What `lode bench codec` times: the units it decodes (every tensor with
//! its f16 fields coded; the FFN matrices as one thread's units, both
//! codec versions) and one thread's decode speed over them.

use std::error::Error;
use std::time::Instant;

use lode_formats::gguf::Gguf;
use lode_formats::image::TensorCodec;
use lode_kernel::codec::{decode_with, Scratch, Verify};
use lode_kernel::limits::CODEC_PIECES;
use lode_pack::codec::{encode_v1, encode_with, Coding};

use super::code_one;

/// A coded tensor: its unit and its decoded length.
pub(super) struct Unit {
    pub(super) coded: Vec<u8>,
    pub(super) len: usize,
}

/// Codes every tensor's f16 fields only ([`Coding::FloatsOnly`]): the
/// units and the model's bytes as stored with them (float tensors as
/// they are).
pub(super) fn code_floats(gguf: &Gguf<'_>) -> Result<(Vec<Unit>, u64), Box<dyn Error>> {
    let mut units = Vec::new();
    let mut bytes = 0u64;
    for t in gguf.tensors() {
        let data = gguf.data(&t)?;
        match code_one(t.name, t.dtype, data, Coding::FloatsOnly)? {
            Some(e) => {
                bytes += e.bytes.len() as u64;
                units.push(Unit {
                    coded: e.bytes,
                    len: data.len(),
                });
            }
            None => bytes += data.len() as u64,
        }
    }
    Ok((units, bytes))
}

/// The streamed FFN matrices' f16 fields coded as `lode pack` codes them
/// by default (each matrix as [`CODEC_PIECES`] units, each unit what one
/// thread decodes), as version 2 units and as version 1 units (16-bit
/// codebooks, what images before format 1.6 hold): the two decoders side
/// by side on the same blocks.
pub(super) fn ffn_pieces(gguf: &Gguf<'_>) -> Result<(Vec<Unit>, Vec<Unit>), Box<dyn Error>> {
    let (mut v2, mut v1) = (Vec::new(), Vec::new());
    for t in gguf.tensors().filter(|t| t.name.contains(".ffn_")) {
        let data = gguf.data(&t)?;
        let block = t.dtype.block_bytes();
        let blocks = data.len() / block;
        if !TensorCodec::takes(t.dtype) || blocks < CODEC_PIECES {
            continue;
        }
        for i in 0..CODEC_PIECES {
            let run =
                &data[blocks * i / CODEC_PIECES * block..blocks * (i + 1) / CODEC_PIECES * block];
            for (units, e) in [
                (&mut v2, encode_with(t.dtype, run, Coding::FloatsOnly)?),
                (&mut v1, encode_v1(t.dtype, run, Coding::FloatsOnly)?),
            ] {
                units.push(Unit {
                    coded: e.bytes,
                    len: run.len(),
                });
            }
        }
    }
    Ok((v2, v1))
}

/// CPU seconds this thread has run, from `/proc/thread-self/stat` (user
/// plus system time, in the fixed 1/100 s ticks of Linux's proc ABI), or
/// `None` where that file is not.
pub(super) fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name's closing parenthesis; utime and stime
    // are fields 14 and 15 of the whole line.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Decode speed over `reps` passes of every unit on one thread, MB/s of
/// output: the best pass by wall clock, and by the thread's CPU time (what
/// a core of its own would do when other work shares the machine).
pub(super) fn speed(
    units: &[Unit],
    reps: u32,
    verify: Verify,
) -> Result<(f64, Option<f64>), Box<dyn Error>> {
    let mut s = Scratch::default();
    let mut out = vec![0u8; units.iter().map(|u| u.len).max().unwrap_or(0)];
    let total: usize = units.iter().map(|u| u.len).sum();
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps.max(1) {
        let (t, c) = (Instant::now(), thread_cpu_seconds());
        for u in units {
            decode_with(&mut s, verify, &u.coded, &mut out)?;
        }
        wall = wall.min(t.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c, thread_cpu_seconds()) {
            cpu = cpu.min(c1 - c0);
        }
        std::hint::black_box(&out);
    }
    let mb = total as f64 / 1e6;
    Ok((mb / wall, (cpu.is_finite() && cpu > 0.0).then(|| mb / cpu)))
}
