//! A coded chain's pieces decoded on the compute threads.
//!
//! At a third of the model a coded image decodes about 40 MiB a token as
//! the ring hands matrices out, while the compute threads wait: on one
//! thread that is as long as the disk takes to read them. `lode pack`
//! codes a streamed matrix as a chain of a few units
//! ([`CODEC_PIECES`](lode_kernel::limits::CODEC_PIECES)), each decoding its
//! own run of blocks, so the pool's threads share them. Each thread decodes
//! with a [`Scratch`] of its own (56 KiB, made once per thread, outside
//! the arena like the threads' stacks); the calling thread's comes from
//! the kernel when there is no pool.

use lode_kernel::codec::{Piece, Scratch, Verify};

use super::exec::Exec;

/// Decodes every piece, on `exec`'s threads when it has several.
pub(crate) fn decode_pieces(
    exec: &mut Exec,
    pieces: &mut [Piece<'_>],
    verify: Verify,
    scratch: &mut Scratch,
) {
    #[cfg(feature = "std")]
    if exec.threads() > 1 && pieces.len() > 1 {
        exec.for_each(pieces, &|p| {
            THREAD_SCRATCH.with(|s| p.decode(&mut s.borrow_mut(), verify))
        });
        return;
    }
    let _ = exec;
    for p in pieces {
        p.decode(scratch, verify);
    }
}

#[cfg(feature = "std")]
std::thread_local! {
    /// The decoding tables of whichever thread runs a piece.
    static THREAD_SCRATCH: core::cell::RefCell<std::boxed::Box<Scratch>> =
        core::cell::RefCell::new(std::boxed::Box::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_kernel::codec::{first_error, split, DecodeError};
    use std::vec::Vec;

    /// A chain of `n` Q8_0 units with every field raw, built by hand
    /// (CODEC.md): each decodes to its blocks, so the chain decodes to
    /// their concatenation.
    fn chain(n: usize, blocks: usize) -> (Vec<u8>, Vec<u8>) {
        let (mut coded, mut want) = (Vec::new(), Vec::new());
        for u in 0..n {
            let raw: Vec<u8> = (0..blocks * 34).map(|i| (i * 7 + u * 31) as u8).collect();
            let mut unit = Vec::from(*b"LQBC");
            unit.extend([1, 8, 2, 0]);
            unit.extend((blocks as u32).to_le_bytes());
            unit.extend([0; 8]);
            for (at, width) in [(0, 2), (2, 32)] {
                unit.extend([0, width as u8, 0, 0]);
                unit.extend(((blocks * width) as u32).to_le_bytes());
                for b in raw.chunks_exact(34) {
                    unit.extend(&b[at..at + width]);
                }
            }
            let len = unit.len() as u32;
            unit[12..16].copy_from_slice(&len.to_le_bytes());
            let crc = lode_kernel::codec::unit_crc(&unit);
            unit[16..20].copy_from_slice(&crc.to_le_bytes());
            coded.extend(unit);
            want.extend(raw);
        }
        (coded, want)
    }

    /// On one thread and on two, every piece lands in its own run of the
    /// output and the chain decodes to the blocks it was built from; a
    /// damaged piece is reported, whichever thread decoded it.
    #[test]
    fn pieces_decode_into_their_runs_on_any_number_of_threads() {
        let mut inline = Exec::inline(0);
        let mut threaded = Exec::threaded(2, 0, std::time::Duration::ZERO).unwrap();
        let mut scratch = Scratch::default();
        for exec in [&mut inline, &mut threaded] {
            for n in [1, 2, 4, 7] {
                let (coded, want) = chain(n, 40 + n);
                let mut out = std::vec![0u8; want.len()];
                let mut pieces = split(&coded, &mut out).unwrap();
                assert_eq!(pieces.len(), n);
                decode_pieces(exec, &mut pieces, Verify::Crc, &mut scratch);
                first_error(&pieces).unwrap();
                drop(pieces);
                assert_eq!(out, want, "{n} pieces");

                let mut bad = coded.clone();
                let last = bad.len() - 1;
                bad[last] ^= 1;
                let mut pieces = split(&bad, &mut out).unwrap();
                decode_pieces(exec, &mut pieces, Verify::Crc, &mut scratch);
                assert!(matches!(
                    first_error(&pieces),
                    Err(DecodeError::Checksum { .. })
                ));
            }
        }
    }
}
