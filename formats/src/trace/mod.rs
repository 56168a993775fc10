//! Activation traces: for every token and layer, which FFN neurons fired.
//!
//! A trace is what profiling records from a real model (`lode profile`) or
//! what `lode trace synth` plants; placement, cache and read-planning policies
//! are evaluated by replaying it. The byte layout is in `formats/TRACE.md`.
//! [`Trace::parse`] validates the header and every record's CRC32C before it
//! hands out a single bit; writing needs `std` (`TraceWriter`).

mod error;
#[cfg(feature = "std")]
mod writer;

pub use error::{ErrorKind, TraceError};
#[cfg(feature = "std")]
pub use writer::TraceWriter;

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::crc32c;

/// First eight bytes of a trace: a high-bit byte (catches 7-bit transfers),
/// `LTRC`, CR LF (catches line-ending translation) and Ctrl-Z (stops `type`
/// on DOS-like systems), as in PNG.
pub const MAGIC: [u8; 8] = [0x8A, b'L', b'T', b'R', b'C', b'\r', b'\n', 0x1A];
/// Major version written and understood.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version written (readers accept any minor of their major).
pub const VERSION_MINOR: u16 = 0;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Most layers a trace may describe.
pub const MAX_LAYERS: u32 = 4096;
/// Most neurons per layer a trace may describe.
pub const MAX_NEURONS: u32 = 1 << 24;
/// Most bytes a trace file may have (1 GiB): readers hold a trace whole, so
/// this bounds what one can make them allocate. It holds 4,096 tokens of the
/// widest 7B geometry (32 layers of 43,008 neurons, 705 MB), more than
/// `lode profile` records by default; writers refuse to exceed it.
pub const MAX_FILE_LEN: u64 = 1 << 30;
/// Flag: the trace was synthesised, not profiled from a model.
pub const FLAG_SYNTHETIC: u32 = 1;
/// Every flag bit version 1.0 defines; readers and writers refuse others.
pub const KNOWN_FLAGS: u32 = FLAG_SYNTHETIC;

/// The fixed header, as stored (little-endian).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Debug, Clone, Copy)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 8],
    major: U16,
    minor: U16,
    header_len: U32,
    layers: U32,
    neurons: U32,
    tokens: U32,
    record_len: U32,
    fingerprint: U64,
    flags: U32,
    reserved: [u8; 16],
    crc: U32,
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_LEN);

/// What a trace describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHeader {
    /// Layers per token.
    pub layers: u32,
    /// FFN neurons per layer.
    pub neurons: u32,
    /// Tokens recorded.
    pub tokens: u32,
    /// Fingerprint of the model the trace belongs to (0 when unknown), so a
    /// trace from another model can be refused.
    pub fingerprint: u64,
    /// [`FLAG_SYNTHETIC`] and future flags.
    pub flags: u32,
}

impl TraceHeader {
    /// Bytes of one layer's bitset.
    pub fn bitset_len(&self) -> usize {
        (self.neurons as usize).div_ceil(8)
    }

    /// Bytes of one token's record: every layer's bitset, then a CRC32C.
    pub fn record_len(&self) -> Option<usize> {
        self.bitset_len()
            .checked_mul(self.layers as usize)?
            .checked_add(4)
    }

    /// Bytes of the whole file.
    pub fn file_len(&self) -> Option<usize> {
        self.record_len()?
            .checked_mul(self.tokens as usize)?
            .checked_add(HEADER_LEN)
    }

    fn check(&self) -> Result<(), TraceError> {
        if self.layers == 0 || self.layers > MAX_LAYERS {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "layer count is 0 or above 4096",
            ));
        }
        if self.neurons == 0 || self.neurons > MAX_NEURONS {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "neuron count is 0 or above 2^24",
            ));
        }
        if self.file_len().is_none() {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "trace size overflows",
            ));
        }
        if self.file_len().is_some_and(|n| n as u64 > MAX_FILE_LEN) {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "trace larger than 1 GiB (MAX_FILE_LEN)",
            ));
        }
        // An unknown bit may mean something this reader would get wrong
        // (TRACE.md: other bits are zero in 1.0).
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "unknown flag bits are set",
            ));
        }
        Ok(())
    }

    /// The header's 64 bytes.
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN], TraceError> {
        self.check()?;
        let record_len = self.record_len().and_then(|r| u32::try_from(r).ok());
        let record_len =
            record_len.ok_or(TraceError::header(ErrorKind::Malformed, "record too long"))?;
        let mut raw = RawHeader {
            magic: MAGIC,
            major: U16::new(VERSION_MAJOR),
            minor: U16::new(VERSION_MINOR),
            header_len: U32::new(HEADER_LEN as u32),
            layers: U32::new(self.layers),
            neurons: U32::new(self.neurons),
            tokens: U32::new(self.tokens),
            record_len: U32::new(record_len),
            fingerprint: U64::new(self.fingerprint),
            flags: U32::new(self.flags),
            reserved: [0; 16],
            crc: U32::new(0),
        };
        raw.crc = U32::new(crc32c(&raw.as_bytes()[..HEADER_LEN - 4]));
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(raw.as_bytes());
        Ok(out)
    }

    /// Parse and validate the first [`HEADER_LEN`] bytes of a trace.
    pub fn parse(bytes: &[u8]) -> Result<TraceHeader, TraceError> {
        let n = bytes.len().min(MAGIC.len());
        if bytes.get(..n) != MAGIC.get(..n) {
            return Err(TraceError::header(
                ErrorKind::BadMagic,
                "not an activation trace",
            ));
        }
        let Ok((raw, _)) = RawHeader::ref_from_prefix(bytes) else {
            return Err(TraceError::header(
                ErrorKind::Truncated,
                "file shorter than the header",
            ));
        };
        if raw.major.get() != VERSION_MAJOR {
            return Err(TraceError::header(
                ErrorKind::UnsupportedVersion,
                "unknown major version",
            ));
        }
        if crc32c(&raw.as_bytes()[..HEADER_LEN - 4]) != raw.crc.get() {
            return Err(TraceError::header(
                ErrorKind::ChecksumMismatch,
                "header checksum",
            ));
        }
        if raw.header_len.get() as usize != HEADER_LEN || raw.reserved != [0; 16] {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "header length or reserved bytes",
            ));
        }
        let h = TraceHeader {
            layers: raw.layers.get(),
            neurons: raw.neurons.get(),
            tokens: raw.tokens.get(),
            fingerprint: raw.fingerprint.get(),
            flags: raw.flags.get(),
        };
        h.check()?;
        if h.record_len() != Some(raw.record_len.get() as usize) {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "record length disagrees with geometry",
            ));
        }
        Ok(h)
    }
}

/// A validated trace borrowed from a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Trace<'a> {
    header: TraceHeader,
    records: &'a [u8],
}

impl<'a> Trace<'a> {
    /// Validate the whole trace: header, exact length, every record's
    /// checksum and zero padding bits.
    pub fn parse(bytes: &'a [u8]) -> Result<Trace<'a>, TraceError> {
        let header = TraceHeader::parse(bytes)?;
        // check() proved file_len fits.
        let want = header.file_len().unwrap_or(usize::MAX);
        if bytes.len() < want {
            return Err(TraceError::header(
                ErrorKind::Truncated,
                "file shorter than its records",
            ));
        }
        if bytes.len() > want {
            return Err(TraceError::header(
                ErrorKind::Malformed,
                "bytes after the last record",
            ));
        }
        let trace = Trace {
            header,
            records: &bytes[HEADER_LEN..],
        };
        for t in 0..header.tokens {
            trace.check_record(t)?;
        }
        Ok(trace)
    }

    /// The header.
    pub fn header(&self) -> TraceHeader {
        self.header
    }

    fn record(&self, token: u32) -> Option<&'a [u8]> {
        let len = self.header.record_len()?;
        self.records
            .get(token as usize * len..(token as usize + 1) * len)
    }

    fn check_record(&self, token: u32) -> Result<(), TraceError> {
        let rec = self.record(token).ok_or(TraceError::token(
            ErrorKind::Truncated,
            token,
            "record missing",
        ))?;
        let (body, crc) = rec.split_at(rec.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c(body) != stored {
            return Err(TraceError::token(
                ErrorKind::ChecksumMismatch,
                token,
                "record checksum",
            ));
        }
        let tail_bits = self.header.neurons % 8;
        if tail_bits != 0 {
            let mask = !((1u8 << tail_bits) - 1);
            for l in 0..self.header.layers as usize {
                let last = body[(l + 1) * self.header.bitset_len() - 1];
                if last & mask != 0 {
                    return Err(TraceError::token(
                        ErrorKind::Malformed,
                        token,
                        "padding bits set",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The neurons active at `token` in `layer`.
    pub fn active(&self, token: u32, layer: u32) -> Result<ActiveSet<'a>, TraceError> {
        if token >= self.header.tokens || layer >= self.header.layers {
            return Err(TraceError::token(
                ErrorKind::OutOfRange,
                token,
                "token or layer out of range",
            ));
        }
        let rec = self.record(token).ok_or(TraceError::token(
            ErrorKind::Truncated,
            token,
            "record missing",
        ))?;
        let b = self.header.bitset_len();
        let bits = rec
            .get(layer as usize * b..(layer as usize + 1) * b)
            .ok_or(TraceError::token(
                ErrorKind::Truncated,
                token,
                "layer missing",
            ))?;
        Ok(ActiveSet {
            bits,
            neurons: self.header.neurons,
        })
    }
}

/// One layer's active neurons at one token: a little-endian bitset (neuron
/// `n` is bit `n % 8` of byte `n / 8`).
#[derive(Debug, Clone, Copy)]
pub struct ActiveSet<'a> {
    bits: &'a [u8],
    neurons: u32,
}

impl<'a> ActiveSet<'a> {
    /// A set over raw bitset bytes (`neurons.div_ceil(8)` of them).
    pub fn from_bits(bits: &'a [u8], neurons: u32) -> Option<Self> {
        (bits.len() == (neurons as usize).div_ceil(8)).then_some(ActiveSet { bits, neurons })
    }

    /// `true` when neuron `n` fired.
    pub fn contains(&self, n: u32) -> bool {
        n < self.neurons
            && self
                .bits
                .get(n as usize / 8)
                .is_some_and(|b| b & (1 << (n % 8)) != 0)
    }

    /// Number of active neurons.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Neurons in the layer.
    pub fn neurons(&self) -> u32 {
        self.neurons
    }

    /// The raw bitset.
    pub fn bits(&self) -> &'a [u8] {
        self.bits
    }

    /// Active neurons in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let neurons = self.neurons;
        self.bits
            .iter()
            .enumerate()
            .flat_map(move |(i, &byte)| {
                (0..8u32)
                    .filter(move |b| byte & (1 << b) != 0)
                    .map(move |b| i as u32 * 8 + b)
            })
            .filter(move |&n| n < neurons)
    }
}

/// Set neuron `n` in a bitset buffer (ignored when out of range).
pub fn set_bit(bits: &mut [u8], n: u32) {
    if let Some(b) = bits.get_mut(n as usize / 8) {
        *b |= 1 << (n % 8);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests;
