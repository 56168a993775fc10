//! Lossless coding of GGUF quantized blocks, so streamed weights read
//! fewer bytes (issue 18's "codec in the kernel"): the decoder half.
//!
//! A block interleaves streams that code very differently: the f16 scales
//! (and Q4_1's minimums) take a few thousand distinct values, the 4- and
//! 8-bit values are nearly uniform. A *coded unit* (a tensor, or any run
//! of whole blocks) stores each field of the block type apart, in its own
//! *section*: byte fields as static interleaved rANS over the 256 byte
//! values with one frequency table (a Q4 byte's two nibbles as one symbol,
//! which is at least as good as coding the nibbles apart); f16 fields as an
//! rANS-coded index into a per-unit codebook of their distinct values (at
//! 12-bit probabilities, one table lookup a symbol, since version 2; at 16
//! bits, searched, in version 1 units); any field whose coding would not
//! pay is stored raw. The byte layout is in `CODEC.md` next to this file,
//! versioned.
//!
//! Decoding borrows its input (an I/O slot's bytes) and writes the exact
//! original block bytes into a borrowed output (a compute slot); it never
//! allocates, takes its 56 KiB of tables from a [`Scratch`], and every
//! loop is bounded by the output's length. Corrupt or truncated input is a
//! [`DecodeError`], never a panic: the unit's CRC32C catches damage first
//! ([`Verify::Trusted`] skips it for bytes already checked), and the rANS
//! streams check themselves (each lane must end at its initial state with
//! every word read).
//!
//! A unit decodes whole: rANS streams have no entry points mid-stream, so
//! a sparse read of some blocks needs those blocks coded as units of
//! their own (each pays its tables, about 0.5 to 1 KiB).

mod bits;
mod book;
mod chain;
mod decode;
mod error;
mod layout;
mod rans;
mod reader;

pub use bits::level_freq;
pub use chain::{decode_chain, first_error, split, Piece, Pieces};
pub use decode::{decode, decode_with, header, unit_crc, Header, Scratch, Verify};
pub use error::{DecodeError, ErrorKind};
pub use layout::{
    fields, Field, Role, SectionKind, CRC_AT, HEADER_LEN, MAGIC, PROB_TOTAL, RANS_FIXED_LEN,
    SECTION_HEADER_LEN, STATE_LOW, VERSION, VERSION_1,
};

#[cfg(test)]
mod tests;
