//! The CRCs of a streamed read's pieces, spread over the compute threads.
//!
//! The kernel checks every read it streams against the CRCs recorded at
//! load, as it takes the read for computing: at a third of the model that
//! is about 70 MiB a token, several milliseconds of CRC on one thread while
//! the pool's workers wait for the next product. Cut into pieces (the
//! kernel chooses how many), the CRC runs on every thread the products use.

use lode_kernel::compute::ErrorKind;

use super::exec::{Exec, Parts};

/// `crcs[i] = crc(piece i of data)`, pieces of `piece` bytes (the last one
/// the rest), computed on `exec`'s threads.
pub(crate) fn checksums(
    exec: &mut Exec,
    data: &[u8],
    piece: usize,
    crc: fn(&[u8]) -> u32,
    crcs: &mut [u32],
) -> Result<(), ErrorKind> {
    if piece == 0 || data.len().div_ceil(piece) != crcs.len() {
        return Err(ErrorKind::ShapeMismatch);
    }
    let mut items: Parts<(&[u8], &mut u32)> = Parts::new();
    for (p, c) in data.chunks(piece).zip(crcs.iter_mut()) {
        if let Err((p, c)) = items.push((p, c)) {
            // More pieces than a job holds: the rest on this thread.
            *c = crc(p);
        }
    }
    exec.for_each(&mut items, &|(p, c)| **c = crc(p));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn sum(b: &[u8]) -> u32 {
        lode_formats::image::crc32c(b)
    }

    /// On one thread and on several, every piece gets its own CRC, the
    /// short last one included; a count that does not match is refused.
    #[test]
    fn every_piece_gets_its_crc_on_any_number_of_threads() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i * 13 / 5) as u8).collect();
        let mut inline = Exec::inline(0);
        #[cfg(feature = "std")]
        let mut threaded = Exec::threaded(2, 0, std::time::Duration::ZERO).unwrap();
        let mut execs: Vec<&mut Exec> = Vec::from([&mut inline]);
        #[cfg(feature = "std")]
        execs.push(&mut threaded);
        for exec in execs {
            for piece in [1000, 4096, 65_536, 100_003, 200_000] {
                let n = data.len().div_ceil(piece);
                let mut crcs = std::vec![0u32; n];
                checksums(exec, &data, piece, sum, &mut crcs).unwrap();
                let want: Vec<u32> = data.chunks(piece).map(sum).collect();
                assert_eq!(crcs, want, "piece {piece}");
            }
            let mut two = [0u32; 2];
            assert_eq!(
                checksums(exec, &data, 4096, sum, &mut two),
                Err(ErrorKind::ShapeMismatch)
            );
            assert_eq!(
                checksums(exec, &data, 0, sum, &mut []),
                Err(ErrorKind::ShapeMismatch)
            );
        }
    }
}
