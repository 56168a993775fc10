//! CRC32C as fast as this CPU computes it, for checking streamed reads.
//!
//! The kernel checks every block it reads while generating against the CRC
//! recorded when the image was verified
//! ([`BlockChecks`](lode_kernel::flash::BlockChecks)), so the CRC runs over
//! every streamed byte: tens of MiB a token. With `std` this is the
//! `crc32c` crate's hardware path (SSE 4.2 or the aarch64 CRC
//! instructions, detected at run time, with a software fallback); without
//! it, the portable table-driven CRC of `lode-formats`. Both compute the
//! same function (Castagnoli, reflected, as the image format specifies).

/// CRC32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(feature = "std")]
    {
        ::crc32c::crc32c(bytes)
    }
    #[cfg(not(feature = "std"))]
    {
        lode_formats::image::crc32c(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_crc_is_the_formats_crc() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let data: std::vec::Vec<u8> = (0..100_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for len in [0, 1, 7, 8, 63, 64, 4095, 4096, 100_003] {
            let d = &data[..len];
            assert_eq!(crc32c(d), lode_formats::image::crc32c(d), "{len}");
        }
    }
}
