//! Streaming trace writer.

use std::io::Write;

use super::{ErrorKind, TraceError, TraceHeader};
use crate::checksum::crc32c_digest;

/// Writes a trace token by token; the header (with the token count) goes out
/// first, so nothing is buffered and no seek is needed.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    header: TraceHeader,
    written: u32,
}

impl<W: Write> TraceWriter<W> {
    /// Start a trace of `header.tokens` tokens.
    pub fn new(mut out: W, header: TraceHeader) -> Result<Self, TraceError> {
        let bytes = header.to_bytes()?;
        out.write_all(&bytes)
            .map_err(|_| TraceError::header(ErrorKind::Write, "writing the header"))?;
        Ok(TraceWriter {
            out,
            header,
            written: 0,
        })
    }

    /// Append one token: one bitset per layer, each `header.bitset_len()`
    /// bytes with padding bits clear.
    pub fn push<B: AsRef<[u8]>>(&mut self, layers: &[B]) -> Result<(), TraceError> {
        let t = self.written;
        if t >= self.header.tokens {
            return Err(TraceError::token(
                ErrorKind::Write,
                t,
                "more tokens than the header declares",
            ));
        }
        if layers.len() != self.header.layers as usize {
            return Err(TraceError::token(
                ErrorKind::Write,
                t,
                "wrong number of layers",
            ));
        }
        let tail = self.header.neurons % 8;
        let mut digest = crc32c_digest();
        for bits in layers {
            let bits = bits.as_ref();
            if bits.len() != self.header.bitset_len() {
                return Err(TraceError::token(
                    ErrorKind::Write,
                    t,
                    "bitset of the wrong length",
                ));
            }
            if tail != 0 && bits.last().is_some_and(|b| b >> tail != 0) {
                return Err(TraceError::token(
                    ErrorKind::Write,
                    t,
                    "bits set past the last neuron",
                ));
            }
            digest.update(bits);
            self.out
                .write_all(bits)
                .map_err(|_| TraceError::token(ErrorKind::Write, t, "writing a record"))?;
        }
        self.out
            .write_all(&digest.finalize().to_le_bytes())
            .map_err(|_| TraceError::token(ErrorKind::Write, t, "writing a record"))?;
        self.written += 1;
        Ok(())
    }

    /// Check every declared token was written and flush.
    pub fn finish(mut self) -> Result<W, TraceError> {
        if self.written != self.header.tokens {
            return Err(TraceError::token(
                ErrorKind::Write,
                self.written,
                "fewer tokens than the header declares",
            ));
        }
        self.out
            .flush()
            .map_err(|_| TraceError::header(ErrorKind::Write, "flushing"))?;
        Ok(self.out)
    }
}
